"""The integration suite of the seed as one command: services healthy, the database check,
one workflow cycle to completion with every stage seen, a daily report produced.

Every check runs (one failing does not hide the others) and ends PASS, FAIL or SKIP. SKIP
happens only when the operator asked for it (`--skip NAME`), so a selftest never passes by
quietly leaving something out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from catalyst_ops.errors import OpsError

CHECKS = ("services", "database", "workflow", "report")
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class CheckResult:
    name: str
    result: str
    detail: str
    seconds: float = 0.0
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def check_services(cfg, db, opts) -> CheckResult:
    from catalyst_ops import health

    results = health.sweep(cfg)
    bad = [r for r in results if r.state != health.HEALTHY]
    data = {"services": {r.service: r.state for r in results}}
    if bad:
        # degraded fails too: the gate before paper trading is "all services healthy"
        return CheckResult("services", FAIL, f"{len(results) - len(bad)}/{len(results)} healthy; "
                           + ", ".join(f"{r.service} {r.state} ({r.detail})" for r in bad), data=data)
    return CheckResult("services", PASS, f"{len(results)}/{len(results)} healthy", data=data)


def check_database(cfg, db, opts) -> CheckResult:
    """`catalyst-ops db check --json` in a child process with the same config: the database
    feature owns its checks; this suite only asks for its verdict."""
    url = cfg.env(required=False).get(cfg.database.url_env)
    if not url:
        return CheckResult("database", FAIL, f"no {cfg.database.url_env} in {cfg.env_file}: the database is not configured "
                           "(pass --skip database on a host without one)")
    cmd = [sys.executable, "-m", "catalyst_ops"]
    if opts.get("config"):
        cmd += ["--config", opts["config"]]
    cmd += ["db", "check", "--json"]
    timeout = cfg.database.connect_timeout + 30
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return CheckResult("database", FAIL, f"`catalyst-ops db check` gave no answer within {timeout}s")
    err_line = (p.stderr.strip().splitlines() or [""])[-1][:300]
    if p.returncode == 2 and "invalid choice: 'db'" in p.stderr:
        return CheckResult("database", FAIL, "not available: this catalyst-ops has no `db check` command")
    data: dict = {}
    try:
        data = json.loads(p.stdout) if p.stdout.strip() else {}
    except ValueError:
        pass
    if p.returncode == 0:
        summary = data.get("summary") if isinstance(data, dict) else None
        return CheckResult("database", PASS, summary or "db check passed", data={"db_check": data})
    what = {1: "db check found a problem", 2: "db check: usage or configuration error",
            3: "database unreachable"}.get(p.returncode, f"db check exited {p.returncode}")
    return CheckResult("database", FAIL, f"{what}: {err_line or (data.get('summary') if isinstance(data, dict) else '')}".rstrip(": "),
                       data={"db_check": data, "exit_code": p.returncode})


def check_workflow(cfg, db, opts) -> CheckResult:
    from catalyst_ops import workflow

    halt = db.halt_state()
    if halt:
        return CheckResult("workflow", FAIL, f"trading is halted ({halt['reason']}): no cycle started; `catalyst-ops resume` first")
    mode = (cfg.env(required=False).get("TRADING_MODE") or "").strip().lower()
    if mode == "live" and not opts.get("allow_live"):
        return CheckResult("workflow", FAIL, "TRADING_MODE is live: a test cycle would place real orders "
                           "(--allow-live to run it anyway)")
    try:
        body = workflow.build_body(cfg)
        started = workflow.start(cfg, body)
    except OpsError as exc:
        return CheckResult("workflow", FAIL, f"start: {exc}")
    if started.outcome != workflow.STARTED:
        return CheckResult("workflow", FAIL, f"start {started.outcome}: {started.detail}",
                           data={"http_status": started.http_status})
    followed = workflow.follow(cfg, started.cycle_id)
    stages = cfg.profile_data.get("workflow", {}).get("status", {}).get("stage_words", []) or []
    missing = [s for s in stages if s not in followed.stages_seen]
    data = {"cycle_id": started.cycle_id, "outcome": followed.outcome, "final_status": followed.final_status,
            "stages_seen": followed.stages_seen, "stages_missing": missing, "seconds": round(followed.seconds, 2)}
    if followed.outcome != "completed":
        return CheckResult("workflow", FAIL, f"cycle {started.cycle_id} {followed.outcome}: {followed.detail}", data=data)
    if missing:
        return CheckResult("workflow", FAIL, f"cycle {started.cycle_id} completed but these stages were never seen: "
                           f"{', '.join(missing)} (poll faster: workflow.poll_interval)", data=data)
    stage_text = f", stages {' > '.join(followed.stages_seen)}" if stages else ""
    return CheckResult("workflow", PASS, f"cycle {started.cycle_id} completed in {followed.seconds:.1f}s "
                       f"(deadline {cfg.workflow.deadline:g}s){stage_text}", data=data)


def check_report(cfg, db, opts) -> CheckResult:
    from catalyst_ops import report

    data = report.build_daily(cfg, db, live_resources=False)
    sizes = {form: len(report.render(data, form)) for form in ("text", "json", "html")}
    if not all(sizes.values()) or "<svg" not in report.render(data, "html"):
        return CheckResult("report", FAIL, f"a report form came out empty: {sizes}")
    return CheckResult("report", PASS, f"daily report {data['date']} rendered (text {sizes['text']} B, JSON {sizes['json']} B, "
                       f"HTML {sizes['html']} B)", data={"sizes": sizes})


RUNNERS = {"services": check_services, "database": check_database, "workflow": check_workflow, "report": check_report}


def run(cfg, db, skip: set[str], opts: dict) -> list[CheckResult]:
    out = []
    for name in CHECKS:
        if name in skip:
            out.append(CheckResult(name, SKIP, "skipped by --skip"))
            continue
        t = time.monotonic()
        try:
            res = RUNNERS[name](cfg, db, opts)
        except OpsError as exc:
            res = CheckResult(name, FAIL, str(exc))
        res.seconds = round(time.monotonic() - t, 2)
        out.append(res)
    return out
