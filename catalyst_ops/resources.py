"""CPU and memory of the stack, measured the way the configured runtime allows, and the
`resource_samples` history that `validate` judges.

What is measured, per runtime (percentages are of the whole host, so they compare with
validation.cpu_limit_percent / memory_limit_percent directly):
- compose: `docker stats --no-stream --format json` of the compose project's containers
  (`docker compose ps -q`). Docker's CPUPerc is per core, so the sum is divided by the host's
  CPU count; memory is the sum of the containers' used bytes over the host's MemTotal.
- systemd: `systemctl show -p CPUUsageNSec,MemoryCurrent` of the units, read twice
  validation.resource_sample_seconds apart; CPU is the usage delta over wall time and cores.
- command (the stand-in, or anything started by operator commands): the processes listening
  on the configured service ports, found through /proc/net/tcp{,6} and /proc/PID/fd, with
  utime+stime from /proc/PID/stat read twice and VmRSS from /proc/PID/status.
When none of that can be read (no docker engine, no permission, nothing listening) the sample
says "unavailable" with the reason; it never invents a figure.

The trading database's connections are sampled too (`db_connection_samples`): client backends
in pg_stat_activity against max_connections, through DATABASE_URL of the .env with a bounded
connect timeout. A server that refuses the sampler for want of a slot ("too many clients",
"remaining connection slots are reserved") is the exhaustion itself and is recorded as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field

SCHEMA = """
CREATE TABLE IF NOT EXISTS resource_samples (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    source TEXT NOT NULL,                     -- docker | systemd | proc | unavailable
    cpu_percent REAL,                         -- of the whole host (all cores)
    mem_percent REAL,                         -- of MemTotal
    mem_bytes INTEGER,
    detail TEXT                               -- JSON: per unit/container figures, or the reason
);
CREATE INDEX IF NOT EXISTS resource_samples_at ON resource_samples(at);

-- monitor heartbeats as observed at each sample: the heartbeats table keeps only the latest,
-- so "running throughout" needs this history
CREATE TABLE IF NOT EXISTS heartbeat_observations (
    name TEXT NOT NULL,
    at REAL NOT NULL,                         -- the heartbeat's own time
    observed_at REAL NOT NULL,
    PRIMARY KEY (name, at)
);

-- connections of the trading database (PostgreSQL) at each sample
CREATE TABLE IF NOT EXISTS db_connection_samples (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    connections INTEGER,                      -- client backends in pg_stat_activity
    total INTEGER,                            -- every row of pg_stat_activity (background workers too)
    max_connections INTEGER,                  -- SHOW max_connections
    reserved INTEGER,                         -- superuser_reserved_connections (slots an app cannot use)
    exhausted INTEGER NOT NULL DEFAULT 0,     -- the server refused the sampler for want of a slot
    error TEXT                                -- why there is no figure
);
CREATE INDEX IF NOT EXISTS db_connection_samples_at ON db_connection_samples(at);
"""


@dataclass
class Sample:
    source: str
    cpu_percent: float | None = None
    mem_percent: float | None = None
    mem_bytes: int | None = None
    units: list[dict] = field(default_factory=list)
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.cpu_percent is not None and self.mem_percent is not None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["available"] = self.available
        return d


def ensure_schema(db) -> None:
    db.ensure_schema(SCHEMA)


def mem_total() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _run(cmd: list[str], timeout: float = 20.0) -> tuple[int, str, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, "", f"{cmd[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"{cmd[0]}: no answer within {timeout:g}s"
    return p.returncode, p.stdout, p.stderr


def _bytes(text: str) -> int:
    """'50.5MiB' / '1.2GB' / '300kB' -> bytes (docker's human units)."""
    text = text.strip()
    units = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
             "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
    num = text.rstrip("bBkKmMgGtTiI")
    unit = text[len(num):].upper() or "B"
    return int(float(num) * units.get(unit, 1))


def parse_docker_stats(text: str, cpus: int, total: int | None) -> Sample:
    units = []
    cpu = 0.0
    used = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        c = float(str(row.get("CPUPerc", "0")).rstrip("%") or 0)
        m = _bytes(str(row.get("MemUsage", "0B")).split("/")[0])
        units.append({"name": row.get("Name") or row.get("Container"), "cpu_percent_of_core": c, "mem_bytes": m})
        cpu += c
        used += m
    if not units:
        return Sample("unavailable", reason="docker stats listed no containers")
    if not total:
        return Sample("unavailable", units=units, reason="cannot read MemTotal from /proc/meminfo")
    return Sample("docker", round(cpu / cpus, 2), round(100.0 * used / total, 2), used, units)


def _sample_compose(cfg) -> Sample:
    from catalyst_ops.errors import OpsError
    from catalyst_ops.runtime import ComposeRuntime

    try:
        base = ComposeRuntime(cfg).base_command()
    except OpsError as exc:
        return Sample("unavailable", reason=str(exc))
    code, out, err = _run([*base, "ps", "-q"])
    if code != 0:
        return Sample("unavailable", reason=f"docker compose ps failed: {(err or out).strip()[:200]}")
    ids = out.split()
    if not ids:
        return Sample("unavailable", reason="docker compose ps: no running containers")
    code, out, err = _run(["docker", "stats", "--no-stream", "--format", "json", *ids])
    if code != 0:
        return Sample("unavailable", reason=f"docker stats failed: {(err or out).strip()[:200]}")
    try:
        return parse_docker_stats(out, _cpus(), mem_total())
    except (ValueError, TypeError) as exc:
        return Sample("unavailable", reason=f"docker stats: unreadable output ({exc.__class__.__name__})")


def parse_systemctl_show(text: str, units: list[str]) -> dict[str, dict]:
    """Blocks of KEY=VALUE separated by blank lines, one per unit, in the order asked."""
    blocks = [b for b in text.strip().split("\n\n")]
    out = {}
    for unit, block in zip(units, blocks):
        vals = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[unit] = vals
    return out


def _num(v: str | None) -> int | None:
    # systemd prints [not set] or 18446744073709551615 when accounting is off
    if v is None or not v.strip().isdigit() or int(v) >= 2**64 - 1:
        return None
    return int(v)


def _sample_systemd(cfg, interval: float) -> Sample:
    from catalyst_ops.runtime import SystemdRuntime

    rt = SystemdRuntime(cfg)
    units = [rt.unit(s) for s in cfg.enabled_services()]
    cmd = ["systemctl", "show", "-p", "CPUUsageNSec,MemoryCurrent", *units]
    code, out1, err = _run(cmd)
    t1 = time.monotonic()
    if code != 0:
        return Sample("unavailable", reason=f"systemctl show failed: {(err or out1).strip()[:200]}")
    time.sleep(interval)
    code, out2, err = _run(cmd)
    t2 = time.monotonic()
    if code != 0:
        return Sample("unavailable", reason=f"systemctl show failed: {(err or out2).strip()[:200]}")
    a, b = parse_systemctl_show(out1, units), parse_systemctl_show(out2, units)
    total = mem_total()
    rows, cpu_ns, used = [], 0, 0
    for u in units:
        c1, c2 = _num(a.get(u, {}).get("CPUUsageNSec")), _num(b.get(u, {}).get("CPUUsageNSec"))
        m = _num(b.get(u, {}).get("MemoryCurrent"))
        rows.append({"name": u, "cpu_nsec": None if c1 is None or c2 is None else c2 - c1, "mem_bytes": m})
        cpu_ns += (c2 - c1) if c1 is not None and c2 is not None else 0
        used += m or 0
    if all(r["cpu_nsec"] is None for r in rows) or not total:
        return Sample("unavailable", units=rows, reason="systemd reports no CPU/memory accounting for the units "
                      "(CPUAccounting/MemoryAccounting off, or the units are not running)")
    cpu = 100.0 * cpu_ns / 1e9 / max(t2 - t1, 1e-6) / _cpus()
    return Sample("systemd", round(cpu, 2), round(100.0 * used / total, 2), used, rows)


def _listening_inodes(ports: set[int]) -> dict[int, int]:
    """socket inode -> port for LISTEN sockets on the given ports."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) < 10 or parts[3] != "0A":  # 0A = LISTEN
                        continue
                    port = int(parts[1].rsplit(":", 1)[1], 16)
                    if port in ports:
                        out[int(parts[9])] = port
        except OSError:
            continue
    return out


def listening_pids(ports: set[int]) -> dict[int, int]:
    """pid -> port of the processes listening on the ports (those we may read)."""
    inodes = _listening_inodes(ports)
    pids: dict[int, int] = {}
    if not inodes:
        return pids
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    ino = int(target[8:-1])
                    if ino in inodes:
                        pids[int(entry.name)] = inodes[ino]
                        break
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            continue
    return pids


def _proc_cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _sample_proc(cfg, interval: float) -> Sample:
    ports = {cfg.service(s).port: s for s in cfg.enabled_services()}
    pids = listening_pids(set(ports))
    if not pids:
        return Sample("unavailable", reason="no readable process listens on the configured service ports")
    first = {p: _proc_cpu_ticks(p) for p in pids}
    t1 = time.monotonic()
    time.sleep(interval)
    t2 = time.monotonic()
    hz = os.sysconf("SC_CLK_TCK")
    rows, ticks, used = [], 0, 0
    for pid, port in sorted(pids.items(), key=lambda kv: kv[1]):
        t_end = _proc_cpu_ticks(pid)
        rss = _proc_rss(pid)
        delta = None if first[pid] is None or t_end is None else t_end - first[pid]
        rows.append({"name": ports[port], "pid": pid, "cpu_ticks": delta, "mem_bytes": rss})
        ticks += delta or 0
        used += rss or 0
    total = mem_total()
    if not total:
        return Sample("unavailable", units=rows, reason="cannot read MemTotal from /proc/meminfo")
    cpu = 100.0 * ticks / hz / max(t2 - t1, 1e-6) / _cpus()
    return Sample("proc", round(cpu, 2), round(100.0 * used / total, 2), used, rows)


def sample(cfg, interval: float | None = None) -> Sample:
    interval = cfg.validation.resource_sample_seconds if interval is None else interval
    kind = cfg.runtime.kind
    if kind == "compose":
        return _sample_compose(cfg)
    if kind == "systemd":
        return _sample_systemd(cfg, interval)
    return _sample_proc(cfg, interval)


def record(db, s: Sample, at: float) -> None:
    ensure_schema(db)
    detail = json.dumps({"units": s.units, "reason": s.reason}, sort_keys=True)
    db.execute("INSERT INTO resource_samples(at, source, cpu_percent, mem_percent, mem_bytes, detail) VALUES (?,?,?,?,?,?)",
               (at, s.source, s.cpu_percent, s.mem_percent, s.mem_bytes, detail))


def observe_heartbeats(db, at: float) -> list[dict]:
    """Copy the current heartbeats into the observation history (idempotent per heartbeat time)."""
    ensure_schema(db)
    rows = db.query("SELECT name, at FROM heartbeats")
    for r in rows:
        db.execute("INSERT OR IGNORE INTO heartbeat_observations(name, at, observed_at) VALUES (?,?,?)",
                   (r["name"], r["at"], at))
    return [{"name": r["name"], "at": r["at"]} for r in rows]


# ---------------------------------------------------------------- database connections

# what PostgreSQL says when it has no slot left (SQLSTATE 53300; at connect time psycopg2 has no code)
_EXHAUSTED = ("too many clients", "remaining connection slots are reserved", "too many connections for")


@dataclass
class DbSample:
    connections: int | None = None
    total: int | None = None
    max_connections: int | None = None
    reserved: int | None = None
    exhausted: bool = False
    error: str = ""

    @property
    def share(self) -> float | None:
        if self.exhausted:
            return 1.0
        if self.connections is None or not self.max_connections:
            return None
        return self.connections / self.max_connections

    def as_dict(self) -> dict:
        d = asdict(self)
        d["share"] = None if self.share is None else round(self.share, 4)
        return d


def sample_db(cfg) -> DbSample:
    """Client connections of the trading database against max_connections, or why not."""
    from catalyst_ops import db as pgdb
    from catalyst_ops.errors import OpsError

    try:
        target = pgdb.target_from_config(cfg)
    except OpsError as exc:
        return DbSample(error=str(exc))
    # the droplet's cron must not hang on a database that does not answer: bounded whatever the URL says
    limit = cfg.database.connect_timeout
    given = target.options.get("connect_timeout", "")
    target.options["connect_timeout"] = str(min(int(given), limit) if given.isdigit() and int(given) > 0 else limit)
    try:
        conn = pgdb.connect(target, limit, autocommit=False)
    except OpsError as exc:
        text = str(exc)
        return DbSample(exhausted=any(m in text.lower() for m in _EXHAUSTED), error=text)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 5000")
            # a role without pg_read_all_stats (a managed server's admin role) sees other users' sessions with
            # backend_type NULL; background processes have no user. So a hidden row with a user is a client:
            # an autovacuum worker may be counted with them, erring high, never low
            cur.execute("SELECT count(*) FILTER (WHERE backend_type = 'client backend'"
                        " OR (backend_type IS NULL AND usesysid IS NOT NULL)), count(*),"
                        " current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int"
                        " FROM pg_stat_activity")
            clients, total, max_conn, reserved = cur.fetchone()
        conn.rollback()
    except Exception as exc:
        return DbSample(error=f"pg_stat_activity: {pgdb.error_text(exc)}")
    finally:
        conn.close()
    return DbSample(int(clients), int(total), int(max_conn), int(reserved))


def record_db(db, s: DbSample, at: float) -> None:
    ensure_schema(db)
    db.execute("INSERT INTO db_connection_samples(at, connections, total, max_connections, reserved, exhausted, error)"
               " VALUES (?,?,?,?,?,?,?)", (at, s.connections, s.total, s.max_connections, s.reserved, int(s.exhausted),
                                           s.error or None))
