"""`catalyst-ops alert test|list|flush|send`: the alert outbox and its email transport."""

from __future__ import annotations

import argparse
import logging
import socket

from catalyst_ops.argtypes import integer
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

    d = asub.add_parser("dns", help="the sender domain's SPF, DKIM and DMARC records: what to create, and whether "
                        "they are there", description="Print the SPF, DKIM and DMARC records the alert sender's domain "
                        "needs (from alerts.dns, overridden by the options below), look them up through a real resolver "
                        "and judge each: exactly one SPF record, including the SMTP provider, ending in ~all or -all; a "
                        "DKIM record at <selector>._domainkey with a public key; one DMARC record with p=quarantine or "
                        "p=reject. Exit 0 all good, 1 listing each problem with the record that fixes it, 2 a missing or "
                        "bad setting, 3 when the resolver gives no answer.")
    d.add_argument("--domain", help="the sender's domain (default alerts.dns.domain, else the domain of the .env's SMTP_FROM)")
    d.add_argument("--spf-include", metavar="HOST", help="the SMTP provider's SPF include, e.g. sendgrid.net "
                   "(default alerts.dns.spf_include)")
    d.add_argument("--dkim-selector", metavar="SELECTOR", help="the provider's DKIM selector (default alerts.dns.dkim_selector)")
    d.add_argument("--dmarc-policy", choices=["quarantine", "reject"], help="the DMARC policy to suggest (default "
                   "alerts.dns.dmarc_policy, quarantine)")
    d.add_argument("--dmarc-rua", metavar="ADDR", help="where DMARC reports go (default alerts.dns.dmarc_rua)")
    d.add_argument("--resolver", metavar="IP", help="ask this resolver (default alerts.dns.resolver, else the host's)")
    d.add_argument("--resolver-port", metavar="PORT", type=_port, help="its port (default alerts.dns.port, 53)")
    d.add_argument("--tcp", action="store_true", default=None, help="ask over TCP (default alerts.dns.tcp)")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=run_dns)

    ls = asub.add_parser("list", help="the outbox, newest first", description="List outbox rows, newest first.")
    ls.add_argument("--status", choices=["pending", "sent", "suppressed", "failed"], help="only rows with this status")
    ls.add_argument("--limit", type=integer(1, 100_000), default=20, help="rows to show (default 20)")
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


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, got {text!r}")
    return v


def run_dns(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import maildns
    from catalyst_ops.errors import PROBLEM

    s = maildns.settings(ctx.cfg, {"domain": args.domain, "spf_include": args.spf_include,
                                   "dkim_selector": args.dkim_selector, "dmarc_policy": args.dmarc_policy,
                                   "dmarc_rua": args.dmarc_rua, "resolver": args.resolver, "port": args.resolver_port,
                                   "tcp": args.tcp})
    result = maildns.check(s)
    if ctx.as_json:
        ctx.emit_json(result.as_dict())
    else:
        ctx.out(maildns.render_text(result).rstrip("\n"))
    if result.unanswered:
        ctx.summary = f"no answer from {s.where}"
        return CANNOT_RUN
    n = len(result.problems)
    ctx.summary = f"{s.domain}: " + (f"{n} problem{'s' if n != 1 else ''}" if n else "SPF, DKIM and DMARC ok")
    return PROBLEM if n else OK


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
    if not refused:
        _record_test(ctx, args.severity, msg["Subject"], to, where)
    if ctx.as_json:
        ctx.emit_json({"ok": not refused, "server": where, "to": to, "refused": refused})
    else:
        ctx.out(f"alert test: accepted by {where} for {', '.join(a for a in to if a not in refused)}")
        for addr, why in refused.items():
            ctx.out(f"alert test: recipient refused: {addr}: {why}")
    return CANNOT_RUN if refused else OK


TEST_KEY = "alert-test"  # validate counts it as a delivery; never as a critical event


def _record_test(ctx, severity: str, subject: str, to: list[str], where: str) -> None:
    """The server accepted the test: that is a delivery, and `validate`'s "email alerts functioning"
    looks for one. Recorded as an outbox row already sent, so `alert list` shows it too."""
    from catalyst_ops import clock

    now = clock.timestamp()
    try:
        ctx.db.execute("INSERT INTO alerts(created_at, severity, subject_key, subject, body, status, attempts, sent_at)"
                       " VALUES (?,?,?,?,?,'sent',1,?)", (now, severity, TEST_KEY, subject,
                                                         f"alert test to {', '.join(to)} accepted by {where}", now))
    except Exception as exc:  # the mail went out: a state DB problem must not turn that into a failure
        log.warning("alert test: accepted, but not recorded in the state DB: %s", exc)


def run_list(ctx, args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from catalyst_ops.fmt import table

    sql = "SELECT * FROM alerts" + (" WHERE status=?" if args.status else "") + " ORDER BY id DESC LIMIT ?"
    rows = ctx.db.query(sql, ((args.status,) if args.status else ()) + (args.limit,))
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
