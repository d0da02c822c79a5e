"""Log lines: to the journal with a priority per level when stderr is systemd's journal stream,
plain (as cron's log files want them) otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import logging
from catalyst_ops import log
log.setup("monitor", verbose=1)
log.add_secret("hunter2-secret")
logging.getLogger("x").debug("a debug line")
logging.getLogger("x").info("monitor started")
logging.getLogger("x").warning("password hunter2-secret refused")
logging.getLogger("x").error("an error")
logging.getLogger("x").critical("two\\nlines")
"""


def _run(tmp_path, journal_stream: str | None) -> list[str]:
    err = tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with open(err, "wb") as f:
        if journal_stream == "this file":
            st = os.fstat(f.fileno())
            journal_stream = f"{st.st_dev}:{st.st_ino}"
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=f, env=env, check=True, timeout=60)
    return err.read_text().splitlines()


def test_journal_stream_gets_a_priority_prefix_per_level(tmp_path):
    lines = _run(tmp_path, "this file")
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>", "<2>"], lines
    assert lines[1].endswith("catalyst-ops[monitor] info: monitor started")
    assert "hunter2" not in "\n".join(lines) and "password *** refused" in lines[2]
    assert lines[5] == "<2>lines"  # a second line of one record is its own journal entry


def test_no_prefix_for_a_file_or_an_inherited_stream(tmp_path):
    for stream in (None, "1:2", "garbage"):  # cron's log file; JOURNAL_STREAM naming another stream
        lines = _run(tmp_path, stream)
        assert len(lines) == 6 and not any(line.startswith("<") for line in lines), (stream, lines)
        assert lines[1].endswith("catalyst-ops[monitor] info: monitor started")


# ------------------------------------------------------------------ a full log partition
# /dev/full answers every write with ENOSPC, as a full log partition does to cron's `>> job.log`.


def _job_to(standin, target: str, *args: str) -> int:
    """Run a job the way cron does: stdout and stderr appended to `target`."""
    import subprocess
    import sys

    from conftest import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("CATALYST_OPS_CONFIG", "CATALYST_OPS_NOW")}
    with open(target, "a") as out:
        p = subprocess.run([sys.executable, "-m", "catalyst_ops", "--config", str(standin.config), *args],
                           stdout=out, stderr=out, env=env, cwd=REPO, timeout=120)
    return p.returncode


def _alerts(standin) -> list[tuple[str, str]]:
    import sqlite3

    db = sqlite3.connect(standin.state_db)
    return db.execute("SELECT severity, subject FROM alerts WHERE subject_key='job-log-write' ORDER BY id").fetchall()


def test_a_full_log_partition_does_not_stop_the_jobs_and_is_alerted_once(standin, tmp_path):
    import sqlite3

    # the health job restarts a killed service and exits as it should, though nothing reaches its log
    standin.fault("scanner", "down")
    assert _job_to(standin, "/dev/full", "health") == 1
    db = sqlite3.connect(standin.state_db)
    assert db.execute("SELECT outcome FROM restarts WHERE service='scanner'").fetchall() == [("recovered",)]
    run = db.execute("SELECT exit_code, status, output_tail FROM job_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert run[:2] == (1, "failed") and "scanner" in run[2], run  # its lines kept in the state DB
    # a healthy run on the full partition: exit 0 (before: exit 3, "internal error: OSError ... No space left")
    assert _job_to(standin, "/dev/full", "health") == 0
    assert _alerts(standin) == [("warning", "JOB LOGS NOT WRITTEN: No space left on device (/dev/full)")]
    # space again: one all-clear, and nothing more on the next runs
    log = tmp_path / "health.log"
    assert _job_to(standin, str(log), "health") == 0
    assert _job_to(standin, str(log), "health") == 0
    assert [s for _, s in _alerts(standin)] == ["JOB LOGS NOT WRITTEN: No space left on device (/dev/full)",
                                                "RECOVERED: job logs are written again"]
    assert "9 healthy" in log.read_text()


def test_market_open_acts_with_its_log_on_a_full_partition(standin):
    import sqlite3

    assert _job_to(standin, "/dev/full", "--now", "2026-11-24T09:30:00-05:00", "market-open") == 0
    db = sqlite3.connect(standin.state_db)
    row = db.execute("SELECT outcome FROM market_actions WHERE session_date='2026-11-24' AND kind='market-open'").fetchone()
    assert row == ("completed",)
    assert [s for _, s in _alerts(standin)] == ["JOB LOGS NOT WRITTEN: No space left on device (/dev/full)"]
