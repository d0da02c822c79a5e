"""The outbox flusher: send what is pending, mark sent only what a server accepted.

Every alert is a row of `alerts` before anything is sent (alerts.enqueue). A flush:
- takes a non-blocking lock, so the monitor and the cron health job never send the same row twice;
- per channel (email, and the webhook when alerts.webhook_url is set) and per route (severity and
  its recipients), sends ALL pending rows of that route as one message when any of them is due:
  a backlog built up while the server was down goes out grouped, not as a hundred emails;
- records a delivery per row and channel only after the server accepted it; a row is `sent` once
  every configured channel has it;
- on failure, backs the channel off exponentially (alerts.retry_base doubling up to
  alerts.retry_max); rows stay pending, nothing is ever dropped.
A crash between the server's acceptance and the commit can resend one message (at-least-once);
the window is one SQL statement long.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from catalyst_ops import clock

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert_id INTEGER NOT NULL,
    channel TEXT NOT NULL,                   -- email webhook
    at REAL NOT NULL,
    PRIMARY KEY (alert_id, channel)
);
CREATE TABLE IF NOT EXISTS alert_channels (
    channel TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,     -- consecutive failed attempts
    next_attempt_at REAL,                    -- backoff: no attempt before this
    last_error TEXT,
    last_ok_at REAL
);
"""

MAX_BATCH = 200  # rows in one message; a larger backlog goes out over several flushes


@dataclass
class FlushResult:
    sent: list[int] = field(default_factory=list)  # alert ids now fully sent
    messages: int = 0
    errors: list[str] = field(default_factory=list)
    waiting: int = 0  # pending rows left
    skipped: str = ""  # why nothing was attempted (lock held, no channel, backoff)
    planned: list[dict] = field(default_factory=list)  # dry run: what would be sent

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def ensure(db) -> None:
    db.ensure_schema(SCHEMA)


def backoff(cfg, failures: int) -> float:
    a = cfg.alerts
    return min(a.retry_max, a.retry_base * (2 ** max(0, failures - 1)))


# ------------------------------------------------------------------ channels


class Channel:
    name = ""

    def routes(self, rows) -> dict:
        """{route key: rows} for the rows this channel still owes."""
        raise NotImplementedError

    def deliver(self, route, rows) -> None:
        """Send rows as one message; raise on failure."""
        raise NotImplementedError

    def describe(self, route) -> str:
        return str(route)


class EmailChannel(Channel):
    name = "email"

    def __init__(self, cfg, settings):
        self.cfg = cfg
        self.settings = settings

    def routes(self, rows) -> dict:
        out: dict = {}
        for r in rows:
            to = tuple(self.settings.route(r["severity"]))
            out.setdefault((r["severity"], to), []).append(r)
        return out

    def describe(self, route) -> str:
        return f"{route[0]} -> {', '.join(route[1])}"

    def deliver(self, route, rows) -> None:
        from catalyst_ops.alerts import email

        severity, to = route
        subject, text, html = render(rows, severity)
        msg = email.build_message(self.settings, list(to), subject, text, html, [r["id"] for r in rows])
        refused = email.send(self.settings, msg, self.cfg.alerts.smtp_timeout, self.cfg.alerts.verify_tls,
                             self.cfg.alerts.ca_file)
        if refused:
            # accepted for the others: do not resend to them; say who was refused
            log.warning("alert email accepted, but some recipients were refused: %s",
                        "; ".join(f"{k}: {v}" for k, v in refused.items()))


class WebhookChannel(Channel):
    name = "webhook"

    def __init__(self, cfg, url: str):
        self.cfg = cfg
        self.url = url

    def routes(self, rows) -> dict:
        out: dict = {}
        for r in rows:
            out.setdefault(r["severity"], []).append(r)
        return out

    def describe(self, route) -> str:
        return f"{route} -> webhook"

    def deliver(self, route, rows) -> None:
        from catalyst_ops.alerts import webhook

        subject, text, _ = render(rows, route)
        webhook.post(self.url, {"severity": route, "title": subject, "text": text, "message": f"{subject}\n\n{text}",
                                "alerts": [{k: r[k] for k in ("id", "created_at", "severity", "subject_key", "subject", "body")}
                                           for r in rows]}, self.cfg.alerts.smtp_timeout)


def channels(cfg) -> list[Channel]:
    """The configured channels. Raises ConfigError for a bad SMTP block in the .env."""
    from catalyst_ops.alerts import email

    out: list[Channel] = []
    settings = email.settings_from_env(cfg.env(required=False), cfg.env_file)
    if settings is not None:
        out.append(EmailChannel(cfg, settings))
    if cfg.alerts.webhook_url:
        from catalyst_ops import log as oplog

        oplog.add_secret(cfg.alerts.webhook_url)  # Slack-style URLs are credentials
        out.append(WebhookChannel(cfg, cfg.alerts.webhook_url))
    return out


# ------------------------------------------------------------------ rendering


def render(rows, severity: str) -> tuple[str, str, str]:
    """(subject, plain text, html) of one message carrying one or more alerts."""
    import html as h
    from datetime import datetime, timezone

    tag = f"[Catalyst {severity.upper()}]"

    def stamp(r) -> str:
        return datetime.fromtimestamp(r["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")

    if len(rows) == 1:
        r = rows[0]
        subject = f"{tag} {r['subject']}"
        text = f"{r['body']}\n\nRaised {stamp(r)} (alert #{r['id']})."
        html = (f"<h3>{h.escape(r['subject'])}</h3><pre>{h.escape(r['body'])}</pre>"
                f"<p><small>Raised {stamp(r)} (alert #{r['id']}).</small></p>")
        return subject, text, html
    subject = f"{tag} {len(rows)} alerts: " + "; ".join(r["subject"] for r in rows[:3]) + (" ..." if len(rows) > 3 else "")
    parts, html_parts = [], []
    for r in rows:
        parts.append(f"== {r['subject']} ({stamp(r)}, alert #{r['id']})\n{r['body']}")
        html_parts.append(f"<h4>{h.escape(r['subject'])} <small>({stamp(r)}, #{r['id']})</small></h4>"
                          f"<pre>{h.escape(r['body'])}</pre>")
    text = f"{len(rows)} alerts, oldest first:\n\n" + "\n\n".join(parts)
    html = f"<p>{len(rows)} alerts, oldest first:</p>" + "".join(html_parts)
    return subject, text, html


# ------------------------------------------------------------------ flush


def flush(cfg, db, dry_run: bool = False, force: bool = False) -> FlushResult:
    """Send the pending alerts that are due. `force` ignores the channels' backoff (operator's flush)."""
    from catalyst_ops.lock import JobLock, LockHeld

    ensure(db)
    res = FlushResult()
    if not cfg.alerts.enabled:
        res.skipped = "alerts.enabled is false"
        res.waiting = _pending_count(db)
        return res
    chans = channels(cfg)
    if not chans:
        res.skipped = "no channel configured (SMTP_HOST in the .env, or alerts.webhook_url)"
        res.waiting = _pending_count(db)
        return res
    try:
        lock = JobLock(cfg.state_dir, "alerts-flush").acquire()
    except LockHeld as exc:
        res.skipped = f"another flush is running ({exc.holder})"
        return res
    try:
        now = clock.timestamp()
        for ch in chans:
            _flush_channel(cfg, db, ch, now, dry_run, force, res)
        if not dry_run:
            res.sent = _mark_sent(db, [c.name for c in chans])
        res.waiting = _pending_count(db)
    finally:
        lock.release()
    return res


def _flush_channel(cfg, db, ch: Channel, now: float, dry_run: bool, force: bool, res: FlushResult) -> None:
    state = db.one("SELECT * FROM alert_channels WHERE channel=?", (ch.name,))
    if state and state["next_attempt_at"] and state["next_attempt_at"] > now and not force:
        res.skipped = f"{ch.name}: backing off until {state['next_attempt_at']:.0f} after: {state['last_error']}"
        return
    rows = db.query(
        "SELECT * FROM alerts a WHERE status='pending' AND NOT EXISTS"
        " (SELECT 1 FROM alert_deliveries d WHERE d.alert_id=a.id AND d.channel=?) ORDER BY id LIMIT ?",
        (ch.name, MAX_BATCH))
    for route, group in ch.routes(rows).items():
        if not force and not any((r["next_attempt_at"] or 0) <= now for r in group):
            continue
        ids = [r["id"] for r in group]
        if dry_run:
            res.planned.append({"channel": ch.name, "route": ch.describe(route), "alert_ids": ids,
                                "subject": render(group, group[0]["severity"])[0]})
            continue
        try:
            ch.deliver(route, group)
        except Exception as exc:
            from catalyst_ops import log as oplog

            msg = oplog.redact(str(exc) or exc.__class__.__name__)
            failures = (state["failures"] if state else 0) + 1
            wait = backoff(cfg, failures)
            with db.transaction() as conn:
                conn.execute(
                    "INSERT INTO alert_channels(channel, failures, next_attempt_at, last_error) VALUES (?,?,?,?)"
                    " ON CONFLICT(channel) DO UPDATE SET failures=excluded.failures,"
                    " next_attempt_at=excluded.next_attempt_at, last_error=excluded.last_error",
                    (ch.name, failures, now + wait, msg[:500]))
                conn.executemany("UPDATE alerts SET attempts=attempts+1, next_attempt_at=?, last_error=? WHERE id=?",
                                 [(now + wait, f"{ch.name}: {msg}"[:500], i) for i in ids])
            res.errors.append(f"{ch.name}: {msg}")
            log.warning("alert %s failed (%d pending, retry in %.0fs): %s", ch.name, len(ids), wait, msg)
            return  # the channel is down: the other routes would fail the same way
        at = clock.timestamp()
        with db.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO alert_deliveries(alert_id, channel, at) VALUES (?,?,?)",
                             [(i, ch.name, at) for i in ids])
            conn.executemany("UPDATE alerts SET attempts=attempts+1, last_error=NULL WHERE id=?", [(i,) for i in ids])
            conn.execute(
                "INSERT INTO alert_channels(channel, failures, next_attempt_at, last_error, last_ok_at) VALUES (?,0,NULL,NULL,?)"
                " ON CONFLICT(channel) DO UPDATE SET failures=0, next_attempt_at=NULL, last_error=NULL, last_ok_at=excluded.last_ok_at",
                (ch.name, at))
        state = None
        res.messages += 1
        log.info("alert %s accepted: %s (%d alert%s: %s)", ch.name, ch.describe(route), len(ids),
                 "" if len(ids) == 1 else "s", ", ".join(map(str, ids)))


def _mark_sent(db, names: list[str]) -> list[int]:
    marks = " AND ".join("EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id=a.id AND d.channel=?)" for _ in names)
    with db.transaction() as conn:
        ids = [r[0] for r in conn.execute(f"SELECT id FROM alerts a WHERE status='pending' AND {marks}", names)]
        now = clock.timestamp()
        conn.executemany("UPDATE alerts SET status='sent', sent_at=? WHERE id=?", [(now, i) for i in ids])
    return ids


def _pending_count(db) -> int:
    return int(db.one("SELECT COUNT(*) AS n FROM alerts WHERE status='pending'")["n"])


def dumps(res: FlushResult) -> str:
    return json.dumps(res.as_dict(), sort_keys=True)
