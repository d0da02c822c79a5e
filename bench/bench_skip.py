"""Skip benchmark: what a market job that finds "no session now" costs; target < 0.3 s and 40 MiB.

Runs market-open, scan and market-close as child processes (`catalyst-ops --now ...`, exactly
as cron starts them) at three moments that skip: a Saturday, a holiday (Thanksgiving) and too
early on a normal Tuesday (the 13:00 close probe, and market-open/scan a few minutes before
their time). Each is run on the old path (CATALYST_OPS_CALENDAR_CACHE=0: every
question goes to exchange_calendars, which imports pandas) and on the new one (the calendar's
cached window in the state directory) side by side, in one run, several times each; it prints
the median wall and CPU seconds (user + system) and the peak RSS of each child (os.wait4, the
child's own getrusage), then the totals. The new path's one-time cost, building the cache file,
is measured once apart. With --baseline DIR (e.g. /work/main) a third column runs another
checkout of catalyst_ops (PYTHONPATH=DIR) with its own defaults: today's code as it is.

    python bench/bench_skip.py [--repeat 5] [--baseline /work/main]
"""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CASES = [
    ("weekend", "market-open", ("market-open",), "2026-11-28T09:30:00-05:00"),
    ("weekend", "scan 11:00", ("scan", "--slot", "11:00"), "2026-11-28T11:00:00-05:00"),
    ("weekend", "market-close", ("market-close",), "2026-11-28T16:00:00-05:00"),
    ("holiday", "market-open", ("market-open",), "2026-11-26T09:30:00-05:00"),
    ("holiday", "scan 13:00", ("scan", "--slot", "13:00"), "2026-11-26T13:00:00-05:00"),
    ("holiday", "market-close", ("market-close",), "2026-11-26T16:00:00-05:00"),
    # too early, but less than 5 minutes (a firing further off is a misfire: alerted, not a plain skip);
    # the 13:00 close probe on a normal day is the too-early skip cron really makes every weekday
    ("too early", "market-open", ("market-open",), "2026-11-24T09:27:00-05:00"),
    ("too early", "scan 11:00", ("scan", "--slot", "11:00"), "2026-11-24T10:57:00-05:00"),
    ("too early", "market-close", ("market-close",), "2026-11-24T13:00:00-05:00"),
]


def run(repo: Path, config: Path, now: str, args: tuple[str, ...], extra_env: dict) -> tuple[float, float, float, str]:
    """(wall s, cpu s, peak RSS MiB, output) of one child."""
    env = dict(os.environ, PYTHONPATH=str(repo), **extra_env)
    env.pop("CATALYST_OPS_NOW", None)
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(config), "--now", now, *args],
                             stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(repo))
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0 or "skipped" not in text:
        sys.exit(f"bench: {' '.join(args)} at {now} did not skip:\n{text}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per case and path (median shown)")
    ap.add_argument("--baseline", metavar="DIR", help="another checkout to run as a third column (e.g. /work/main)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="catalyst-bench-skip-"))
    try:
        paths = [("old (no cache)", REPO, {"CATALYST_OPS_CALENDAR_CACHE": "0"}), ("new (cached)", REPO, {})]
        if args.baseline:
            paths.insert(0, ("baseline", Path(args.baseline).resolve(), {}))
        configs = {}
        for name, _, _ in paths:
            d = work / name.split()[0]
            d.mkdir()
            (d / ".env").write_text("")
            (d / "ops.yml").write_text(f"env_file: {d / '.env'}\nstate_path: {d / 'state.db'}\nlog_dir: {d / 'log'}\n")
            configs[name] = d / "ops.yml"
        # the new path's one-time cost: the first run materializes the window into the state dir
        w, c, r, _ = run(REPO, configs["new (cached)"], CASES[0][3], CASES[0][2], {})
        print(f"new path, first run (builds calendar-XNYS.json): wall {w:.2f} s, CPU {c:.2f} s, peak RSS {r:.0f} MiB")
        for name, repo, env in paths:  # warm the state DBs (created on first use) and the page cache
            run(repo, configs[name], CASES[0][3], CASES[0][2], env)
        results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for _ in range(args.repeat):
            for day, job, jargs, now in CASES:
                for name, repo, env in paths:  # interleaved, so machine load hits both paths alike
                    results.setdefault((day + " " + job, name), []).append(run(repo, configs[name], now, jargs, env)[:3])
        cols = [p[0] for p in paths]
        head = f"{'case':26s}" + "".join(f" | {c:>26s}" for c in cols)
        print(f"\nmedian of {args.repeat} runs each: wall s / CPU s / peak RSS MiB")
        print(head)
        print("-" * len(head))
        totals = {c: [0.0, 0.0, 0.0] for c in cols}
        for day, job, _, _ in CASES:
            row = f"{day + ' ' + job:26s}"
            for c in cols:
                runs = results[(day + " " + job, c)]
                w, cpu, rss = (statistics.median(x[0] for x in runs), statistics.median(x[1] for x in runs),
                               max(x[2] for x in runs))
                totals[c][0] += w
                totals[c][1] += cpu
                totals[c][2] = max(totals[c][2], rss)
                row += f" | {w:7.3f}  {cpu:7.3f}  {rss:7.1f}"
            print(row)
        print("-" * len(head))
        print(f"{'sum of the 9 (RSS: max)':26s}" + "".join(f" | {t[0]:7.3f}  {t[1]:7.3f}  {t[2]:7.1f}" for t in totals.values()))
        worst = max(max(x[0] for x in results[(d + " " + j, "new (cached)")]) for d, j, _, _ in CASES)
        print(f"\nnew path: slowest single run {worst:.3f} s wall; target per skip: under 0.3 s and 40 MiB")
        old, new = totals["old (no cache)"], totals["new (cached)"]
        print(f"CPU per skip: old {old[1] / len(CASES):.3f} s, new {new[1] / len(CASES):.3f} s "
              f"({old[1] / max(new[1], 1e-9):.1f}x less)")
        load = os.getloadavg()
        print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
              "(wall time grows with it; CPU seconds much less)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
