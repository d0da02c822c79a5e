"""A month unattended: how the state DB and the everyday commands fare with 30 days of records.

Starts the stand-in stack, runs the real jobs once (`health`, `monitor --once`,
`sample-resources`) so every row template (job output tails, check details, resource sample
JSON) is what this version writes, then fills the state DB with 30 days of history at the
default cadence: the cron `health` job and `sample-resources` every 5 minutes, the monitor's
sweep every `alerts.interval` (30 s) — nine services each —, the market jobs on weekdays,
backups nightly, rotation daily, maintenance on Sundays, and an outage now and then (a service
down for a few sweeps: its restart, its alert and recovery). Then it measures `status`,
`health`, `validate --hours 48` and `report daily` (wall time of the process, best of 3) and
the DB's size, before and after `weekly-maintenance --skip backup --skip restart` (retention
and compaction). Prints figures; asserts nothing.

    PYTHONPATH=. python bench/bench_month.py [--days 30] [--monitor-interval 30] [--keep]
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, time as dtime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
ET = ZoneInfo("America/New_York")
SERVICES = ["orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news", "reporting"]
ENV = {k: v for k, v in os.environ.items() if k not in ("CATALYST_OPS_CONFIG", "CATALYST_OPS_NOW")}
ENV["PYTHONPATH"] = str(REPO)


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "catalyst_ops"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO)


def free_base(span: int = 11) -> int:
    for _ in range(200):
        base = random.randrange(20000, 32000 - span)
        socks = []
        try:
            for p in range(base, base + span):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    sys.exit("bench: no free port range")


def templates(db_path: Path) -> dict:
    """Rows the real jobs just wrote, reused as the month's rows."""
    c = sqlite3.connect(db_path)
    c.row_factory = sqlite3.Row
    t = {"runs": {}, "checks": {}}
    for r in c.execute("SELECT job, summary, output_tail FROM job_runs ORDER BY id"):
        t["runs"][r["job"]] = (r["summary"] or "", r["output_tail"] or "")
    for r in c.execute("SELECT service, state, http_status, detail FROM health_checks ORDER BY id"):
        t["checks"][r["service"]] = (r["http_status"], r["detail"])
    row = c.execute("SELECT source, cpu_percent, mem_percent, mem_bytes, detail FROM resource_samples ORDER BY id DESC").fetchone()
    t["resource"] = tuple(row) if row else ("proc", 12.0, 30.0, 600_000_000, json.dumps({"units": [], "reason": ""}))
    c.close()
    return t


def fill(db_path: Path, end: float, days: int, monitor_interval: float, tpl: dict, seed: int = 13) -> dict:
    rnd = random.Random(seed)
    c = sqlite3.connect(db_path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    start = end - days * 86400
    counts = dict.fromkeys(("health_sweeps", "health_checks", "job_runs", "restarts", "alerts", "resource_samples"), 0)
    # outages: ~3 a week, one service down 10-25 min, found by the monitor, restarted by health
    outages = []
    t = start + 3600
    while t < end:
        t += rnd.uniform(1.5, 3.5) * 86400
        if t < end:
            outages.append((rnd.choice(SERVICES), t, t + rnd.uniform(600, 1500)))

    def state_at(service: str, ts: float) -> str:
        return "down" if any(s == service and a <= ts < b for s, a, b in outages) else "healthy"

    def run_row(job: str, at: float, took: float, status: str = "ok", code: int = 0, session: str | None = None):
        summary, tail = tpl["runs"].get(job) or tpl["runs"].get("health", ("", ""))
        return (job, at, at + took, code, status, summary or f"{job}: {status}", tail, session, "droplet", 4242)

    sweeps_sql = "INSERT INTO health_sweeps(id, started_at, ended_at, source, total, healthy, degraded, failed) VALUES (?,?,?,?,?,?,?,?)"
    checks_sql = "INSERT INTO health_checks(sweep_id, service, checked_at, state, http_status, latency_ms, detail) VALUES (?,?,?,?,?,?,?)"
    runs_sql = ("INSERT INTO job_runs(job, started_at, ended_at, exit_code, status, summary, output_tail, session_date,"
                " host, pid) VALUES (?,?,?,?,?,?,?,?,?,?)")
    next_id = (c.execute("SELECT MAX(id) FROM health_sweeps").fetchone()[0] or 0) + 1
    c.execute("BEGIN")
    sweeps, checks, runs = [], [], []

    def sweep(ts: float, source: str):
        nonlocal next_id
        states = {s: state_at(s, ts) for s in SERVICES}
        bad = sum(v != "healthy" for v in states.values())
        sweeps.append((next_id, ts, ts + 0.05, source, 9, 9 - bad, 0, bad))
        for s, st in states.items():
            http, detail = tpl["checks"].get(s, (200, "ok"))
            checks.append((next_id, s, ts + 0.05, st, http if st == "healthy" else None,
                           round(rnd.uniform(1, 25), 1), detail if st == "healthy" else "connection refused"))
        next_id += 1
        return bad

    def flush():
        c.executemany(sweeps_sql, sweeps)
        c.executemany(checks_sql, checks)
        c.executemany(runs_sql, runs)
        counts["health_sweeps"] += len(sweeps)
        counts["health_checks"] += len(checks)
        counts["job_runs"] += len(runs)
        sweeps.clear(), checks.clear(), runs.clear()

    ts = start
    while ts < end:
        sweep(ts, "monitor")
        ts += monitor_interval
        if len(checks) > 50_000:
            flush()
    res = tpl["resource"]
    ts = start
    while ts < end:
        bad = sweep(ts + 1, "health")
        runs.append(run_row("health", ts + 0.5, 0.8, "ok" if not bad else "failed", 1 if bad else 0))
        runs.append(run_row("sample-resources", ts + 2, 1.1))
        c.execute("INSERT INTO resource_samples(at, source, cpu_percent, mem_percent, mem_bytes, detail) VALUES (?,?,?,?,?,?)",
                  (ts + 3, res[0], res[1], res[2], res[3], res[4]))
        c.execute("INSERT OR IGNORE INTO heartbeat_observations(name, at, observed_at) VALUES ('monitor',?,?)",
                  (ts - rnd.uniform(1, 29), ts + 3))
        c.execute("INSERT INTO db_connection_samples(at, connections, total, max_connections, reserved, exhausted)"
                  " VALUES (?,?,?,?,?,0)", (ts + 3, 12, 18, 100, 3))
        counts["resource_samples"] += 1
        ts += 300
        if len(checks) > 50_000:
            flush()
    flush()
    for service, a, b in outages:
        first_health = a + (300 - (a - start) % 300) + 1
        c.execute("INSERT INTO restarts(service, at, reason, outcome, planned, detail) VALUES (?,?,?,?,0,?)",
                  (service, first_health, "down", "recovered", "synthetic outage"))
        for at, sev, subj in ((a + 30, "critical", f"FAILING: {service}"), (b + 30, "info", f"RECOVERED: {service}")):
            c.execute("INSERT INTO alerts(created_at, severity, subject_key, subject, body, status, attempts, sent_at)"
                      " VALUES (?,?,?,?,?,'sent',1,?)", (at, sev, f"service:{service}", subj,
                                                          f"{subj}\n\n{service}: connection refused (synthetic)\n" * 3, at + 2))
            counts["alerts"] += 1
        counts["restarts"] += 1
    day = datetime.fromtimestamp(start, ET).date()
    last = datetime.fromtimestamp(end, ET).date()
    while day <= last:
        def at(hm: str) -> float:
            return datetime.combine(day, dtime.fromisoformat(hm), ET).timestamp()

        jobs = [("backup", "23:00", 95), ("rotate-logs", "03:02", 1), ("report", "17:30", 4)]
        if day.weekday() < 5:
            jobs += [("market-open", "09:30", 120), ("scan", "11:00", 110), ("scan", "13:00", 110),
                     ("market-close", "13:00", 1), ("market-close", "16:00", 8)]
        if day.weekday() == 6:
            jobs.append(("weekly-maintenance", "02:00", 240))
        for job, hm, took in jobs:
            if start <= at(hm) < end:
                runs.append(run_row(job, at(hm) + 1, took, session=day.isoformat() if day.weekday() < 5 else None))
        if start <= at("23:00") < end:
            c.execute("INSERT INTO backups(path, created_at, size_bytes, sha256, verified, status, detail) VALUES (?,?,?,?,?,?,?)",
                      (f"/backups/catalyst/catalyst-{day:%Y%m%d}T040000Z.dump", at("23:00") + 95, 734_003_200, "ab" * 32,
                       "list", "ok", json.dumps({"rows": {"positions": 1200, "orders": 2400}})))
        day += timedelta(days=1)
    flush()
    c.execute("COMMIT")
    c.close()
    return counts


def measure(config: Path, rounds: int = 3) -> dict:
    yesterday = (datetime.now(ET) - timedelta(days=1)).date().isoformat()
    cmds = {
        "status": ["status"],
        "health": ["health", "--no-restart"],
        "validate --hours 48": ["validate", "--hours", "48"],
        "report daily": ["report", "daily", "--date", yesterday],
    }
    out = {}
    for name, args in cmds.items():
        best = None
        for _ in range(rounds):
            t = time.perf_counter()
            p = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(config), *args],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
            _, status, usage = os.wait4(p.pid, 0)  # the child's own CPU time: this machine is shared
            wall = time.perf_counter() - t
            if best is None or wall < best[0]:
                best = (wall, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)
        out[name] = best
    return out


def db_size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def table_counts(path: Path) -> dict:
    c = sqlite3.connect(path)
    out = {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
           for t in ("health_sweeps", "health_checks", "job_runs", "alerts", "restarts", "resource_samples")}
    c.close()
    return out


def show(title: str, figures: dict, path: Path) -> None:
    print(f"\n{title}: state.db {db_size(path) / 2**20:.1f} MiB; rows {table_counts(path)}")
    for name, (wall, code, cpu) in figures.items():
        print(f"  {name:22s} {wall * 1000:6.0f} ms wall, {cpu * 1000:6.0f} ms CPU (best of 3, interpreter start "
              f"included), exit {code}")
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--monitor-interval", type=float, default=30.0, help="seconds between monitor sweeps (alerts.interval)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="catalyst-month-"))
    rundir = work / "standin"
    p = cli("sandbox", "up", "--rundir", str(rundir), "--base-port", str(free_base()))
    if p.returncode != 0:
        sys.exit(f"bench: sandbox up failed: {p.stdout}{p.stderr}")
    config = rundir / "ops.yml"
    state = rundir / "state.db"
    try:
        for job in (["health"], ["monitor", "--once"], ["sample-resources"]):
            cli(*job, config=config)
        tpl = templates(state)
        t = time.perf_counter()
        counts = fill(state, time.time() - 60, args.days, args.monitor_interval, tpl)
        print(f"filled {args.days} days in {time.perf_counter() - t:.1f} s: {counts}")
        empty = measure(config)
        show(f"{args.days} days of history", empty, state)
        t = time.perf_counter()
        p = cli("weekly-maintenance", "--skip", "backup", "--skip", "restart", "--json", config=config)
        took = time.perf_counter() - t
        try:
            steps = {s["step"]: s["detail"] for s in json.loads(p.stdout)["steps"]}
        except (ValueError, KeyError):
            steps = {"output": (p.stdout + p.stderr)[-400:]}
        print(f"\nweekly-maintenance (retention): exit {p.returncode}, {took:.1f} s")
        for step, detail in steps.items():
            print(f"  {step}: {detail}")
        show("after retention", measure(config), state)
    finally:
        cli("sandbox", "down", "--rundir", str(rundir))
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
