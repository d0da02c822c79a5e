"""Alerts. Every alert goes into the outbox (the `alerts` table) before anything is sent;
the sender marks it sent only when the server accepted it."""

from __future__ import annotations

from catalyst_ops import clock

SEVERITIES = ("critical", "warning", "info")

# ids this process enqueued: a job that raised its own, specific alert does not get the generic
# "job failed" one on top (one incident, one message)
_enqueued: list[int] = []


def enqueued_by_this_process() -> list[int]:
    return list(_enqueued)


def enqueue(db, severity: str, subject_key: str, subject: str, body: str) -> int:
    """Write one alert to the outbox; returns its id. Sending is the outbox flusher's job."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    now = clock.timestamp()
    cur = db.execute(
        "INSERT INTO alerts(created_at, severity, subject_key, subject, body, status, attempts, next_attempt_at)"
        " VALUES (?,?,?,?,?,'pending',0,?)",
        (now, severity, subject_key, subject, body, now),
    )
    _enqueued.append(int(cur.lastrowid))
    return int(cur.lastrowid)
