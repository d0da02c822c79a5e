"""`catalyst-ops start|stop|restart`: the whole stack through the runtime."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.errors import OK, PROBLEM

log = logging.getLogger(__name__)


def register(sub) -> None:
    for action, text in (("start", "start the stack and wait until every service is healthy"),
                         ("stop", "stop the stack"),
                         ("restart", "restart the stack and wait until every service is healthy")):
        p = sub.add_parser(action, help=text, description=f"{text[0].upper()}{text[1:]} (runtime from the config: "
                           "docker compose, systemd units or commands). The wait is bounded by health.start_timeout.")
        p.add_argument("--dry-run", action="store_true", help="print the runtime commands; run nothing")
        p.add_argument("--no-wait", action="store_true", help="do not wait for health")
        p.add_argument("--json", action="store_true", help="print the outcome as JSON")
        p.set_defaults(func=run, action=action, job=action)


def run(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import control

    ok, output, waited = control.stack_action(ctx.cfg, ctx.db if not args.dry_run else None, args.action,
                                              dry_run=args.dry_run, wait=not args.no_wait)
    failed = [r for r in (waited.results if waited else []) if r.failed]
    if ctx.as_json:
        ctx.emit_json({"action": args.action, "ok": ok, "output": output,
                       "waited_seconds": waited.seconds if waited else None,
                       "services": [r.as_dict() for r in waited.results] if waited else []})
    else:
        if output:
            ctx.out(output)
        if waited:
            state = "healthy" if waited.ok else f"NOT healthy after {waited.seconds:.0f}s: " + ", ".join(
                f"{r.service} ({r.state})" for r in failed)
            ctx.out(f"{args.action}: stack {state}" + (f" in {waited.seconds:.1f}s" if waited.ok else ""))
    if not ok and not waited:
        log.error("%s failed: %s", args.action, output)
    ctx.summary = f"{args.action}: {'ok' if ok else 'failed'}"
    return OK if ok else PROBLEM
