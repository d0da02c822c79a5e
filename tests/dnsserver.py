"""A real authoritative DNS server for tests: NSD (Debian's `nsd` package) on 127.0.0.1, a free port,
UDP and TCP, serving zone files written here. Started per test session, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NSD = shutil.which("nsd") or ("/usr/sbin/nsd" if os.path.exists("/usr/sbin/nsd") else None)


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (NSD binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def txt(text: str) -> str:
    """A TXT value in zone syntax: strings of at most 255 characters."""
    parts = [text[i:i + 255] for i in range(0, len(text), 255)]
    return " ".join('"' + p.replace('"', '\\"') + '"' for p in parts)


def zone_text(origin: str, records: list[tuple[str, str, str]]) -> str:
    """records: (owner relative to the origin or '@', type, rdata)."""
    lines = [f"$ORIGIN {origin}.", "$TTL 300", "@ IN SOA ns1 hostmaster 1 3600 600 86400 300", "@ IN NS ns1",
             "ns1 IN A 127.0.0.1"]
    lines += [f"{owner} IN {rtype} {rdata}" for owner, rtype, rdata in records]
    return "\n".join(lines) + "\n"


class NsdServer:
    def __init__(self, zones: dict[str, list[tuple[str, str, str]]]):
        self.zones = zones
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "NsdServer":
        self.dir = Path(tempfile.mkdtemp(prefix="catalyst-nsd-"))
        for origin, records in self.zones.items():
            (self.dir / f"{origin}.zone").write_text(zone_text(origin, records))
        self.port = free_udp_tcp_port()
        d = self.dir
        conf = [
            "server:", "  ip-address: 127.0.0.1", f"  port: {self.port}", '  username: ""', '  chroot: ""',
            f'  zonesdir: "{d}"', f'  pidfile: "{d}/nsd.pid"', '  database: ""', f'  xfrdfile: "{d}/xfrd.state"',
            f'  zonelistfile: "{d}/zone.list"', f'  logfile: "{d}/nsd.log"', "  server-count: 1", "  verbosity: 1",
            "  hide-version: yes", "  tcp-count: 20", "remote-control:", "  control-enable: no",
        ]
        for origin in self.zones:
            conf += ["zone:", f"  name: {origin}", f"  zonefile: {origin}.zone"]
        (d / "nsd.conf").write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([NSD, "-d", "-c", str(d / "nsd.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        first = next(iter(self.zones))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsd exited: {self.proc.stderr.read().decode()[-500:]} "
                                   f"{(d / 'nsd.log').read_text() if (d / 'nsd.log').exists() else ''}")
            if self._answers(first):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("nsd did not answer in time")

    def _answers(self, name: str) -> bool:
        import dns.message
        import dns.query

        try:
            q = dns.message.make_query(name, "SOA")
            dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.5)
            dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=0.5)
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
