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
