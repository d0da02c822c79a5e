"""`catalyst-ops market-open`, `scan`, `market-close`: the NYSE-session jobs cron fires."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.argtypes import number
from catalyst_ops.errors import USAGE, OpsError

log = logging.getLogger(__name__)

_COMMON = ("Checks the halt flag first, then asks the exchange calendar (XNYS) whether this moment is the job's "
           "moment in a session: on a weekend or holiday, before the job's time, or later than "
           "market.late_tolerance_minutes after it, the run is recorded as skipped and exits 0. Acts at most once per "
           "session (state DB table market_actions), however often cron fires it. Use --now to ask what would happen "
           "at a given moment.")


def _common(p) -> None:
    p.add_argument("--dry-run", action="store_true", help="decide and say what would be done; change nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument("--force", action="store_true",
                   help="act even if this session's action is already recorded (an operator's re-run after a failure)")


# seconds; more than 0, finite (a NaN deadline would wait forever), at most a day
DEADLINE = number(0, 86400, above=True, what="a number of seconds")


def register(sub) -> None:
    p = sub.add_parser("market-open", help="at the open: start the day's workflow cycle and follow it",
                       description="Start a workflow cycle (body from the workflow: config, keys per contract profile) "
                       "and follow it until completed, failed or workflow.deadline. " + _COMMON +
                       " Exit 1 when the cycle fails, times out, is refused or one is already running (409, not "
                       "retried); exit 3 when the workflow service is down. Failures are alerted (critical).")
    _common(p)
    p.add_argument("--deadline", type=DEADLINE, metavar="SECONDS", help="bounded wait for the cycle (default workflow.deadline)")
    p.set_defaults(func=run_job, kind="market-open", job="market-open")

    s = sub.add_parser("scan", help="an intraday scan (mid-morning 11:00, lunch 13:00): start a cycle and follow it",
                       description="Start a workflow cycle for the scan slot (an exchange time from market.scans) and "
                       "follow it. A slot at or after the day's close (13:00 on an early-close day) is skipped. A cycle "
                       "already running (409) covers the scan: recorded, exit 0. " + _COMMON)
    _common(s)
    s.add_argument("--slot", metavar="HH:MM", help="the scan's exchange time, one of market.scans "
                   "(default: the configured slot nearest to now)")
    s.add_argument("--deadline", type=DEADLINE, metavar="SECONDS", help="bounded wait for the cycle (default workflow.deadline)")
    s.set_defaults(func=run_job, kind="scan", job="scan")

    c = sub.add_parser("market-close", help="at the real close (13:00 on early-close days): the daily trading report "
                       "from the database, stored and mailed",
                       description="Build the daily trading report of the session from the trading database "
                       "(metrics.session_query: positions opened and closed that session in exchange time, realized "
                       "and unrealized P&L, winners, losers, win rate, the session's YYYYMMDD-NNN cycles, risk events) "
                       "and the broker's account and positions; store it as trading-daily-DATE.{txt,json,html} under "
                       "report_dir with a row in the state DB, and mail it (info alert). The reporting service is "
                       "asked too only with market.reporting_service (default: the profile's; off for real). "
                       "Cron fires it at 13:00 and 16:00 on weekdays; it acts at the session's real close. " + _COMMON
                       + " Exit 3 when the trading database cannot be reached (what the broker gives is stored, a "
                       "warning alert is raised, and a later run may act again); a broker that cannot be reached is "
                       "shown as unavailable. With the reporting service on: exit 1 when it refuses, 3 when it is down.")
    _common(c)
    c.set_defaults(func=run_job, kind="market-close", job="market-close")


def _slot(ctx, args) -> str:
    from datetime import datetime

    from catalyst_ops import clock
    from catalyst_ops.market import parse_hhmm

    slots = ctx.cfg.market.scans
    for s in slots:
        parse_hhmm(s, f"{ctx.cfg.source}: market.scans")
    if args.slot:
        parse_hhmm(args.slot, "scan --slot")
        if args.slot not in slots:
            raise OpsError(f"scan --slot: {args.slot!r} is not one of market.scans ({', '.join(slots)})", USAGE)
        return args.slot
    if not slots:
        raise OpsError(f"{ctx.cfg.source}: market.scans: no scan slots configured", USAGE)
    from zoneinfo import ZoneInfo

    now = clock.now().astimezone(ZoneInfo(ctx.cfg.market.exchange_timezone))
    minutes = now.hour * 60 + now.minute

    def dist(s: str) -> int:
        t = datetime.strptime(s, "%H:%M")
        return abs(t.hour * 60 + t.minute - minutes)

    return min(slots, key=dist)


def run_job(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import market

    kind = args.kind
    slot = None
    if kind == "scan":
        slot = _slot(ctx, args)
        kind = market.scan_kind(slot)
    out = market.run(ctx.cfg, ctx.db, kind, slot=slot, dry_run=ctx.dry_run, force=args.force,
                     deadline=getattr(args, "deadline", None), job=args.job)
    ctx.session_date = out.session_date
    ctx.summary = f"{kind}: {out.message}"
    if out.status == "skipped":
        ctx.status = "skipped"
    level = logging.INFO if out.exit_code == 0 else logging.ERROR
    log.log(level, "%s", ctx.summary)
    if ctx.as_json:
        ctx.emit_json(out.as_dict())
    else:
        word = {"skipped": "skipped", "ok": "ok", "failed": "FAILED"}[out.status]
        ctx.out(f"{kind}: {word}: {out.message}")
    return out.exit_code
