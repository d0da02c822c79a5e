"""`catalyst-ops report daily|trading|weekly`: the day's operations report from the state DB, a
session's trading report, and the weekly review."""

from __future__ import annotations

import argparse

from catalyst_ops.errors import OK


def register(sub) -> None:
    p = sub.add_parser("report", help="reports: daily (operations), trading (a session), weekly (the review)",
                       description="Reports built from the state database, which records every run.")
    rsub = p.add_subparsers(dest="report_kind", metavar="KIND")
    d = rsub.add_parser("daily", help="services, health checks, jobs, restarts, alerts, backup, errors, disk, CPU/memory",
                        description="The day's operations report: each service's current state and its uptime over the "
                        "day, health checks run and failed, scheduled jobs with their times and outcomes, restarts, alerts "
                        "sent and pending, the last backup (age, size, verified), errors in the job runs and the job logs, "
                        "disk use of the log and backup directories, and CPU/memory of the stack. The day is a calendar day "
                        "in host_timezone; today's report covers midnight until now.")
    d.add_argument("--date", metavar="YYYY-MM-DD", help="the day (also: today, yesterday; default today)")
    form = d.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--html", action="store_true", help="print HTML with an inline SVG chart of health over the day")
    d.add_argument("--save", action="store_true", help="also write ops-daily-DATE.{txt,json,html} under the report "
                   "directory and record it in the state DB")
    d.add_argument("--mail", action="store_true", help="also queue the text report as an info alert (the alert sender mails it)")
    d.add_argument("--dry-run", action="store_true", help="with --save/--mail: say what would be written or queued, do neither")
    d.add_argument("--no-live", action="store_true", help="do not sample CPU/memory now (use only recorded samples)")
    d.set_defaults(func=run_daily, job="report-daily")
    t = rsub.add_parser("trading", help="the daily trading report: a session's positions, P&L, cycles and risk events, "
                        "and the broker's account", description="The report market-close stores and mails, for any "
                        "session: positions opened and closed that session (exchange time), realized and unrealized "
                        "P&L, winners, losers and win rate, the session's cycles (YYYYMMDD-NNN) and risk events, read "
                        "from the trading database with metrics.session_query; plus the broker's account and positions "
                        "(read only). Never-filled closes are not trades; estimates are shown apart. Exit 3 when the "
                        "database cannot be reached (what the broker gives is still printed).")
    t.add_argument("--date", metavar="YYYY-MM-DD", help="the session date in exchange time (also: today, yesterday; "
                   "default today)")
    tform = t.add_mutually_exclusive_group()
    tform.add_argument("--json", action="store_true", help="print JSON")
    tform.add_argument("--html", action="store_true", help="print HTML")
    t.add_argument("--save", action="store_true", help="also write trading-daily-DATE.{txt,json,html} under the report "
                   "directory and record it in the state DB (as market-close does)")
    t.add_argument("--mail", action="store_true", help="also queue the text report as an info alert")
    t.add_argument("--dry-run", action="store_true", help="with --save/--mail: say what would be written or queued, do neither")
    t.set_defaults(func=run_trading, job="report-trading")
    w = rsub.add_parser("weekly", help="the weekly review: the week's trades and P&L by day, the figures against the "
                        "plan's targets, the ramp stage and its gates, the week's operations",
                        description="The weekly review (every Sunday after weekly maintenance): the week's closed trades "
                        "and realized P&L by day (Mon-Fri, exchange time, NYSE sessions), win rate, risk:reward, profit "
                        "factor, expectancy and max drawdown against the go/no-go targets, the ramp stage and its gates, "
                        "and the week's operations from the state DB (uptime per service, restarts, alerts, backups, "
                        "sessions skipped). Exit 3 when the trading database cannot be reached (the rest is still printed).")
    wk = w.add_mutually_exclusive_group()
    wk.add_argument("--week", metavar="YYYY-Www", help="the ISO week (also: this, last; default this week)")
    wk.add_argument("--date", metavar="YYYY-MM-DD", help="the week holding this date (also: today, yesterday)")
    wform = w.add_mutually_exclusive_group()
    wform.add_argument("--json", action="store_true", help="print JSON")
    wform.add_argument("--html", action="store_true", help="print HTML with an inline SVG chart of P&L by day")
    w.add_argument("--save", action="store_true", help="also write weekly-YYYY-Www.{txt,json,html} under the report "
                   "directory and record it in the state DB")
    w.add_argument("--mail", action="store_true", help="also queue the text review as an info alert (the alert sender mails it)")
    w.add_argument("--dry-run", action="store_true", help="with --save/--mail: say what would be written or queued, do neither")
    w.set_defaults(func=run_weekly, job="report-weekly")
    p.set_defaults(func=lambda ctx, args: (p.print_help(), 2)[1])


def run_daily(ctx, args: argparse.Namespace) -> int:
    import logging

    from catalyst_ops import report

    log = logging.getLogger(__name__)
    tz = report.host_tz(ctx.cfg)
    day = report.parse_day(args.date, tz)
    data = report.build_daily(ctx.cfg, ctx.db, day, live_resources=not args.no_live)
    ctx.out(report.render(data, "json" if args.json else "html" if args.html else "text").rstrip("\n"))
    ctx.summary = report.verdict_line(data)
    if args.save:
        if args.dry_run:
            log.info("dry run: would write ops-daily-%s.{txt,json,html} under %s", data["date"], ctx.cfg.reports_path)
        else:
            paths = report.save(ctx.cfg, ctx.db, data)
            log.info("report written: %s", ", ".join(paths))
    if args.mail:
        if args.dry_run:
            log.info("dry run: would queue the report as an info alert")
        else:
            from catalyst_ops import alerts

            alerts.enqueue(ctx.db, "info", f"report:daily:{data['date']}", report.verdict_line(data), report.render_text(data))
            log.info("report queued for mail")
    return OK


def run_trading(ctx, args: argparse.Namespace) -> int:
    import logging
    from zoneinfo import ZoneInfo

    from catalyst_ops import report, tradingreport
    from catalyst_ops.calendar import from_config
    from catalyst_ops.errors import CANNOT_RUN

    log = logging.getLogger(__name__)
    tradingreport.check_config(ctx.cfg)
    day = report.parse_day(args.date, ZoneInfo(ctx.cfg.market.exchange_timezone))
    session = from_config(ctx.cfg).session(day)
    data = tradingreport.build(ctx.cfg, day, session=session.as_dict() if session else None)
    ctx.out(tradingreport.render(data, "json" if args.json else "html" if args.html else "text").rstrip("\n"))
    ctx.summary = tradingreport.headline(data)
    if args.save:
        if args.dry_run:
            log.info("dry run: would write %s.{txt,json,html} under %s", tradingreport.stem(data["session_date"]),
                     ctx.cfg.reports_path)
        else:
            log.info("report written: %s", ", ".join(tradingreport.save(ctx.cfg, ctx.db, data)))
    if args.mail:
        if args.dry_run:
            log.info("dry run: would queue the report as an info alert")
        else:
            tradingreport.mail(ctx.db, data)
            log.info("report queued for mail")
    if not data["database"]["available"]:
        log.error("trading database: %s", data["database"]["error"])
        return CANNOT_RUN
    return OK


def run_weekly(ctx, args: argparse.Namespace) -> int:
    import logging
    from zoneinfo import ZoneInfo

    from catalyst_ops import tradingreport, weeklyreport
    from catalyst_ops.errors import CANNOT_RUN

    log = logging.getLogger(__name__)
    tradingreport.check_config(ctx.cfg)  # the database URL, the session query and the exchange zone, before anything
    monday = weeklyreport.parse_week(args.week, args.date, ZoneInfo(ctx.cfg.market.exchange_timezone))
    data = weeklyreport.build(ctx.cfg, ctx.db, monday)
    ctx.out(weeklyreport.render(data, "json" if args.json else "html" if args.html else "text").rstrip("\n"))
    ctx.summary = weeklyreport.headline(data)
    if args.save:
        if args.dry_run:
            log.info("dry run: would write %s.{txt,json,html} under %s", weeklyreport.stem(data["week"]), ctx.cfg.reports_path)
        else:
            log.info("report written: %s", ", ".join(weeklyreport.save(ctx.cfg, ctx.db, data)))
    if args.mail:
        if args.dry_run:
            log.info("dry run: would queue the review as an info alert")
        else:
            weeklyreport.mail(ctx.db, data)
            log.info("review queued for mail")
    if not data["database"]["available"]:
        log.error("trading database: %s", data["database"]["error"])
        return CANNOT_RUN
    return OK
