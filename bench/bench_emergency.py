"""How long an emergency stop takes against the stand-in stack: 50 positions and 20 open orders,
with the stack up and with every Catalyst service down (broker only). Prints its figures.

    PYTHONPATH=$PWD python bench/bench_emergency.py
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import free_base_port, run_cli  # noqa: E402

NINE = ("orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news", "reporting")


def one(rundir: Path, down: bool) -> tuple[float, dict]:
    base = free_base_port()
    assert run_cli("sandbox", "up", "--rundir", rundir, "--base-port", str(base)).code == 0
    try:
        syms = [f"S{i:03d}" for i in range(50)]
        run_cli("sandbox", "seed-broker", "--rundir", rundir, "--positions", ",".join(f"{s}:10" for s in syms),
                "--orders", ",".join(syms[:20]))
        if down:
            for svc in NINE:
                run_cli("sandbox", "fault", svc, "down", "--rundir", rundir)
        started = time.monotonic()
        res = run_cli("emergency-stop", "--json", config=rundir / "ops.yml")
        took = time.monotonic() - started
        return took, json.loads(res.out)
    finally:
        run_cli("sandbox", "down", "--rundir", rundir)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        for label, down in (("stack up", False), ("stack down, broker up", True)):
            took, data = one(Path(d) / label.replace(" ", "-").replace(",", ""), down)
            per = {s["step"]: round(s["ended_at"] - s["started_at"], 3) for s in data["steps"]}
            print(f"emergency-stop, 50 positions + 20 orders, {label}: {took:.2f} s wall "
                  f"(failed steps: {', '.join(data['failed_steps']) or 'none'})")
            print("  per step (s): " + ", ".join(f"{k} {v}" for k, v in per.items()))


if __name__ == "__main__":
    main()
