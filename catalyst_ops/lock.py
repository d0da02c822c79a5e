"""Non-blocking per-job locks (flock), so overlapping cron runs never both act."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    def __init__(self, name: str, holder: str):
        super().__init__(f"another '{name}' run holds the lock ({holder})")
        self.holder = holder


class JobLock:
    def __init__(self, directory: str, name: str):
        self.name = name
        self.path = Path(directory) / "locks" / f"{name}.lock"
        self.fd: int | None = None

    def acquire(self) -> "JobLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown pid"
            finally:
                os.close(fd)
            raise LockHeld(self.name, f"pid {holder}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
