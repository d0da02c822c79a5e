"""Service control: restart failed services with a storm bound, start/stop/restart the stack
and wait for health with a bounded timeout instead of a fixed sleep."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from catalyst_ops import clock, health
from catalyst_ops.runtime import get_runtime

log = logging.getLogger(__name__)


@dataclass
class RestartOutcome:
    service: str
    outcome: str  # recovered still_down storm_limit error dry_run
    detail: str = ""
    seconds: float = 0.0


@dataclass
class WaitResult:
    ok: bool
    results: list = field(default_factory=list)
    seconds: float = 0.0


def wait_healthy(cfg, services: list[str], timeout: float, poll: float, accept_degraded: bool = True) -> WaitResult:
    """Poll the given services until every one is healthy (or degraded) or the timeout passes."""
    started = time.monotonic()
    deadline = started + timeout
    pending = list(services)
    last: dict[str, health.HealthResult] = {}
    while True:
        results = health.sweep(cfg, pending)
        for r in results:
            last[r.service] = r
        ok_states = (health.HEALTHY, health.DEGRADED) if accept_degraded else (health.HEALTHY,)
        pending = [r.service for r in results if r.state not in ok_states]
        if not pending:
            return WaitResult(True, [last[s] for s in services], time.monotonic() - started)
        if time.monotonic() + poll > deadline:
            return WaitResult(False, [last[s] for s in services], time.monotonic() - started)
        time.sleep(poll)


def restarts_in_last_hour(db, service: str) -> int:
    row = db.one("SELECT COUNT(*) AS n FROM restarts WHERE service=? AND at>=? AND planned=0 AND outcome NOT IN ('storm_limit','dry_run')",
                 (service, clock.timestamp() - 3600))
    return int(row["n"])


def restart_failed(cfg, db, failed: list[health.HealthResult], dry_run: bool = False) -> list[RestartOutcome]:
    """Restart only the failed services (storm-bounded), then wait for them with a bounded wait."""
    runtime = get_runtime(cfg, dry_run=dry_run)
    outcomes: dict[str, RestartOutcome] = {}
    restarted: list[str] = []
    for r in failed:
        n = restarts_in_last_hour(db, r.service)
        if n >= cfg.health.max_restarts_per_hour:
            detail = (f"{n} restarts in the last hour (limit {cfg.health.max_restarts_per_hour}); "
                      "not restarting again: needs an operator")
            log.error("%s: %s", r.service, detail)
            outcomes[r.service] = RestartOutcome(r.service, "storm_limit", detail)
            continue
        if dry_run:
            runtime.restart_service(r.service)
            outcomes[r.service] = RestartOutcome(r.service, "dry_run", f"would restart ({r.state}: {r.detail})")
            continue
        log.warning("%s is %s (%s): restarting", r.service, r.state, r.detail)
        res = runtime.restart_service(r.service)
        if not res.ok:
            log.error("%s: restart failed: %s", r.service, res.output)
            outcomes[r.service] = RestartOutcome(r.service, "error", res.output)
            continue
        restarted.append(r.service)
    if restarted:
        waited = wait_healthy(cfg, restarted, cfg.health.restart_wait, cfg.health.restart_poll)
        for res in waited.results:
            if res.state in (health.HEALTHY, health.DEGRADED):
                log.info("%s is back (%s) after %.1fs", res.service, res.state, waited.seconds)
                outcomes[res.service] = RestartOutcome(res.service, "recovered", res.detail, round(waited.seconds, 2))
            else:
                log.error("%s did not come back within %gs: %s (%s)", res.service, cfg.health.restart_wait, res.state, res.detail)
                outcomes[res.service] = RestartOutcome(res.service, "still_down", f"{res.state}: {res.detail}",
                                                       round(waited.seconds, 2))
    by_reason = {r.service: f"{r.state}: {r.detail}" for r in failed}
    if not dry_run:
        with db.transaction() as conn:
            for o in outcomes.values():
                conn.execute("INSERT INTO restarts(service, at, reason, outcome, planned, detail) VALUES (?,?,?,?,0,?)",
                             (o.service, clock.timestamp(), by_reason.get(o.service), o.outcome, o.detail))
    return [outcomes[r.service] for r in failed if r.service in outcomes]


def stack_action(cfg, db, action: str, dry_run: bool = False, wait: bool = True, planned_reason: str = "operator") -> tuple[bool, str, WaitResult | None]:
    """start | stop | restart the whole stack through the runtime; wait for health after start/restart."""
    runtime = get_runtime(cfg, dry_run=dry_run)
    res = getattr(runtime, action)()
    if not res.ok:
        return False, res.output, None
    if db is not None and action == "restart" and not dry_run:
        db.execute("INSERT INTO restarts(service, at, reason, outcome, planned, detail) VALUES ('*',?,?,?,1,'')",
                   (clock.timestamp(), planned_reason, "requested"))
    if dry_run or action == "stop" or not wait:
        return True, res.output, None
    waited = wait_healthy(cfg, cfg.enabled_services(), cfg.health.start_timeout, cfg.health.restart_poll)
    return waited.ok, res.output, waited
