"""A throw-away Redis (Debian's redis-server) on a free port, with a password, like the PostgreSQL clusters.

It daemonizes with a pidfile so that a runtime command (`redis-server CONF`) can start it again the way
`docker compose restart redis` would, and it is stopped by the pid it wrote, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import free_base_port

PASSWORD = "Redis:pw with spaces & $igns-7731"


class RedisServer:
    def __init__(self, directory: Path, password: str = PASSWORD):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_base_port(1)
        self.password = password
        self.conf = self.dir / "redis.conf"
        self.pidfile = self.dir / "redis.pid"
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nrequirepass \"{quoted}\"\ndaemonize yes\n"
            f"pidfile {self.pidfile}\nlogfile {self.dir / 'redis.log'}\ndir {self.dir}\n"
            "save \"\"\nappendonly no\n")

    @property
    def start_command(self) -> str:
        return f"{shutil.which('redis-server')} {self.conf}"

    def start(self) -> None:
        subprocess.run([shutil.which("redis-server"), str(self.conf)], check=True, timeout=10,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_up()

    def wait_up(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on {self.port}: {(self.dir / 'redis.log').read_text()[-500:]}")

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return None
        return pid if b"redis-server" in cmd else None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.pid() == pid:
            time.sleep(0.05)
        if self.pid() == pid:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def redis_server(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not found: install Debian's redis-server package (scripts/setup.sh --test)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
