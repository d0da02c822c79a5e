"""Logging: one line per event with a UTC timestamp and the job's name, secrets redacted.

Cron redirects each job's stderr to its own log file; the monitor's goes to journald. When
stderr is the journal's stream (systemd sets JOURNAL_STREAM to its device:inode), each line
starts with the sd-daemon priority prefix ("<4>" for a warning), which journald turns into the
entry's PRIORITY and strips; the unit's SyslogIdentifier names the job. Every secret the program learns (SMTP password, broker keys, the database password)
is registered with `add_secret` and replaced by *** in every record.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import time

_secrets: set[str] = set()
_tail: collections.deque[str] = collections.deque(maxlen=200)
_job = "catalyst-ops"


def add_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _Formatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        msg = record.getMessage()
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            msg += "\n" + self.formatException(record.exc_info)
        return redact(f"{ts} {_job} {record.levelname.lower()}: {msg}")


# syslog priorities (sd-daemon(3)): journalctl -p warning shows warnings and worse
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class _JournalFormatter(_Formatter):
    """One prefix per line: a traceback (at -v) spans lines, and journald reads each line as an entry."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stderr_is_journal(stream=None) -> bool:
    """True when `stream` (stderr) is the journal stream systemd connected, not a file or pipe a
    child inherited JOURNAL_STREAM beside (cron's redirect to a log file, a test's pipe)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


# What became of this process's own output (cron appends stdout and stderr to the job's log file).
# A full log partition must not stop a job: a trading action never waits on its log line. Writes
# that fail are dropped and remembered here; the run's lines are kept in the state DB anyway
# (job_runs.output_tail), and cli.main raises one alert while the logs cannot be written.
write_error: str | None = None  # "No space left on device (/var/log/catalyst/health.log)"
wrote_ok = False  # at least one write reached the file


def _target(stream) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{stream.fileno()}")
    except (OSError, ValueError, AttributeError):
        return getattr(stream, "name", "?")


class _Guarded:
    """A text stream (stdout/stderr) whose write and flush never raise OSError: the failure is
    noted in `write_error` and the text dropped. Everything else is the wrapped stream's."""

    def __init__(self, stream):
        self._stream = stream
        self._pending = False

    def _failed(self, exc: OSError) -> None:
        global write_error
        if write_error is None:
            write_error = f"{exc.strerror or exc} ({_target(self._stream)})"

    def write(self, text: str) -> int:
        self._pending = self._pending or bool(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._failed(exc)
            return len(text)

    def flush(self) -> None:
        global wrote_ok
        try:
            self._stream.flush()
        except OSError as exc:
            self._failed(exc)
        else:
            wrote_ok = wrote_ok or self._pending
            self._pending = False

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guard_std_streams() -> None:
    """Put stdout and stderr behind _Guarded (once)."""
    if not isinstance(sys.stdout, _Guarded) and sys.stdout is not None:
        sys.stdout = _Guarded(sys.stdout)
    if not isinstance(sys.stderr, _Guarded) and sys.stderr is not None:
        sys.stderr = _Guarded(sys.stderr)


class _TailHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _tail.append(self.format(record))


def setup(job: str | None = None, verbose: int = 0, quiet: bool = False) -> None:
    global _job
    _job = f"catalyst-ops[{job}]" if job else "catalyst-ops"
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    level = logging.DEBUG if verbose > 0 else logging.WARNING if quiet else logging.INFO
    root.setLevel(logging.DEBUG)
    fmt = _Formatter()
    guard_std_streams()
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(level)
    stream.setFormatter(_JournalFormatter() if stderr_is_journal() else fmt)
    root.addHandler(stream)
    tail = _TailHandler()
    tail.setLevel(logging.INFO)
    tail.setFormatter(fmt)
    root.addHandler(tail)
    # third-party chatter stays out of job logs
    for noisy in ("urllib3", "asyncio", "mail.log", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def tail_text() -> str:
    return "\n".join(_tail)
