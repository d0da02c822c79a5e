"""`catalyst-ops backup [list | restore FILE --target-db NAME]`."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.errors import OK

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "backup", help="verified backup of the trading database (the cron job); list; restore",
        description="Without an action: pg_dump (custom format) of DATABASE_URL to a temp name, verified with "
        "pg_restore --list (and, with --verify-restore, a restore into a scratch database with row counts compared), "
        "SHA-256 recorded in the state DB and in <file>.sha256, mode 0600, renamed only when complete; then retention "
        "(backup.retention_days, never fewer than backup.keep_min files). A failure leaves no file, is recorded, "
        "queues a critical alert and exits 1 (3: the server could not be reached).")
    p.add_argument("--verify-restore", action="store_true", default=None,
                   help="also restore into a scratch database and compare row counts (default: backup.verify_restore)")
    p.add_argument("--dry-run", action="store_true", help="say what would be dumped, where, and what retention would "
                   "remove; change nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=run_backup, job="backup")
    actions = p.add_subparsers(dest="backup_action", metavar="[list | restore]",
                               title="actions (none: make a backup)")

    ls = actions.add_parser("list", help="backups recorded in the state DB and files in the backup directory",
                            description="List backups, newest first: recorded rows (ok, failed, pruned) and any file in "
                            "backup.dir that the state DB does not know. Read-only.")
    ls.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    ls.set_defaults(func=run_list, job=None)

    rs = actions.add_parser(
        "restore", help="restore a backup file into a database",
        description="Check the file's SHA-256 against its sidecar (or the state DB) and that pg_restore can read it, "
        "then restore it in one transaction into --target-db (created if absent). Refuses the live database and any "
        "existing non-empty database unless --force (which replaces the objects the archive holds). A failed restore "
        "into a new database drops it again.")
    rs.add_argument("file", metavar="FILE", help="the backup file (a path, or a name in backup.dir)")
    rs.add_argument("--target-db", required=True, metavar="NAME", help="database to restore into")
    rs.add_argument("--force", action="store_true", help="allow replacing the live database or a non-empty one")
    rs.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS, help="check and say what would happen")
    rs.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    rs.set_defaults(func=run_restore, job="backup-restore")


def run_backup(ctx, args: argparse.Namespace) -> int:
    import shlex

    from catalyst_ops import backup, fmt
    from catalyst_ops.lock import JobLock, LockHeld

    try:
        lock = JobLock(ctx.cfg.state_dir, "backup").acquire()
    except LockHeld as exc:
        msg = f"skipped: {exc}"
        log.info(msg)
        ctx.out(f"catalyst-ops backup: {msg}")
        ctx.status, ctx.summary = "skipped", msg
        return OK
    try:
        res = backup.make_backup(ctx.cfg, ctx.db, verify_restore=args.verify_restore, dry_run=ctx.dry_run)
    finally:
        lock.release()
    if ctx.as_json:
        ctx.emit_json(res.as_dict())
    elif res.dry_run:
        ctx.out(f"would dump: {shlex.join(res.command)}")
        ctx.out("password: through a 0600 PGPASSFILE, not argv")
        ctx.out(f"would write: {res.file} (+ .sha256), verified by {'restore into a scratch database' if res.verified == 'restore' else 'pg_restore --list'}")
        ctx.out("retention would remove: " + (", ".join(res.pruned) if res.pruned else "nothing"))
    else:
        ctx.out(f"backup ok: {res.file} ({fmt.size(res.size_bytes)}, {len(res.tables)} tables, "
                f"{sum(res.tables.values())} rows, verified: {res.verified}, {res.seconds:.1f}s)")
        ctx.out(f"sha256: {res.sha256}")
        if res.pruned:
            ctx.out("retention removed: " + ", ".join(res.pruned))
    if not res.dry_run:
        ctx.summary = f"ok: {res.file} {res.size_bytes} bytes, verified {res.verified}" + (
            f", pruned {len(res.pruned)}" if res.pruned else "")
        log.info(ctx.summary)
    return OK


def run_list(ctx, args: argparse.Namespace) -> int:
    import os

    from catalyst_ops import backup, fmt

    items = backup.list_backups(ctx.cfg, ctx.db)
    if getattr(args, "json", False):
        ctx.emit_json({"dir": ctx.cfg.backup.dir, "backups": items})
        return OK
    if not items:
        ctx.out(f"no backups (directory {ctx.cfg.backup.dir})")
        return OK
    rows = [[fmt.ts(i["created_at"]), os.path.basename(i["file"]), fmt.size(i["size_bytes"]), i["status"],
             i["verified"] or "-", (i["sha256"] or "-")[:12], "" if i["exists"] or i["status"] != "ok" else "MISSING",
             (i["detail"] or "")[:80]] for i in items]
    ctx.out(fmt.table(rows, ["CREATED", "FILE", "SIZE", "STATUS", "VERIFIED", "SHA256", "FILE?", "DETAIL"]))
    return OK


def run_restore(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import backup, fmt

    plan = backup.plan_restore(ctx.cfg, ctx.db, args.file, args.target_db, args.force)
    as_json = getattr(args, "json", False)
    if getattr(args, "dry_run", False):
        data = {"dry_run": True, "archive": plan.archive, "target_db": plan.target_db, "target_exists": plan.exists,
                "replaces_existing": plan.clean, "checksum": plan.checksum}
        if as_json:
            ctx.emit_json(data)
        else:
            ctx.out(f"would restore {plan.archive} (checksum: {plan.checksum}) into "
                    f"{'the existing database' if plan.exists else 'a new database'} {plan.target_db}"
                    + (" replacing the objects it holds" if plan.clean else ""))
        ctx.status, ctx.summary = "skipped", "dry run"
        return OK
    counts = backup.restore(ctx.cfg, ctx.db, plan)
    ctx.summary = f"restored {plan.archive} into {plan.target_db}: {len(counts)} tables, {sum(counts.values())} rows"
    log.info(ctx.summary)
    if as_json:
        ctx.emit_json({"archive": plan.archive, "target_db": plan.target_db, "checksum": plan.checksum,
                       "replaced_existing": plan.exists, "row_counts": counts, "rows": sum(counts.values()),
                       "row_counts_match_backup": plan.expected is not None})
    else:
        ctx.out(ctx.summary + f" (checksum: {plan.checksum})")
        ctx.out(fmt.table([[t, n] for t, n in sorted(counts.items())], ["TABLE", "ROWS"]))
    return OK
