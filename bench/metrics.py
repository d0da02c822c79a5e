"""Metrics benchmark: `catalyst-ops metrics` over 1,000,000 closed trades; target < 2 s.

Starts its own throw-away cluster, generates closed positions with generate_series, and runs
`catalyst-ops metrics --json --dry-run` as a child process at several trade counts, printing
the wall time of the whole command (Python start-up and the exchange calendar included), the
time of the SQL aggregation alone, and the child's peak RSS, which should stay flat as the
trade count grows (the aggregation happens inside PostgreSQL). Not part of the test suite.

    PYTHONPATH=. python bench/metrics.py [--trades 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import _common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=1_000_000)
    args = ap.parse_args()
    steps = sorted({min(10_000, args.trades), min(100_000, args.trades), args.trades})
    cluster, work, config = _common.start(steps[0], orders=False)
    try:
        import psycopg2

        from catalyst_ops import config as cfgmod, metrics
        from catalyst_ops.state import StateDB

        have = steps[0]
        rows = []
        for n in steps:
            if n > have:
                conn = psycopg2.connect(cluster.url(_common.DBNAME, _common.USER, _common.PASSWORD, sslmode="disable"))
                with conn.cursor() as cur:
                    cur.execute("DELETE FROM positions")
                conn.commit()
                from catalyst_ops.sandbox import pgfixture

                pgfixture.generate(conn, n, orders=False)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("VACUUM ANALYZE positions")
                conn.close()
                have = n
            code, wall, rss, out = _common.cli(config, "metrics", "--json", "--dry-run")
            data = json.loads(out[out.index("{"):out.rindex("}") + 1])
            assert data["trades"] == n, (data["trades"], n)
            cfg = cfgmod.load(str(config))
            state = StateDB(cfg.state_path)
            t = time.monotonic()
            metrics.compute(cfg, state, None)
            inproc = time.monotonic() - t
            state.close()
            rows.append((n, wall, inproc, rss, data["verdict"]))
        print(f"\n{'trades':>10} {'command s':>10} {'compute s':>10} {'peak RSS MiB':>13}  verdict")
        for n, wall, inproc, rss, verdict in rows:
            print(f"{n:>10,} {wall:10.2f} {inproc:10.2f} {rss / 1024:13.1f}  {verdict}")
        print("target: under 2 s for 1,000,000 trades; peak RSS flat across trade counts")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
