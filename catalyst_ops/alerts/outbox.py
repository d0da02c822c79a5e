"""The outbox flusher: send what is pending, mark sent only what a server accepted.

Every alert is a row of `alerts` before anything is sent (alerts.enqueue). A flush:
- takes a non-blocking lock, so the monitor and the cron health job never send the same row twice;
- per channel (email, and the webhook when alerts.webhook_url is set) and per route (severity and
  its recipients), most severe route first, sends ALL pending rows of that route as one message:
  a backlog built up while the server was down goes out grouped, not as a hundred emails;
- records a delivery per row and channel only after the server accepted it; a row is `sent` once
  every configured channel has it;
- on a failure, backs THAT ROUTE off exponentially (alerts.retry_base doubling up to
  alerts.retry_max) and goes on with the other routes: one refused recipient never holds a
  critical alert back. A temporary failure (SMTP 4xx, connection, TLS, login) keeps the rows
  pending; a permanent refusal of the route (SMTP 5xx for the recipients or the message) is
  retried alerts.refused_attempts times, then that delivery is marked failed and an alert
  naming the refused route is raised on the other routes.
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
CREATE TABLE IF NOT EXISTS alert_routes (
    channel TEXT NOT NULL,
    route TEXT NOT NULL,                     -- e.g. "warning -> ops@example.test"
    failures INTEGER NOT NULL DEFAULT 0,     -- consecutive failed attempts
    refusals INTEGER NOT NULL DEFAULT 0,     -- consecutive permanent refusals (5xx)
    next_attempt_at REAL,
    last_error TEXT,
    PRIMARY KEY (channel, route)
);
-- a delivery given up on: the route refused it permanently alerts.refused_attempts times
CREATE TABLE IF NOT EXISTS alert_failures (
    alert_id INTEGER NOT NULL,
    channel TEXT NOT NULL,
    at REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (alert_id, channel)
);
"""

# most severe first: a backlog of warnings never delays a critical alert
SEVERITY_RANK = {"emergency": 0, "critical": 1, "warning": 2, "info": 3}
ROUTE_KEY = "alert-route:"  # subject_key prefix of the alert about a refused route

MAX_BATCH = 200  # rows in one message; a larger backlog goes out over several flushes


@dataclass
class FlushResult:
    sent: list[int] = field(default_factory=list)  # alert ids now fully sent
    messages: int = 0
    errors: list[str] = field(default_factory=list)
    waiting: int = 0  # pending rows left
    skipped: str = ""  # why nothing was attempted (lock held, no channel, backoff)
    planned: list[dict] = field(default_factory=list)  # dry run: what would be sent
    raised: list[int] = field(default_factory=list)  # alerts about a refused route raised by this flush

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

    def severity(self, route) -> str:
        return str(route)

    def refused(self, exc: Exception) -> bool:
        """Whether the failure is a permanent refusal of this route (not of the channel as a whole)."""
        return False

    def reaches_elsewhere(self, route, severity: str) -> bool:
        """Whether an alert of `severity` goes somewhere other than `route` on this channel."""
        return False


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

    def severity(self, route) -> str:
        return route[0]

    def refused(self, exc: Exception) -> bool:
        # 5xx for every recipient, or for the message: this route will not take it. A refused login or
        # sender is the whole channel's problem (a fixable setting): those rows wait, never dropped.
        return bool(getattr(exc, "permanent", False)) and getattr(exc, "kind", "") in ("recipient refused",
                                                                                      "message refused")

    def reaches_elsewhere(self, route, severity: str) -> bool:
        return tuple(self.settings.route(severity)) != tuple(route[1])

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
            _flush_channel(cfg, db, ch, now, dry_run, force, res, chans)
        if not dry_run:
            res.sent = _mark_sent(db, [c.name for c in chans])
            # an alert about a refused route, raised in this flush, goes out in this flush
            if res.raised:
                for ch in chans:
                    _flush_channel(cfg, db, ch, now, dry_run, force, res, chans, only=set(res.raised))
                res.sent += _mark_sent(db, [c.name for c in chans])
        res.waiting = _pending_count(db)
    finally:
        lock.release()
    return res


def _route_state(db, channel: str, key: str):
    return db.one("SELECT * FROM alert_routes WHERE channel=? AND route=?", (channel, key))


def _flush_channel(cfg, db, ch: Channel, now: float, dry_run: bool, force: bool, res: FlushResult,
                   chans: list[Channel] | None = None, only: set | None = None) -> None:
    rank = " ".join(f"WHEN '{k}' THEN {v}" for k, v in SEVERITY_RANK.items())
    rows = db.query(
        "SELECT * FROM alerts a WHERE status='pending'"
        " AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id=a.id AND d.channel=?)"
        " AND NOT EXISTS (SELECT 1 FROM alert_failures f WHERE f.alert_id=a.id AND f.channel=?)"
        f" ORDER BY CASE severity {rank} ELSE 9 END, id LIMIT ?",
        (ch.name, ch.name, MAX_BATCH))
    if only is not None:
        rows = [r for r in rows if r["id"] in only]
    routes = ch.routes(rows)
    # severity order, then the oldest row: dicts keep insertion order and rows come sorted
    order = sorted(routes, key=lambda r: (SEVERITY_RANK.get(ch.severity(r), 9), routes[r][0]["id"]))
    for route in order:
        group = routes[route]
        key = ch.describe(route)
        state = _route_state(db, ch.name, key)
        if state and state["next_attempt_at"] and state["next_attempt_at"] > now and not force:
            res.skipped = f"{ch.name}: {key}: backing off until {state['next_attempt_at']:.0f} after: {state['last_error']}"
            continue
        ids = [r["id"] for r in group]
        if dry_run:
            res.planned.append({"channel": ch.name, "route": key, "alert_ids": ids,
                                "subject": render(group, group[0]["severity"])[0]})
            continue
        try:
            ch.deliver(route, group)
        except Exception as exc:
            _failed(cfg, db, ch, route, group, state, exc, now, res, chans or [ch])
            continue  # the other routes are tried all the same
        at = clock.timestamp()
        with db.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO alert_deliveries(alert_id, channel, at) VALUES (?,?,?)",
                             [(i, ch.name, at) for i in ids])
            conn.executemany("UPDATE alerts SET attempts=attempts+1, last_error=NULL WHERE id=?", [(i,) for i in ids])
            conn.execute("DELETE FROM alert_routes WHERE channel=? AND route=?", (ch.name, key))
            conn.execute(
                "INSERT INTO alert_channels(channel, failures, next_attempt_at, last_error, last_ok_at) VALUES (?,0,NULL,NULL,?)"
                " ON CONFLICT(channel) DO UPDATE SET failures=0, next_attempt_at=NULL, last_error=NULL, last_ok_at=excluded.last_ok_at",
                (ch.name, at))
        res.messages += 1
        log.info("alert %s accepted: %s (%d alert%s: %s)", ch.name, key, len(ids),
                 "" if len(ids) == 1 else "s", ", ".join(map(str, ids)))


def _failed(cfg, db, ch: Channel, route, group, state, exc: Exception, now: float, res: FlushResult,
            chans: list[Channel]) -> None:
    """One route failed: back it off; after alerts.refused_attempts permanent refusals in a row, give
    its rows up on this channel and raise an alert about it on the other routes."""
    from catalyst_ops import log as oplog

    key = ch.describe(route)
    ids = [r["id"] for r in group]
    msg = oplog.redact(str(exc) or exc.__class__.__name__)
    failures = (state["failures"] if state else 0) + 1
    refused = ch.refused(exc)
    refusals = ((state["refusals"] if state else 0) + 1) if refused else 0
    give_up = refused and refusals >= cfg.alerts.refused_attempts
    wait = backoff(cfg, failures)
    with db.transaction() as conn:
        if give_up:
            conn.execute("DELETE FROM alert_routes WHERE channel=? AND route=?", (ch.name, key))
            conn.executemany("INSERT OR IGNORE INTO alert_failures(alert_id, channel, at, error) VALUES (?,?,?,?)",
                             [(i, ch.name, now, msg[:500]) for i in ids])
        else:
            conn.execute(
                "INSERT INTO alert_routes(channel, route, failures, refusals, next_attempt_at, last_error)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(channel, route) DO UPDATE SET failures=excluded.failures,"
                " refusals=excluded.refusals, next_attempt_at=excluded.next_attempt_at, last_error=excluded.last_error",
                (ch.name, key, failures, refusals, now + wait, msg[:500]))
        conn.execute(
            "INSERT INTO alert_channels(channel, failures, next_attempt_at, last_error) VALUES (?,?,?,?)"
            " ON CONFLICT(channel) DO UPDATE SET failures=excluded.failures,"
            " next_attempt_at=excluded.next_attempt_at, last_error=excluded.last_error",
            (ch.name, failures, now + wait, f"{key}: {msg}"[:500]))
        conn.executemany("UPDATE alerts SET attempts=attempts+1, next_attempt_at=?, last_error=? WHERE id=?",
                         [(now + wait, f"{ch.name}: {msg}"[:500], i) for i in ids])
    res.errors.append(f"{ch.name}: {key}: {msg}")
    if not give_up:
        log.warning("alert %s to %s failed (%d pending, retry in %.0fs%s): %s", ch.name, key, len(ids), wait,
                    f", refusal {refusals} of {cfg.alerts.refused_attempts}" if refused else "", msg)
        return
    log.error("alert %s to %s refused %d times: delivery of alert%s %s given up: %s", ch.name, key, refusals,
              "" if len(ids) == 1 else "s", ", ".join(map(str, ids)), msg)
    if all(r["subject_key"].startswith(ROUTE_KEY) for r in group):
        return  # the alert about a refused route was refused too: no alert about that alert
    _raise_route_alert(db, ch, route, group, msg, chans, res)


def _raise_route_alert(db, ch: Channel, route, group, msg: str, chans: list[Channel], res: FlushResult) -> None:
    from catalyst_ops.alerts import enqueue

    # the most severe severity whose route is another one; a second channel carries it regardless
    severity = next((s for s in ("critical", "warning", "info") if ch.reaches_elsewhere(route, s)), None)
    if severity is None:
        if len(chans) < 2:
            log.error("alert %s: no other route to report the refused route %s on", ch.name, ch.describe(route))
            return
        severity = "critical"
    key = ch.describe(route)
    lines = "\n".join(f"- #{r['id']} [{r['severity']}] {r['subject']}" for r in group)
    res.raised.append(enqueue(db, severity, f"{ROUTE_KEY}{ch.name}:{key}", f"ALERT ROUTE REFUSED: {key}",
            f"The {ch.name} route {key} refused these alerts permanently; they were not delivered there:\n\n"
            f"{lines}\n\nLast error: {msg}\n\nFix the recipient (the .env's ALERT_EMAIL_* keys) or the server's "
            "policy; `catalyst-ops alert list --status failed` lists what was given up."))


def _mark_sent(db, names: list[str]) -> list[int]:
    """Rows every channel delivered: `sent`. Rows every channel is done with, one or more by giving
    up after permanent refusals: `failed` (with the refusal as last_error)."""
    done = " AND ".join("(EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id=a.id AND d.channel=?)"
                        " OR EXISTS (SELECT 1 FROM alert_failures f WHERE f.alert_id=a.id AND f.channel=?))"
                        for _ in names)
    with db.transaction() as conn:
        rows = [(r[0], r[1]) for r in conn.execute(
            f"SELECT id, EXISTS (SELECT 1 FROM alert_failures f WHERE f.alert_id=a.id) FROM alerts a"
            f" WHERE status='pending' AND {done}", [n for n in names for _ in (0, 1)])]
        now = clock.timestamp()
        conn.executemany("UPDATE alerts SET status='sent', sent_at=? WHERE id=?", [(now, i) for i, f in rows if not f])
        conn.executemany("UPDATE alerts SET status='failed' WHERE id=?", [(i,) for i, f in rows if f])
    return [i for i, f in rows if not f]


def _pending_count(db) -> int:
    return int(db.one("SELECT COUNT(*) AS n FROM alerts WHERE status='pending'")["n"])


def dumps(res: FlushResult) -> str:
    return json.dumps(res.as_dict(), sort_keys=True)
