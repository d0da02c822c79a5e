"""The calendar's cached window: materialized from exchange_calendars once, answers without pandas,
agrees with the library, refreshes itself when the window runs out or the library changes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timezone

import pytest

from catalyst_ops import calendar, clock

from conftest import REPO


@pytest.fixture
def at():
    """Move the clock (frozen) and forget the windows loaded in this process, as a new run would."""

    def move(iso: str) -> None:
        clock.set_now(iso, frozen=True)
        calendar._STORES.clear()

    yield move
    clock.set_now(None)
    calendar._STORES.clear()


def window(cal: calendar.Calendar) -> tuple[str, str]:
    data = json.loads(open(cal.cache_path).read())
    return data["start"], data["end"]


def test_a_date_two_years_ahead_comes_from_the_cache_and_it_refreshes_when_the_window_ends(tmp_path, at):
    cal = calendar.Calendar(cache_dir=str(tmp_path))
    at("2026-12-03T12:00:00+00:00")
    built = calendar.builds
    # the day after Thanksgiving 2028, two years ahead: an early close at 13:00
    friday = cal.session(date(2028, 11, 24))
    assert friday.early_close and friday.close_local.hour == 13
    assert "Thanksgiving" in cal.why_closed(date(2028, 11, 23))
    assert calendar.builds == built + 1
    assert window(cal) == ("2025-01-01", "2028-12-31")

    # a later run reads the file: no second build, same answers
    at("2026-12-04T12:00:00+00:00")
    again = calendar.Calendar(cache_dir=str(tmp_path))
    assert again.session(date(2028, 11, 24)) == friday
    assert again.session(date(2028, 12, 25)) is None
    assert calendar.builds == built + 1

    # 1 January 2027: the window no longer reaches two years ahead: rebuilt before it runs out
    at("2027-01-01T12:00:00+00:00")
    assert again.session(date(2027, 1, 4)) is not None
    assert calendar.builds == built + 2
    assert window(cal) == ("2026-01-01", "2029-12-31")

    # past its end: rebuilt for the new today, and a date two years on answered from it
    at("2030-01-02T12:00:00+00:00")
    assert again.session(date(2031, 12, 24)).early_close  # Christmas Eve 2031, a Wednesday
    assert calendar.builds == built + 3
    assert window(cal) == ("2029-01-01", "2032-12-31")


def test_the_cache_agrees_with_exchange_calendars(tmp_path, at, monkeypatch):
    at("2026-12-03T12:00:00+00:00")
    cached = calendar.Calendar(cache_dir=str(tmp_path))
    a, b = date(2025, 1, 1), date(2028, 12, 31)
    from_cache = cached.sessions_between(a, b)
    monkeypatch.setenv("CATALYST_OPS_CALENDAR_CACHE", "0")
    live = calendar.Calendar(cache_dir=str(tmp_path / "unused"))
    assert live.sessions_between(a, b) == from_cache
    assert len(from_cache) > 3 * 250
    for d in (date(2025, 1, 9), date(2026, 11, 26), date(2027, 7, 5), date(2028, 1, 17)):
        monkeypatch.setenv("CATALYST_OPS_CALENDAR_CACHE", "0")
        want = live.holiday_name(d)
        monkeypatch.delenv("CATALYST_OPS_CALENDAR_CACHE")
        assert want and cached.holiday_name(d) == want
    assert not (tmp_path / "unused").exists()


def test_a_new_library_version_or_an_older_date_rebuilds(tmp_path, at):
    at("2026-12-03T12:00:00+00:00")
    cal = calendar.Calendar(cache_dir=str(tmp_path))
    cal.session(date(2026, 12, 4))
    data = json.loads(open(cal.cache_path).read())
    data["library"] = "0.0.1"
    data["sessions"] = []  # a stale file must not be believed
    open(cal.cache_path, "w").write(json.dumps(data))
    at("2026-12-03T12:00:00+00:00")
    assert cal.session(date(2026, 12, 4)) is not None
    assert json.loads(open(cal.cache_path).read())["library"] == calendar.library_version()
    # an older date widens the window back and keeps its end
    at("2026-12-03T12:00:00+00:00")
    assert cal.session(date(2021, 12, 31)) is not None
    assert window(cal) == ("2021-01-01", "2028-12-31")
    # beyond the range questions' span: OutOfRange (metrics falls back to weekdays on it)
    with pytest.raises(calendar.OutOfRange):
        cal.sessions_between(date(1970, 1, 1), date(1970, 1, 5))
    with pytest.raises(calendar.OutOfRange):
        cal.sessions_between(date(2026, 1, 1), date(2029, 1, 5))
    # counted sessions: full ones only
    ny = cal.tz
    assert cal.count_sessions(datetime(2026, 11, 24, 9, 0, tzinfo=ny), datetime(2026, 11, 27, 13, 0, tzinfo=ny)) == 3
    assert cal.count_sessions(datetime(2026, 11, 24, 9, 31, tzinfo=ny), datetime(2026, 11, 27, 12, 59, tzinfo=ny)) == 1


_PROBE = """
import sys
from catalyst_ops import cli
code = cli.main(sys.argv[1:])
heavy = sorted(m for m in ("pandas", "numpy", "exchange_calendars", "psycopg2") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
raise SystemExit(code)
"""


@pytest.mark.parametrize("now,kind,words", [
    ("2026-11-28T09:30:00-05:00", "market-open", "Saturday"),
    ("2026-11-26T16:00:00-05:00", "market-close", "Thanksgiving"),
    ("2026-11-24T09:00:00-05:00", "scan", "too early"),
])
def test_a_skip_does_not_import_pandas(tmp_path, now, kind, words):
    config = tmp_path / "ops.yml"
    config.write_text(f"env_file: {tmp_path / '.env'}\nstate_path: {tmp_path / 'state.db'}\nlog_dir: {tmp_path / 'log'}\n")
    (tmp_path / ".env").write_text("")
    # the first run materializes the window (exchange_calendars, pandas); every later one reads it
    runs = [subprocess.run([sys.executable, "-c", _PROBE, "--config", str(config), "--now", now, kind],
                           capture_output=True, text=True, cwd=REPO, timeout=120) for _ in range(2)]
    for p in runs:
        assert p.returncode == 0 and words in p.stdout, p.stdout + p.stderr
    assert "HEAVY=" in runs[0].stdout and "pandas" in runs[0].stdout
    assert "HEAVY=\n" in runs[1].stdout, runs[1].stdout
    assert (tmp_path / "calendar-XNYS.json").exists()
