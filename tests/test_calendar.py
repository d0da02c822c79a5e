"""The NYSE calendar and the act/skip decision of every market job at the moments that matter.

These run in-process against the real exchange_calendars data (no service needed); the same
moments are run end to end through the CLI against the stand-in stack in test_market.py.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from catalyst_ops import config, market
from catalyst_ops.calendar import Calendar

CAL = Calendar()


@pytest.fixture(scope="module")
def cfg():
    return config.Config()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def decide(cfg, kind, when, slot=None):
    return market.decide(cfg, CAL, kind, at(when), slot)


# (moment, kind, slot, acts?, words the reason must contain)
CASES = [
    # a normal Tuesday
    ("2026-11-24T09:30:00-05:00", "market-open", None, True, "09:30"),
    ("2026-11-24T11:00:00-05:00", "scan", "11:00", True, ""),
    ("2026-11-24T13:00:00-05:00", "scan", "13:00", True, ""),
    ("2026-11-24T13:00:00-05:00", "market-close", None, False, "too early"),  # the early-close probe
    ("2026-11-24T16:00:00-05:00", "market-close", None, True, "16:00"),
    ("2026-11-24T09:29:00-05:00", "market-open", None, False, "too early"),
    ("2026-11-24T09:46:00-05:00", "market-open", None, False, "too late"),
    # Thanksgiving
    ("2026-11-26T09:30:00-05:00", "market-open", None, False, "Thanksgiving"),
    ("2026-11-26T16:00:00-05:00", "market-close", None, False, "Thanksgiving"),
    # the day after Thanksgiving: early close at 13:00
    ("2026-11-27T09:30:00-05:00", "market-open", None, True, ""),
    ("2026-11-27T11:00:00-05:00", "scan", "11:00", True, ""),
    ("2026-11-27T13:00:00-05:00", "scan", "13:00", False, "close at 13:00, early close"),
    ("2026-11-27T12:59:00-05:00", "market-close", None, False, "too early"),
    ("2026-11-27T13:00:00-05:00", "market-close", None, True, "13:00"),
    ("2026-11-27T16:00:00-05:00", "market-close", None, False, "too late"),
    # the Sunday DST starts (8 March 2026) and the Monday after, in EDT
    ("2026-03-08T09:30:00-04:00", "market-open", None, False, "Sunday"),
    ("2026-03-09T09:30:00-04:00", "market-open", None, True, "09:30 EDT"),
    ("2026-03-09T13:30:00+00:00", "market-open", None, True, ""),  # the same instant in UTC
    # a host still on EST hand-converted times fires an hour off: never acts
    ("2026-03-09T09:30:00-05:00", "market-open", None, False, "too late"),
    ("2026-03-09T08:30:00-04:00", "market-open", None, False, "too early"),
    # the Sunday DST ends (1 November 2026) and the Monday after, in EST
    ("2026-11-01T09:30:00-05:00", "market-open", None, False, "Sunday"),
    ("2026-11-02T09:30:00-05:00", "market-open", None, True, "09:30 EST"),
    ("2026-11-02T16:00:00-05:00", "market-close", None, True, ""),
    # New Year's Day on a Saturday (2022): not observed on the Friday before
    ("2022-01-01T09:30:00-05:00", "market-open", None, False, "Saturday"),
    ("2021-12-31T09:30:00-05:00", "market-open", None, True, ""),
    # New Year's Day on a Sunday (2023): observed on Monday 2 January
    ("2023-01-01T09:30:00-05:00", "market-open", None, False, "Sunday"),
    ("2023-01-02T09:30:00-05:00", "market-open", None, False, "New Year"),
    ("2023-01-03T09:30:00-05:00", "market-open", None, True, ""),
    # a Saturday
    ("2026-11-28T09:30:00-05:00", "market-open", None, False, "Saturday"),
    ("2026-11-28T11:00:00-05:00", "scan", "11:00", False, "Saturday"),
    ("2026-11-28T16:00:00-05:00", "market-close", None, False, "Saturday"),
]


@pytest.mark.parametrize("when,kind,slot,acts,words", CASES, ids=[f"{c[0]}-{c[1]}{c[2] or ''}" for c in CASES])
def test_decision(cfg, when, kind, slot, acts, words):
    d = decide(cfg, kind, when, slot)
    assert d.act is acts, d.reason
    assert words in d.reason


def test_sessions_and_early_closes():
    assert CAL.session(date(2026, 11, 26)) is None
    friday = CAL.session(date(2026, 11, 27))
    assert friday.early_close and friday.close_local.hour == 13
    assert not CAL.session(date(2026, 11, 24)).early_close
    assert CAL.session(date(2026, 12, 24)).early_close  # Christmas Eve, a Thursday in 2026
    assert CAL.session(date(2026, 12, 25)) is None
    assert "Thanksgiving" in CAL.why_closed(date(2026, 11, 26))
    # the DST Monday opens at 13:30 UTC, the Friday before at 14:30 UTC
    assert CAL.session(date(2026, 3, 9)).open.hour == 13
    assert CAL.session(date(2026, 3, 6)).open.hour == 14


def test_misfire_flagged_only_when_a_host_clock_is_wrong(cfg):
    assert decide(cfg, "market-open", "2026-03-09T08:30:00-04:00").misfire
    assert decide(cfg, "market-open", "2026-03-09T10:30:00-04:00").misfire
    # the 13:00 close probe on a normal day and the 16:00 close on an early-close day are by design
    assert not decide(cfg, "market-close", "2026-11-24T13:00:00-05:00").misfire
    assert not decide(cfg, "market-close", "2026-11-27T16:00:00-05:00").misfire
    assert not decide(cfg, "market-open", "2026-11-26T09:30:00-05:00").misfire


def test_configured_open_after_the_bell(cfg):
    import dataclasses

    later = dataclasses.replace(cfg, market=dataclasses.replace(cfg.market, market_open="09:35"))
    assert not decide(later, "market-open", "2026-11-24T09:30:00-05:00").act
    assert decide(later, "market-open", "2026-11-24T09:35:00-05:00").act
