"""Day benchmark: what one normal trading day of the schedule costs the droplet's one vCPU.

Starts a throw-away PostgreSQL cluster (the trading DB, with generated trades) and the stand-in
stack (nine services + broker, over real HTTP) pointed at it, then runs every firing of the
crontab's lines (catalyst_ops/schedule.py JOBS, which templates/crontab.j2 is tested equal to)
on a normal trading day (Tuesday 2026-11-24 by default), in time order, each as its own process
with `--now` at its firing time, exactly as cron starts it: health every 5 minutes (288),
market-open 09:30, the 11:00 and 13:00 scans, market-close at 13:00 (the early-close probe: a
skip) and 16:00, backup 23:00, rotate-logs 03:02 (on a logrotate config like the role's, for the
stand-in's log dir); weekly-maintenance fires on Sundays only and is left out of a Tuesday.
Each child's CPU seconds (user + system) and peak RSS come from os.wait4 (its own getrusage).

Then an hour of the monitor, compressed: `catalyst-ops monitor` with alerts.interval set to
30 s / --compress (default 60: 0.5 s) runs for 3600 s / --compress of wall time, so it makes the
hour's 120 passes; its CPU is scaled to exactly 120 passes (the passes counted in health_sweeps).
The real monitor also sleeps between passes; sleeping costs no CPU, so compressing changes the
CPU per pass little (it adds no idle wake-ups, a little less than the real hour).

Prints CPU seconds and peak memory per job and in total, and the day's total as a share of one
vCPU (CPU seconds / 86,400 s). With --health-every K only every K-th health firing runs and the
health figures are scaled by K (said in the output).

    python bench/bench_day.py [--day 2026-11-24] [--health-every 1] [--compress 60]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import _common

REPO = _common.REPO
PY = sys.executable


def free_base_port(span: int = 11) -> int:
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
    raise RuntimeError("no free port range")


def child(args: list[str], env: dict) -> tuple[int, float, float, float, str]:
    """(exit code, wall s, CPU s, peak RSS MiB, output) of one catalyst-ops process."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen([PY, "-m", "catalyst_ops", *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0)
        return (os.waitstatus_to_exitcode(status), wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024,
                out.read().decode(errors="replace"))


def firings(day: date, tz: ZoneInfo) -> list[tuple[datetime, object]]:
    from catalyst_ops.schedule import JOBS, CronSpec

    start = datetime(day.year, day.month, day.day, tzinfo=tz) - timedelta(seconds=1)
    end = start + timedelta(days=1)
    out = []
    for job in JOBS:
        for inst in CronSpec.parse(job.cron).fires(start, tz, count=400):
            if inst < end:
                out.append((inst, job))
    return sorted(out, key=lambda x: (x[0], x[1].name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", default="2026-11-24", help="a normal trading day (default Tuesday 2026-11-24)")
    ap.add_argument("--health-every", type=int, default=1, metavar="K", help="run every K-th health firing, scale by K")
    ap.add_argument("--compress", type=float, default=60, help="monitor hour compressed this many times (default 60)")
    ap.add_argument("--trades", type=int, default=5000, help="generated trades in the trading DB (default 5000)")
    args = ap.parse_args()
    tz = ZoneInfo("America/New_York")
    day = date.fromisoformat(args.day)
    cluster, work, _ = _common.start(args.trades, orders=True)
    rundir = work / "standin"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CATALYST_OPS_NOW", None)
    env.pop("CATALYST_OPS_CONFIG", None)
    try:
        url = cluster.url(_common.DBNAME, _common.USER, _common.PASSWORD, sslmode="disable")
        code, *_, out = child(["sandbox", "up", "--rundir", str(rundir), "--base-port", str(free_base_port()),
                               "--stage-seconds", "0.3", "--database-url", url], env)
        if code != 0:
            sys.exit(f"bench: the stand-in did not start:\n{out}")
        config = rundir / "ops.yml"
        logrotate = work / "logrotate.conf"
        logrotate.write_text(f"{rundir / 'log'}/*.log {{\n    daily\n    rotate 30\n    maxage 30\n    missingok\n"
                             "    notifempty\n    compress\n    delaycompress\n    copytruncate\n    dateext\n"
                             "    dateformat -%Y%m%d\n}\n")
        # the calendar's cached window, as a droplet has it after its first job (built once a year)
        child(["--config", str(config), "--now", f"{args.day}T00:00:00-05:00", "schedule", "--json"], env)

        per_job: dict[str, list[tuple[float, float, float, int]]] = {}
        scale: dict[str, int] = {}
        health_seen = 0
        print(f"running the crontab's firings of {day} ({day.strftime('%A')}) against the stand-in ...", flush=True)
        for inst, job in firings(day, tz):
            jargs = list(job.args)
            if job.name == "health":
                health_seen += 1
                if (health_seen - 1) % args.health_every:
                    continue
                scale["health"] = args.health_every
            if job.name == "rotate-logs":
                jargs += ["--logrotate-config", str(logrotate), "--state", str(work / "logrotate.state")]
            label = f"{job.name} {inst:%H:%M}" if job.name != "health" else "health"
            code, wall, cpu, rss, out = child(["--config", str(config), "--now", inst.isoformat(), *jargs], env)
            per_job.setdefault(label, []).append((wall, cpu, rss, code))
            if job.name != "health":
                print(f"  {inst:%H:%M} {job.name:20s} exit {code}  wall {wall:6.2f} s  CPU {cpu:5.2f} s  "
                      f"peak RSS {rss:5.1f} MiB  {out.strip().splitlines()[-1][:90] if out.strip() else ''}", flush=True)

        # an hour of the monitor, compressed
        mon_config = work / "monitor.yml"
        interval = 30.0 / args.compress
        mon_config.write_text(config.read_text() + f"\nalerts:\n  interval: {interval}\n")
        db = sqlite3.connect(rundir / "state.db")
        before = db.execute("SELECT count(*) FROM health_sweeps").fetchone()[0]
        seconds = 3600.0 / args.compress
        print(f"the monitor: interval {interval:g} s for {seconds:g} s (one hour compressed {args.compress:g}x) ...",
              flush=True)
        with tempfile.TemporaryFile() as out:
            t = time.perf_counter()
            p = subprocess.Popen([PY, "-m", "catalyst_ops", "--config", str(mon_config), "--now",
                                  f"{args.day}T10:00:00-05:00", "monitor"], stdout=out, stderr=subprocess.STDOUT,
                                 env=env, cwd=REPO)
            time.sleep(seconds)
            os.kill(p.pid, signal.SIGTERM)  # not p.send_signal: it would reap an exited child before wait4
            _, status, ru = os.wait4(p.pid, 0)
            mon_wall = time.perf_counter() - t
            out.seek(0)
            mon_out = out.read().decode(errors="replace")
        if mon_wall < seconds * 0.9 or os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM):
            print(f"bench: the monitor exited with {os.waitstatus_to_exitcode(status)}:\n{mon_out[-2000:]}")
        passes = db.execute("SELECT count(*) FROM health_sweeps").fetchone()[0] - before
        db.close()
        if passes == 0:
            sys.exit("bench: the monitor made no pass")
        mon_cpu = ru.ru_utime + ru.ru_stime
        mon_hour = mon_cpu * 120 / passes

        print(f"\n{'job':26s} {'runs':>5s} {'CPU s/run':>10s} {'CPU s/day':>10s} {'peak RSS MiB':>13s} {'exit codes':>11s}")
        total = 0.0
        peak = 0.0
        runs_total = 0
        for label, rows in per_job.items():
            k = scale.get(label, 1)
            cpu_day = sum(r[1] for r in rows) * k
            n = len(rows) * k
            total += cpu_day
            runs_total += n
            peak = max(peak, max(r[2] for r in rows))
            codes = ",".join(sorted({str(r[3]) for r in rows}))
            print(f"{label:26s} {n:5d} {cpu_day / n:10.3f} {cpu_day:10.2f} {max(r[2] for r in rows):13.1f} {codes:>11s}"
                  + (f"  (ran {len(rows)}, x{k})" if k > 1 else ""))
        print(f"{'cron jobs, the day':26s} {runs_total:5d} {'':10s} {total:10.2f} {peak:13.1f}")
        print(f"{'monitor, one hour':26s} {120:5d} {mon_hour / 120:10.3f} {mon_hour:10.2f} {ru.ru_maxrss / 1024:13.1f}"
              f"  ({passes} passes in {mon_wall:.0f} s, {mon_cpu:.2f} CPU s, scaled to 120)")
        day_total = total + 24 * mon_hour
        print(f"{'monitor, 24 hours':26s} {24 * 120:5d} {'':10s} {24 * mon_hour:10.2f}")
        print(f"\nthe day: {day_total:.1f} CPU seconds = {100 * day_total / 86400:.2f} % of one vCPU "
              f"(cron jobs {100 * total / 86400:.2f} %, monitor {100 * 24 * mon_hour / 86400:.2f} %); "
              f"largest peak RSS {max(peak, ru.ru_maxrss / 1024):.1f} MiB")
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    finally:
        subprocess.run([PY, "-m", "catalyst_ops", "sandbox", "down", "--rundir", str(rundir)], env=env, cwd=REPO,
                       capture_output=True)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
