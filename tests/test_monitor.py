"""The monitor daemon as a real process: signals, SIGKILL mid-sweep, dead-man's switch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtpserver import SMTPServer  # noqa: E402
from test_alerts import db, wire  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def smtp(tmp_path):
    server = SMTPServer(tmp_path / "smtp").start()
    yield server
    server.stop()


def start_monitor(standin, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("CATALYST_OPS_CONFIG", "CATALYST_OPS_NOW")}
    fh = open(log_path, "ab")
    p = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(standin.config), "monitor"],
                         stdout=fh, stderr=subprocess.PIPE, env=env, cwd=REPO)
    fh.close()
    return p


def wait_until(pred, timeout: float = 15.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def sweeps(standin) -> int:
    try:
        return db(standin).execute("SELECT COUNT(*) FROM health_sweeps WHERE source='monitor'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigterm_exits_within_a_second_even_mid_sweep(standin, tmp_path):
    standin.config.write_text(standin.config.read_text().replace("health:\n", "health:\n  timeout: 5\n"))
    standin.append_config("alerts:\n  interval: 0.5\n")
    standin.fault("news", "hung")
    log_path = tmp_path / "monitor.log"
    p = start_monitor(standin, log_path)
    try:
        wait_until(lambda: sweeps(standin) >= 1)  # the first sweep took ~5 s (news is hung)
        time.sleep(1.0)  # now inside the second sweep, waiting on news
        started = time.monotonic()
        p.send_signal(signal.SIGTERM)
        code = p.wait(5)
        elapsed = time.monotonic() - started
    finally:
        if p.poll() is None:
            p.kill()
    assert code == 0, p.stderr.read()
    assert elapsed < 1.0, elapsed
    out = log_path.read_text()
    # logs go to stdout (journald), one line per event
    assert "monitor started" in out and "received SIGTERM: stopping" in out
    assert "news" in out and "failed: news" in out


def test_sigkill_mid_sweep_then_restart_continues_counts_no_duplicate(standin, smtp, tmp_path):
    standin.config.write_text(standin.config.read_text().replace("health:\n", "health:\n  timeout: 2\n"))
    wire(standin, smtp, alerts="  interval: 0.5\n  repeat_every: 1000\n  cooldown: 3600\n")
    standin.fault("scanner", "500", "--sticky")
    log_path = tmp_path / "monitor.log"
    p = start_monitor(standin, log_path)
    try:
        msgs = smtp.wait_for(1, timeout=15)
        assert [m.subject for m in msgs] == ["[Catalyst CRITICAL] FAILING: scanner"]
        wait_until(lambda: sweeps(standin) >= 3)
        standin.fault("news", "hung")  # every sweep now waits 2 s on news
        n = sweeps(standin)
        wait_until(lambda: sweeps(standin) >= n + 1)  # a sweep that began before the hang finished...
        time.sleep(1.0)  # ...and we are 1 s into one that waits on news
        count_before = db(standin).execute(
            "SELECT consecutive_failures FROM service_state WHERE service='scanner'").fetchone()[0]
        sweeps_before = sweeps(standin)
        killed_at = time.time()
        p.send_signal(signal.SIGKILL)
        p.wait(5)
        last_end = db(standin).execute("SELECT MAX(ended_at) FROM health_sweeps").fetchone()[0]
        # sweeps follow each other without a pause (each takes 2 s > interval): less than 2 s after the
        # last recorded one ended, the next was still waiting on news when the process died
        assert killed_at - last_end < 1.9, killed_at - last_end
        assert sweeps(standin) == sweeps_before
        p = start_monitor(standin, log_path)
        msgs = smtp.wait_for(2, timeout=20)
        wait_until(lambda: sweeps(standin) >= sweeps_before + 3, timeout=30)
        time.sleep(0.5)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(5)
    subjects = [m.subject for m in smtp.messages]
    # scanner: still one alert (the restart did not forget it); news: its first failure, once
    assert subjects == ["[Catalyst CRITICAL] FAILING: scanner", "[Catalyst CRITICAL] FAILING: news"], subjects
    count_after = db(standin).execute("SELECT consecutive_failures FROM service_state WHERE service='scanner'").fetchone()[0]
    assert count_after >= count_before + 3  # the failure count continued, it did not restart at 1
    row = db(standin).execute("SELECT alerted_state, count_at_alert FROM alert_state WHERE subject_key='service:scanner'").fetchone()
    assert row == ("failed", 1)  # the first alert is still the last one: cooldown intact
    assert db(standin).execute("SELECT COUNT(*), SUM(status='sent') FROM alerts").fetchone() == (2, 2)


def test_a_second_monitor_on_the_same_state_refuses(standin, tmp_path):
    standin.append_config("alerts:\n  interval: 0.5\n")
    p = start_monitor(standin, tmp_path / "m1.log")
    try:
        wait_until(lambda: sweeps(standin) >= 1)
        res = standin.cli("monitor")
        assert res.code == 1 and "holds the lock" in res.err
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(5)


# ------------------------------------------------------------------ dead-man's switch

TUESDAY_0950_ET = "2025-07-08T09:50:00-04:00"  # an NYSE session
HOLIDAY_0950_ET = "2025-07-04T09:50:00-04:00"  # Independence Day: no session


def _seed(standin, sql: str, params=()):
    con = db(standin)
    con.execute(sql, params)
    con.commit()


def _outbox(standin) -> list[str]:
    return [r[0] for r in db(standin).execute("SELECT subject FROM alerts ORDER BY id")]


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_deadman_market_open_missing_on_a_session_day_only(standin):
    standin.cli("--now", "2025-07-03T08:00:00-04:00", "monitor", "--once")  # the monitor's first start
    standin.cli("--now", HOLIDAY_0950_ET, "monitor", "--once")
    assert not any("market open" in s for s in _outbox(standin))
    standin.cli("--now", "2025-07-08T09:40:00-04:00", "monitor", "--once")  # before the deadline
    assert not any("market open" in s for s in _outbox(standin))
    standin.cli("--now", TUESDAY_0950_ET, "monitor", "--once")
    assert "DEAD-MAN: market open not run on 2025-07-08" in _outbox(standin)
    standin.cli("--now", "2025-07-08T09:55:00-04:00", "monitor", "--once")  # once, not every sweep
    assert _outbox(standin).count("DEAD-MAN: market open not run on 2025-07-08") == 1
    # the next session: market open ran at 09:30 -> nothing
    _seed(standin, "INSERT INTO job_runs(job, started_at, ended_at, exit_code, status, session_date) VALUES"
          " ('market-open', ?, ?, 0, 'ok', '2025-07-09')", (_ts("2025-07-09T09:30:01-04:00"), _ts("2025-07-09T09:31:00-04:00")))
    standin.cli("--now", "2025-07-09T09:50:00-04:00", "monitor", "--once")
    assert not any("2025-07-09" in s for s in _outbox(standin))


def test_deadman_health_job_and_backup_stale_then_clear(standin):
    standin.cli("--now", "2025-07-08T00:00:00-04:00", "monitor", "--once")
    _seed(standin, "INSERT INTO job_runs(job, started_at, ended_at, exit_code, status) VALUES ('health', ?, ?, 0, 'ok')",
          (_ts("2025-07-08T10:00:00-04:00"), _ts("2025-07-08T10:00:05-04:00")))
    _seed(standin, "INSERT INTO backups(path, created_at, status) VALUES ('/b/1', ?, 'ok')",
          (_ts("2025-07-07T23:00:00-04:00"),))
    standin.cli("--now", "2025-07-08T10:10:00-04:00", "monitor", "--once")
    assert not any(s.startswith("DEAD-MAN") for s in _outbox(standin) if "market" not in s)
    standin.cli("--now", "2025-07-08T10:16:00-04:00", "monitor", "--once")  # 16 min without a health run
    assert "DEAD-MAN: the health job has stopped running" in _outbox(standin)
    body = db(standin).execute("SELECT body FROM alerts WHERE subject LIKE '%health job%'").fetchone()[0]
    assert "16 min" in body
    _seed(standin, "INSERT INTO job_runs(job, started_at, ended_at, exit_code, status) VALUES ('health', ?, ?, 0, 'ok')",
          (_ts("2025-07-08T10:17:00-04:00"), _ts("2025-07-08T10:17:05-04:00")))
    standin.cli("--now", "2025-07-08T10:18:00-04:00", "monitor", "--once")
    assert "CLEARED: the health job runs again" in _outbox(standin)
    # 26 h after the last good backup (23:00 the day before) -> 2025-07-09 01:00
    assert "DEAD-MAN: no backup" not in _outbox(standin)
    _seed(standin, "INSERT INTO job_runs(job, started_at, ended_at, exit_code, status) VALUES ('health', ?, ?, 0, 'ok')",
          (_ts("2025-07-09T01:05:00-04:00"), _ts("2025-07-09T01:05:05-04:00")))
    standin.cli("--now", "2025-07-09T01:06:00-04:00", "monitor", "--once")
    assert _outbox(standin).count("DEAD-MAN: no backup") == 1


def test_monitor_once_json_reports_the_pass(standin):
    standin.fault("pattern", "500")
    res = standin.cli("monitor", "--once", "--json")
    assert res.code == 1
    data = json.loads(res.out)
    assert data["failed"] == ["pattern"] and len(data["alerts_raised"]) == 1
    # no SMTP configured: the alert waits in the outbox, nothing lost
    assert db(standin).execute("SELECT status FROM alerts").fetchall() == [("pending",)]
    assert db(standin).execute("SELECT name FROM heartbeats").fetchall() == [("monitor",)]


def test_watchdog_notifications_come_from_the_loop_and_stop_when_it_hangs(standin, tmp_path):
    """Under systemd (a real datagram socket as $NOTIFY_SOCKET, $WATCHDOG_USEC set): READY=1, then
    WATCHDOG=1 while the loop runs; when a pass hangs (another process holds the state DB's write
    lock) the beat stops although the process and its main thread live on; then it resumes."""
    import socket

    standin.append_config("alerts:\n  interval: 0.3\n")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)

    def datagrams(seconds: float) -> list[str]:
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
        return got

    env = {k: v for k, v in os.environ.items() if k not in ("CATALYST_OPS_CONFIG", "CATALYST_OPS_NOW")}
    env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")  # 1 s: a beat at least every 0.3 s
    log_path = tmp_path / "monitor.log"
    p = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(standin.config), "monitor"],
                         stdout=open(log_path, "ab"), stderr=subprocess.PIPE, env=env, cwd=REPO)
    blocker = None
    try:
        first = datagrams(0.1)
        deadline = time.monotonic() + 20
        while not first and time.monotonic() < deadline:
            first = datagrams(0.5)
        assert first and first[0].splitlines()[0] == "READY=1", first
        wait_until(lambda: sweeps(standin) >= 2)
        beats = datagrams(2.0)
        assert sum("WATCHDOG=1" in d for d in beats) >= 4, beats
        assert any(d.startswith("WATCHDOG=1\nSTATUS=sweep ") for d in beats), beats
        # hang the loop: hold the write lock, so its next pass waits on recording the sweep
        blocker = sqlite3.connect(standin.state_db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        datagrams(1.5)  # beats of the wait before that pass, and the pass reaching the lock
        silent = datagrams(3.0)
        assert p.poll() is None
        assert not any("WATCHDOG=1" in d for d in silent), silent
        blocker.execute("ROLLBACK")
        blocker.close()
        blocker = None
        resumed = datagrams(3.0)
        assert sum("WATCHDOG=1" in d for d in resumed) >= 2, resumed
    finally:
        if blocker is not None:
            blocker.close()
        p.send_signal(signal.SIGTERM)
        code = p.wait(10)
        sock.close()
    assert code == 0, p.stderr.read()


def test_sdnotify_is_silent_outside_systemd(monkeypatch):
    from catalyst_ops import sdnotify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.watchdog_seconds() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_seconds() == 5.0
