"""The exchange calendar (NYSE by default): is there a session on a date, when does it open and
close, which sessions fall between two dates.

Backed by `exchange_calendars` (XNYS), which is maintained against the exchanges' published
holiday and early-close schedules and ships years ahead; it stays the source of truth. Asking it
costs pandas (about a second of CPU and 50 MiB on the droplet), which a market job that only finds
"no session today" must not pay eight times a day. So the sessions of a window (from 1 January of
last year to 31 December two years ahead, widened back when an older date is asked) are
materialized from it once, as UTC open/close instants plus the names of the holidays, into a
small JSON file (`calendar-NAME.json` in the state directory, or $XDG_CACHE_HOME/catalyst-ops
for a bare Calendar()), keyed on the library's version, the calendar name and the window.
Answers come from that file without importing pandas. It rebuilds itself when the library's
version changes or when today's window is no longer inside it (each 1 January, two years before
its end), and a date outside it is answered from exchange_calendars directly.
CATALYST_OPS_CALENDAR_CACHE=0 skips the file and asks exchange_calendars every time.

The range questions (sessions between two dates) cover exchange_calendars' own default span, 20
years back, to the end of the window; beyond it they raise OutOfRange.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

_FORMAT = 1  # of the cache file; a file of another format is rebuilt
_BACK_YEARS = 1  # the window starts on 1 January this many years before today ...
_AHEAD_YEARS = 2  # ... and ends on 31 December this many years after
_SPAN_YEARS = 20  # how far back range questions go (exchange_calendars' default start)


class OutOfRange(ValueError):
    """A range question about dates the calendar does not cover."""


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


def _today() -> date:
    from catalyst_ops import clock

    return clock.now().astimezone(timezone.utc).date()


def wanted_window(today: date) -> tuple[date, date]:
    """The window the cache must cover on `today`."""
    return date(today.year - _BACK_YEARS, 1, 1), date(today.year + _AHEAD_YEARS, 12, 31)


def library_version() -> str:
    """exchange_calendars' version, read from its installed metadata without importing it (or pandas)."""
    import importlib.util

    spec = importlib.util.find_spec("exchange_calendars")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("exchange_calendars is not installed")
    site = os.path.dirname(list(spec.submodule_search_locations)[0])
    for entry in os.listdir(site):
        if entry.startswith("exchange_calendars-") and entry.endswith(".dist-info"):
            return entry[len("exchange_calendars-"):-len(".dist-info")]
    from importlib.metadata import version

    return version("exchange_calendars")


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "catalyst-ops")


def cache_enabled() -> bool:
    return os.environ.get("CATALYST_OPS_CALENDAR_CACHE", "1").strip().lower() not in ("0", "no", "off", "false")


class _Live:
    """Straight from exchange_calendars (pandas): the source the cache is built from, and the answer
    for dates outside the cached window."""

    def __init__(self, name: str):
        self.name = name

    def cal(self, day: date):
        try:
            with _quiet():
                return _calendar(self.name, *_window(day))
        except Exception as exc:  # unknown calendar name, out-of-range data
            from catalyst_ops.errors import ConfigError

            raise ConfigError("market.calendar", None, f"cannot load exchange calendar {self.name!r}: {exc}")

    def regular_close(self, cal) -> time:
        regular = getattr(cal, "close_times", None)
        return regular[-1][1] if regular else time(16, 0)

    def session(self, day: date) -> tuple[datetime, datetime, time] | None:
        import pandas as pd

        cal = self.cal(day)
        ts = pd.Timestamp(day)
        with _quiet():
            if not cal.is_session(ts):
                return None
            row = cal.schedule.loc[ts]
        return (row["open"].to_pydatetime().astimezone(timezone.utc),
                row["close"].to_pydatetime().astimezone(timezone.utc), self.regular_close(cal))

    def holiday_name(self, day: date) -> str | None:
        import pandas as pd

        cal = self.cal(day)
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

    def materialize(self, start: date, end: date) -> dict:
        """The sessions and named holidays of [start, end], as the cache file stores them."""
        import pandas as pd

        try:
            with _quiet():
                cal = _calendar(self.name, start, end)
                sched = cal.schedule
                sessions = [[d.date().isoformat(), int(o.timestamp()), int(c.timestamp())]
                            for d, o, c in zip(sched.index, sched["open"], sched["close"])]
                hol = cal.regular_holidays.holidays(start=pd.Timestamp(start), end=pd.Timestamp(end), return_name=True)
                names = {}
                for ad_hoc in getattr(cal, "adhoc_holidays", []) or []:
                    d = pd.Timestamp(ad_hoc).date()
                    if start <= d <= end:
                        names[d.isoformat()] = "special closure"
                for d, n in hol.items():  # a regular holiday's name wins, as in holiday_name()
                    names[pd.Timestamp(d).date().isoformat()] = str(n)
        except Exception as exc:
            from catalyst_ops.errors import ConfigError

            raise ConfigError("market.calendar", None, f"cannot load exchange calendar {self.name!r}: {exc}")
        close = self.regular_close(cal)
        return {"sessions": sessions, "holidays": names, "regular_close": close.strftime("%H:%M")}


class _Store:
    """The materialized window, loaded from (or written to) the cache file."""

    def __init__(self, data: dict):
        self.start = date.fromisoformat(data["start"])
        self.end = date.fromisoformat(data["end"])
        self.version = data["library"]
        h, m = data["regular_close"].split(":")
        self.regular_close = time(int(h), int(m))
        self.sessions = {d: (o, c) for d, o, c in data["sessions"]}
        self.order = [row[0] for row in data["sessions"]]
        self.holidays = data["holidays"]

    def covers(self, a: date, b: date) -> bool:
        return self.start <= a and b <= self.end


_STORES: dict[str, _Store] = {}  # cache file -> its loaded window, once per process
builds = 0  # how many windows this process materialized from exchange_calendars (tests, bench)


class Calendar:
    def __init__(self, name: str = "XNYS", tz: str = "America/New_York", cache_dir: str | None = None):
        self.name = name
        self.tz = ZoneInfo(tz)
        self.cache_dir = cache_dir or default_cache_dir()
        self._live = _Live(name)

    # ------------------------------------------------------------ the cached window

    @property
    def cache_path(self) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.name)
        return os.path.join(self.cache_dir, f"calendar-{safe}.json")

    def _read(self, path: str, version: str) -> _Store | None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if data.get("format") != _FORMAT or data.get("calendar") != self.name or data.get("library") != version:
                return None
            return _Store(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: rebuilt

    def _build(self, start: date, end: date, version: str) -> _Store:
        global builds
        data = {"format": _FORMAT, "calendar": self.name, "library": version, "start": start.isoformat(),
                "end": end.isoformat(), **self._live.materialize(start, end)}
        builds += 1
        store = _Store(data)
        try:
            from catalyst_ops.fsutil import atomic_write

            os.makedirs(self.cache_dir, exist_ok=True)
            atomic_write(self.cache_path, json.dumps(data, separators=(",", ":")), 0o644)
        except OSError as exc:  # a read-only home: answer from memory, build again next run
            log.debug("calendar cache %s not written: %s", self.cache_path, exc)
        return store

    def _store(self, a: date, b: date) -> _Store | None:
        """A window covering today's and [a, b]; None when [a, b] is outside what is cached (the caller
        asks exchange_calendars directly) or the cache is off."""
        if not cache_enabled():
            return None
        today = _today()
        lo, hi = wanted_window(today)
        if not (date(today.year - _SPAN_YEARS, 1, 1) <= a and b <= hi):
            return None
        lo = min(lo, date(a.year, 1, 1))
        path = self.cache_path
        store = _STORES.get(path)
        if store is not None and store.covers(lo, hi):
            return store
        try:
            version = library_version()
        except Exception:
            return None  # not installed: the live path says so
        if store is None or store.version != version:
            store = self._read(path, version)
        if store is None or not store.covers(lo, hi):
            if store is not None and store.end >= hi:  # only widening back (an older date, or --now in the
                lo, hi = min(lo, store.start), store.end  # past): keep what it covers; expired: start afresh
            store = self._build(lo, hi, version)
        _STORES[path] = store
        return store

    def _session(self, store: _Store, day: date) -> Session | None:
        hit = store.sessions.get(day.isoformat())
        if hit is None:
            return None
        return Session(day, datetime.fromtimestamp(hit[0], timezone.utc), datetime.fromtimestamp(hit[1], timezone.utc),
                       store.regular_close, self.tz)

    # ------------------------------------------------------------ questions

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def session(self, day: date) -> Session | None:
        """The session on this exchange-local date, or None (weekend, holiday)."""
        store = self._store(day, day)
        if store is not None:
            return self._session(store, day)
        hit = self._live.session(day)
        return Session(day, hit[0], hit[1], hit[2], self.tz) if hit else None

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
        store = self._store(day, day)
        if store is not None:
            return store.holidays.get(day.isoformat())
        return self._live.holiday_name(day)

    def next_sessions(self, after: date, count: int = 5) -> list[Session]:
        out = []
        day = after
        while len(out) < count:
            s = self.session(day)
            if s:
                out.append(s)
            day += timedelta(days=1)
        return out

    def sessions_between(self, first: date, last: date) -> list[Session]:
        """The sessions with exchange-local dates in [first, last], in order. OutOfRange for dates
        more than 20 years back or after the window's end."""
        if last < first:
            return []
        today = _today()
        earliest, latest = date(today.year - _SPAN_YEARS, 1, 1), wanted_window(today)[1]
        if first < earliest or last > latest:
            raise OutOfRange(f"{self.name} sessions are known from {earliest} to {latest}; asked {first}..{last}")
        store = self._store(first, last)
        if store is not None:
            import bisect

            i = bisect.bisect_left(store.order, first.isoformat())
            j = bisect.bisect_right(store.order, last.isoformat())
            return [self._session(store, date.fromisoformat(d)) for d in store.order[i:j]]
        data = self._live.materialize(first, last)
        close = time(*map(int, data["regular_close"].split(":")))
        return [Session(date.fromisoformat(d), datetime.fromtimestamp(o, timezone.utc),
                        datetime.fromtimestamp(c, timezone.utc), close, self.tz) for d, o, c in data["sessions"]]

    def sessions_in(self, start: datetime, end: datetime) -> list[Session]:
        """The sessions that open or close inside [start, end] (aware instants)."""
        a = self.local_date(start) - timedelta(days=1)
        b = self.local_date(end) + timedelta(days=1)
        return [s for s in self.sessions_between(a, b) if start <= s.open <= end or start <= s.close <= end]

    def count_sessions(self, start: datetime, end: datetime) -> int:
        """Full sessions that opened at/after `start` and closed by `end`."""
        a, b = self.local_date(start), self.local_date(end)
        return sum(1 for s in self.sessions_between(a, b) if s.open >= start and s.close <= end)


def from_config(cfg) -> Calendar:
    """The configured calendar, its cached window kept in the state directory."""
    return Calendar(cfg.market.calendar, cfg.market.exchange_timezone, cfg.state_dir)
