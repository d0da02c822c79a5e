"""How long the market jobs take to decide, cold (a cron run) and warm (in-process).

Prints figures; asserts nothing. Run: PYTHONPATH=. python bench/bench_market.py
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta


def cold(args: list[str], env: dict, n: int = 5) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "catalyst_ops", *args], env=env, capture_output=True, check=False)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "ops.yml")
        with open(cfg, "w") as fh:
            fh.write(f"state_path: {tmp}/state.db\nlog_dir: {tmp}/log\nenv_file: {tmp}/.env\n")
        with open(os.path.join(tmp, ".env"), "w") as fh:  # the close checks its DATABASE_URL (a dry run connects to nothing)
            fh.write("DATABASE_URL=postgresql://catalyst@127.0.0.1:1/catalyst\n")
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        for label, args in (
            ("market-open on Thanksgiving (skip, cold process)", ["--config", cfg, "--now", "2026-11-26T09:30:00-05:00", "market-open"]),
            ("market-close dry run on an early close (cold)", ["--config", cfg, "--now", "2026-11-27T13:00:00-05:00", "market-close", "--dry-run"]),
            ("schedule --json (cold)", ["--config", cfg, "schedule", "--json", "--host-tz", "America/New_York"]),
            ("catalyst-ops --help (cold start, no calendar import)", ["--help"]),
        ):
            times = cold(args, env)
            print(f"{label:55s} median {statistics.median(times) * 1000:7.0f} ms  max {max(times) * 1000:7.0f} ms")

    from catalyst_ops import config, market
    from catalyst_ops.calendar import Calendar

    t = time.perf_counter()
    cal = Calendar()
    cal.session(datetime(2026, 11, 27).date())
    print(f"{'first calendar lookup (import + build, in-process)':55s} {(time.perf_counter() - t) * 1000:7.0f} ms")
    cfg = config.Config()
    start = datetime.fromisoformat("2026-01-01T09:30:00-05:00")
    t = time.perf_counter()
    n = 0
    for day in range(365):
        for kind, slot in (("market-open", None), ("scan-11:00", "11:00"), ("scan-13:00", "13:00"), ("market-close", None)):
            market.decide(cfg, cal, kind, start + timedelta(days=day), slot)
            n += 1
    dt = time.perf_counter() - t
    print(f"{'decide() warm, a year of four jobs':55s} {dt / n * 1e6:7.0f} us per decision ({n} decisions)")


if __name__ == "__main__":
    main()
