"""The exchange calendar (NYSE by default): is there a session on a date, when does it open and close.

Backed by `exchange_calendars` (XNYS), which is maintained against the exchanges' published
holiday and early-close schedules and ships years ahead; `pandas_market_calendars` wraps the
same data with a heavier API. It is imported lazily: it pulls in pandas (about half a second),
which commands such as `status` must not pay for.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

# the calendar is built for a window around the asked date; exchange_calendars refuses dates outside it
_SPAN_DAYS = 400


@dataclass(frozen=True)
class Session:
    day: date
    open: datetime  # aware, UTC
    close: datetime  # aware, UTC
    regular_close: time  # the exchange's usual close, local time (16:00 for XNYS)
    tz: ZoneInfo

    @property
    def early_close(self) -> bool:
        return self.close.astimezone(self.tz).time() < self.regular_close

    @property
    def open_local(self) -> datetime:
        return self.open.astimezone(self.tz)

    @property
    def close_local(self) -> datetime:
        return self.close.astimezone(self.tz)

    def is_open_at(self, instant: datetime) -> bool:
        return self.open <= instant < self.close

    def as_dict(self) -> dict:
        return {"date": self.day.isoformat(), "open": self.open_local.isoformat(), "close": self.close_local.isoformat(),
                "early_close": self.early_close}


@lru_cache(maxsize=8)
def _calendar(name: str, start: date, end: date):
    import exchange_calendars as xcals

    return xcals.get_calendar(name, start=start.isoformat(), end=end.isoformat())


def _window(day: date) -> tuple[date, date]:
    # quantised to the year so repeated lookups within a run reuse one calendar object
    start = date(day.year - 1, 1, 1)
    return start, start + timedelta(days=3 * 366)


@contextmanager
def _quiet():
    # exchange_calendars trips pandas deprecation warnings; they would land in every cron log
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class Calendar:
    def __init__(self, name: str = "XNYS", tz: str = "America/New_York"):
        self.name = name
        self.tz = ZoneInfo(tz)

    def _cal(self, day: date):
        try:
            with _quiet():
                return _calendar(self.name, *_window(day))
        except Exception as exc:  # unknown calendar name, out-of-range data
            from catalyst_ops.errors import ConfigError

            raise ConfigError("market.calendar", None, f"cannot load exchange calendar {self.name!r}: {exc}")

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def session(self, day: date) -> Session | None:
        """The session on this exchange-local date, or None (weekend, holiday)."""
        import pandas as pd

        cal = self._cal(day)
        ts = pd.Timestamp(day)
        with _quiet():
            if not cal.is_session(ts):
                return None
            row = cal.schedule.loc[ts]
        regular = getattr(cal, "close_times", None)
        regular_close = regular[-1][1] if regular else time(16, 0)
        return Session(day, row["open"].to_pydatetime().astimezone(timezone.utc),
                       row["close"].to_pydatetime().astimezone(timezone.utc), regular_close, self.tz)

    def session_at(self, instant: datetime) -> Session | None:
        """The session of the exchange-local date of `instant` (open or not at that moment)."""
        return self.session(self.local_date(instant))

    def open_session(self, instant: datetime) -> Session | None:
        """The session in progress at `instant`, if any."""
        s = self.session_at(instant)
        return s if s and s.is_open_at(instant) else None

    def why_closed(self, day: date) -> str:
        """A human reason for no session on `day`: weekend or the holiday's name when known."""
        if day.weekday() >= 5:
            return f"{day.strftime('%A')}: no NYSE session"
        name = self.holiday_name(day)
        return f"{name}: NYSE closed" if name else "NYSE holiday: no session"

    def holiday_name(self, day: date) -> str | None:
        import pandas as pd

        cal = self._cal(day)
        try:
            with _quiet():
                hol = cal.regular_holidays.holidays(start=pd.Timestamp(day), end=pd.Timestamp(day), return_name=True)
        except Exception:
            return None
        if len(hol):
            return str(hol.iloc[0])
        for ad_hoc in getattr(cal, "adhoc_holidays", []) or []:
            if pd.Timestamp(ad_hoc).date() == day:
                return "special closure"
        return None

    def next_sessions(self, after: date, count: int = 5) -> list[Session]:
        out = []
        day = after
        while len(out) < count:
            s = self.session(day)
            if s:
                out.append(s)
            day += timedelta(days=1)
        return out


def from_config(cfg) -> Calendar:
    return Calendar(cfg.market.calendar, cfg.market.exchange_timezone)
