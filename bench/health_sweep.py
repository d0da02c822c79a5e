#!/usr/bin/env python3
"""Health sweep: our concurrent sweep vs the seed's sequential loop, and cold-start times.

Starts the stand-in stack on free ports, then for k = 0..9 hung services measures
  - concurrent: catalyst_ops.health.sweep (what `status`/`health`/the monitor run)
  - sequential: the seed's loop, one check after another with the same per-service timeout
and prints them side by side with the ratio. Then the median cold start of
`catalyst-ops --version` and `catalyst-ops status` (9 healthy services) over N runs.

usage: bench/health_sweep.py [--timeout 1.0] [--runs 15]
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import free_base_port  # noqa: E402

from catalyst_ops import config, health  # noqa: E402
from catalyst_ops.config import DEFAULT_PORTS  # noqa: E402

SERVICES = list(DEFAULT_PORTS)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catalyst_ops", *args], capture_output=True, text=True, cwd=REPO)


def sequential(cfg) -> list:
    h = cfg.profile_data["health"]
    out = []
    for name in cfg.enabled_services():
        svc = cfg.service(name)
        out.append(health.check_one(name, svc.host, svc.port, cfg.health_path(name), cfg.service_timeout(name),
                                     cfg.healthy_words(name), h["degraded_words"], h["status_field"]))
    return out


def timed(fn) -> tuple[float, list]:
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=1.0, help="per-service timeout, seconds (default 1.0)")
    ap.add_argument("--runs", type=int, default=15, help="cold-start runs per command (default 15)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rundir = Path(tmp) / "standin"
        base = free_base_port()
        up = cli("sandbox", "up", "--rundir", str(rundir), "--base-port", str(base))
        if up.returncode != 0:
            print(up.stdout + up.stderr)
            return 1
        try:
            cfg_path = rundir / "ops.yml"
            cfg_path.write_text(cfg_path.read_text().replace("health:\n", f"health:\n  timeout: {args.timeout}\n"))
            cfg = config.load(str(cfg_path))
            print(f"health sweep of {len(SERVICES)} services, per-service timeout {args.timeout:g}s "
                  f"(stand-in stack over HTTP on 127.0.0.1)")
            print(f"{'hung':>4}  {'concurrent':>11}  {'sequential':>11}  {'ratio':>6}  states ok")
            for k in range(0, len(SERVICES) + 1):
                for svc in SERVICES[:k]:
                    cli("sandbox", "fault", svc, "hung", "--rundir", str(rundir))
                tc, rc = timed(lambda: health.sweep(cfg))
                ts, rs = timed(lambda: sequential(cfg))
                same = [r.state for r in rc] == [r.state for r in rs] and sum(r.state == "timeout" for r in rc) == k
                print(f"{k:>4}  {tc:>10.3f}s  {ts:>10.3f}s  {ts / tc:>5.1f}x  {'yes' if same else 'NO'}")
                for svc in SERVICES[:k]:
                    cli("sandbox", "fault", svc, "clear", "--rundir", str(rundir))
                time.sleep(0.2)  # let hung handlers notice the cleared fault
            cfg_path.write_text(cfg_path.read_text().replace(f"  timeout: {args.timeout}\n", ""))
            print()
            print(f"cold start, median of {args.runs} runs (python -m catalyst_ops; the installed script is the same code):")
            for label, cmd in (("--version", ["--version"]), ("status (9 healthy)", ["--config", str(cfg_path), "status"])):
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    p = cli(*cmd)
                    times.append(time.perf_counter() - t)
                    if p.returncode != 0:
                        print(f"  {label}: exit {p.returncode}: {p.stderr.strip()}")
                        break
                print(f"  {label:<20} median {statistics.median(times) * 1000:6.0f} ms   "
                      f"min {min(times) * 1000:6.0f} ms   max {max(times) * 1000:6.0f} ms   (target < 300 ms for status)")
        finally:
            cli("sandbox", "down", "--rundir", str(rundir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
