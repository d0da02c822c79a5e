"""`catalyst-ops weekly-maintenance` and `catalyst-ops rotate-logs`."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.errors import OK, PROBLEM

log = logging.getLogger(__name__)

DEFAULT_LOGROTATE_CONFIG = "/etc/logrotate.d/catalyst"


def register(sub) -> None:
    p = sub.add_parser("weekly-maintenance", help="backup, prune old records and logs, restart the stack (not in a session)",
                       description="Sunday 02:00: (1) a backup by running `catalyst-ops backup` with the same config "
                       "(reported as 'not configured' when this install has no backup command); (2) prune job runs "
                       "older than retention.job_runs_days, health checks older than retention.health_days and *.log "
                       "files in log_dir older than retention.logs_days; (3) a planned restart of the stack, waiting "
                       "for health (bounded by health.start_timeout). The restart is refused while an NYSE session is "
                       "open. Exit 1 when a step failed or the restart was refused, 3 when the state DB is unusable.")
    p.add_argument("--dry-run", action="store_true", help="say what would be pruned and restarted; change nothing")
    p.add_argument("--json", action="store_true", help="print the outcome of each step as JSON")
    p.add_argument("--skip", action="append", choices=["backup", "prune", "restart"], default=[],
                   help="leave out a step (repeatable)")
    p.set_defaults(func=run_weekly, job="weekly-maintenance")

    r = sub.add_parser("rotate-logs", help="run logrotate on the Catalyst logrotate config and record the run",
                       description="Run `logrotate CONFIG` (the config the ansible role renders from "
                       "templates/logrotate.j2) so that rotation happens at a quiet hour and is recorded with the "
                       "other jobs. --dry-run runs `logrotate -d` (debug: rotates nothing).")
    r.add_argument("--logrotate-config", metavar="PATH", default=DEFAULT_LOGROTATE_CONFIG,
                   help=f"the logrotate config (default {DEFAULT_LOGROTATE_CONFIG})")
    r.add_argument("--state", metavar="PATH", help="logrotate state file (default: logrotate's own)")
    r.add_argument("--logrotate", metavar="PATH", help="the logrotate binary (default: from PATH, else /usr/sbin/logrotate)")
    r.add_argument("--dry-run", action="store_true", help="logrotate -d: show what would rotate; rotate nothing")
    r.add_argument("--json", action="store_true", help="print the outcome as JSON")
    r.set_defaults(func=run_rotate, job="rotate-logs")


def _emit(ctx, steps: list[dict], summary: str) -> None:
    if ctx.as_json:
        ctx.emit_json({"steps": steps, "summary": summary})
        return
    for s in steps:
        ctx.out(f"{s['step']}: {s['outcome']}: {s['detail']}")


def run_weekly(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import maintenance

    steps = []
    if "backup" not in args.skip:
        steps.append(maintenance.backup(ctx.cfg, ctx.args, dry_run=ctx.dry_run))
    if "prune" not in args.skip:
        steps.append(maintenance.prune(ctx.cfg, ctx.db, dry_run=ctx.dry_run))
    if "restart" not in args.skip:
        steps.append(maintenance.restart(ctx.cfg, ctx.db, dry_run=ctx.dry_run))
    bad = [s for s in steps if not s["ok"]]
    summary = "; ".join(f"{s['step']} {s['outcome']}" for s in steps)
    ctx.summary = summary
    for s in steps:
        log.log(logging.INFO if s["ok"] else logging.ERROR, "%s: %s: %s", s["step"], s["outcome"], s["detail"])
    _emit(ctx, steps, summary)
    if bad:
        from catalyst_ops import alerts

        if not ctx.dry_run:
            alerts.enqueue(ctx.db, "warning", "weekly-maintenance", "weekly maintenance: "
                           + ", ".join(f"{s['step']} {s['outcome']}" for s in bad),
                           "\n".join(f"{s['step']}: {s['outcome']}: {s['detail']}" for s in steps))
        return max(s.get("exit_code", PROBLEM) for s in bad)
    return OK


def run_rotate(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import maintenance

    step = maintenance.rotate_logs(args.logrotate_config, state=args.state, binary=args.logrotate, dry_run=ctx.dry_run)
    ctx.summary = f"rotate-logs: {step['outcome']}: {step['detail'][:200]}"
    log.log(logging.INFO if step["ok"] else logging.ERROR, "%s", ctx.summary)
    _emit(ctx, [step], ctx.summary)
    return OK if step["ok"] else step.get("exit_code", PROBLEM)
