"""systemd's notify protocol (sd_notify(3)) over $NOTIFY_SOCKET, in plain socket code.

The monitor unit is `Type=notify` with `WatchdogSec`: READY=1 once the loop runs, WATCHDOG=1 from
the sweep loop itself. A loop that hangs (a pass stuck on a lock, a call without a timeout) stops
beating and systemd restarts the process, which a dead-process check (`Restart=always`) alone
would never do. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=...") as one datagram; False when not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall("\n".join(lines).encode())
        return True
    except OSError as exc:  # systemd gone or the socket unreachable: the monitor keeps working
        log.debug("sd_notify to %s failed: %s", addr, exc)
        return False


def watchdog_seconds() -> float | None:
    """The watchdog timeout systemd gave this process ($WATCHDOG_USEC), None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
