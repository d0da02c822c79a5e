"""Metrics benchmark: `catalyst-ops metrics` over 1,000,000 closed trades; target < 1 s.

Starts its own throw-away cluster, generates closed positions with generate_series, and runs
`catalyst-ops metrics --json --dry-run` as a child process at several trade counts, printing
the wall time of the whole command (Python start-up and the exchange calendar included), the
time of compute() in-process (the SQL aggregation and the calendar), the CPU seconds of the
command's own process and of the PostgreSQL backend that ran its query (/proc, same host), and
the child's peak RSS, which should stay flat as the trade count grows (the aggregation happens
inside PostgreSQL). The calendar's cache file is built before the first timed run, as it is on
a droplet that has run any job. The load average is printed: on a shared machine wall time
grows with it, CPU seconds much less. Not part of the test suite.

    PYTHONPATH=. python bench/metrics.py [--trades 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import _common


def _backend_cpu(cluster) -> float:
    """CPU seconds so far of every PostgreSQL process of the cluster (backends and parallel workers)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pid_file = cluster.datadir / "postmaster.pid"
    master = int(pid_file.read_text().split()[0])
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == master or int(pid) == master:  # field 4: the parent pid
            total += (int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])) / tick
    return total


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
            if n == steps[0]:  # the calendar's cached window, as any earlier job leaves it
                _common.cli(config, "metrics", "--json", "--dry-run")
            code, wall, rss, out = _common.cli(config, "metrics", "--json", "--dry-run")
            cpu = _common.last_cpu
            data = json.loads(out[out.index("{"):out.rindex("}") + 1])
            assert data["trades"] == n, (data["trades"], n)
            cfg = cfgmod.load(str(config))
            state = StateDB(cfg.state_path)
            backend = _backend_cpu(cluster)
            t = time.monotonic()
            metrics.compute(cfg, state, None)
            inproc = time.monotonic() - t
            time.sleep(0.5)  # the backend exits after the connection closes; its CPU lands in the postmaster's
            backend = _backend_cpu(cluster) - backend
            state.close()
            rows.append((n, wall, cpu, inproc, backend, rss, data["verdict"]))
        print(f"\n{'trades':>10} {'command s':>10} {'its CPU s':>10} {'compute s':>10} {'PG CPU s':>9} "
              f"{'peak RSS MiB':>13}  verdict")
        for n, wall, cpu, inproc, backend, rss, verdict in rows:
            print(f"{n:>10,} {wall:10.2f} {cpu:10.2f} {inproc:10.2f} {backend:9.2f} {rss / 1024:13.1f}  {verdict}")
        load = os.getloadavg()
        print(f"target: under 1 s for 1,000,000 trades (the whole command); peak RSS flat across trade counts\n"
              f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
