"""`catalyst-ops validate` (the stability verdict) and `catalyst-ops sample-resources`."""

from __future__ import annotations

import argparse

from catalyst_ops.argtypes import number
from catalyst_ops.errors import OK, PROBLEM


# more than 0, at most 90 days, finite
_hours = number(0, 24 * 90, above=True, what="a number of hours")


def register(sub) -> None:
    p = sub.add_parser("validate", help="the stability verdict over the last N hours (default 48), from the state DB",
                       description="Judge the last --hours (default 48) against the stability criteria, each PASS or FAIL "
                       "with its figure: health checks every validation.health_interval_minutes (gaps listed with their "
                       "times), every service up throughout (per-service uptime and its down stretches), scheduled jobs "
                       "on time (NYSE sessions from exchange_calendars, backup and weekly maintenance), the monitor running "
                       "throughout, no unplanned restarts, no critical errors, email alerts delivered (an accepted `alert "
                       "test` counts), backups created, CPU/memory under the limits, the trading database's connections "
                       "under validation.db_connections_limit_percent of max_connections. The window ends at --now. Exit 0 "
                       "only when every criterion passes.")
    p.add_argument("--hours", type=_hours, default=48.0, help="length of the window (default 48)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--save", action="store_true", help="also write validation-DATE.{txt,json} under the report directory "
                   "and record it in the state DB")
    p.add_argument("--dry-run", action="store_true", help="with --save: say what would be written")
    p.set_defaults(func=run_validate, job="validate")

    s = sub.add_parser("sample-resources", help="record one CPU/memory sample of the stack, the trading database's "
                       "connections and the monitor's heartbeat (cron, every 5 min; validate reads them)",
                       description="Measure CPU and memory of the stack (docker stats for compose, systemd accounting for "
                       "systemd units, /proc of the processes listening on the service ports for the command runtime) over "
                       "validation.resource_sample_seconds, count the trading database's client connections against "
                       "max_connections (pg_stat_activity, DATABASE_URL of the .env, database.connect_timeout), and record "
                       "both with the monitor's current heartbeat. When a figure cannot be read it is recorded as "
                       "unavailable, with the reason.")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--dry-run", action="store_true", help="measure and print; record nothing")
    s.set_defaults(func=run_sample)


def run_validate(ctx, args: argparse.Namespace) -> int:
    import json
    import logging

    from catalyst_ops import clock, report, validate

    result = validate.evaluate(ctx.cfg, ctx.db, args.hours)
    text = validate.render_text(result)
    if ctx.as_json:
        ctx.emit_json(result)
    else:
        ctx.out(text.rstrip("\n"))
    ctx.summary = text.splitlines()[0]
    if args.save:
        log = logging.getLogger(__name__)
        day = clock.now().astimezone(report.host_tz(ctx.cfg)).date().isoformat()
        if args.dry_run:
            log.info("dry run: would write validation-%s.{txt,json} under %s", day, ctx.cfg.reports_path)
        else:
            from pathlib import Path

            from catalyst_ops.fsutil import atomic_write

            out = Path(ctx.cfg.reports_path)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(out / f"validation-{day}.txt", text, mode=0o640)
            atomic_write(out / f"validation-{day}.json", json.dumps(result, indent=2, sort_keys=True) + "\n", mode=0o640)
            ctx.db.execute("INSERT INTO reports(kind, report_date, created_at, path, summary) VALUES (?,?,?,?,?)",
                           ("validation", day, clock.timestamp(), str(out / f"validation-{day}.txt"), ctx.summary))
    return OK if result["passed"] else PROBLEM


def run_sample(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import clock, resources

    s = resources.sample(ctx.cfg)
    pg = resources.sample_db(ctx.cfg)
    at = clock.timestamp()
    beats = []
    if not args.dry_run:
        resources.record(ctx.db, s, at)
        resources.record_db(ctx.db, pg, at)
        beats = resources.observe_heartbeats(ctx.db, at)
    if ctx.as_json:
        ctx.emit_json({"sample": s.as_dict(), "database": pg.as_dict(), "heartbeats": beats, "recorded": not args.dry_run})
        return OK
    if s.available:
        ctx.out(f"CPU {s.cpu_percent:.1f}%  memory {s.mem_percent:.1f}%  ({s.source}, {len(s.units)} units)")
    else:
        ctx.out(f"unavailable: {s.reason}")
    if pg.share is not None and not pg.exhausted:
        ctx.out(f"database: {pg.connections} of {pg.max_connections} connections ({100 * pg.share:.0f}%)")
    else:
        ctx.out(("database: EXHAUSTED: " if pg.exhausted else "database: unavailable: ") + pg.error)
    return OK
