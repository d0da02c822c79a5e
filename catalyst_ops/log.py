"""Logging: one line per event with a UTC timestamp and the job's name, secrets redacted.

Cron redirects each job's stderr to its own log file; the monitor's goes to journald.
Every secret the program learns (SMTP password, broker keys, the database password)
is registered with `add_secret` and replaced by *** in every record.
"""

from __future__ import annotations

import collections
import logging
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
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(level)
    stream.setFormatter(fmt)
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
