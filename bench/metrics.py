"""Metrics benchmark: `catalyst-ops metrics` over 1,000,000 closed trades; target < 1 s.

Starts its own throw-away cluster, generates closed positions with generate_series, and runs
`catalyst-ops metrics --json --dry-run` as a child process at several trade counts, printing
the median wall time of the whole command (Python start-up and the exchange calendar included), the
CPU seconds of the command's own process and of the PostgreSQL processes that served it (/proc,
same host), and the child's peak RSS, which should stay flat as the trade count grows (the
aggregation happens inside PostgreSQL). At each count, five kinds of run (each --reps times), each checked by its `cache`
state in the JSON:

  cold         --fresh: every figure from the trades (the first run, or after a change)
  warm         the trades older than an hour from the cache, their fingerprint checked
  warm 1 core  the same with PGOPTIONS max_parallel_workers_per_gather=0: a one-vCPU droplet
               (this machine's second core otherwise runs half of the fingerprint's scan)
  +1,000 new   warm, after 1,000 trades closed in the last hour (computed through the windows)
  invalidated  after one old trade's P&L was corrected: the check fails, all from scratch

The calendar's cache file is built before the first timed run, as it is on a droplet that has
run any job. The load average is printed: on a shared machine wall time grows with it, CPU
seconds much less. Not part of the test suite.

    PYTHONPATH=. python bench/metrics.py [--trades 1000000] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def _run(cluster, config, *args, one_core: bool = False) -> tuple[float, float, float, int, dict]:
    """(wall s, its CPU s, PostgreSQL CPU s, peak RSS KiB, JSON) of one `metrics --json --dry-run`."""
    before = _backend_cpu(cluster)
    env = {"PGOPTIONS": "-c max_parallel_workers_per_gather=0"} if one_core else None
    _, wall, rss, out = _common.cli(config, "metrics", "--json", "--dry-run", *args, env=env)
    cpu = _common.last_cpu
    time.sleep(0.3)  # a backend's CPU lands in the postmaster's children once it exits
    data = json.loads(out[out.index("{"):out.rindex("}") + 1])
    return wall, cpu, _backend_cpu(cluster) - before, rss, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5, help="runs of each kind (the median is printed)")
    args = ap.parse_args()
    steps = sorted({min(10_000, args.trades), min(100_000, args.trades), args.trades})
    cluster, work, config = _common.start(steps[0], orders=False)
    try:
        import psycopg2

        from catalyst_ops.sandbox import pgfixture

        url = cluster.url(_common.DBNAME, _common.USER, _common.PASSWORD, sslmode="disable")
        _common.cli(config, "metrics", "--json", "--dry-run")  # the calendar's cached window, as any job leaves it
        rows = []
        for n in steps:
            conn = psycopg2.connect(url)
            conn.autocommit = True
            with conn.cursor() as cur:
                if n > steps[0]:
                    cur.execute("DELETE FROM positions")
                    pgfixture.generate(conn, n, orders=False)
                    cur.execute("VACUUM ANALYZE positions")
                for label, extra, one_core, expect in (("cold", ("--fresh",), False, "cold"), ("warm", (), False, "warm"),
                                                       ("warm 1 core", (), True, "warm"), ("+1,000 new", (), False, "warm"),
                                                       ("invalidated", (), False, "invalidated")):
                    if label == "+1,000 new":  # closed 50 .. 10 minutes ago: after the cache's checkpoint
                        cur.execute("INSERT INTO positions(security_id, quantity, entry_price, exit_price, status, risk_amount,"
                                    " realized_pnl, close_reason, opened_at, closed_at)"
                                    " SELECT 1, 100, 50, 51, 'closed', 500, (g % 7) * 100 - 250, 'EXIT',"
                                    " now() - interval '2 hours', now() - interval '50 minutes' + g * interval '2.4 seconds'"
                                    " FROM generate_series(1, 1000) g")
                    runs = []
                    for _ in range(args.reps):
                        if label == "invalidated":  # a correction of an old trade's P&L before every run
                            cur.execute("UPDATE positions SET realized_pnl = realized_pnl + 0.01"
                                        " WHERE position_id = (SELECT min(position_id) FROM positions)")
                        wall, cpu, backend, rss, data = _run(cluster, config, *extra, one_core=one_core)
                        assert data["cache"]["state"] == expect, (label, data["cache"])
                        assert data["trades"] == n + (1000 if label in ("+1,000 new", "invalidated") else 0), data["trades"]
                        runs.append((wall, cpu, backend, rss))
                    walls = sorted(r[0] for r in runs)
                    rows.append((n, label, statistics.median(walls), walls[0], walls[-1],
                                 statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs),
                                 max(r[3] for r in runs)))
                cur.execute("DELETE FROM positions WHERE closed_at > now() - interval '1 hour'")
            conn.close()
        print(f"\n{'trades':>10}  {'run':<12} {'command s':>10} {'min..max s':>12} {'its CPU s':>10} {'PG CPU s':>9} "
              f"{'peak RSS MiB':>13}")
        for n, label, wall, lo, hi, cpu, backend, rss in rows:
            print(f"{n:>10,}  {label:<12} {wall:10.2f} {f'{lo:.2f}..{hi:.2f}':>12} {cpu:10.2f} {backend:9.2f} {rss / 1024:13.1f}")
        print(f"medians of {args.reps} runs each; CPU seconds: the command's process and the PostgreSQL processes "
              "that served it (on a one-vCPU droplet the wall time is at least their sum)")
        load = os.getloadavg()
        print(f"target: under 1 s for 1,000,000 trades (the whole command); peak RSS flat across trade counts\n"
              f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
