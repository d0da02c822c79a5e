"""weekly-maintenance (backup hand-off, pruning, planned restart outside sessions) and rotate-logs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time

import pytest

from tests.conftest import REPO, run_cli

SUNDAY_2AM = "2026-11-29T02:00:00-05:00"
TUESDAY_10AM = "2026-11-24T10:00:00-05:00"


def _pids(s) -> dict:
    return {r["service"]: r["pid"] for r in json.loads(s.sandbox("status", "--json").out)}


def test_restart_refused_during_a_session(standin):
    before = _pids(standin)
    res = standin.cli("--now", TUESDAY_10AM, "weekly-maintenance", "--skip", "backup", "--json")
    assert res.code == 1, res.text
    steps = {s["step"]: s for s in json.loads(res.out)["steps"]}
    assert steps["restart"]["outcome"] == "refused" and "session open" in steps["restart"]["detail"]
    assert _pids(standin) == before
    db = sqlite3.connect(standin.state_db)
    assert db.execute("SELECT COUNT(*) FROM restarts").fetchone()[0] == 0
    assert db.execute("SELECT severity FROM alerts").fetchall() == [("warning",)]


def test_sunday_restart_is_planned_and_waits_for_health(standin):
    before = _pids(standin)
    res = standin.cli("--now", SUNDAY_2AM, "weekly-maintenance", "--skip", "backup", "--json")
    assert res.code == 0, res.text
    steps = {s["step"]: s for s in json.loads(res.out)["steps"]}
    assert steps["restart"]["outcome"] == "ok" and "healthy" in steps["restart"]["detail"]
    after = _pids(standin)
    assert all(after[s] != before[s] for s in before if s != "broker")
    assert standin.cli("status").code == 0
    db = sqlite3.connect(standin.state_db)
    assert db.execute("SELECT service, planned, reason FROM restarts").fetchall() == [("*", 1, "weekly-maintenance")]


def test_prune_past_retention(tmp_path):
    from catalyst_ops.state import StateDB

    cfg = tmp_path / "ops.yml"
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    cfg.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {log_dir}\n"
                   "retention: {job_runs_days: 10, health_days: 5, logs_days: 7}\n")
    now = time.time()
    day = 86400
    db = StateDB(tmp_path / "state.db")
    for age in (1, 9, 11, 40):
        db.execute("INSERT INTO job_runs(job, started_at, ended_at, status) VALUES ('health', ?, ?, 'ok')",
                   (now - age * day, now - age * day))
    for age in (1, 6):
        sid = db.execute("INSERT INTO health_sweeps(started_at, source) VALUES (?, 'health')", (now - age * day,)).lastrowid
        db.execute("INSERT INTO health_checks(sweep_id, service, checked_at, state) VALUES (?, 'news', ?, 'healthy')",
                   (sid, now - age * day))
    db.close()
    files = {"health.log": 1, "old.log": 8, "market-open.log.1": 8, "backup.log.2.gz": 30, "keep.log.1": 2,
             "notes.txt": 30, "scan.log-20261001.gz": 9}
    for name, age in files.items():
        p = log_dir / name
        p.write_text("x\n")
        os.utime(p, (now - age * day, now - age * day))
    dry = run_cli("weekly-maintenance", "--skip", "backup", "--skip", "restart", "--dry-run", "--json", config=cfg)
    assert dry.code == 0, dry.text
    assert json.loads(dry.out)["steps"][0]["counts"] == {"job_runs": 2, "health_checks": 1, "health_sweeps": 1,
                                                         "monitor_checks": 0, "samples": 0, "log_files": 4}
    assert len(os.listdir(log_dir)) == 7
    res = run_cli("weekly-maintenance", "--skip", "backup", "--skip", "restart", "--json", config=cfg)
    assert res.code == 0, res.text
    assert sorted(os.listdir(log_dir)) == ["health.log", "keep.log.1", "notes.txt"]
    conn = sqlite3.connect(tmp_path / "state.db")
    ages = sorted(round((now - r[0]) / day) for r in conn.execute("SELECT started_at FROM job_runs WHERE job='health'"))
    assert ages == [1, 9]
    assert conn.execute("SELECT COUNT(*) FROM health_checks").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM health_sweeps").fetchone()[0] == 1


def test_backup_step_hands_off_to_the_backup_command(tmp_path):
    from catalyst_ops.cli import build_parser

    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {tmp_path / 'log'}\n"
                   f"backup: {{dir: {tmp_path / 'backups'}}}\nenv_file: {tmp_path / 'missing.env'}\n")
    res = run_cli("--now", SUNDAY_2AM, "weekly-maintenance", "--skip", "prune", "--skip", "restart", "--json", config=cfg)
    step = json.loads(res.out)["steps"][0]
    has_backup = "backup" in build_parser()._subparsers._group_actions[0].choices
    if not has_backup:
        assert res.code == 0, res.text
        assert step["outcome"] == "not configured"
        assert "backup: not configured" in res.out
    else:
        # the real command ran as its own process with the same config: it recorded its own run
        assert step["outcome"] != "not configured"
        conn = sqlite3.connect(tmp_path / "state.db")
        assert conn.execute("SELECT COUNT(*) FROM job_runs WHERE job='backup'").fetchone()[0] == 1


def test_rotate_logs_runs_logrotate(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "health.log").write_text("line\n" * 100)
    conf = tmp_path / "catalyst.logrotate"
    conf.write_text(f"{log_dir}/*.log {{\n  size 1\n  rotate 3\n  missingok\n  notifempty\n  copytruncate\n}}\n")
    os.chmod(conf, 0o644)
    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {log_dir}\n")
    state = tmp_path / "logrotate.state"
    dry = run_cli("rotate-logs", "--logrotate-config", conf, "--state", state, "--dry-run", config=cfg)
    assert dry.code == 0, dry.text
    assert not (log_dir / "health.log.1").exists()
    res = run_cli("rotate-logs", "--logrotate-config", conf, "--state", state, config=cfg)
    assert res.code == 0, res.text
    assert (log_dir / "health.log.1").read_text().count("line") == 100
    assert (log_dir / "health.log").stat().st_size == 0
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("SELECT status, exit_code FROM job_runs WHERE job='rotate-logs'").fetchall() == [("ok", 0)]
    missing = run_cli("rotate-logs", "--logrotate-config", tmp_path / "nope", config=cfg)
    assert missing.code == 2 and "nope" in missing.text and "Traceback" not in missing.text
    conf.write_text(f"{tmp_path}/no-such-dir/*.log {{\n  rotate 1\n}}\n")  # no missingok: an error
    broken = run_cli("rotate-logs", "--logrotate-config", conf, "--state", state, config=cfg)
    assert broken.code == 1 and "logrotate exit" in broken.text


def test_prune_thins_the_monitors_checks_and_samples_then_compacts(tmp_path):
    """The monitor sweeps every 30 s: its per-service checks go after retention.monitor_checks_days
    (its sweep rows stay, the health job's checks stay for health_days); samples follow health_days;
    the file shrinks (VACUUM) once enough of it is free."""
    from catalyst_ops.resources import SCHEMA
    from catalyst_ops.state import StateDB

    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {tmp_path / 'log'}\n"
                   "retention: {health_days: 10, monitor_checks_days: 2}\n")
    now, day = time.time(), 86400
    db = StateDB(tmp_path / "state.db")
    db.ensure_schema(SCHEMA)
    with db.transaction() as conn:
        for age in (1, 5, 20):
            for source in ("monitor", "health"):
                for i in range(300):
                    at = now - age * day + i
                    sid = conn.execute("INSERT INTO health_sweeps(started_at, source) VALUES (?, ?)", (at, source)).lastrowid
                    conn.executemany("INSERT INTO health_checks(sweep_id, service, checked_at, state, detail) VALUES (?,?,?,?,?)",
                                     [(sid, s, at, "healthy", "x" * 200) for s in ("news", "scanner", "trading")])
            conn.execute("INSERT INTO resource_samples(at, source, detail) VALUES (?, 'proc', '{}')", (now - age * day,))
    db.close()
    before = os.path.getsize(tmp_path / "state.db")
    dry = run_cli("weekly-maintenance", "--skip", "backup", "--skip", "restart", "--dry-run", "--json", config=cfg)
    counts = json.loads(dry.out)["steps"][0]["counts"]
    assert (counts["monitor_checks"], counts["health_checks"], counts["samples"]) == (900, 1800, 1)
    res = run_cli("weekly-maintenance", "--skip", "backup", "--skip", "restart", "--json", config=cfg)
    assert res.code == 0, res.text
    assert "compacted" in json.loads(res.out)["steps"][0]["detail"]
    conn = sqlite3.connect(tmp_path / "state.db")
    left = conn.execute("SELECT s.source, CAST(ROUND(($1 - c.checked_at) / 86400) AS INT) AS age, COUNT(*)"
                        " FROM health_checks c JOIN health_sweeps s ON s.id = c.sweep_id GROUP BY 1, 2 ORDER BY 1, 2",
                        (now,)).fetchall()
    assert left == [("health", 1, 900), ("health", 5, 900), ("monitor", 1, 900)]
    # the monitor's sweep rows stay as evidence that it ran; those past health_days go
    assert conn.execute("SELECT COUNT(*) FROM health_sweeps WHERE source='monitor'").fetchone()[0] == 600
    assert conn.execute("SELECT COUNT(*) FROM resource_samples").fetchone()[0] == 2
    conn.close()
    assert os.path.getsize(tmp_path / "state.db") < before * 0.7  # deleted rows alone never shrink the file


@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate not installed")
def test_rotation_through_the_rendered_config_loses_no_line_a_running_job_writes(tmp_path):
    """A job appends numbered lines (as cron's `>>` does: one O_APPEND open for the whole run) while
    rotate-logs runs logrotate with templates/logrotate.j2: every line is in the live file or the
    rotated one, exactly once. copytruncate lost the lines written between its copy and truncate."""
    import datetime as dt
    import gzip
    import subprocess
    import sys
    import time as _time

    import jinja2

    log_dir = tmp_path / "log"
    log_dir.mkdir()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO / "templates")), keep_trailing_newline=True,
                             trim_blocks=True)
    conf = tmp_path / "catalyst.logrotate"
    conf.write_text(env.get_template("logrotate.j2").render(catalyst_log_dir=str(log_dir)))
    os.chmod(conf, 0o644)
    log = log_dir / "health.log"
    log.write_text("".join(f"old {i}\n" for i in range(20000)))  # a day's worth: the copy takes a moment
    state = tmp_path / "logrotate.state"
    two_days_ago = dt.date.today() - dt.timedelta(days=2)
    state.write_text(f'logrotate state -- version 2\n"{log}" {two_days_ago.year}-{two_days_ago.month}-{two_days_ago.day}-0:0:0\n')
    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {log_dir}\n")
    n = 30000
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        f"out = open({str(log)!r}, 'a', buffering=1)\n"
        f"for i in range({n}):\n"
        "    out.write(f'job line {i}\\n')\n"
        "    if i % 50 == 0: time.sleep(0.002)\n")])
    _time.sleep(0.3)  # the job is writing
    res = run_cli("rotate-logs", "--logrotate-config", conf, "--state", state, config=cfg)
    assert writer.wait(timeout=120) == 0
    assert res.code == 0, res.text
    rotated = sorted(p for p in log_dir.iterdir() if p.name != "health.log")
    lines = []
    for p in [*rotated, log]:
        data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        lines += data.decode().splitlines()
    got = [int(ln.split()[-1]) for ln in lines if ln.startswith("job line ")]
    assert len(got) == n and sorted(got) == list(range(n)), f"{n - len(set(got))} lines lost, {len(got) - len(set(got))} twice"
    assert sum(ln.startswith("old ") for ln in lines) == 20000
    assert [p.name for p in rotated] == [f"health.log-{dt.date.today():%Y%m%d}"], rotated  # renamed, not compressed yet
    assert oct(log.stat().st_mode & 0o777) == "0o640"  # the new file, as the role's other logs
