"""`catalyst-ops monitor`: the long-running daemon that catalyst-monitor.service runs."""

from __future__ import annotations

import argparse
import logging
import sys

from catalyst_ops.errors import OK, PROBLEM

log = logging.getLogger("catalyst_ops.monitor")


def register(sub) -> None:
    p = sub.add_parser("monitor", help="the daemon: concurrent sweeps every alerts.interval, alert policy, "
                       "dead-man checks, outbox flush (systemd runs it)",
                       description="Run until SIGTERM: every alerts.interval seconds (default 30) check every service "
                       "concurrently, record the sweep, apply the alert policy (first failure, every Nth, recovery, "
                       "cooldown), check the dead-man conditions (health job, market open, backup), heartbeat, and "
                       "send the pending alerts. State is in the state DB: a restart continues where it stopped. "
                       "Logs go to stdout (journald). One monitor per state DB: a second exits 1. "
                       "It never restarts services (the cron health job does).")
    p.add_argument("--once", action="store_true", help="one pass, print its summary, exit (0 all up, 1 something failed)")
    p.add_argument("--json", action="store_true", help="with --once: print the pass summary as JSON")
    p.set_defaults(func=run)


def _log_to_stdout() -> None:
    # journald takes both streams; stdout is what the unit's StandardOutput names, line-buffered so
    # each event shows at once
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr:
            h.setStream(sys.stdout)


def run(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops.lock import JobLock, LockHeld
    from catalyst_ops.monitor import Monitor

    cfg, db = ctx.cfg, ctx.db
    if args.once:
        summary = Monitor(cfg, db).one_pass()
        if ctx.as_json:
            ctx.emit_json(summary)
        else:
            ctx.out(f"{len(summary['failed'])} failed, {len(summary['degraded'])} degraded; "
                    f"{len(summary['alerts_raised'])} alert(s) raised, {summary['messages_sent']} message(s) sent, "
                    f"{summary['pending']} pending")
        return PROBLEM if summary["failed"] else OK
    _log_to_stdout()
    try:
        lock = JobLock(cfg.state_dir, "monitor").acquire()
    except LockHeld as exc:
        print(f"catalyst-ops monitor: {exc}", file=sys.stderr)
        return PROBLEM
    try:
        db.record_event("monitor-start", {"interval": cfg.alerts.interval}, "monitor")
        mon = Monitor(cfg, db)
        import faulthandler

        # the watchdog's SIGABRT then prints every thread's stack to the journal: where the loop hung
        faulthandler.enable()
        code = mon.run()
        if mon.stop.is_set():
            import threading

            if any(t.name == "monitor-loop" and t.is_alive() for t in threading.enumerate()):
                # a pass is still mid-sweep (a hung service): leave now rather than close the DB under it;
                # its open transaction rolls back like after a crash
                for h in logging.getLogger().handlers:
                    h.flush()
                sys.stdout.flush()
                import os

                os._exit(code)
        return code
    finally:
        lock.release()
