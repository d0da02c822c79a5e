"""`catalyst-ops validate` on state DBs filled with a synthetic 48 hours, run as a real process."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from conftest import run_cli
from synth_state import ET, fill, ops_yaml

# a Wednesday noon after the March DST change; the 48 h before it hold no holiday
END = datetime(2026, 3, 11, 12, 0, tzinfo=ET)
NOW = END.isoformat()


def _validate(tmp_path, *extra, config_extra: str = ""):
    cfg = ops_yaml(tmp_path, tmp_path / "state.db", config_extra)
    res = run_cli("--now", NOW, "validate", "--hours", "48", *extra, config=cfg)
    return res


def _by_key(res) -> dict:
    data = json.loads(res.out)
    return {c["key"]: c for c in data["criteria"]}


def test_every_run_on_time_passes(tmp_path):
    fill(tmp_path / "state.db", END).close()
    res = _validate(tmp_path, "--json")
    assert res.code == 0, res.text
    crit = _by_key(res)
    assert all(c["passed"] for c in crit.values()), {k: c["figure"] for k, c in crit.items() if not c["passed"]}
    assert crit["health_checks"]["data"]["expected"] == 576
    assert crit["health_checks"]["data"]["count"] in (576, 577)
    # Mon 13:00 scan + 16:00 close, Tue open/scans/close, Wed open + 11:00 scan, two backups
    assert crit["scheduled_jobs"]["data"]["slots"] == 2 + 4 + 2 + 2
    text = _validate(tmp_path)
    assert text.code == 0 and "48-hour validation 2026-03-09 12:00 .. 2026-03-11 12:00" in text.out and ": PASS" in text.out


def test_forty_minute_health_gap_fails_with_its_times(tmp_path):
    gap = (datetime(2026, 3, 10, 14, 5, tzinfo=ET), datetime(2026, 3, 10, 14, 45, tzinfo=ET))
    fill(tmp_path / "state.db", END, health_gap=gap).close()
    res = _validate(tmp_path, "--json")
    assert res.code == 1, res.text
    data = json.loads(res.out)
    assert data["failed"] == ["health_checks"]
    crit = _by_key(res)["health_checks"]
    assert len(crit["data"]["gaps"]) == 1
    g = crit["data"]["gaps"][0]
    # the sweeps run 0.4 s after each 5-minute mark: the gap is 14:05 -> 14:45, 40 minutes
    assert abs(g["start"] - (gap[0].timestamp() + 0.4)) < 1 and abs(g["end"] - (gap[1].timestamp() + 0.4)) < 1
    assert g["minutes"] == 40.0
    text = _validate(tmp_path)
    assert text.code == 1
    assert "gap 2026-03-10 14:05 -> 14:45 EDT (40 min, about 7 checks missed)" in text.out
    assert "FAIL (1 of 7 criteria failed)" in text.out


def test_missed_backup_fails(tmp_path):
    fill(tmp_path / "state.db", END, skip_backups=(datetime(2026, 3, 10).date(),)).close()
    res = _validate(tmp_path, "--json")
    assert res.code == 1, res.text
    crit = _by_key(res)
    assert not crit["backups"]["passed"]
    assert crit["backups"]["data"]["ok"] == 1
    assert any("no successful backup 2026-03-09 23:01 -> 2026-03-11 12:00 EDT (37.0 h)" in d for d in crit["backups"]["details"])
    # the backup job never ran at its slot either: the schedule criterion says which slot
    assert not crit["scheduled_jobs"]["passed"]
    assert crit["scheduled_jobs"]["details"] == ["backup 2026-03-10 (2026-03-10 23:00): `backup` did not run within 10 min"]
    assert set(json.loads(res.out)["failed"]) == {"backups", "scheduled_jobs"}


def test_unplanned_restart_and_hot_cpu_fail_planned_restart_does_not(tmp_path):
    fill(tmp_path / "state.db", END, restarts=[("scanner", datetime(2026, 3, 10, 10, 2, tzinfo=ET), 0),
                                              ("news", datetime(2026, 3, 10, 2, 0, tzinfo=ET), 1)], cpu=90).close()
    crit = _by_key(_validate(tmp_path, "--json"))
    assert crit["restarts"]["figure"] == "1 unplanned, 1 planned" and not crit["restarts"]["passed"]
    assert crit["restarts"]["details"][0].startswith("2026-03-10 10:02 scanner")
    assert not crit["resources"]["passed"] and crit["resources"]["data"]["cpu_max"] >= 70


def test_monitor_gap_and_critical_alert_fail(tmp_path):
    db = fill(tmp_path / "state.db", END, monitor_gap=(datetime(2026, 3, 10, 3, 0, tzinfo=ET), datetime(2026, 3, 10, 4, 0, tzinfo=ET)))
    db.execute("INSERT INTO alerts(created_at, severity, subject_key, subject, body, status) VALUES (?,?,?,?,?,?)",
               (datetime(2026, 3, 10, 9, 0, tzinfo=ET).timestamp(), "critical", "svc:trading", "trading down", "b", "sent"))
    db.close()
    res = _validate(tmp_path, "--json")
    crit = _by_key(res)
    assert set(json.loads(res.out)["failed"]) == {"monitor", "critical_errors"}
    assert "no monitor heartbeat 2026-03-10 02:5" in crit["monitor"]["details"][0]
    assert crit["critical_errors"]["details"] == ["2026-03-10 09:00 critical alert: trading down"]


def test_window_follows_now(tmp_path):
    """The same DB judged 3 hours later: the tail since the last sweep is an open gap."""
    fill(tmp_path / "state.db", END).close()
    cfg = ops_yaml(tmp_path, tmp_path / "state.db")
    res = run_cli("--now", (END + timedelta(hours=3)).isoformat(), "validate", "--json", config=cfg)
    crit = _by_key(res)
    assert res.code == 1
    assert crit["health_checks"]["details"][0].startswith("gap 2026-03-11 12:00 -> 15:00 EDT (3.0 h")


def test_schedule_follows_the_nyse_calendar(tmp_path):
    """Thanksgiving week 2026: closed Thursday, early close 13:00 Friday (no 13:00 scan)."""
    from catalyst_ops import config, validate

    cfg = config.load(ops_yaml(tmp_path, tmp_path / "s.db"))
    start = datetime(2026, 11, 25, 0, 0, tzinfo=ET).timestamp()
    end = datetime(2026, 11, 28, 0, 0, tzinfo=ET).timestamp()
    slots = [(job, datetime.fromtimestamp(at, ET).strftime("%m-%d %H:%M")) for job, _label, at in validate.expected_runs(cfg, start, end)]
    assert slots == [("market-open", "11-25 09:30"), ("scan", "11-25 11:00"), ("scan", "11-25 13:00"), ("market-close", "11-25 16:00"),
                     ("backup", "11-25 23:00"), ("backup", "11-26 23:00"),
                     ("market-open", "11-27 09:30"), ("scan", "11-27 11:00"), ("market-close", "11-27 13:00"),
                     ("backup", "11-27 23:00")]


@pytest.mark.parametrize("args,needle", [
    (("validate", "--hours", "0"), "--hours: expected more than 0"),
    (("validate", "--hours", "lots"), "expected a number of hours"),
])
def test_bad_arguments_one_line_exit_2(tmp_path, args, needle):
    res = run_cli(*args, config=ops_yaml(tmp_path, tmp_path / "state.db"))
    assert res.code == 2 and needle in res.err and "Traceback" not in res.err
    assert len(res.err.strip().splitlines()) <= 2


def test_bad_config_key_names_it(tmp_path):
    cfg = ops_yaml(tmp_path, tmp_path / "state.db", "validation: {job_names: {markt_open: x}, backup_time: '23:00'}")
    res = run_cli("--now", NOW, "validate", config=cfg)
    assert res.code == 2, res.text
    assert "validation.job_names.markt_open: unknown job kind" in res.err and "Traceback" not in res.err
    cfg = ops_yaml(tmp_path, tmp_path / "state.db", "validation: {backup_time: '11pm'}")
    res = run_cli("--now", NOW, "validate", config=cfg)
    assert res.code == 2 and "validation.backup_time: expected HH:MM" in res.err


def test_save_writes_report_and_record(tmp_path):
    fill(tmp_path / "state.db", END).close()
    cfg = ops_yaml(tmp_path, tmp_path / "state.db")
    res = run_cli("--now", NOW, "validate", "--save", config=cfg)
    assert res.code == 0, res.text
    assert (tmp_path / "log" / "reports" / "validation-2026-03-11.json").exists()
    import sqlite3

    row = sqlite3.connect(tmp_path / "state.db").execute("SELECT kind, summary FROM reports").fetchone()
    assert row[0] == "validation" and row[1].endswith("PASS")
