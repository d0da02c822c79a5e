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
    ups = crit["service_uptime"]["data"]["services"]
    assert len(ups) == 9 and all(u["uptime_percent"] == 100.0 and not u["gaps"] for u in ups)
    assert crit["service_uptime"]["figure"] == "9 of 9 services up throughout"
    assert crit["email_alerts"]["data"]["delivered"] == 6
    assert crit["db_connections"]["data"]["peak_percent"] == 12.0 and crit["db_connections"]["data"]["hours_covered"] == 48
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
    assert "FAIL (1 of 10 criteria failed)" in text.out


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
    assert res.code == 2 and "validation.backup_time: expected a time HH:MM" in res.err


def test_save_writes_report_and_record(tmp_path):
    fill(tmp_path / "state.db", END).close()
    cfg = ops_yaml(tmp_path, tmp_path / "state.db")
    res = run_cli("--now", NOW, "validate", "--save", config=cfg)
    assert res.code == 0, res.text
    assert (tmp_path / "log" / "reports" / "validation-2026-03-11.json").exists()
    import sqlite3

    row = sqlite3.connect(tmp_path / "state.db").execute("SELECT kind, summary FROM reports").fetchone()
    assert row[0] == "validation" and row[1].endswith("PASS")


# ---------------------------------------------------------------------- services, email, database


def test_a_service_down_for_35_minutes_fails_uptime_with_the_gap(tmp_path):
    down = (datetime(2026, 3, 10, 10, 0, tzinfo=ET), datetime(2026, 3, 10, 10, 35, tzinfo=ET))
    fill(tmp_path / "state.db", END, failures=[("scanner", *down, "down"), ("news", *down, "degraded")]).close()
    res = _validate(tmp_path, "--json")
    assert res.code == 1, res.text
    assert json.loads(res.out)["failed"] == ["service_uptime"]  # the sweeps themselves all ran
    crit = _by_key(res)["service_uptime"]
    svc = {s["service"]: s for s in crit["data"]["services"]}
    scanner = svc["scanner"]
    assert len(scanner["gaps"]) == 1 and scanner["gaps"][0]["minutes"] == 35.0 and scanner["gaps"][0]["states"] == ["down"]
    assert abs(scanner["down_seconds"] - 35 * 60) < 2
    assert scanner["uptime_percent"] == round(100 * (1 - 35 / (48 * 60)), 2)
    # degraded answers: up (reported, not a gap)
    assert svc["news"]["uptime_percent"] == 100.0 and not svc["news"]["gaps"] and svc["news"]["degraded_seconds"] > 0
    assert crit["figure"].startswith("8 of 9 services up throughout; scanner 98.78%")
    text = _validate(tmp_path)
    assert "scanner down 2026-03-10 10:00 -> 10:35 EDT (35 min, down)" in text.out


def test_no_delivered_alert_fails_email_and_an_alert_test_fixes_it(tmp_path):
    """Queued is not delivered; the operator's `alert test`, accepted by a real SMTP server, is."""
    from smtpserver import SMTPServer

    db = fill(tmp_path / "state.db", END)
    db.execute("UPDATE alerts SET status='pending', sent_at=NULL")
    db.close()
    res = _validate(tmp_path, "--json")
    crit = _by_key(res)["email_alerts"]
    assert res.code == 1 and json.loads(res.out)["failed"] == ["email_alerts"]
    assert crit["data"]["delivered"] == 0 and crit["data"]["late_or_undelivered"] == 6
    assert crit["details"][0].startswith("no alert delivered in the window")

    import sqlite3

    sqlite3.connect(tmp_path / "state.db").execute("DELETE FROM alerts").connection.commit()
    server = SMTPServer(tmp_path / "smtp").start()
    try:
        (tmp_path / ".env").write_text(server.env())
        cfg = ops_yaml(tmp_path, tmp_path / "state.db", f"alerts: {{ca_file: {server.cert}, smtp_timeout: 5}}")
        test = run_cli("--now", (END - timedelta(hours=5)).isoformat(), "alert", "test", "--severity", "critical", config=cfg)
        assert test.code == 0, test.text
        assert server.wait_for(1, timeout=10)
    finally:
        server.stop()
    res = run_cli("--now", NOW, "validate", "--json", config=cfg)
    crit = _by_key(res)
    assert crit["email_alerts"]["passed"] and crit["email_alerts"]["data"]["delivered"] == 1, crit["email_alerts"]
    # routed as critical, but an exercise: never a critical error
    assert crit["critical_errors"]["passed"], crit["critical_errors"]
    assert res.code == 0, res.text


def test_an_alert_waiting_an_hour_fails_email(tmp_path):
    db = fill(tmp_path / "state.db", END)
    at = datetime(2026, 3, 10, 9, 0, tzinfo=ET).timestamp()
    db.execute("INSERT INTO alerts(created_at, severity, subject_key, subject, body, status, attempts, sent_at)"
               " VALUES (?,?,?,?,?,?,?,?)", (at, "warning", "svc:news", "news degraded", "b", "sent", 5, at + 3700))
    db.close()
    crit = _by_key(_validate(tmp_path, "--json"))["email_alerts"]
    assert not crit["passed"]
    assert crit["details"] == ["2026-03-10 09:00 alert #7 delivered only after 62 min: news degraded"]


def test_connections_near_max_fail_the_database_criterion(tmp_path):
    fill(tmp_path / "state.db", END, db_connections=85).close()
    res = _validate(tmp_path, "--json")
    assert res.code == 1 and json.loads(res.out)["failed"] == ["db_connections"]
    crit = _by_key(res)["db_connections"]
    assert crit["data"]["peak_percent"] == 85.0 and crit["details"][0].endswith("85 of 100 connections (85%)")
    # the share is configurable
    ok = _validate(tmp_path, "--json", config_extra="validation: {db_connections_limit_percent: 90}")
    assert _by_key(ok)["db_connections"]["passed"] and ok.code == 0


def test_database_samples_from_a_real_postgresql(pgdb):
    """sample-resources counts the client connections of the trading database against max_connections; the
    criterion fails when the peak reaches the share, and when the server refuses a connection for want of a slot."""
    import psycopg2

    t0 = datetime(2026, 3, 11, 10, 0, tzinfo=ET)
    res = run_cli("--now", t0.isoformat(), "sample-resources", "--json", config=pgdb.config)
    assert res.code == 0, res.text
    first = json.loads(res.out)["database"]
    assert first["max_connections"] == 40 and first["reserved"] == 3 and 1 <= first["connections"] < 8, first
    # another user's session, hidden from the (non-superuser) sampler's role, is still counted
    admin = pgdb.cluster.connect("postgres")
    try:
        seen = json.loads(run_cli("sample-resources", "--json", "--dry-run", config=pgdb.config).out)["database"]
        assert seen["connections"] == first["connections"] + 1, (first, seen)
    finally:
        admin.close()

    def judge(at):
        r = run_cli("--now", at.isoformat(), "validate", "--hours", "1", "--json", config=pgdb.config)
        return _by_key(r)["db_connections"]

    assert judge(t0 + timedelta(minutes=30))["passed"]
    held = []
    try:
        while len(held) < 34 - first["connections"]:
            held.append(psycopg2.connect(pgdb.url))
        busy = run_cli("--now", (t0 + timedelta(minutes=10)).isoformat(), "sample-resources", "--json", config=pgdb.config)
        got = json.loads(busy.out)["database"]
        assert got["connections"] >= 34 and got["share"] >= 0.85, got
        crit = judge(t0 + timedelta(minutes=30))
        assert not crit["passed"] and crit["data"]["peak_percent"] >= 85
        assert any(f"{got['connections']} of 40 connections" in d for d in crit["details"])
        # every slot an application may use is taken: the server refuses the sampler itself
        try:
            while True:
                held.append(psycopg2.connect(pgdb.url))
        except psycopg2.OperationalError:
            pass
        full = run_cli("--now", (t0 + timedelta(minutes=20)).isoformat(), "sample-resources", "--json", config=pgdb.config)
        assert full.code == 0, full.text
        got = json.loads(full.out)["database"]
        assert got["exhausted"] and got["share"] == 1.0 and "slots are reserved" in got["error"]
        crit = judge(t0 + timedelta(minutes=30))
        assert crit["data"]["exhausted"] == 1 and crit["data"]["peak_percent"] == 100.0
        assert any("EXHAUSTED" in d for d in crit["details"])
    finally:
        for c in held:
            c.close()
    # a database that does not answer: recorded as unavailable, and the criterion cannot pass on it
    pgdb.write_config(url=pgdb.url.replace(f":{pgdb.cluster.port}/", ":1/"))
    later = t0 + timedelta(hours=3)
    res = run_cli("--now", later.isoformat(), "sample-resources", "--json", config=pgdb.config)
    assert res.code == 0 and "cannot connect" in json.loads(res.out)["database"]["error"]
    crit = judge(later + timedelta(minutes=5))
    assert not crit["passed"] and crit["figure"].startswith("1 samples, all unavailable: cannot connect")
