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
    exited: dict = field(default_factory=dict)  # service -> why its process is not running


def wait_healthy(cfg, services: list[str], timeout: float, poll: float, accept_degraded: bool = True,
                 gone=None) -> WaitResult:
    """Poll the given services until every one is healthy (or degraded) or the timeout passes.
    `gone(service)`, asked of a service that refuses connections, says why its process is not running
    (None while it runs): such a service is not waited for, its reason is in WaitResult.exited."""
    started = time.monotonic()
    deadline = started + timeout
    pending = list(services)
    last: dict[str, health.HealthResult] = {}
    exited: dict[str, str] = {}
    while True:
        results = health.sweep(cfg, pending)
        for r in results:
            last[r.service] = r
        ok_states = (health.HEALTHY, health.DEGRADED) if accept_degraded else (health.HEALTHY,)
        pending = [r.service for r in results if r.state not in ok_states]
        if gone is not None:
            for r in results:
                if r.service in pending and r.state == health.DOWN:
                    why = gone(r.service)
                    if why:
                        exited[r.service] = why
                        pending.remove(r.service)
        if not pending:
            ok = not exited
            return WaitResult(ok, [last[s] for s in services], time.monotonic() - started, exited)
        if time.monotonic() + poll > deadline:
            return WaitResult(False, [last[s] for s in services], time.monotonic() - started, exited)
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
        for o in _wait_restarted(cfg, runtime, restarted):
            outcomes[o.service] = o
    by_reason = {r.service: f"{r.state}: {r.detail}" for r in failed}
    if not dry_run:
        with db.transaction() as conn:
            for o in outcomes.values():
                conn.execute("INSERT INTO restarts(service, at, reason, outcome, planned, detail) VALUES (?,?,?,?,0,?)",
                             (o.service, clock.timestamp(), by_reason.get(o.service), o.outcome, o.detail))
    return [outcomes[r.service] for r in failed if r.service in outcomes]


def _wait_restarted(cfg, runtime, restarted: list[str]) -> list[RestartOutcome]:
    """Wait (bounded) for restarted services. One whose process died as it started is seen at once,
    not after the whole wait, and is started once more: a start can fail for a reason that does not
    last (a port still held, a dependency a moment late); a second death is reported with its reason."""
    waited = wait_healthy(cfg, restarted, cfg.health.restart_wait, cfg.health.restart_poll, gone=runtime.exited)
    total = waited.seconds
    first_exit = dict(waited.exited)
    by_service = {r.service: r for r in waited.results}
    if first_exit:
        again = []
        for svc, why in first_exit.items():
            log.warning("%s exited as it started (%s): starting it once more", svc, why)
            res = runtime.restart_service(svc)
            if res.ok:
                again.append(svc)
            else:
                log.error("%s: second start failed: %s", svc, res.output)
        if again:
            second = wait_healthy(cfg, again, cfg.health.restart_wait, cfg.health.restart_poll, gone=runtime.exited)
            total += second.seconds
            by_service.update({r.service: r for r in second.results})
            waited.exited = {s: w for s, w in waited.exited.items() if s not in again}
            waited.exited.update(second.exited)
    out = []
    for svc in restarted:
        res = by_service[svc]
        if svc not in waited.exited and res.state in (health.HEALTHY, health.DEGRADED):
            note = f" (second start; the first exited: {first_exit[svc]})" if svc in first_exit else ""
            log.info("%s is back (%s) after %.1fs%s", svc, res.state, total, note)
            out.append(RestartOutcome(svc, "recovered", res.detail + note, round(total, 2)))
        elif svc in waited.exited:
            why = waited.exited[svc]
            logs = runtime.service_logs(svc)
            tail = " | ".join((logs or "").strip().splitlines()[-2:])
            detail = f"exited as it started, twice: {why}" + (f"; its output: {tail}" if tail else "")
            log.error("%s %s", svc, detail)
            out.append(RestartOutcome(svc, "still_down", detail, round(total, 2)))
        else:
            log.error("%s did not come back within %gs: %s (%s)", svc, cfg.health.restart_wait, res.state, res.detail)
            out.append(RestartOutcome(svc, "still_down", f"{res.state}: {res.detail}", round(total, 2)))
    return out


def stack_action(cfg, db, action: str, dry_run: bool = False, wait: bool = True, planned_reason: str = "operator") -> tuple[bool, str, WaitResult | None]:
    """start | stop | restart the whole stack through the runtime; wait for health after start/restart."""
    runtime = get_runtime(cfg, dry_run=dry_run)
    planned = db is not None and action == "restart" and not dry_run
    if planned:
        from catalyst_ops.alerts import policy

        # the monitor must not page for the restart it is watching: a window as long as the wait
        policy.planned_restart(db, cfg.health.start_timeout + cfg.runtime.command_timeout + 30)
    try:
        return _stack_action(cfg, db, runtime, action, dry_run, wait, planned_reason)
    finally:
        if planned:
            policy.planned_restart(db, None)


def _stack_action(cfg, db, runtime, action: str, dry_run: bool, wait: bool, planned_reason: str):
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
