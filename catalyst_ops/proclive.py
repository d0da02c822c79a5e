"""Is the process that took a claim still alive? Proof by pid, boot id and start time.

A pid alone proves nothing: after the holder dies its number is reused, and after a reboot every
number starts over. A holder is therefore recorded as (pid, boot id, start time): the boot id
(`/proc/sys/kernel/random/boot_id`) changes at every boot, the start time (field 22 of
`/proc/PID/stat`, clock ticks since boot) differs for any later process that gets the same pid.
A holder is dead when any of the three no longer matches; when it cannot be decided (no identity
recorded, /proc unreadable) it counts as alive, so a live holder is never taken over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str | None:
    try:
        with open(BOOT_ID_PATH) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name, which may hold spaces and ')')."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot; None if no such pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


@dataclass(frozen=True)
class Holder:
    pid: int | None
    boot_id: str | None = None
    start_time: int | None = None

    def as_dict(self) -> dict:
        return {"pid": self.pid, "boot_id": self.boot_id, "start_time": self.start_time}


def me() -> Holder:
    pid = os.getpid()
    return Holder(pid, boot_id(), start_time(pid))


def dead_reason(h: Holder) -> str | None:
    """Why `h` is provably gone, or None when it is (or may be) alive."""
    if not h.pid:
        return None
    if h.boot_id:
        now_boot = boot_id()
        if now_boot and now_boot != h.boot_id:
            return f"pid {h.pid} ran before the last reboot (boot id differs)"
    fields = _stat_fields(h.pid)
    if fields is None:
        return f"pid {h.pid} no longer exists"
    if fields[0] in ("Z", "X"):
        return f"pid {h.pid} has exited (zombie)"
    if h.start_time is not None and int(fields[19]) != h.start_time:
        return f"pid {h.pid} now belongs to another process (start time differs)"
    return None
