"""market-open, scan and market-close end to end: the CLI as a process, the stand-in stack over
real HTTP (both contract profiles), the clock set with --now, outcomes read from the state DB."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

TUESDAY_OPEN = "2026-11-24T09:30:00-05:00"


def starts(standin) -> list[dict]:
    path = standin.rundir / "workflow-starts.json"
    return json.loads(path.read_text()) if path.exists() else []


def db(standin) -> sqlite3.Connection:
    conn = sqlite3.connect(standin.state_db)
    conn.row_factory = sqlite3.Row
    return conn


def last_run(standin, job: str) -> sqlite3.Row:
    return db(standin).execute("SELECT * FROM job_runs WHERE job=? ORDER BY id DESC LIMIT 1", (job,)).fetchone()


def action(standin, session_date: str, kind: str) -> sqlite3.Row | None:
    return db(standin).execute("SELECT * FROM market_actions WHERE session_date=? AND kind=?",
                               (session_date, kind)).fetchone()


def reporting_requests(standin) -> list[dict]:
    path = standin.rundir / "reporting-requests.json"
    return json.loads(path.read_text()) if path.exists() else []


def alerts(standin) -> list[sqlite3.Row]:
    return db(standin).execute("SELECT * FROM alerts ORDER BY id").fetchall()


def fast(standin) -> None:
    standin.config.write_text(standin.config.read_text().replace("poll_interval: 0.2", "poll_interval: 0.05")
                              .replace("deadline: 60", "deadline: 20"))


@pytest.fixture(params=["real", "plan"])
def stack(request, standin_factory):
    s = standin_factory(profile=request.param, stage_seconds=0.1)
    fast(s)
    s.profile = request.param
    return s


# ------------------------------------------------------------------ market open, both profiles


def test_open_cycle_completes(stack):
    res = stack.cli("--now", TUESDAY_OPEN, "market-open", "--json")
    assert res.code == 0, res.text
    out = json.loads(res.out)
    assert out["outcome"] == "completed" and out["session_date"] == "2026-11-24"
    [start] = starts(stack)
    assert out["cycle_id"] == start["cycle_id"]
    if stack.profile == "real":
        assert start["body"] == {"mode": "normal", "max_positions": 5, "scan_frequency": 300, "risk_level": 0.5}
        assert out["stages"][0] == "scanning"  # the global status was walked through its stages
    else:
        assert start["body"] == {"mode": "normal", "max_positions": 5, "risk_per_trade": 0.01}
    run = last_run(stack, "market-open")
    assert (run["status"], run["exit_code"], run["session_date"]) == ("ok", 0, "2026-11-24")
    assert action(stack, "2026-11-24", "market-open")["outcome"] == "completed"
    assert alerts(stack) == []


def test_open_cycle_failed_is_exit_1_and_critical(stack):
    stack.fault("workflow", "cycle-failed")
    res = stack.cli("--now", TUESDAY_OPEN, "market-open")
    assert res.code == 1, res.text
    assert "FAILED" in res.out
    assert action(stack, "2026-11-24", "market-open")["outcome"] == "failed"
    run = last_run(stack, "market-open")
    assert (run["status"], run["exit_code"]) == ("failed", 1)
    [alert] = alerts(stack)
    assert alert["severity"] == "critical" and "market-open" in alert["subject"]


def test_open_cycle_that_never_finishes_is_bounded(stack):
    stack.fault("workflow", "cycle-hang")
    t0 = time.monotonic()
    res = stack.cli("--now", TUESDAY_OPEN, "market-open", "--deadline", "1.5", "--json")
    elapsed = time.monotonic() - t0
    assert res.code == 1, res.text
    assert json.loads(res.out)["outcome"] == "timeout"
    assert elapsed < 1.5 + 5, elapsed  # the deadline plus interpreter start, not the 20 s default
    assert action(stack, "2026-11-24", "market-open")["outcome"] == "timeout"
    assert [a["severity"] for a in alerts(stack)] == ["critical"]


def test_open_409_recorded_not_retried(stack):
    stack.fault("workflow", "cycle-hang")
    req = urllib.request.Request(f"http://127.0.0.1:{stack.port('workflow')}/api/v1/workflow/start", method="POST",
                                 data=b'{"mode": "normal"}', headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()  # someone else's cycle, still running
    res = stack.cli("--now", TUESDAY_OPEN, "market-open", "--json")
    assert res.code == 1, res.text
    out = json.loads(res.out)
    assert out["outcome"] == "already_running" and out["http_status"] == 409
    assert len(starts(stack)) == 1
    # fired again: not retried blindly
    again = stack.cli("--now", "2026-11-24T09:31:00-05:00", "market-open")
    assert again.code == 0 and "already acted" in again.out
    assert len(starts(stack)) == 1
    assert action(stack, "2026-11-24", "market-open")["outcome"] == "already_running"


def test_open_workflow_service_down_is_exit_3(stack):
    stack.fault("workflow", "down")
    res = stack.cli("--now", TUESDAY_OPEN, "market-open")
    assert res.code == 3, res.text
    assert "unreachable" in res.text
    run = last_run(stack, "market-open")
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    assert action(stack, "2026-11-24", "market-open")["outcome"] == "down"
    assert [a["severity"] for a in alerts(stack)] == ["critical"]
    # nothing was started, so once the service is back a re-run in the window may act
    stack.sandbox("restart", "workflow")
    res = stack.cli("--now", "2026-11-24T09:35:00-05:00", "market-open")
    assert res.code == 0, res.text
    assert len(starts(stack)) == 1


def test_open_start_answered_after_the_timeout_is_unknown_and_never_started_twice(real):
    """The service took the start but answered after the client's timeout: a cycle may be running.
    Recorded `unknown` (not `down`), and the re-run asks the workflow's status before starting again:
    it finds the cycle and follows it instead of starting a second one."""
    real.config.write_text(real.config.read_text().replace("poll_interval: 0.05", "poll_interval: 0.05\n  start_timeout: 1"))
    real.fault("workflow", "start-slow", "--seconds", "3")
    res = real.cli("--now", TUESDAY_OPEN, "market-open", "--json")
    assert res.code == 3, res.text
    out = json.loads(res.out)
    assert out["outcome"] == "unknown" and "did not answer the start in time" in out["message"], out
    assert action(real, "2026-11-24", "market-open")["outcome"] == "unknown"
    assert [a["severity"] for a in alerts(real)] == ["critical"]
    time.sleep(2.5)  # the slow answer has gone out by now
    assert len(starts(real)) == 1  # the start was acted on
    real.fault("workflow", "clear")
    res = real.cli("--now", "2026-11-24T09:35:00-05:00", "market-open", "--json")
    assert res.code == 0, res.text
    out = json.loads(res.out)
    assert out["outcome"] == "completed" and "unanswered start" in out["message"], out
    assert len(starts(real)) == 1  # not a second cycle
    assert action(real, "2026-11-24", "market-open")["outcome"] == "completed"


def test_unknown_start_that_began_nothing_is_started_again(real):
    """The re-run after `unknown` finds the workflow as it was before that start (idle, nothing
    began): it starts."""
    status = json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{real.port('workflow')}/api/v1/workflow/status", timeout=5).read())
    assert real.cli("alert", "list").code == 0  # the state DB and its tables
    conn = db(real)
    with conn:
        conn.execute("INSERT INTO market_actions(session_date, kind, acted_at, outcome, detail) VALUES (?,?,?,?,?)",
                     ("2026-11-24", "market-open", time.time(), "unknown", json.dumps({"baseline": status})))
    res = real.cli("--now", "2026-11-24T09:35:00-05:00", "market-open", "--json")
    assert res.code == 0, res.text
    assert len(starts(real)) == 1 and json.loads(res.out)["outcome"] == "completed"


# ------------------------------------------------------------------ at most once


def test_fired_twice_at_once_starts_one_workflow(standin_factory):
    s = standin_factory(stage_seconds=0.1)
    fast(s)
    cmd = [sys.executable, "-m", "catalyst_ops", "--config", str(s.config), "--now", TUESDAY_OPEN, "market-open"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 0], outs
    assert len(starts(s)) == 1, outs
    statuses = sorted(r[0] for r in db(s).execute("SELECT status FROM job_runs WHERE job='market-open'"))
    assert statuses == ["ok", "skipped"]
    # and a third firing later in the window
    res = s.cli("--now", "2026-11-24T09:40:00-05:00", "market-open")
    assert res.code == 0 and "already acted" in res.out
    assert len(starts(s)) == 1


# ------------------------------------------------------------------ the calendar, end to end


@pytest.fixture
def real(standin_factory):
    s = standin_factory(stage_seconds=0.1)
    fast(s)
    return s


def use_db(standin, pgdb) -> None:
    """Point the stand-in's .env at a real PostgreSQL database (the close reads it)."""
    from catalyst_ops import envfile

    envfile.update(standin.env_file, {"DATABASE_URL": pgdb.url})


@pytest.fixture
def real_db(real, pgdb):
    use_db(real, pgdb)
    return real


@pytest.mark.parametrize("when,why", [
    ("2026-11-26T09:30:00-05:00", "Thanksgiving"),
    ("2026-11-28T09:30:00-05:00", "Saturday"),
    ("2022-01-01T09:30:00-05:00", "Saturday"),  # New Year's Day on a Saturday
    ("2023-01-02T09:30:00-05:00", "New Year"),  # ... on a Sunday, observed Monday
    ("2026-03-08T09:30:00-04:00", "Sunday"),  # DST starts
])
def test_no_session_records_a_skip(real, when, why):
    for job in (("market-open",), ("scan", "--slot", "11:00"), ("market-close",)):
        res = real.cli("--now", when, *job)
        assert res.code == 0, res.text
        assert why in res.out
        run = last_run(real, job[0])
        assert run["status"] == "skipped" and run["exit_code"] == 0
    assert starts(real) == []
    assert db(real).execute("SELECT COUNT(*) FROM market_actions").fetchone()[0] == 0


def test_dst_monday_acts_at_0930_edt_not_an_hour_off(real):
    # a host still on hand-converted EST times fires at 10:30 EDT: skipped, and alerted as a misfire
    res = real.cli("--now", "2026-03-09T09:30:00-05:00", "market-open")
    assert res.code == 0 and "too late" in res.out
    assert starts(real) == []
    assert [a["subject_key"] for a in alerts(real)] == ["market:market-open:misfire"]
    res = real.cli("--now", "2026-03-09T09:30:00-04:00", "market-open")
    assert res.code == 0, res.text
    assert len(starts(real)) == 1
    assert last_run(real, "market-open")["session_date"] == "2026-03-09"


def test_early_close_day(real_db):
    """The day after Thanksgiving: open and mid-morning act, the lunch scan is skipped, the close acts at 13:00."""
    real = real_db
    day = "2026-11-27"
    assert real.cli("--now", f"{day}T09:30:00-05:00", "market-open").code == 0
    assert real.cli("--now", f"{day}T11:00:00-05:00", "scan", "--slot", "11:00").code == 0
    assert len(starts(real)) == 2
    lunch = real.cli("--now", f"{day}T13:00:00-05:00", "scan", "--slot", "13:00")
    assert lunch.code == 0 and "early close" in lunch.out
    assert last_run(real, "scan")["status"] == "skipped"
    assert len(starts(real)) == 2
    early = real.cli("--now", f"{day}T12:59:00-05:00", "market-close")
    assert early.code == 0 and "too early" in early.out
    close = real.cli("--now", f"{day}T13:00:00-05:00", "market-close", "--json")
    assert close.code == 0, close.text
    out = json.loads(close.out)
    assert out["outcome"] == "reported"
    report = json.loads(open(out["path"]).read())
    assert report["session_date"] == day and report["session"]["early_close"] is True
    assert report["summary"]["trades"] == 0  # no trades that day: a valid, empty report
    row = db(real).execute("SELECT * FROM reports").fetchone()
    assert (row["kind"], row["report_date"], row["path"]) == ("daily", day, out["path"])
    # cron fires it again at 16:00: already done
    late = real.cli("--now", f"{day}T16:00:00-05:00", "market-close")
    assert late.code == 0
    assert db(real).execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1


def test_normal_tuesday_full_day(real_db):
    real = real_db
    day = "2026-11-24"
    for when, job in (("09:30", ("market-open",)), ("11:00", ("scan", "--slot", "11:00")),
                      ("13:00", ("scan", "--slot", "13:00")), ("13:00", ("market-close",)),
                      ("16:00", ("market-close",))):
        res = real.cli("--now", f"{day}T{when}:00-05:00", *job)
        assert res.code == 0, res.text
    kinds = {r["kind"]: r["outcome"] for r in db(real).execute("SELECT * FROM market_actions")}
    assert kinds == {"market-open": "completed", "scan-11:00": "completed", "scan-13:00": "completed",
                     "market-close": "reported"}
    assert len(starts(real)) == 3


def test_plan_profile_daily_report_is_posted(standin_factory, pgdb):
    s = standin_factory(profile="plan", stage_seconds=0.1)
    use_db(s, pgdb)
    res = s.cli("--now", "2026-11-24T16:00:00-05:00", "market-close", "--json")
    assert res.code == 0, res.text
    out = json.loads(res.out)
    assert out["outcome"] == "reported" and out["reporting_service"]["outcome"] == "reported"
    [req] = reporting_requests(s)
    assert (req["method"], req["body"]["report_date"], req["status"]) == ("POST", "2026-11-24", 200)


def test_report_refused_by_method_is_exit_1(real_db):
    # a config that asks the reporting service and POSTs to the real one (the plan's method) gets 405
    real = real_db
    real.append_config("market:\n  reporting_service: true\n"
                       "profile_overrides:\n  reporting:\n    daily:\n      method: POST\n      body: {report_date: '{date}'}")
    res = real.cli("--now", "2026-11-24T16:00:00-05:00", "market-close")
    assert res.code == 1, res.text
    assert "405" in res.text
    assert action(real, "2026-11-24", "market-close")["outcome"] == "refused"
    # the trading report from the database is stored all the same
    assert db(real).execute("SELECT kind FROM reports").fetchone()["kind"] == "daily"


def test_halt_flag_wins(real):
    from catalyst_ops.state import StateDB

    sdb = StateDB(real.state_db)
    sdb.set_halt("drill", "tester")
    sdb.close()
    for job in (("market-open",), ("scan", "--slot", "11:00"), ("market-close",)):
        res = real.cli("--now", TUESDAY_OPEN, *job)
        assert res.code == 0 and "halted" in res.out, res.text
        assert last_run(real, job[0])["status"] == "skipped"
    assert starts(real) == []


def test_unknown_mode_refused_before_sending(real):
    real.config.write_text(real.config.read_text().replace("workflow:\n", "workflow:\n  mode: aggressive\n"))
    res = real.cli("--now", TUESDAY_OPEN, "market-open")
    assert res.code == 2
    assert "workflow.mode" in res.err and "Traceback" not in res.err
    assert starts(real) == []


def test_bad_slot_is_usage_error(real):
    res = real.cli("--now", TUESDAY_OPEN, "scan", "--slot", "12:00")
    assert res.code == 2 and "market.scans" in res.err


def test_scan_409_is_covered_and_scan_failure_is_a_warning(real):
    real.fault("workflow", "cycle-hang")
    assert real.cli("--now", TUESDAY_OPEN, "market-open", "--deadline", "0.5").code == 1  # hung: still running
    res = real.cli("--now", "2026-11-24T11:00:00-05:00", "scan", "--slot", "11:00", "--json")
    assert res.code == 0, res.text
    assert json.loads(res.out)["outcome"] == "already_running"
    assert len(starts(real)) == 1
    # the stand-in keeps its cycle on disk across restarts; forget the hung one as the real service would
    (real.rundir / "workflow.json").unlink()
    real.sandbox("restart", "workflow")
    real.fault("workflow", "cycle-failed")
    res = real.cli("--now", "2026-11-24T13:00:00-05:00", "scan", "--slot", "13:00")
    assert res.code == 1, res.text
    assert [a["severity"] for a in alerts(real)] == ["critical", "warning"]
    assert action(real, "2026-11-24", "scan-13:00")["outcome"] == "failed"


# ------------------------------------------------------------------ a claim left by a killed run


def _wait_for_claim(standin, pid: int, timeout: float = 30) -> sqlite3.Row:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            row = action(standin, "2026-11-24", "market-open")
        except sqlite3.OperationalError:  # the process has not made the schema yet
            row = None
        if row is not None and row["outcome"] == "running" and row["holder_pid"] == pid:
            return row
        time.sleep(0.05)
    raise AssertionError("market-open never claimed its session")


def test_market_open_killed_after_its_claim_is_reclaimed_once(real):
    import os
    import signal

    from tests.conftest import REPO

    # the workflow hangs, so market-open stays right after its claim (reading the workflow's status)
    real.fault("workflow", "hung")
    env = {k: v for k, v in os.environ.items() if k not in ("CATALYST_OPS_CONFIG", "CATALYST_OPS_NOW")}
    first = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(real.config), "--now",
                              TUESDAY_OPEN, "market-open"], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        claim_row = _wait_for_claim(real, first.pid)
        with open("/proc/sys/kernel/random/boot_id") as fh:
            assert claim_row["holder_boot_id"] == fh.read().strip()
        with open(f"/proc/{first.pid}/stat") as fh:
            assert claim_row["holder_start_time"] == int(fh.read().rsplit(")", 1)[1].split()[19])
        # a live holder is never reclaimed
        busy = real.cli("--now", "2026-11-24T09:31:00-05:00", "market-open")
        assert busy.code == 0 and "already acted" in busy.out and f"live pid {first.pid}" in busy.out, busy.text
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert action(real, "2026-11-24", "market-open")["outcome"] == "running"  # what a killed run leaves behind
    real.fault("workflow", "clear")
    assert starts(real) == []
    res = real.cli("--now", "2026-11-24T09:32:00-05:00", "market-open", "--json")
    assert res.code == 0, res.text
    out = json.loads(res.out)
    assert out["outcome"] == "completed"
    assert out["reclaimed"]["holder"]["pid"] == first.pid
    assert f"pid {first.pid} no longer exists" in out["message"]
    assert len(starts(real)) == 1  # acted once
    row = action(real, "2026-11-24", "market-open")
    assert row["outcome"] == "completed" and row["holder_pid"] != first.pid
    # recorded: the event, the killed run marked crashed, the run that took over, one warning
    [ev] = db(real).execute("SELECT * FROM events WHERE kind='market-reclaim'").fetchall()
    detail = json.loads(ev["detail"])
    assert detail["holder"]["pid"] == first.pid and detail["session_date"] == "2026-11-24"
    runs = db(real).execute("SELECT * FROM job_runs WHERE job='market-open' ORDER BY id").fetchall()
    assert [r["status"] for r in runs] == ["crashed", "skipped", "ok"]
    assert runs[0]["pid"] == first.pid and "killed while holding" in runs[0]["summary"]
    assert "reclaimed" in runs[2]["summary"]
    assert [(a["severity"], a["subject_key"]) for a in alerts(real)] == [("warning", "market:market-open:reclaim")]
    # and nothing more: the next firing finds it done
    again = real.cli("--now", "2026-11-24T09:33:00-05:00", "market-open")
    assert again.code == 0 and "already acted" in again.out
    assert len(starts(real)) == 1


def test_claim_holder_proven_dead_by_start_time_or_boot_id_not_by_pid_alone(tmp_path):
    """A claim whose pid now belongs to another live process, or that was taken before a reboot, is
    dead; the same pid, boot id and start time is alive and keeps its claim."""
    import os

    from catalyst_ops import market, proclive
    from catalyst_ops.state import StateDB

    sdb = StateDB(tmp_path / "state.db")
    other = subprocess.Popen(["sleep", "60"])
    try:
        alive = proclive.Holder(other.pid, proclive.boot_id(), proclive.start_time(other.pid))
        cases = {"alive": alive,
                 "reused": proclive.Holder(other.pid, alive.boot_id, alive.start_time - 1),
                 "rebooted": proclive.Holder(other.pid, "00000000-0000-0000-0000-000000000000", alive.start_time)}
        for day, (name, h) in enumerate(cases.items(), start=1):
            sdb.execute("INSERT INTO market_actions(session_date, kind, acted_at, outcome, holder_pid, holder_boot_id,"
                        " holder_start_time) VALUES (?,?,?,?,?,?,?)",
                        (f"2026-11-0{day}", "market-open", 1.0, "running", h.pid, h.boot_id, h.start_time))
            claimed, prev, reclaim = market.claim(sdb, f"2026-11-0{day}", "market-open", None)
            if name == "alive":
                assert not claimed and reclaim is None
            else:
                assert claimed and reclaim["holder"]["pid"] == other.pid, name
                assert ("start time" if name == "reused" else "reboot") in reclaim["reason"]
                row = sdb.one("SELECT * FROM market_actions WHERE session_date=?", (f"2026-11-0{day}",))
                assert row["holder_pid"] == os.getpid() and row["outcome"] == "running"
    finally:
        other.kill()
        other.wait()
    assert len(sdb.query("SELECT * FROM events WHERE kind='market-reclaim'")) == 2
    # a state DB from before holders were recorded: the claim's run's pid, only "gone" proves it dead
    sdb.execute("INSERT INTO job_runs(id, job, started_at, status, pid) VALUES (7, 'market-open', 1.0, 'running', ?)",
                (other.pid,))
    sdb.execute("INSERT INTO market_actions(session_date, kind, acted_at, job_run_id, outcome) "
                "VALUES ('2026-11-09', 'market-open', 1.0, 7, 'running')")
    claimed, _, reclaim = market.claim(sdb, "2026-11-09", "market-open", None)
    assert claimed and "no longer exists" in reclaim["reason"]
    assert sdb.one("SELECT status FROM job_runs WHERE id=7")["status"] == "crashed"
