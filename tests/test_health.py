"""Health checks and the cron health job against the stand-in stack over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time

from conftest import run_cli


def _states(result_json: str) -> dict:
    return {s["service"]: s["state"] for s in json.loads(result_json)["services"]}


def test_all_healthy_exit_0(standin):
    res = standin.cli("status", "--json")
    assert res.code == 0, res.text
    states = _states(res.out)
    assert len(states) == 9 and set(states.values()) == {"healthy"}


def test_four_failures_reported_and_restarted_others_untouched(standin):
    standin.fault("scanner", "down")
    standin.fault("news", "hung")
    standin.fault("pattern", "500")
    standin.fault("trading", "unhealthy")
    standin.fault("technical", "degraded")
    pids_before = {r["service"]: r["pid"] for r in json.loads(standin.sandbox("status", "--json").out)}
    res = standin.cli("health", "--json")
    assert res.code == 1, res.text
    data = json.loads(res.out)
    states = {s["service"]: s["state"] for s in data["services"]}
    assert states == {"orchestration": "healthy", "scanner": "down", "pattern": "unhealthy", "technical": "degraded",
                      "risk-manager": "healthy", "trading": "unhealthy", "workflow": "healthy", "news": "timeout",
                      "reporting": "healthy"}
    restarted = {r["service"]: r["outcome"] for r in data["restarts"]}
    assert restarted == {"scanner": "recovered", "news": "recovered", "pattern": "recovered", "trading": "recovered"}
    pids_after = {r["service"]: r["pid"] for r in json.loads(standin.sandbox("status", "--json").out)}
    for svc in ("orchestration", "technical", "risk-manager", "workflow", "reporting"):
        assert pids_after[svc] == pids_before[svc], f"{svc} must not be restarted"
    for svc in ("news", "pattern", "trading"):
        assert pids_after[svc] != pids_before[svc], f"{svc} must be restarted"
    # recorded: the run, the sweep and the restarts
    db = sqlite3.connect(standin.state_db)
    run = db.execute("SELECT job, exit_code, status FROM job_runs WHERE job='health'").fetchone()
    assert run == ("health", 1, "failed")
    rows = dict(db.execute("SELECT service, outcome FROM restarts").fetchall())
    assert rows == restarted
    # the degraded one was reported, not restarted, and is still degraded
    after = standin.cli("status", "--json")
    assert _states(after.out)["technical"] == "degraded"
    assert after.code == 0


def test_restart_that_does_not_bring_service_back(standin):
    standin.append_config("")
    standin.fault("reporting", "unhealthy", "--sticky")
    text = standin.config.read_text().replace("restart_wait: 15", "restart_wait: 2")
    standin.config.write_text(text)
    res = standin.cli("health", "--json")
    assert res.code == 1
    restarts = {r["service"]: r for r in json.loads(res.out)["restarts"]}
    assert restarts["reporting"]["outcome"] == "still_down"
    assert "did not come back" in res.err


def test_a_service_that_dies_as_it_starts_is_started_once_more_in_the_same_run(standin):
    # the restart's first start crashes (before listening, as a bad migration would); the job sees the
    # process gone (runtime.commands.running), starts it again and gets it back, all in one run
    standin.fault("scanner", "crash-start", "--attempts", "1")
    _kill(standin, "scanner")  # a crash; the restart will meet the crash-start fault
    res = standin.cli("health", "--json")
    assert res.code == 1, res.text
    r = {x["service"]: x for x in json.loads(res.out)["restarts"]}["scanner"]
    assert r["outcome"] == "recovered", r
    assert "second start" in r["detail"] and "crashed at start" in r["detail"], r
    assert "exited as it started" in res.err
    assert standin.cli("status", "--json").code == 0
    db = sqlite3.connect(standin.state_db)
    assert db.execute("SELECT outcome FROM restarts WHERE service='scanner'").fetchall() == [("recovered",)]


def test_a_service_that_dies_at_every_start_is_reported_with_why_not_waited_for(standin):
    standin.config.write_text(standin.config.read_text().replace("restart_wait: 15", "restart_wait: 30"))
    standin.fault("scanner", "crash-start", "--attempts", "5")
    _kill(standin, "scanner")
    res = standin.cli("health", "--json")
    assert res.code == 1, res.text
    r = {x["service"]: x for x in json.loads(res.out)["restarts"]}["scanner"]
    # not a wait for a process that is gone: its exit is seen and said (before: "down: connection refused")
    assert r["outcome"] == "still_down", r
    assert "exited as it started, twice" in r["detail"] and "crashed at start" in r["detail"], r
    left = {x["service"]: x["fault"] for x in json.loads(standin.sandbox("status", "--json").out)}
    assert left["scanner"] == "crash-start"  # 5 - 2 starts: still armed


def test_running_says_whether_the_process_runs(standin):
    res = standin.sandbox("running", "news")
    assert res.code == 0 and "running" in res.out
    standin.fault("news", "down")
    res = run_cli("sandbox", "running", "news", "--rundir", standin.rundir)
    assert res.code == 1 and "exited" in res.out, res.text
    assert run_cli("sandbox", "running", "nosuch", "--rundir", standin.rundir).code == 2


def _kill(standin, service: str) -> None:
    pid = {x["service"]: x["pid"] for x in json.loads(standin.sandbox("status", "--json").out)}[service]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and run_cli("sandbox", "running", service, "--rundir", standin.rundir).code == 0:
        time.sleep(0.05)


def test_restart_storm_is_bounded(standin):
    standin.config.write_text(standin.config.read_text().replace("restart_wait: 15", "restart_wait: 1")
                              .replace("health:\n", "health:\n  max_restarts_per_hour: 2\n"))
    standin.fault("news", "500", "--sticky")
    outcomes = []
    for _ in range(3):
        res = standin.cli("health", "--json")
        outcomes.append(json.loads(res.out)["restarts"][0]["outcome"])
    assert outcomes == ["still_down", "still_down", "storm_limit"]


def test_sweep_with_one_hung_is_bounded_by_one_timeout(standin):
    standin.config.write_text(standin.config.read_text().replace("health:\n", "health:\n  timeout: 2\n"))
    standin.fault("news", "hung")
    started = time.monotonic()
    res = standin.cli("status", "--json")
    elapsed = time.monotonic() - started
    assert res.code == 1
    assert _states(res.out)["news"] == "timeout"
    assert elapsed < 2 + 1.5, elapsed  # one timeout plus margin and interpreter start, not nine in a row


def test_two_health_runs_at_once_one_does_the_work(standin):
    import subprocess
    import sys

    standin.fault("pattern", "hung")
    cmd = [sys.executable, "-m", "catalyst_ops", "--config", str(standin.config), "health"]
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=60) for p in (a, b)]
    codes = [a.returncode, b.returncode]
    skipped = [i for i, (o, e) in enumerate(outs) if "skipped" in o + e]
    assert len(skipped) == 1, outs
    worker = 1 - skipped[0]
    assert codes[worker] == 1 and codes[skipped[0]] == 0
    db = sqlite3.connect(standin.state_db)
    assert db.execute("SELECT COUNT(*) FROM restarts").fetchone()[0] == 1
    statuses = sorted(r[0] for r in db.execute("SELECT status FROM job_runs WHERE job='health'"))
    assert statuses == ["failed", "skipped"]


def test_healthy_word_without_database_is_degraded_not_restarted(standin):
    """scanner and news answer "healthy" with "database": "disconnected" when they have no pool: that is
    degraded (reported and alerted as a warning, not restarted), by the real profile's degraded_fields."""
    standin.fault("scanner", "db-disconnected")
    standin.fault("news", "db-disconnected")
    res = standin.cli("health", "--json")
    assert res.code == 0, res.text
    data = json.loads(res.out)
    by = {s["service"]: s for s in data["services"]}
    assert by["scanner"]["state"] == by["news"]["state"] == "degraded"
    assert "database=disconnected" in by["scanner"]["detail"]
    assert data["restarts"] == []
    alerts = sqlite3.connect(standin.state_db).execute(
        "SELECT severity, subject FROM alerts WHERE subject NOT LIKE 'WATCHDOG%'").fetchall()
    assert alerts == [("warning", "DEGRADED: 2 services: scanner, news")]
    # the rule is the profile's: without it the same answer is healthy
    standin.append_config("profile_overrides:\n  health:\n    degraded_fields: {}\n")
    assert _states(standin.cli("status", "--json").out)["scanner"] == "healthy"


def test_a_stand_in_listens_as_soon_as_it_is_bound_without_a_name_lookup(monkeypatch):
    # http.server's own server_bind asks the resolver for the bind address's name between bind() and
    # listen(); a restarted service then refuses connections for as long as a slow resolver takes
    import socket

    from catalyst_ops.sandbox.server import _Server

    def no_resolver(*a, **k):
        raise AssertionError("the stand-in asked the resolver while binding")

    monkeypatch.setattr(socket, "getfqdn", no_resolver)
    monkeypatch.setattr(socket, "gethostbyaddr", no_resolver)
    from http.server import BaseHTTPRequestHandler

    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        with socket.create_connection(server.server_address, timeout=2):
            pass
        assert server.server_port == server.server_address[1]
    finally:
        server.server_close()


def _service_alerts(standin) -> list[str]:
    db = sqlite3.connect(standin.state_db)
    return [r[0] for r in db.execute("SELECT subject FROM alerts WHERE subject_key LIKE 'services:%' ORDER BY id")]


def test_a_planned_restart_is_not_paged_but_a_service_still_down_after_it_is(standin, tmp_path):
    # the stack restart holds a window in the state DB for as long as it runs; the probe (the
    # runtime's restart command) sees it open, and it is closed afterwards
    probe = tmp_path / "probe.py"
    seen = tmp_path / "seen"
    probe.write_text("import sqlite3, sys, time\n"
                     f"row = sqlite3.connect({str(standin.state_db)!r}).execute("
                     "\"SELECT value FROM meta WHERE key='planned_restart_until'\").fetchone()\n"
                     f"open({str(seen)!r}, 'w').write(str(float(row[0]) - time.time()) if row else 'none')\n")
    text = standin.config.read_text()
    standin.config.write_text(text.replace("    restart_service:", f"    restart: {sys.executable} {probe}\n    restart_service:", 1))
    res = standin.cli("restart")
    assert res.code == 0, res.text
    assert float(seen.read_text()) > 0, seen.read_text()  # open while the runtime restarted the stack
    db = sqlite3.connect(standin.state_db)
    assert db.execute("SELECT value FROM meta WHERE key='planned_restart_until'").fetchone() is None
    # inside a window a service seen down is not alerted (the monitor's sweep during the restart)
    from catalyst_ops.alerts.policy import PLANNED_KEY

    db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (PLANNED_KEY, repr(time.time() + 600)))
    db.commit()
    standin.fault("scanner", "down")
    assert standin.cli("monitor", "--once").code == 1
    assert _service_alerts(standin) == []
    # the window closed (or run out) and the service is still down: paged as usual
    db.execute("DELETE FROM meta WHERE key=?", (PLANNED_KEY,))
    db.commit()
    standin.cli("monitor", "--once")
    assert _service_alerts(standin) == ["FAILING: scanner"]


def test_the_health_job_does_not_restart_inside_a_planned_restart(standin):
    from catalyst_ops.alerts.policy import PLANNED_KEY

    assert standin.cli("health").code == 0  # the state DB exists
    db = sqlite3.connect(standin.state_db)
    db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (PLANNED_KEY, repr(time.time() + 600)))
    db.commit()
    standin.fault("scanner", "down")
    res = standin.cli("health", "--json")
    assert res.code == 1 and json.loads(res.out)["restarts"] == [], res.text
    assert "planned stack restart is in progress" in res.err
    db.execute("DELETE FROM meta")
    db.commit()
    res = standin.cli("health", "--json")
    assert [r["outcome"] for r in json.loads(res.out)["restarts"]] == ["recovered"], res.text
