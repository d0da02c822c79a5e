"""The embedded state database (SQLite, WAL): what must survive between cron runs and restarts.

Tables shared across features are created here so that reports and validation read
one stable schema; a feature that needs a private table creates it with
`StateDB.ensure_schema()` from its own module.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from catalyst_ops import clock
from catalyst_ops.errors import CannotRun

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);

-- one row per run of a scheduled job or operator action
CREATE TABLE IF NOT EXISTS job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    status TEXT NOT NULL DEFAULT 'running',   -- running ok failed skipped crashed
    summary TEXT,
    output_tail TEXT,
    session_date TEXT,                        -- the NYSE session a market job belongs to
    host TEXT,
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS job_runs_job_started ON job_runs(job, started_at);

-- one row per sweep (a status/health/monitor pass over all services)
CREATE TABLE IF NOT EXISTS health_sweeps (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    source TEXT NOT NULL,                     -- status | health | monitor
    total INTEGER,
    healthy INTEGER,
    degraded INTEGER,
    failed INTEGER
);
CREATE INDEX IF NOT EXISTS health_sweeps_started ON health_sweeps(started_at);

-- one row per service per sweep
CREATE TABLE IF NOT EXISTS health_checks (
    id INTEGER PRIMARY KEY,
    sweep_id INTEGER REFERENCES health_sweeps(id),
    service TEXT NOT NULL,
    checked_at REAL NOT NULL,
    state TEXT NOT NULL,                      -- healthy degraded unhealthy error down timeout
    http_status INTEGER,
    latency_ms REAL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS health_checks_service ON health_checks(service, checked_at);
-- the daily report's timeline and counts read every service's checks of a day by time
CREATE INDEX IF NOT EXISTS health_checks_checked ON health_checks(checked_at);

-- the latest known state of each service and its run of consecutive failures
CREATE TABLE IF NOT EXISTS service_state (
    service TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    last_checked REAL NOT NULL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- restarts of single services or the stack; planned=1 for operator/maintenance restarts
CREATE TABLE IF NOT EXISTS restarts (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,                    -- a service name, or '*' for the whole stack
    at REAL NOT NULL,
    reason TEXT,
    outcome TEXT,                             -- recovered still_down storm_limit error dry_run
    planned INTEGER NOT NULL DEFAULT 0,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS restarts_service_at ON restarts(service, at);

-- liveness of long-running processes (the monitor daemon)
CREATE TABLE IF NOT EXISTS heartbeats (
    name TEXT PRIMARY KEY,
    at REAL NOT NULL,
    pid INTEGER,
    detail TEXT
);

-- the alert outbox: written before sending, marked sent only when the server accepted it
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    severity TEXT NOT NULL,                   -- critical warning info
    subject_key TEXT NOT NULL,                -- what the alert is about, for cooldowns
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending sent failed suppressed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    sent_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status, next_attempt_at);

-- market jobs act at most once per session and kind
CREATE TABLE IF NOT EXISTS market_actions (
    session_date TEXT NOT NULL,
    kind TEXT NOT NULL,                       -- market-open scan-11:00 scan-13:00 market-close
    acted_at REAL NOT NULL,
    job_run_id INTEGER,
    outcome TEXT,
    detail TEXT,
    holder_pid INTEGER,                       -- who holds a 'running' claim: pid, boot id and start
    holder_boot_id TEXT,                      -- time (/proc/PID/stat field 22), so a later firing can
    holder_start_time INTEGER,                -- prove it dead and take the claim over
    PRIMARY KEY (session_date, kind)
);

CREATE TABLE IF NOT EXISTS backups (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    created_at REAL NOT NULL,
    size_bytes INTEGER,
    sha256 TEXT,
    verified TEXT,                            -- list | restore | none
    status TEXT NOT NULL,                     -- ok failed pruned
    detail TEXT
);

-- the halt flag (emergency stop): one row
CREATE TABLE IF NOT EXISTS halt (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    halted INTEGER NOT NULL,
    since REAL NOT NULL,
    reason TEXT,
    actor TEXT
);

-- metrics verdicts (GO / NO-GO), read by `mode live`
CREATE TABLE IF NOT EXISTS metrics_verdicts (
    id INTEGER PRIMARY KEY,
    computed_at REAL NOT NULL,
    days INTEGER,
    verdict TEXT NOT NULL,                    -- GO NO-GO
    gates_json TEXT NOT NULL
);

-- an audit trail of operator decisions: mode switches, ramp advances, resumes, overrides
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    detail TEXT
);

-- stored reports (market close daily report, validation reports)
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    report_date TEXT,
    created_at REAL NOT NULL,
    path TEXT,
    summary TEXT
);
"""


def actor() -> str:
    """Who is acting: the login user (sudo-aware) and the host."""
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            import pwd

            user = pwd.getpwuid(os.getuid()).pw_name
        except Exception:  # pragma: no cover
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _create_private(path: Path) -> None:
    """Create the state DB file before SQLite does (it would make it 0644 under the usual umask): 0600,
    or 0640 when its directory is open to its group (the role's 0750). SQLite gives the -wal and -shm
    files the database's mode. An existing file is left as it is."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    if path.exists():
        return
    mode = 0o640 if path.parent.stat().st_mode & 0o050 == 0o050 else 0o600
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return  # another job created it a moment ago
    os.close(fd)
    os.chmod(path, mode)  # whatever the umask


class StateDB:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            _create_private(Path(self.path))
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA busy_timeout=30000")
        except (sqlite3.Error, OSError) as exc:
            raise CannotRun(f"{self.path}: cannot open the state database: {exc}")
        # Switching to WAL and creating the schema take locks for which SQLite may answer
        # "database is locked" at once instead of waiting (two cron jobs starting on the same
        # second on a fresh file): retry for a bounded time.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(SCHEMA)
                self._add_columns()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise CannotRun(f"{self.path}: cannot open the state database: {exc}")
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise CannotRun(f"{self.path}: cannot open the state database: {exc}")

    # columns added after a table first shipped: (table, column, type), added to older state DBs
    ADDED_COLUMNS = (("market_actions", "holder_pid", "INTEGER"), ("market_actions", "holder_boot_id", "TEXT"),
                     ("market_actions", "holder_start_time", "INTEGER"))

    def _add_columns(self) -> None:
        have: dict[str, set] = {}
        for table, col, ddl in self.ADDED_COLUMNS:
            if table not in have:
                have[table] = {r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if col not in have[table]:
                try:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {ddl}")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        self.conn.close()

    def ensure_schema(self, ddl: str) -> None:
        self.conn.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: one writer at a time across processes."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    # ------------------------------------------------------------ job runs

    def start_job(self, job: str, session_date: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO job_runs(job, started_at, status, session_date, host, pid) VALUES (?,?,?,?,?,?)",
            (job, clock.timestamp(), "running", session_date, socket.gethostname(), os.getpid()),
        )
        return int(cur.lastrowid)

    def finish_job(self, run_id: int, exit_code: int, status: str, summary: str = "", output_tail: str = "",
                   session_date: str | None = None) -> None:
        self.conn.execute(
            "UPDATE job_runs SET ended_at=?, exit_code=?, status=?, summary=?, output_tail=?,"
            " session_date=COALESCE(?, session_date) WHERE id=?",
            (clock.timestamp(), exit_code, status, summary[:2000], output_tail[-8000:], session_date, run_id),
        )

    def last_job(self, job: str, status: str | None = None) -> sqlite3.Row | None:
        if status:
            return self.one("SELECT * FROM job_runs WHERE job=? AND status=? ORDER BY started_at DESC LIMIT 1", (job, status))
        return self.one("SELECT * FROM job_runs WHERE job=? ORDER BY started_at DESC LIMIT 1", (job,))

    # ------------------------------------------------------------ events / heartbeats

    def record_event(self, kind: str, detail: dict | str, who: str | None = None) -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
        self.conn.execute("INSERT INTO events(at, kind, actor, detail) VALUES (?,?,?,?)",
                          (clock.timestamp(), kind, who or actor(), text))

    def heartbeat(self, name: str, detail: str = "") -> None:
        self.conn.execute(
            "INSERT INTO heartbeats(name, at, pid, detail) VALUES (?,?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET at=excluded.at, pid=excluded.pid, detail=excluded.detail",
            (name, clock.timestamp(), os.getpid(), detail),
        )

    def last_heartbeat(self, name: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM heartbeats WHERE name=?", (name,))

    # ------------------------------------------------------------ halt flag

    def halt_state(self) -> sqlite3.Row | None:
        row = self.one("SELECT * FROM halt WHERE id=1")
        return row if row is not None and row["halted"] else None

    def set_halt(self, reason: str, who: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO halt(id, halted, since, reason, actor) VALUES (1,1,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET halted=1, since=CASE WHEN halt.halted=1 THEN halt.since ELSE excluded.since END,"
            " reason=excluded.reason, actor=excluded.actor",
            (clock.timestamp(), reason, who or actor()),
        )

    def clear_halt(self, who: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO halt(id, halted, since, reason, actor) VALUES (1,0,?,NULL,?)"
            " ON CONFLICT(id) DO UPDATE SET halted=0, since=excluded.since, reason=NULL, actor=excluded.actor",
            (clock.timestamp(), who or actor()),
        )


def open_state(cfg) -> StateDB:
    return StateDB(cfg.state_path)
