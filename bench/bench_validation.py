"""How long the validation commands take on a busy state DB, and how big the outputs are.

A 30-day DB (the health retention): 8,600 sweeps, 77,000 health checks, 8,600 resource
samples, the market jobs and backups. Prints figures; asserts nothing.
    PYTHONPATH=. python bench/bench_validation.py
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from synth_state import ET, fill, ops_yaml  # noqa: E402


def timed(cmd: list[str], env: dict) -> tuple[float, int, int]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, env=env)
    return time.perf_counter() - t, p.returncode, len(p.stdout)


def main() -> None:
    end = datetime(2026, 3, 11, 12, 0, tzinfo=ET)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        fill(tmp / "state.db", end, hours=30 * 24).close()
        print(f"fill 30 days: {time.perf_counter() - t:.1f} s, state.db {os.path.getsize(tmp / 'state.db') / 1e6:.1f} MB")
        cfg = ops_yaml(tmp, tmp / "state.db")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        base = [sys.executable, "-m", "catalyst_ops", "--config", cfg, "--now", end.isoformat()]
        runs = [
            ("validate --hours 48", ["validate", "--hours", "48"]),
            ("validate --hours 720", ["validate", "--hours", "720"]),
            ("report daily (text)", ["report", "daily", "--date", "2026-03-10", "--no-live"]),
            ("report daily --html", ["report", "daily", "--date", "2026-03-10", "--html"]),
            ("report daily --json", ["report", "daily", "--date", "2026-03-10", "--json"]),
            ("export prometheus", ["export", "prometheus"]),
        ]
        for name, args in runs:
            best = min(timed(base + args, env) for _ in range(3))
            print(f"{name:24s} {best[0] * 1000:7.0f} ms wall (best of 3, process start included), exit {best[1]}, "
                  f"{best[2] / 1024:.1f} KiB out")
        best = min(timed([sys.executable, "-m", "catalyst_ops", "status", "--help"], env) for _ in range(5))
        print(f"{'cold start (status --help)':24s} {best[0] * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
