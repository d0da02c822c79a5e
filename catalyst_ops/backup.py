"""Verified backups of the trading database: pg_dump (custom format) straight from DATABASE_URL.

A backup is complete or absent:
1. the row counts of every table are read inside a REPEATABLE READ transaction whose
   snapshot pg_dump imports (`--snapshot`), so the counts describe exactly what was dumped
   even while the stack keeps writing;
2. pg_dump writes to a hidden temp name in the backup directory (same filesystem, so the
   final rename is atomic), created 0600 before the first byte;
3. `pg_restore --list` must read the archive and find the data of every table; with
   verify-restore the archive is restored into a scratch database and the row counts compared;
4. SHA-256 → sidecar `<file>.sha256` (sha256sum format) → rename → `backups` row.
Any failure removes the partial file, records a failed row, queues a critical alert and exits
non-zero (3 when the server cannot be reached). The password reaches pg_dump only through a
0600 passfile (catalyst_ops.db.passfile), never argv.

Retention runs after a successful backup only: files older than backup.retention_days are
removed, but the newest backup.keep_min files are always kept whatever their age.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from catalyst_ops import clock, db as pg
from catalyst_ops import log as oplog
from catalyst_ops.errors import CANNOT_RUN, PROBLEM, USAGE, CannotRun, ConfigError, OpsError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^catalyst-(\d{8}T\d{6}Z)(?:-(\d+))?\.dump$")
PARTIAL_PREFIX = ".catalyst-"
PARTIAL_MARK = ".partial"

# pg_dump/pg_restore stderr that means the server went away, not that the dump is bad
_UNREACHABLE = ("could not connect", "connection refused", "server closed the connection", "terminating connection",
                "could not translate host name", "no route to host", "connection timed out", "timeout expired",
                "the database system is shutting down", "the database system is starting up",
                # the server died under an SSL connection (a managed database requires SSL): libpq sees EOF
                "ssl syscall error", "ssl connection has been closed unexpectedly", "connection to server was lost",
                "could not receive data from server", "terminating connection due to administrator command")


class BackupFailed(OpsError):
    exit_code = PROBLEM


@dataclass
class BackupResult:
    file: str
    size_bytes: int = 0
    sha256: str = ""
    verified: str = "none"
    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)
    dry_run: bool = False
    command: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"status": "dry-run" if self.dry_run else "ok", "file": self.file, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "verified": self.verified, "tables": len(self.tables),
                "rows": sum(self.tables.values()), "row_counts": self.tables, "seconds": round(self.seconds, 3),
                "pruned": self.pruned, "command": self.command}


# ------------------------------------------------------------------ tools


def find_tool(cfg, name: str) -> str:
    """pg_dump/pg_restore: backup.pg_bin_dir, else PATH, else the newest /usr/lib/postgresql/*/bin."""
    bin_dir = cfg.backup.pg_bin_dir
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise ConfigError(cfg.source, "backup.pg_bin_dir", f"expected a directory holding an executable {name}, "
                              f"{path} is not one")
        return path
    found = shutil.which(name)
    if found:
        return found
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in dirs:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    raise CannotRun(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin: install postgresql-client "
                    "or set backup.pg_bin_dir")


class ClientTooOld(OpsError):
    """pg_dump older than the server's major version: it would refuse to dump (configuration of the host)."""

    exit_code = USAGE


def client_version(tool: str) -> tuple[int, ...] | None:
    """`pg_dump --version` as numbers: "pg_dump (PostgreSQL) 15.4 (Debian ...)" -> (15, 4)."""
    try:
        p = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", p.stdout)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def major(version: tuple[int, ...]) -> tuple[int, ...]:
    """The major version: 15 for 15.4, (9, 6) for 9.6.24 (before 10 the major had two parts)."""
    return version[:1] if version[0] >= 10 else version[:2]


def server_major(version_num: int) -> tuple[int, ...]:
    """From SHOW server_version_num: 150004 -> (15,), 90624 -> (9, 6)."""
    return (version_num // 10000,) if version_num >= 100000 else (version_num // 10000, version_num // 100 % 100)


def _dotted(v: tuple[int, ...]) -> str:
    return ".".join(str(x) for x in v)


def check_client(cfg, pg_dump: str, conn) -> None:
    """Refuse, before anything is written, a pg_dump older than the server's major version: it would
    stop with "server version mismatch" after the snapshot was taken, and the host needs a newer client."""
    with conn.cursor() as cur:
        cur.execute("SHOW server_version_num")
        num = int(cur.fetchone()[0])
    conn.rollback()  # SHOW opened a transaction; the snapshot's isolation level is set after this
    server = server_major(num)
    client = client_version(pg_dump)
    if client is None:
        log.warning("%s --version did not say its version; pg_dump will check the server itself", pg_dump)
        return
    if major(client) >= server:
        return
    newer = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(os.path.join(d, "pg_dump"), os.X_OK) and _version_key(d) >= float(_dotted(server))]
    hint = f"; installed here: set backup.pg_bin_dir: {max(newer, key=_version_key)}" if newer else \
        f"; install postgresql-client-{_dotted(server)} (PGDG) or set backup.pg_bin_dir to a newer client's bin"
    raise ClientTooOld(f"{pg_dump} is PostgreSQL {_dotted(client)}, older than the server's {_dotted(server)} "
                       f"(server_version_num {num}): pg_dump cannot dump a newer server, no backup was taken{hint}")


def _version_key(path: str) -> float:
    try:
        return float(path.split("/")[-2])
    except ValueError:
        return 0.0


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return oplog.redact(" | ".join(kept))


def _is_unreachable(stderr: str) -> bool:
    low = stderr.lower()
    return any(s in low for s in _UNREACHABLE)


# ------------------------------------------------------------------ reading the live database


def _user_tables_sql() -> str:
    return ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%' ORDER BY 1, 2")


def count_rows(conn) -> dict[str, int]:
    """schema.table -> exact row count, for every ordinary table (in the connection's snapshot)."""
    out: dict[str, int] = {}
    with conn.cursor() as cur:
        cur.execute(_user_tables_sql())
        tables = cur.fetchall()
        for schema, name in tables:
            cur.execute(f"SELECT count(*) FROM {pg.quote_ident(schema)}.{pg.quote_ident(name)}")
            out[f"{schema}.{name}"] = int(cur.fetchone()[0])
    return out


def table_checksums(conn) -> dict[str, str]:
    """schema.table -> md5 of the table's rows in a stable order (for tests and drills)."""
    out: dict[str, str] = {}
    with conn.cursor() as cur:
        cur.execute(_user_tables_sql())
        for schema, name in cur.fetchall():
            q = f"{pg.quote_ident(schema)}.{pg.quote_ident(name)}"
            cur.execute(f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {q} t")
            out[f"{schema}.{name}"] = cur.fetchone()[0]
    return out


# ------------------------------------------------------------------ archive checks


def list_archive(cfg, path: str | Path) -> set[str]:
    """`pg_restore --list`: the tables whose data the archive holds. BackupFailed if unreadable."""
    cmd = [find_tool(cfg, "pg_restore"), "--list", str(path)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.backup.timeout)
    except subprocess.TimeoutExpired:
        raise BackupFailed(f"pg_restore --list timed out after {cfg.backup.timeout:.0f}s")
    if p.returncode != 0:
        raise BackupFailed(f"pg_restore --list cannot read the archive: {_tail(p.stderr) or 'exit ' + str(p.returncode)}")
    tables = set()
    # e.g. "3398; 0 16420 TABLE DATA public positions catalyst"
    for line in p.stdout.splitlines():
        m = re.match(r"^\d+;\s+\d+\s+\d+\s+TABLE DATA\s+(\S+)\s+(\S+)\s", line + " ")
        if m:
            tables.add(f"{m.group(1)}.{m.group(2)}")
    return tables


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_private(path: Path, text: str) -> None:
    """Write a small file 0600 via a temp name + rename."""
    from catalyst_ops.fsutil import atomic_write

    atomic_write(path, text, mode=0o600)


def _restore_into(cfg, target: pg.Target, archive: str | Path, dbname: str, clean: bool = False) -> None:
    cmd = [find_tool(cfg, "pg_restore"), "--no-password", "--exit-on-error", "--single-transaction", "--no-owner",
           "--no-privileges", f"--dbname={target.conninfo(dbname)}"]
    if clean:
        cmd += ["--clean", "--if-exists"]
    cmd.append(str(archive))
    with pg.passfile(target) as env:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.backup.timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BackupFailed(f"pg_restore into {dbname} timed out after {cfg.backup.timeout:.0f}s")
    if p.returncode != 0:
        exc = CannotRun if _is_unreachable(p.stderr) else BackupFailed
        raise exc(f"pg_restore into {dbname} failed: {_tail(p.stderr) or 'exit ' + str(p.returncode)}")


def _create_db(cfg, target: pg.Target, name: str) -> None:
    conn = pg.connect(target, cfg.database.connect_timeout, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {pg.quote_ident(name)}")
    except Exception as exc:
        raise BackupFailed(f"cannot create database {name}: {pg.error_text(exc)}"
                           + (" (the role needs CREATEDB)" if "permission denied" in str(exc) else ""))
    finally:
        conn.close()


def _drop_db(cfg, target: pg.Target, name: str) -> None:
    conn = pg.connect(target, cfg.database.connect_timeout, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {pg.quote_ident(name)}")
    finally:
        conn.close()


def _db_exists(conn, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None


def _compare_counts(expected: dict[str, int], got: dict[str, int]) -> list[str]:
    diffs = []
    for table in sorted(set(expected) | set(got)):
        a, b = expected.get(table), got.get(table)
        if a != b:
            diffs.append(f"{table}: {a if a is not None else 'absent'} in the source, {b if b is not None else 'absent'} restored")
    return diffs


# ------------------------------------------------------------------ backup


def _backup_name(now: datetime, directory: Path) -> str:
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"catalyst-{stamp}.dump"
    n = 1
    while (directory / name).exists():
        n += 1
        name = f"catalyst-{stamp}-{n}.dump"
    return name


def remove_partials(directory: Path) -> list[str]:
    """Partial files of earlier runs that died (SIGKILL, power loss). Call with the backup lock held."""
    removed = []
    for p in directory.glob(f"{PARTIAL_PREFIX}*{PARTIAL_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p.name)
    return removed


def _target(cfg) -> pg.Target:
    target = pg.target_from_config(cfg)
    # the tools would otherwise wait for the kernel's TCP timeout on a dead host
    target.options.setdefault("connect_timeout", str(cfg.database.connect_timeout))
    return target


def make_backup(cfg, state, verify_restore: bool | None = None, dry_run: bool = False) -> BackupResult:
    """One backup, verified. Raises BackupFailed (exit 1) / CannotRun (exit 3) after recording the failure."""
    verify_restore = cfg.backup.verify_restore if verify_restore is None else verify_restore
    target = _target(cfg)
    pg_dump = find_tool(cfg, "pg_dump")
    find_tool(cfg, "pg_restore")
    directory = Path(cfg.backup.dir)
    now = clock.now()
    name = _backup_name(now, directory)
    final = directory / name
    command = [pg_dump, "--format=custom", "--no-password", "--snapshot=<exported>", f"--dbname={target.conninfo()}"]
    result = BackupResult(file=str(final), verified="restore" if verify_restore else "list", command=command)
    if dry_run:
        result.dry_run = True
        result.pruned = [p.name for p in plan_retention(cfg, directory, now, extra_new=1)]
        return result

    started = time.monotonic()
    tmp = directory / f"{PARTIAL_PREFIX}{name}{PARTIAL_MARK}-{os.getpid()}"
    sidecar = directory / f"{name}.sha256"
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BackupFailed(f"cannot create the backup directory {directory}: {exc.strerror}")
        for stale in remove_partials(directory):
            log.warning("removed the partial file of an earlier run: %s", stale)
        conn = pg.connect(target, cfg.database.connect_timeout)
        try:
            check_client(cfg, pg_dump, conn)
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
            counts = count_rows(conn)
            result.tables = counts
            cmd = [pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}", f"--dbname={target.conninfo()}"]
            log.info("pg_dump of %s (%d tables, %d rows) to %s", target.describe(), len(counts), sum(counts.values()), final)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, pg.passfile(target) as env:
                try:
                    p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=False, env=env,
                                       timeout=cfg.backup.timeout)
                except subprocess.TimeoutExpired:
                    raise BackupFailed(f"pg_dump timed out after {cfg.backup.timeout:.0f}s")
                stderr = p.stderr.decode(errors="replace")
                if p.returncode != 0:
                    exc_cls = CannotRun if _is_unreachable(stderr) else BackupFailed
                    raise exc_cls(f"pg_dump failed (exit {p.returncode}): {_tail(stderr) or 'no message'}")
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as exc:
                    raise BackupFailed(f"cannot write {tmp}: {exc.strerror}")
        finally:
            conn.close()

        in_archive = list_archive(cfg, tmp)
        missing = sorted(set(counts) - in_archive)
        if missing:
            raise BackupFailed(f"pg_restore --list: the archive has no data for {', '.join(missing[:5])}")
        if verify_restore:
            _verify_by_restore(cfg, target, tmp, counts, now)

        result.size_bytes = tmp.stat().st_size
        result.sha256 = sha256_file(tmp)
        try:
            _write_private(sidecar, f"{result.sha256}  {name}\n")
            os.rename(tmp, final)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                sidecar.unlink()
            raise BackupFailed(f"cannot finish {final}: {exc.strerror}")
        _fsync_dir(directory)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OpsError):
            _record_failure(state, final, exc)
        elif isinstance(exc, Exception):
            exc = BackupFailed(f"{exc.__class__.__name__}: {oplog.redact(str(exc))}")
            _record_failure(state, final, exc)
            raise exc
        raise
    result.seconds = time.monotonic() - started
    state.execute("INSERT INTO backups(path, created_at, size_bytes, sha256, verified, status, detail)"
                  " VALUES (?,?,?,?,?,?,?)",
                  (str(final), clock.timestamp(), result.size_bytes, result.sha256, result.verified, "ok",
                   json.dumps({"row_counts": counts, "seconds": round(result.seconds, 3),
                               "database": target.describe()}, sort_keys=True)))
    result.pruned = [p.name for p in prune(cfg, state, directory, now)]
    return result


def _verify_by_restore(cfg, target: pg.Target, archive: Path, counts: dict[str, int], now: datetime) -> None:
    scratch = f"catalyst_verify_{now.astimezone(timezone.utc):%Y%m%d%H%M%S}_{os.getpid()}"
    _create_db(cfg, target, scratch)
    try:
        _restore_into(cfg, target, archive, scratch)
        conn = pg.connect(target, cfg.database.connect_timeout, dbname=scratch)
        try:
            restored = count_rows(conn)
        finally:
            conn.close()
        diffs = _compare_counts(counts, restored)
        if diffs:
            raise BackupFailed("verify-restore: row counts differ: " + "; ".join(diffs[:5]))
    finally:
        try:
            _drop_db(cfg, target, scratch)
        except Exception as exc:  # the backup itself is fine; a leftover scratch DB is worth a warning
            log.warning("could not drop the scratch database %s: %s", scratch, pg.error_text(exc))


def _record_failure(state, final: Path, exc: BaseException) -> None:
    from catalyst_ops import alerts

    reason = oplog.redact(str(exc))
    try:
        state.execute("INSERT INTO backups(path, created_at, size_bytes, sha256, verified, status, detail)"
                      " VALUES (?,?,?,?,?,?,?)", (str(final), clock.timestamp(), None, None, "none", "failed", reason))
        code = getattr(exc, "exit_code", PROBLEM)
        alerts.enqueue(state, "critical", "backup", f"Backup failed: {reason[:120]}",
                       f"The database backup failed and left no file.\n\nReason: {reason}\n"
                       f"Intended file: {final}\nExit code: {code}"
                       + ("\nThe database server could not be reached." if code == CANNOT_RUN else ""))
    except Exception as rec_exc:  # the state DB is broken too: the exit code still tells cron
        log.error("could not record the failed backup: %s", rec_exc)


# ------------------------------------------------------------------ retention


def backup_files(directory: Path) -> list[tuple[datetime, Path]]:
    """Our backup files in the directory, newest first, with the time in their name."""
    out = []
    if not directory.is_dir():
        return out
    for p in directory.iterdir():
        m = NAME_RE.match(p.name)
        if m and p.is_file():
            ts = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            out.append((ts, p))
    out.sort(key=lambda item: (item[0], int(NAME_RE.match(item[1].name).group(2) or 1)), reverse=True)
    return out


def plan_retention(cfg, directory: Path, now: datetime, extra_new: int = 0) -> list[Path]:
    """The files retention would remove: older than retention_days, beyond the newest keep_min.
    `extra_new`: count that many not-yet-written backups among the kept (for --dry-run)."""
    files = backup_files(directory)
    keep = max(0, cfg.backup.keep_min - extra_new)
    cutoff = now - timedelta(days=cfg.backup.retention_days)
    return [p for ts, p in files[keep:] if ts < cutoff]


def prune(cfg, state, directory: Path, now: datetime) -> list[Path]:
    removed = []
    for p in plan_retention(cfg, directory, now):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("retention: cannot remove %s: %s", p, exc.strerror)
            continue
        with contextlib.suppress(FileNotFoundError):
            p.with_name(p.name + ".sha256").unlink()
        state.execute("UPDATE backups SET status='pruned' WHERE path=? AND status='ok'", (str(p),))
        removed.append(p)
        log.info("retention: removed %s", p.name)
    # sidecars whose dump is gone (a run that died between the two renames)
    if directory.is_dir():
        for side in directory.glob("catalyst-*.dump.sha256"):
            if not side.with_name(side.name[: -len(".sha256")]).exists():
                with contextlib.suppress(FileNotFoundError):
                    side.unlink()
    return removed


# ------------------------------------------------------------------ list


def list_backups(cfg, state) -> list[dict]:
    rows = state.query("SELECT * FROM backups ORDER BY created_at DESC, id DESC")
    seen = set()
    out = []
    for r in rows:
        path = Path(r["path"])
        seen.add(str(path))
        out.append({"id": r["id"], "file": str(path), "created_at": r["created_at"], "size_bytes": r["size_bytes"],
                    "sha256": r["sha256"], "verified": r["verified"], "status": r["status"],
                    "exists": path.exists(), "detail": _short_detail(r["detail"], r["status"])})
    for ts, path in backup_files(Path(cfg.backup.dir)):
        if str(path) not in seen:
            out.append({"id": None, "file": str(path), "created_at": ts.timestamp(), "size_bytes": path.stat().st_size,
                        "sha256": None, "verified": None, "status": "untracked", "exists": True,
                        "detail": "on disk, not in the state DB"})
    out.sort(key=lambda d: d["created_at"] or 0, reverse=True)
    return out


def _short_detail(detail: str | None, status: str) -> str:
    if not detail:
        return ""
    if status == "failed":
        return detail
    try:
        data = json.loads(detail)
        counts = data.get("row_counts", {})
        return f"{len(counts)} tables, {sum(counts.values())} rows"
    except (ValueError, AttributeError):
        return detail


# ------------------------------------------------------------------ restore


@dataclass
class RestorePlan:
    archive: str
    target_db: str
    live_db: str | None
    exists: bool
    clean: bool
    checksum: str  # verified | no checksum recorded
    expected: dict[str, int] | None


def resolve_archive(cfg, file: str) -> Path:
    p = Path(file)
    if not p.exists() and not p.is_absolute():
        alt = Path(cfg.backup.dir) / file
        if alt.exists():
            p = alt
    if not p.is_file():
        raise OpsError(f"backup restore: {file}: no such backup file", USAGE)
    return p


def _expected_checksum(state, archive: Path) -> tuple[str | None, dict[str, int] | None]:
    row = state.one("SELECT sha256, detail FROM backups WHERE path=? AND status IN ('ok','pruned') ORDER BY id DESC LIMIT 1",
                    (str(archive.resolve()),)) or state.one(
        "SELECT sha256, detail FROM backups WHERE path=? AND status IN ('ok','pruned') ORDER BY id DESC LIMIT 1", (str(archive),))
    expected = None
    if row is not None and row["detail"]:
        with contextlib.suppress(ValueError, AttributeError):
            expected = json.loads(row["detail"]).get("row_counts")
    side = archive.with_name(archive.name + ".sha256")
    if side.exists():
        text = side.read_text(encoding="utf-8", errors="replace").split()
        return (text[0] if text else ""), expected
    return (row["sha256"] if row is not None else None), expected


def plan_restore(cfg, state, file: str, target_db: str, force: bool) -> RestorePlan:
    if not target_db or not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_$\-]{0,62}$", target_db):
        raise OpsError(f"backup restore: --target-db: expected a database name, got {target_db!r}", USAGE)
    archive = resolve_archive(cfg, file)
    want, expected = _expected_checksum(state, archive)
    if want is not None:
        got = sha256_file(archive)
        if got != want:
            raise BackupFailed(f"backup restore: {archive}: SHA-256 {got[:16]}... does not match the recorded "
                               f"{(want or '?')[:16]}...: the file is damaged; refusing to restore it")
        checksum = "verified"
    else:
        checksum = "no checksum recorded"
    list_archive(cfg, archive)
    target = _target(cfg)
    conn = pg.connect(target, cfg.database.connect_timeout, autocommit=True)
    try:
        exists = _db_exists(conn, target_db)
    finally:
        conn.close()
    live = target.dbname
    if target_db == live and not force:
        raise OpsError(f"backup restore: {target_db} is the live database; restoring would overwrite it. "
                       "Restore into another name, or add --force", USAGE)
    if exists and target_db != live and not force:
        conn = pg.connect(target, cfg.database.connect_timeout, dbname=target_db, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid=c.relnamespace"
                            " WHERE c.relkind='r' AND n.nspname NOT IN ('pg_catalog','information_schema')")
                tables = cur.fetchone()[0]
        finally:
            conn.close()
        if tables:
            raise OpsError(f"backup restore: database {target_db} exists and has {tables} tables; "
                           "choose a new name, or add --force to replace its contents", USAGE)
    return RestorePlan(str(archive), target_db, live, exists, clean=exists, checksum=checksum, expected=expected)


def restore(cfg, state, plan: RestorePlan) -> dict[str, int]:
    """Restore in one transaction (a failure leaves the target as it was); returns the restored row counts."""
    target = _target(cfg)
    created = False
    if not plan.exists:
        _create_db(cfg, target, plan.target_db)
        created = True
    try:
        _restore_into(cfg, target, plan.archive, plan.target_db, clean=plan.clean)
        conn = pg.connect(target, cfg.database.connect_timeout, dbname=plan.target_db)
        try:
            counts = count_rows(conn)
        finally:
            conn.close()
        if plan.expected is not None:
            # tables the target had besides the archive's are not the restore's business
            diffs = _compare_counts(plan.expected, {k: v for k, v in counts.items() if k in plan.expected})
            if diffs:
                raise BackupFailed("restored row counts differ from those recorded at backup time: " + "; ".join(diffs[:5]))
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                _drop_db(cfg, target, plan.target_db)
        raise
    state.record_event("backup_restore", {"archive": plan.archive, "target_db": plan.target_db,
                                          "rows": sum(counts.values()), "replaced_existing": plan.exists})
    return counts
