"""When to alert: state per subject in the state DB, so a restarted monitor continues where it was.

Services (after each recorded sweep, by the monitor and by the cron health job):
- first failure: a critical alert (a degraded service: a warning);
- still failing: again at every Nth consecutive failure (N = `alerts.repeat_every`), but never
  inside `alerts.cooldown` of the last alert of the same subject (a multiple of N passed inside
  the cooldown fires at the first sweep after it);
- escalation (degraded -> failing) is new information and ignores the cooldown;
- recovery: an info alert, only if the failure was alerted (a suppressed blip stays silent);
- several services changing in one sweep give ONE message per severity that lists them.

Scheduled jobs (cli.py, after every recorded run): a failed run alerts unless the same job
alerted inside the cooldown; the next successful run after an alerted failure sends a recovery.

Dead-man conditions (alerts.deadman): one alert when the condition starts, one when it clears.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from catalyst_ops import clock
from catalyst_ops.alerts import enqueue

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    subject_key TEXT PRIMARY KEY,            -- service:NAME, job:NAME, deadman:...
    state TEXT NOT NULL,                     -- ok degraded failed (what we last saw)
    alerted_state TEXT NOT NULL DEFAULT 'ok',-- what the operator was last told
    since REAL NOT NULL,                     -- when `state` began
    last_alert_at REAL,                      -- for the cooldown
    count_at_alert INTEGER NOT NULL DEFAULT 0,-- consecutive failures when last alerted
    suppressed INTEGER NOT NULL DEFAULT 0,   -- alerts held back by the cooldown in this episode
    detail TEXT
);
"""

_RANK = {"ok": 0, "degraded": 1, "failed": 2}


def ensure(db) -> None:
    db.ensure_schema(SCHEMA)


@dataclass
class Event:
    subject_key: str
    name: str
    kind: str  # failed repeat degraded escalated recovered
    severity: str
    detail: str
    count: int = 0


def _row(conn, key: str):
    return conn.execute("SELECT * FROM alert_state WHERE subject_key=?", (key,)).fetchone()


def _save(conn, key: str, state: str, alerted_state: str, since: float, last_alert_at, count_at_alert: int,
          suppressed: int, detail: str) -> None:
    conn.execute(
        "INSERT INTO alert_state(subject_key, state, alerted_state, since, last_alert_at, count_at_alert, suppressed, detail)"
        " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(subject_key) DO UPDATE SET state=excluded.state,"
        " alerted_state=excluded.alerted_state, since=excluded.since, last_alert_at=excluded.last_alert_at,"
        " count_at_alert=excluded.count_at_alert, suppressed=excluded.suppressed, detail=excluded.detail",
        (key, state, alerted_state, since, last_alert_at, count_at_alert, suppressed, detail),
    )


def decide(conn, key: str, name: str, state: str, count: int, detail: str, now: float, repeat_every: int,
           cooldown: float) -> Event | None:
    """Advance one subject's state; return the alert to raise, if any. Runs inside a transaction."""
    row = _row(conn, key)
    prev_state = row["state"] if row else "ok"
    alerted = row["alerted_state"] if row else "ok"
    since = row["since"] if row and prev_state == state else now
    last = row["last_alert_at"] if row else None
    at_count = row["count_at_alert"] if row else 0
    suppressed = row["suppressed"] if row else 0
    in_cooldown = last is not None and now - last < cooldown
    event = None
    if state == "ok":
        if alerted != "ok":
            event = Event(key, name, "recovered", "info", detail, count)
        alerted, at_count, suppressed = "ok", 0, 0
    else:
        if alerted == "ok" or _RANK[state] < _RANK[alerted]:
            # a new episode (or failing -> merely degraded): tell, unless inside the cooldown
            kind = "failed" if state == "failed" else "degraded"
            if in_cooldown:
                suppressed += 1
            else:
                event = Event(key, name, kind, "critical" if state == "failed" else "warning", detail, count)
        elif _RANK[state] > _RANK[alerted]:
            event = Event(key, name, "escalated", "critical", detail, count)
        elif count // repeat_every > at_count // repeat_every:
            # a multiple of N was reached since the last alert (robust to counts skipped by a crash)
            if in_cooldown:
                suppressed += 1
            else:
                event = Event(key, name, "repeat", "critical" if state == "failed" else "warning", detail, count)
        if event is not None:
            alerted, at_count, last, suppressed = state, count, now, 0
    _save(conn, key, state, alerted, since, last, at_count, suppressed, detail)
    return event


class _Conn:
    """enqueue() takes something with .execute; inside a transaction that is the connection."""

    def __init__(self, conn):
        self.execute = conn.execute


# ------------------------------------------------------------------ services

_TITLES = {"failed": "FAILING", "repeat": "STILL FAILING", "degraded": "DEGRADED", "escalated": "FAILING",
           "recovered": "RECOVERED"}


def _service_line(e: Event) -> str:
    if e.kind == "recovered":
        return f"- {e.name}: recovered ({e.detail})"
    if e.kind == "repeat":
        return f"- {e.name}: still failing, {e.count} consecutive failed checks ({e.detail})"
    if e.kind == "escalated":
        return f"- {e.name}: was degraded, now failing ({e.detail})"
    if e.kind == "degraded":
        return f"- {e.name}: degraded ({e.detail})"
    return f"- {e.name}: failing ({e.detail})" + (f", {e.count} consecutive failed checks" if e.count > 1 else "")


PLANNED_KEY = "planned_restart_until"  # meta: wall-clock end of a planned stack restart


def planned_restart(db, seconds: float | None) -> None:
    """Open (seconds) or close (None) the window of a planned stack restart (weekly maintenance, an
    operator's `restart`): services seen down inside it are not alerted, since nobody needs paging for
    a restart that was asked for. Wall-clock time: the monitor compares it with its own clock. A
    window left by a killed process closes by itself."""
    import time as _time

    if seconds is None:
        db.execute("DELETE FROM meta WHERE key=?", (PLANNED_KEY,))
    else:
        db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (PLANNED_KEY, repr(_time.time() + seconds)))


def in_planned_restart(db) -> bool:
    import time as _time

    row = db.one("SELECT value FROM meta WHERE key=?", (PLANNED_KEY,))
    try:
        return row is not None and _time.time() < float(row["value"])
    except (TypeError, ValueError):
        return False


def apply_services(cfg, db, results, source: str) -> list[int]:
    """Apply the policy to one recorded sweep; enqueue one alert per severity. Returns the alert ids.
    Inside a planned restart's window a failing service is left as it was (not alerted, not counted
    as an episode); once the window closes a service still down is alerted as usual."""
    from catalyst_ops import health

    ensure(db)
    now = clock.timestamp()
    a = cfg.alerts
    events: list[Event] = []
    planned = in_planned_restart(db)
    with db.transaction() as conn:
        counts = {r["service"]: r["consecutive_failures"] for r in conn.execute("SELECT service, consecutive_failures FROM service_state")}
        for r in results:
            state = "failed" if r.failed else "degraded" if r.state == health.DEGRADED else "ok"
            if planned and state != "ok":
                log.info("%s is %s during a planned restart: not alerted", r.service, r.state)
                continue
            e = decide(conn, f"service:{r.service}", r.service, state, counts.get(r.service, 1 if r.failed else 0),
                       f"{r.state}: {r.detail}" if r.detail else r.state, now, a.repeat_every, a.cooldown)
            if e:
                events.append(e)
        ids = _enqueue_grouped(conn, events, source)
    return ids


def _enqueue_grouped(conn, events: list[Event], source: str) -> list[int]:
    ids = []
    for severity in ("critical", "warning", "info"):
        group = [e for e in events if e.severity == severity]
        if not group:
            continue
        names = ", ".join(e.name for e in group)
        kinds = {_TITLES[e.kind] for e in group}
        title = kinds.pop() if len(kinds) == 1 else "CHANGED"
        if len(group) == 1:
            subject = f"{title}: {group[0].name}"
        else:
            subject = f"{title}: {len(group)} services: {names}"
        body = "\n".join(_service_line(e) for e in group)
        body += f"\n\nSeen by the {source} sweep at {clock.now().isoformat(timespec='seconds')}."
        key = "services:" + ",".join(sorted(e.name for e in group))
        ids.append(enqueue(_Conn(conn), severity, key, subject, body))
    return ids


# ------------------------------------------------------------------ jobs


def job_outcome(cfg, db, job: str, code: int, status: str, summary: str, notify: bool = True) -> int | None:
    """After a recorded job run: alert a failure (cooldown per job), a recovery after an alerted one.
    notify=False: the job already raised its own alert for this failure; record it as alerted (so
    the next success still sends the recovery) without a second message."""
    ensure(db)
    cooldown = cfg.alerts.cooldown if cfg is not None else 900.0
    now = clock.timestamp()
    key = f"job:{job}"
    with db.transaction() as conn:
        row = _row(conn, key)
        if status == "skipped":
            return None
        if code == 0:
            if row is None or row["alerted_state"] == "ok":
                if row is not None:
                    _save(conn, key, "ok", "ok", now, row["last_alert_at"], 0, 0, summary)
                return None
            _save(conn, key, "ok", "ok", now, row["last_alert_at"], 0, 0, summary)
            return enqueue(_Conn(conn), "info", key, f"RECOVERED: job {job}",
                           f"The scheduled job {job} succeeded again.\n\n{summary}".strip())
        last = row["last_alert_at"] if row else None
        fails = (row["count_at_alert"] if row and row["state"] == "failed" else 0) + 1
        since = row["since"] if row and row["state"] == "failed" else now
        if not notify:
            _save(conn, key, "failed", "failed", since, now, fails, 0, summary)
            return None
        if last is not None and now - last < cooldown:
            _save(conn, key, "failed", row["alerted_state"], since, last, fails, (row["suppressed"] or 0) + 1, summary)
            log.info("job %s failed again inside the alert cooldown: not alerted", job)
            return None
        _save(conn, key, "failed", "failed", since, now, fails, 0, summary)
        what = {2: "ran from cron but could not start (its configuration, .env or options were refused)",
                3: "could not run (a dependency is down)", 130: "was interrupted"}.get(code, "failed")
        body = f"The scheduled job {job} {what}: exit code {code}.\n\n{summary or '(no summary)'}"
        if fails > 1:
            body += f"\n\n{fails} failed runs in a row."
        return enqueue(_Conn(conn), "critical", key, f"JOB FAILED: {job} (exit {code})", body)


# ------------------------------------------------------------------ conditions (dead-man, watchdog)


def condition(db, key: str, active: bool, severity: str, subject: str, body: str, clear_subject: str,
              clear_body: str) -> int | None:
    """A yes/no condition: one alert when it becomes true, one when it becomes false again."""
    ensure(db)
    now = clock.timestamp()
    with db.transaction() as conn:
        row = _row(conn, key)
        was = row is not None and row["alerted_state"] != "ok"
        if active and not was:
            _save(conn, key, "failed", "failed", now, now, 1, 0, subject)
            return enqueue(_Conn(conn), severity, key, subject, body)
        if not active and was:
            _save(conn, key, "ok", "ok", now, now, 0, 0, clear_subject)
            return enqueue(_Conn(conn), "info", key, clear_subject, clear_body)
    return None
