"""Weekly maintenance steps (backup, prune, planned restart) and log rotation.

Each step returns a dict {step, ok, outcome, detail, exit_code?} so the command can report
every step even when an earlier one failed: a failed backup must not stop pruning, and a
refused restart must not hide a good backup.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

from catalyst_ops import clock
from catalyst_ops.errors import CANNOT_RUN, PROBLEM, USAGE

log = logging.getLogger(__name__)

# the live file (name.log) and what logrotate leaves behind: name.log.1, name.log.2.gz, name.log-20260101.gz
_LOG_NAME = re.compile(r".+\.log(\.\d+)?(\.gz)?$|.+\.log-\d{8}(\.gz)?$")


def _step(step: str, ok: bool, outcome: str, detail: str, exit_code: int | None = None) -> dict:
    out = {"step": step, "ok": ok, "outcome": outcome, "detail": detail}
    if exit_code is not None:
        out["exit_code"] = exit_code
    return out


def backup(cfg, args, dry_run: bool = False) -> dict:
    """Run `catalyst-ops backup` as its own process (its own job record, lock and exit code)."""
    cmd = [sys.executable, "-m", "catalyst_ops"]
    if cfg.source != "<defaults>":
        cmd += ["--config", cfg.source]
    if getattr(args, "now", None):
        cmd += ["--now", args.now]
    cmd.append("backup")
    if dry_run:
        return _step("backup", True, "dry_run", "would run: catalyst-ops backup")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.backup.timeout + 60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return _step("backup", False, "timeout", f"catalyst-ops backup did not finish within {cfg.backup.timeout + 60:g}s",
                     PROBLEM)
    if proc.returncode == USAGE and "invalid choice" in proc.stderr:
        # this install has no backup command (yet): say so plainly; the backup staleness alert covers the gap
        return _step("backup", True, "not configured", "backup: not configured (this catalyst-ops has no `backup` command)")
    tail = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode == 0:
        return _step("backup", True, "ok", tail or "backup done")
    err = (proc.stderr.strip().splitlines() or [tail])[-1]
    return _step("backup", False, "failed", f"catalyst-ops backup exit {proc.returncode}: {err}", proc.returncode)


def prune(cfg, db, dry_run: bool = False) -> dict:
    """Delete job runs, health history, samples and log files past retention; compact the state DB."""
    from catalyst_ops import resources

    resources.ensure_schema(db)
    now = clock.timestamp()
    r = cfg.retention
    jobs_cut = now - r.job_runs_days * 86400
    health_cut = now - r.health_days * 86400
    logs_cut = now - r.logs_days * 86400
    monitor_cut = now - min(r.monitor_checks_days, r.health_days) * 86400
    monitor_sweeps = "SELECT id FROM health_sweeps WHERE source='monitor' AND started_at<? AND started_at>=?"
    samples = ("resource_samples", "db_connection_samples", "heartbeat_observations")
    counts = {}
    if dry_run:
        counts["job_runs"] = db.one("SELECT COUNT(*) AS n FROM job_runs WHERE started_at<? AND status!='running'",
                                    (jobs_cut,))["n"]
        counts["health_checks"] = db.one("SELECT COUNT(*) AS n FROM health_checks WHERE checked_at<?", (health_cut,))["n"]
        counts["health_sweeps"] = db.one("SELECT COUNT(*) AS n FROM health_sweeps WHERE started_at<?", (health_cut,))["n"]
        counts["monitor_checks"] = db.one(f"SELECT COUNT(*) AS n FROM health_checks WHERE checked_at>=? AND sweep_id IN "
                                          f"({monitor_sweeps})", (health_cut, monitor_cut, health_cut))["n"]
        counts["samples"] = sum(db.one(f"SELECT COUNT(*) AS n FROM {t} WHERE at<?", (health_cut,))["n"] for t in samples)
    else:
        with db.transaction() as conn:
            counts["job_runs"] = conn.execute("DELETE FROM job_runs WHERE started_at<? AND status!='running'",
                                              (jobs_cut,)).rowcount
            counts["health_checks"] = conn.execute("DELETE FROM health_checks WHERE checked_at<?", (health_cut,)).rowcount
            counts["health_sweeps"] = conn.execute(
                "DELETE FROM health_sweeps WHERE started_at<? AND id NOT IN (SELECT sweep_id FROM health_checks"
                " WHERE sweep_id IS NOT NULL)", (health_cut,)).rowcount
            counts["monitor_checks"] = conn.execute(
                f"DELETE FROM health_checks WHERE checked_at>=? AND sweep_id IN ({monitor_sweeps})",
                (health_cut, monitor_cut, health_cut)).rowcount
            counts["samples"] = sum(conn.execute(f"DELETE FROM {t} WHERE at<?", (health_cut,)).rowcount for t in samples)
    compacted = _compact(db) if r.compact and not dry_run else ""
    files, size = [], 0
    try:
        entries = list(os.scandir(cfg.log_dir))
    except FileNotFoundError:
        entries = []
    except OSError as exc:
        return _step("prune", False, "failed", f"{cfg.log_dir}: cannot list the log directory: {exc.strerror}", PROBLEM)
    for e in entries:
        if not e.is_file(follow_symlinks=False) or not _LOG_NAME.fullmatch(e.name):
            continue
        st = e.stat(follow_symlinks=False)
        if st.st_mtime >= logs_cut:
            continue
        files.append(e.name)
        size += st.st_size
        if not dry_run:
            try:
                os.unlink(e.path)
            except OSError as exc:
                return _step("prune", False, "failed", f"{e.path}: cannot delete: {exc.strerror}", PROBLEM)
    verb = "would delete" if dry_run else "deleted"
    detail = (f"{verb} {counts['job_runs']} job runs older than {r.job_runs_days} d, {counts['health_checks']} health "
              f"checks, {counts['health_sweeps']} sweeps and {counts['samples']} resource samples older than "
              f"{r.health_days} d, {counts['monitor_checks']} monitor checks older than {r.monitor_checks_days} d, "
              f"{len(files)} log files older than {r.logs_days} d ({size} bytes){compacted}")
    step = _step("prune", True, "dry_run" if dry_run else "ok", detail)
    step["counts"] = {**counts, "log_files": len(files)}
    step["log_files"] = sorted(files)
    return step


def _db_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _compact(db) -> str:
    """VACUUM when a tenth or more of the file is free pages (deleted rows do not shrink it), then
    truncate the WAL and refresh the planner's statistics. Writers wait (busy_timeout) meanwhile."""
    pages = db.one("PRAGMA page_count")[0]
    free = db.one("PRAGMA freelist_count")[0]
    if not pages or free * 10 < pages:
        db.execute("PRAGMA optimize")
        return ""
    before = _db_bytes(db.path)
    try:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA optimize")
    except Exception as exc:  # e.g. the disk too full for the copy VACUUM makes: the prune itself stands
        log.warning("state DB not compacted: %s", exc)
        return f"; not compacted: {exc}"
    return f"; state DB compacted from {before / 2**20:.1f} to {_db_bytes(db.path) / 2**20:.1f} MiB"


def restart(cfg, db, dry_run: bool = False) -> dict:
    """A planned restart of the whole stack, never while the exchange is open."""
    from catalyst_ops import control
    from catalyst_ops.calendar import from_config

    now = clock.now()
    session = from_config(cfg).open_session(now)
    if session is not None:
        return _step("restart", False, "refused",
                     f"NYSE session open ({session.open_local:%H:%M}-{session.close_local:%H:%M %Z}); "
                     "not restarting the stack during trading", PROBLEM)
    ok, output, waited = control.stack_action(cfg, db, "restart", dry_run=dry_run, wait=True,
                                              planned_reason="weekly-maintenance")
    if dry_run:
        return _step("restart", True, "dry_run", output or "would restart the stack")
    if waited is None:
        return _step("restart", ok, "ok" if ok else "failed", output[-300:] or "restart command failed",
                     None if ok else PROBLEM)
    if ok:
        return _step("restart", True, "ok", f"stack healthy {waited.seconds:.1f}s after the restart")
    bad = ", ".join(f"{r.service} ({r.state})" for r in waited.results if r.failed)
    return _step("restart", False, "unhealthy",
                 f"not healthy within {cfg.health.start_timeout:g}s after the restart: {bad}", PROBLEM)


def rotate_logs(config_path: str, state: str | None = None, binary: str | None = None, dry_run: bool = False) -> dict:
    exe = binary or shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.path.exists(exe):
        return _step("rotate-logs", False, "failed", f"logrotate not found ({exe}); install the logrotate package",
                     CANNOT_RUN)
    if not os.path.isfile(config_path):
        return _step("rotate-logs", False, "failed", f"{config_path}: logrotate config not found (--logrotate-config)",
                     USAGE)
    cmd = [exe] + (["-d"] if dry_run else []) + (["-s", state] if state else []) + [config_path]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return _step("rotate-logs", False, "timeout", "logrotate did not finish within 600s", PROBLEM)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    if proc.returncode != 0:
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        return _step("rotate-logs", False, "failed", f"logrotate exit {proc.returncode}: {' | '.join(errors[-3:])}",
                     PROBLEM)
    return _step("rotate-logs", True, "dry_run" if dry_run else "ok",
                 f"logrotate {config_path}: ok" + (f" ({len(lines)} lines of debug output)" if dry_run else ""))
