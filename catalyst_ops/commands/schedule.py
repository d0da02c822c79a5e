"""`catalyst-ops schedule`: the next run of every scheduled job, in exchange time and host time."""

from __future__ import annotations

import argparse
import os
import sys

from catalyst_ops.errors import OK, PROBLEM

DEFAULT_CRONTAB = "/etc/cron.d/catalyst"


def register(sub) -> None:
    p = sub.add_parser("schedule", help="print the next run of every job (US/Eastern and host time); warn on a wrong host zone",
                       description="Print when cron will next fire each of the nine jobs, in the exchange's zone and "
                       "the host's zone, and for market jobs whether that run will act or skip (NYSE calendar). Cron "
                       "on Debian has no CRON_TZ, so the crontab's times are host times: when the host zone does not "
                       "match the exchange zone all year, this prints a warning and exits 1. Reads the installed "
                       f"crontab ({DEFAULT_CRONTAB}) when present, else the built-in schedule. Also warns (exit 1) "
                       "about lines in /etc/crontab, other /etc/cron.d files and the user crontabs that drive the "
                       "stack behind catalyst-ops' back (upstream's workflow/start curls, docker-compose stop, "
                       "pg_dump, ...): `catalyst-ops config foreign-cron --disable` comments them out.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--crontab", metavar="PATH", help=f"the crontab to read (default {DEFAULT_CRONTAB} if it exists)")
    p.add_argument("--host-tz", metavar="ZONE", help="assume this host zone instead of detecting it (what-if)")
    p.add_argument("--cron-root", metavar="DIR", default="/",
                   help="look for other crontabs under DIR instead of / (a test tree or a mounted image)")
    p.set_defaults(func=run)


def _market_note(cfg, cal, job, when) -> str:
    from catalyst_ops import market

    kind = market.scan_kind(job.slot) if job.market == "scan" else job.market
    d = market.decide(cfg, cal, kind, when, job.slot)
    return "acts" if d.act else f"skips: {d.reason}"


def run(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import clock, schedule
    from catalyst_ops.calendar import from_config
    from catalyst_ops.errors import USAGE, OpsError

    cfg = ctx.cfg
    now = clock.now()
    host_name = args.host_tz or schedule.detect_host_zone()
    host = schedule.zone(host_name, "--host-tz" if args.host_tz else "host timezone")
    exchange = schedule.zone(cfg.market.exchange_timezone, "market.exchange_timezone")
    warnings = schedule.check_zone(host_name, cfg, now)

    path = args.crontab or (DEFAULT_CRONTAB if os.path.exists(DEFAULT_CRONTAB) else None)
    if path:
        try:
            lines = schedule.read_crontab(path)
        except OSError as exc:
            raise OpsError(f"{path}: cannot read the crontab: {exc.strerror}", USAGE)
        entries = []
        for cron, command in lines:
            job = schedule.job_for_command(command)
            if job is None:
                warnings.append(f"{path}: a line runs something other than the nine jobs: {cron} {command[:60]}")
                continue
            entries.append((job, cron))
        missing = [j.name for j in schedule.JOBS if j.name not in {e[0].name for e in entries}]
        if missing:
            warnings.append(f"{path}: jobs missing from the crontab: {', '.join(missing)}")
        for job, cron in entries:
            if cron != job.cron:
                warnings.append(f"{path}: {job.name} runs at {cron!r}, the schedule says {job.cron!r}")
    else:
        entries = [(j, j.cron) for j in schedule.JOBS]

    foreign, notes = _foreign_lines(args, path)
    for f in foreign:
        if f.live:
            warnings.append(f"{f.file}:{f.line}: a cron line outside catalyst-ops' files drives the stack: "
                            f"{' '.join(f.text.split())[:120]} (`catalyst-ops config foreign-cron --disable` "
                            "comments it out)")
        else:
            notes.append(f"{f.file}:{f.line}: drives the stack but {f.note.split(': it runs nothing')[0]}")

    cal = from_config(cfg)
    rows = []
    for job, cron in entries:
        spec = schedule.CronSpec.parse(cron, f"{path or 'schedule'}: {job.name}")
        fires = spec.fires(now, host, count=1)
        nxt = fires[0] if fires else None
        row = {"job": job.name, "cron": cron, "command": " ".join(job.args), "log": job.log,
               "next_exchange": nxt.astimezone(exchange).isoformat() if nxt else None,
               "next_host": nxt.astimezone(host).isoformat() if nxt else None}
        if job.market and nxt:
            row["next_run_will"] = _market_note(cfg, cal, job, nxt)
            # the next firing that acts: what an operator usually wants to know
            for when in spec.fires(now, host, count=40):
                if _market_note(cfg, cal, job, when) == "acts":
                    row["next_action_exchange"] = when.astimezone(exchange).isoformat()
                    break
        rows.append(row)

    data = {"now": now.isoformat(), "host_timezone": host_name, "exchange_timezone": cfg.market.exchange_timezone,
            "crontab": path, "jobs": rows, "warnings": warnings, "notes": notes,
            "foreign_cron": [{"file": f.file, "line": f.line, "text": f.text, "live": f.live, "pattern": f.pattern}
                             for f in foreign]}
    if ctx.as_json:
        ctx.emit_json(data)
    else:
        from datetime import datetime

        from catalyst_ops.fmt import table

        def short(iso, tz=exchange):
            return datetime.fromisoformat(iso).astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z") if iso else "-"

        ctx.out(f"now {short(now.isoformat())}; host zone {host_name}; "
                f"crontab: {path or 'built-in schedule (no crontab installed)'}")
        ctx.out(table([[r["job"], r["cron"], short(r["next_exchange"]), short(r["next_host"], host),
                        r.get("next_run_will", ""), short(r.get("next_action_exchange")) if r.get("next_run_will") else ""]
                       for r in rows],
                      ["JOB", "CRON", f"NEXT ({cfg.market.exchange_timezone})", f"NEXT ({host_name})", "THAT RUN",
                       "NEXT ACTION"]))
        for w in warnings:
            print(f"catalyst-ops schedule: warning: {w}", file=sys.stderr)
        for n in notes:
            print(f"catalyst-ops schedule: note: {n}", file=sys.stderr)
    ctx.summary = f"{len(rows)} jobs; {len(warnings)} warning(s)"
    return PROBLEM if warnings else OK


def _foreign_lines(args, crontab_path):
    """Lines elsewhere in cron that drive the stack (foreigncron.py, its built-in patterns). Without
    root the user crontabs cannot be read: that is a note, not a warning."""
    from catalyst_ops import foreigncron
    from catalyst_ops.errors import USAGE, OpsError

    if not os.path.isdir(args.cron_root):
        raise OpsError(f"--cron-root {args.cron_root}: no such directory", USAGE)
    own = list(foreigncron.DEFAULT_OWN) + ([crontab_path] if crontab_path else [])
    result = foreigncron.scan(args.cron_root, own)
    notes = [f"{u['file']}: not checked for lines that drive the stack: {u['reason']}" for u in result.unreadable]
    return result.findings, notes
