"""`catalyst-ops status` and `catalyst-ops health`."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.errors import OK, PROBLEM

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("status", help="check every service concurrently and print a table (read-only)",
                       description="Check all services concurrently, each with its own timeout. Healthy means HTTP 200 "
                       "and, where the body is JSON with a status field, a healthy word. Exit 1 if any service failed.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("services", nargs="*", metavar="SERVICE", help="only these services (default: all)")
    p.set_defaults(func=run_status)

    h = sub.add_parser("health", help="the cron health job: check, restart only the failed services, record",
                       description="Check all services; restart the failed ones through the runtime (bounded: "
                       "health.max_restarts_per_hour per service), wait for them with a bounded wait, and record the "
                       "outcome. Degraded services are reported, not restarted. Overlapping runs: the second exits at once.")
    h.add_argument("--json", action="store_true", help="print JSON instead of a table")
    h.add_argument("--dry-run", action="store_true", help="check and say what would be restarted; restart nothing")
    h.add_argument("--no-restart", action="store_true", help="check and record only")
    h.set_defaults(func=run_health, job="health")


def _print_results(ctx, results, extra: dict | None = None) -> None:
    from catalyst_ops.fmt import table

    if ctx.as_json:
        data = {"services": [r.as_dict() for r in results]}
        data["healthy"] = not any(r.failed for r in results)
        data.update(extra or {})
        ctx.emit_json(data)
        return
    rows = [[r.service, r.state.upper() if r.failed else r.state, r.http_status or "-",
             f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "-", r.detail] for r in results]
    ctx.out(table(rows, ["SERVICE", "STATE", "HTTP", "LATENCY", "DETAIL"]))


def _select(ctx, names: list[str]) -> list[str] | None:
    if not names:
        return None
    for n in names:
        ctx.cfg.service(n)  # raises ConfigError for an unknown one
    return names


def run_status(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import health

    results = health.sweep(ctx.cfg, _select(ctx, args.services))
    _print_results(ctx, results)
    failed = [r.service for r in results if r.failed]
    return PROBLEM if failed else OK


def run_health(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import clock, control, health
    from catalyst_ops.lock import JobLock, LockHeld

    try:
        lock = JobLock(ctx.cfg.state_dir, "health").acquire()
    except LockHeld as exc:
        msg = f"skipped: {exc}"
        log.info(msg)
        print(f"catalyst-ops health: {msg}")
        ctx.status, ctx.summary = "skipped", msg
        return OK
    try:
        started = clock.timestamp()
        results = health.sweep(ctx.cfg)
        if not args.dry_run:
            health.record_sweep(ctx.db, results, "health", started)
        failed = [r for r in results if r.failed]
        degraded = [r for r in results if r.state == health.DEGRADED]
        for r in degraded:
            log.warning("%s is degraded (%s): reported, not restarted", r.service, r.detail)
        outcomes = []
        if failed and not args.no_restart:
            from catalyst_ops.alerts.policy import in_planned_restart

            if in_planned_restart(ctx.db):
                # weekly maintenance (or the operator) is restarting the stack right now: restarting
                # its services again would only fight it; the next run sees how it ended
                log.warning("a planned stack restart is in progress: not restarting %s",
                            ", ".join(r.service for r in failed))
            else:
                outcomes = control.restart_failed(ctx.cfg, ctx.db, failed, dry_run=args.dry_run)
        _hooks_after_health(ctx, results, outcomes)
        _print_results(ctx, results, {"restarts": [o.__dict__ for o in outcomes]})
        if outcomes and not ctx.as_json:
            from catalyst_ops.fmt import table

            ctx.out("")
            ctx.out(table([[o.service, o.outcome, f"{o.seconds:.1f}s", o.detail] for o in outcomes],
                          ["RESTARTED", "OUTCOME", "WAITED", "DETAIL"]))
        ctx.summary = (f"{len(results) - len(failed) - len(degraded)} healthy, {len(degraded)} degraded, "
                       f"{len(failed)} failed" + (f" ({', '.join(f'{o.service}:{o.outcome}' for o in outcomes)})" if outcomes else ""))
        log.info(ctx.summary)
        return PROBLEM if failed else OK
    finally:
        lock.release()


def _hooks_after_health(ctx, results, outcomes) -> None:
    """The alerting layer: apply the alert policy to this sweep, check that the monitor daemon is
    alive (who watches the watcher), and send what is pending. Alerting never fails the job."""
    if ctx.dry_run:
        return None
    try:
        from catalyst_ops.alerts import deadman, outbox, policy

        policy.apply_services(ctx.cfg, ctx.db, results, "health")
        watch = deadman.check_monitor_heartbeat(ctx.cfg, ctx.db)
        if watch["alert"]:
            log.warning("the monitor daemon is not heartbeating: %s", watch["detail"])
        res = outbox.flush(ctx.cfg, ctx.db)
        for err in res.errors:
            log.warning("alert not sent (kept in the outbox): %s", err)
    except Exception as exc:
        from catalyst_ops import log as oplog

        log.error("alerting failed (the health result stands): %s", oplog.redact(f"{exc.__class__.__name__}: {exc}"))
    return None
