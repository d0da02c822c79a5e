"""Alert latency: from a service going down (a stand-in fault) to the SMTP server accepting the alert.

Measured end to end with real parts: the stand-in stack over HTTP, `catalyst-ops monitor` as a
process, a real SMTP server (aiosmtpd, STARTTLS + AUTH). Each sample waits a random fraction of
the interval, kills one service (`sandbox fault SERVICE down`) and times until the alert email is
accepted. Run 1 uses the default interval (alerts.interval 30 s); run 2 a short one, labelled.

The seed's design is simulated in the same run for comparison: a cron health job every 5 min
plus a monitor loop that sleeps 2 min between sweeps that check the nine services one after
another (each check costing what the measured run's checks cost), fault times uniform at random.

    PYTHONPATH=. python bench/alert_latency.py [--samples 3] [--short-interval 2] [--short-samples 8]
Prints its figures; asserts nothing. Target: every latency under 2 x interval.
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import argparse
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import free_base_port, run_cli  # noqa: E402
from smtpserver import SMTPServer  # noqa: E402

SERVICES = ["scanner", "pattern", "technical", "risk-manager", "news", "reporting", "trading", "orchestration"]


def _stats(xs: list[float]) -> str:
    if not xs:
        return "no samples"
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return (f"n={len(xs):<6} mean {statistics.fmean(xs):7.2f} s   median {statistics.median(xs):7.2f} s   "
            f"p95 {p95:7.2f} s   max {xs[-1]:7.2f} s")


def measure(interval: float, samples: int, workdir: Path) -> tuple[list[float], float]:
    """Real run. Returns (latencies, mean duration of one monitor sweep)."""
    rundir = workdir / f"standin-{interval:g}"
    res = run_cli("sandbox", "up", "--rundir", rundir, "--base-port", str(free_base_port()))
    if res.code != 0:
        raise SystemExit(f"stand-in did not start: {res.text}")
    smtp = SMTPServer(workdir / f"smtp-{interval:g}").start()
    monitor = None
    try:
        (rundir / ".env").open("a").write(smtp.env())
        with open(rundir / "ops.yml", "a") as fh:
            fh.write(f"\nalerts:\n  interval: {interval}\n  cooldown: 0\n  ca_file: {smtp.cert}\n")
        monitor = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(rundir / "ops.yml"), "monitor"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        db_path = rundir / "state.db"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if sqlite3.connect(db_path).execute("SELECT 1 FROM heartbeats WHERE name='monitor'").fetchone():
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        latencies = []
        for i in range(samples):
            svc = SERVICES[i % len(SERVICES)]
            time.sleep(random.uniform(0, interval))  # a fault at a random phase of the sweep cycle
            before = len(smtp.messages)
            t0 = time.time()
            f = run_cli("sandbox", "fault", svc, "down", "--rundir", rundir)
            if f.code != 0:
                raise SystemExit(f.text)
            msgs = smtp.wait_for(before + 1, timeout=3 * interval + 10)
            hit = [m for m in msgs[before:] if svc in m.subject]
            if not hit:
                print(f"  sample {i + 1}: no alert for {svc} within {3 * interval + 10:.0f} s")
                continue
            latencies.append(hit[0].at - t0)
            print(f"  interval {interval:g} s, sample {i + 1}/{samples}: {svc} down -> alert accepted in "
                  f"{latencies[-1]:.2f} s", flush=True)
        con = sqlite3.connect(db_path)
        durs = [r[0] for r in con.execute("SELECT ended_at - started_at FROM health_sweeps WHERE source='monitor'")]
        return latencies, (statistics.fmean(durs) if durs else 0.0)
    finally:
        if monitor is not None:
            monitor.send_signal(signal.SIGTERM)
            try:
                monitor.wait(5)
            except subprocess.TimeoutExpired:
                monitor.kill()
        smtp.stop()
        run_cli("sandbox", "down", "--rundir", rundir)


def simulate_seed(check_seconds: float, send_seconds: float, n: int = 200_000, seed: int = 1) -> list[float]:
    """The seed: cron health every 300 s; a loop of (sequential sweep of 9 checks, then sleep 120 s).

    The cron job starts at a random phase of the loop. A fault at uniform time t is noticed by whichever
    comes first: the next cron run, or the loop's next check of that service."""
    rng = random.Random(seed)
    sweep = 9 * check_seconds
    loop_period = 120.0 + sweep
    out = []
    for _ in range(n):
        cron_phase = rng.uniform(0, 300)
        position = rng.randrange(9)  # the failed service's place in the loop's sequence
        t = rng.uniform(0, 3600)
        cron_next = cron_phase + 300 * (int((t - cron_phase) // 300) + 1)
        cron_detect = cron_next + 9 * check_seconds  # cron checks sequentially too
        check_at = (position + 1) * check_seconds  # offset inside a loop pass
        k = int((t - check_at) // loop_period) + 1
        loop_detect = k * loop_period + check_at
        out.append(min(cron_detect, loop_detect) - t + send_seconds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3, help="samples with the default interval (30 s each on average)")
    ap.add_argument("--interval", type=float, default=30.0, help="the default alerts.interval")
    ap.add_argument("--short-interval", type=float, default=2.0, help="second run's interval (0 to skip)")
    ap.add_argument("--short-samples", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    started = time.monotonic()
    try:
        print(f"measuring: monitor with alerts.interval={args.interval:g} s (the default), {args.samples} samples")
        default_lat, sweep_s = measure(args.interval, args.samples, work)
        short_lat: list[float] = []
        if args.short_interval > 0:
            print(f"measuring: monitor with alerts.interval={args.short_interval:g} s (shortened), "
                  f"{args.short_samples} samples")
            short_lat, _ = measure(args.short_interval, args.short_samples, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    send_s = 0.1  # SMTP round trip measured on localhost is well under this; the seed pays the same
    check_s = max(sweep_s, 0.01)  # the seed checks one by one: each check costs about one concurrent sweep here
    seed = simulate_seed(check_s, send_s)
    print()
    print("alert latency: service down -> SMTP server accepted the alert")
    print(f"  new monitor, interval {args.interval:g} s (default, measured): {_stats(default_lat)}")
    if short_lat:
        print(f"  new monitor, interval {args.short_interval:g} s (shortened, measured): {_stats(short_lat)}")
    print(f"  seed design, 5-min cron + 2-min loop (simulated):   {_stats(seed)}")
    print(f"  new monitor, interval {args.interval:g} s (expected): mean {args.interval / 2 + sweep_s:.2f} s, "
          f"worst {args.interval + sweep_s:.2f} s")
    print(f"  measured mean sweep (9 services, concurrent): {sweep_s * 1000:.0f} ms")
    target = 2 * args.interval
    worst = max(default_lat) if default_lat else float("nan")
    print(f"  target: under 2 x interval = {target:g} s; worst measured at the default interval: {worst:.2f} s "
          f"({'met' if worst < target else 'NOT met'})")
    if short_lat:
        print(f"  shortened run: worst {max(short_lat):.2f} s vs 2 x {args.short_interval:g} = {2 * args.short_interval:g} s")
    print(f"  bench wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
