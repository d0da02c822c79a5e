"""`catalyst-ops alert test|list|flush|send`: the alert outbox and its email transport."""

from __future__ import annotations

import argparse
import logging
import socket

from catalyst_ops.errors import CANNOT_RUN, OK, USAGE, OpsError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("alert", help="alerts: test the email settings, list or flush the outbox, raise one",
                       description="The alert outbox (every alert is stored before it is sent) and its channels "
                       "(email from the .env SMTP block; alerts.webhook_url).")
    asub = p.add_subparsers(dest="alert_command", metavar="ACTION", required=True, parser_class=type(p))

    t = asub.add_parser("test", help="send a test email now and say exactly what failed",
                        description="Send a test message through the .env SMTP settings, directly (not through the "
                        "outbox). On failure print the step that failed - DNS, connect, TLS, authentication, sender "
                        "refused, recipient refused - and exit 3. The password never appears in the output.")
    t.add_argument("--severity", choices=["critical", "warning", "info"], default="critical",
                   help="route the test like an alert of this severity (default critical)")
    t.add_argument("--to", metavar="ADDR", help="send to this address instead of the severity's route")
    t.add_argument("--json", action="store_true", help="print the outcome as JSON")
    t.set_defaults(func=run_test)

    ls = asub.add_parser("list", help="the outbox, newest first", description="List outbox rows, newest first.")
    ls.add_argument("--status", choices=["pending", "sent", "suppressed", "failed"], help="only rows with this status")
    ls.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    f = asub.add_parser("flush", help="send the pending alerts now, ignoring the retry backoff",
                        description="Send every pending alert now (grouped per severity and route), ignoring the "
                        "channels' backoff. Exit 3 if a channel failed (rows stay pending).")
    f.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    f.add_argument("--json", action="store_true", help="print the outcome as JSON")
    f.set_defaults(func=run_flush)

    s = asub.add_parser("send", help="raise an alert (into the outbox; the monitor sends it)",
                        description="Write one alert to the outbox, for scripts and drills. It is sent by the next "
                        "flush (the monitor's, within alerts.interval), or now with --flush.")
    s.add_argument("severity", choices=["critical", "warning", "info"])
    s.add_argument("subject")
    s.add_argument("body", nargs="?", default="", help="message text (default: the subject)")
    s.add_argument("--key", help="subject key (default: manual:<subject>)")
    s.add_argument("--flush", action="store_true", help="flush the outbox right away")
    s.add_argument("--dry-run", action="store_true", help="say what would be raised; write nothing")
    s.set_defaults(func=run_send)


def run_test(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops.alerts import email

    cfg = ctx.cfg
    settings = email.settings_from_env(cfg.env(required=True), cfg.env_file)
    if settings is None:
        raise OpsError(f"{cfg.env_file}: SMTP_HOST: not set (nor SMTP_SERVER); email alerts are not configured", USAGE)
    to = [args.to] if args.to else settings.route(args.severity)
    host = socket.gethostname()
    msg = email.build_message(settings, to, f"[Catalyst TEST] alert test from {host}",
                              f"This is a test of the Catalyst Ops alert email from {host}.\n"
                              f"Route: {args.severity} -> {', '.join(to)}.\nNo action needed.")
    where = f"{settings.host}:{settings.port} ({settings.tls})"
    try:
        refused = email.send(settings, msg, cfg.alerts.smtp_timeout, cfg.alerts.verify_tls, cfg.alerts.ca_file)
    except email.SendError as exc:
        if ctx.as_json:
            ctx.emit_json({"ok": False, "failed": exc.kind, "error": str(exc), "server": where, "to": to})
        else:
            print(f"alert test FAILED at {exc.kind}: {exc}")
        ctx.summary = f"failed at {exc.kind}"
        return CANNOT_RUN
    if ctx.as_json:
        ctx.emit_json({"ok": not refused, "server": where, "to": to, "refused": refused})
    else:
        ctx.out(f"alert test: accepted by {where} for {', '.join(a for a in to if a not in refused)}")
        for addr, why in refused.items():
            ctx.out(f"alert test: recipient refused: {addr}: {why}")
    return CANNOT_RUN if refused else OK


def run_list(ctx, args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from catalyst_ops.fmt import table

    sql = "SELECT * FROM alerts" + (" WHERE status=?" if args.status else "") + " ORDER BY id DESC LIMIT ?"
    rows = ctx.db.query(sql, ((args.status,) if args.status else ()) + (max(1, args.limit),))
    if ctx.as_json:
        ctx.emit_json([dict(r) for r in rows])
        return OK

    def ts(v):
        return datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if v else "-"

    ctx.out(table([[r["id"], ts(r["created_at"]), r["severity"], r["status"], r["attempts"], r["subject"][:60],
                    (r["last_error"] or "")[:50]] for r in rows],
                  ["ID", "CREATED", "SEVERITY", "STATUS", "TRIES", "SUBJECT", "LAST ERROR"]))
    return OK


def run_flush(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops.alerts import outbox

    res = outbox.flush(ctx.cfg, ctx.db, dry_run=args.dry_run, force=True)
    if ctx.as_json:
        ctx.emit_json(res.as_dict())
    else:
        if res.skipped:
            ctx.out(f"alert flush: nothing attempted: {res.skipped}")
        for p in res.planned:
            ctx.out(f"would send via {p['route']}: {p['subject']} (alerts {', '.join(map(str, p['alert_ids']))})")
        for e in res.errors:
            ctx.out(f"alert flush: FAILED: {e}")
        if not args.dry_run:
            ctx.out(f"alert flush: {res.messages} message(s) sent, {len(res.sent)} alert(s) done, {res.waiting} pending")
    if res.errors:
        return CANNOT_RUN
    if res.skipped and res.waiting:
        return CANNOT_RUN
    return OK


def run_send(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops.alerts import enqueue, outbox

    key = args.key or f"manual:{args.subject}"
    if args.dry_run:
        ctx.out(f"would raise {args.severity} alert {args.subject!r} (key {key})")
        return OK
    alert_id = enqueue(ctx.db, args.severity, key, args.subject, args.body or args.subject)
    ctx.out(f"alert {alert_id} raised ({args.severity})")
    if args.flush:
        res = outbox.flush(ctx.cfg, ctx.db, force=True)
        for e in res.errors:
            ctx.out(f"alert flush: FAILED: {e}")
        return CANNOT_RUN if res.errors else OK
    return OK
