"""The one clock every job reads, so tests and operators can ask "what would happen at T".

The override comes from `--now ISO8601` or the environment variable CATALYST_OPS_NOW.
An override moves the notion of "now" for decisions (sessions, schedules, windows);
durations (timeouts, sleeps) still use the monotonic clock.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from catalyst_ops.errors import USAGE, OpsError

_override: datetime | None = None
_override_set_at: float = 0.0
_frozen: bool = False


def parse_instant(text: str, what: str = "--now") -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(f"{what}: expected an ISO 8601 time with offset, e.g. 2026-11-27T12:59:00-05:00, got {text!r}", USAGE)
    if value.tzinfo is None:
        raise OpsError(f"{what}: {text!r} has no UTC offset; add one, e.g. -05:00", USAGE)
    # the jobs do date arithmetic around now (a session's window, a week back): year 1 in +05:00 is
    # before datetime's minimum in UTC and overflows there
    if not 1970 <= value.year <= 9998:
        raise OpsError(f"{what}: expected a time between the years 1970 and 9998, got {text!r}", USAGE)
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise OpsError(f"{what}: {text!r} is out of range", USAGE)
    return value


def set_now(value: datetime | str | None, frozen: bool = False) -> None:
    """Set the override. Unfrozen, the override advances with real time from the moment it is set."""
    global _override, _override_set_at, _frozen
    if isinstance(value, str):
        value = parse_instant(value)
    _override = value
    _override_set_at = time.monotonic()
    _frozen = frozen


def init_from_env() -> None:
    text = os.environ.get("CATALYST_OPS_NOW")
    if text and _override is None:
        set_now(parse_instant(text, "CATALYST_OPS_NOW"))


def now() -> datetime:
    """Aware UTC-offset datetime for 'now' (the override, if any)."""
    if _override is not None:
        if _frozen:
            return _override
        from datetime import timedelta

        return _override + timedelta(seconds=time.monotonic() - _override_set_at)
    return datetime.now(timezone.utc)


def timestamp() -> float:
    """Epoch seconds of now() (what the state DB stores)."""
    return now().timestamp()


def is_overridden() -> bool:
    return _override is not None
