"""`catalyst-ops config check` and `config check-crontab`: validate files before they are installed.

The Ansible roles use both as `validate:` commands, so a bad ops.yml or cron file never
replaces a good one on the droplet. `config foreign-cron` is the cron role's scan of the host's
other crontabs (catalyst_ops/foreigncron.py).
"""

from __future__ import annotations

from catalyst_ops.errors import OK, USAGE, CannotRun


def register(sub) -> None:
    p = sub.add_parser("config", help="validate the ops config or a cron.d file (used by the Ansible roles)",
                       description="Validate files before they are installed. Exit 0 when valid, 2 with one line "
                       "naming the file, key or line and what was expected.")
    ss = p.add_subparsers(dest="config_cmd", metavar="ACTION", required=True)
    c = ss.add_parser("check", help="load and validate an ops config (default: the one --config selects)",
                      description="Load and validate an ops config the way every command does; print the "
                      "effective file and exit 0, or one line and exit 2.")
    c.add_argument("file", nargs="?", help="the ops.yml to check (default: --config, $CATALYST_OPS_CONFIG, "
                   "/etc/catalyst/ops.yml)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=run_check)
    t = ss.add_parser("check-crontab", help="check a system crontab (/etc/cron.d format, with the user field)",
                      description="Check a cron.d file the way Debian's cron reads it: five time fields, a user "
                      "that exists on this host, a command without an unescaped %%, a newline at the end.")
    t.add_argument("file")
    t.add_argument("--no-user-check", action="store_true", help="do not require the users to exist on this host")
    t.add_argument("--json", action="store_true", help="print the jobs found as JSON")
    t.set_defaults(func=run_check_crontab)
    lr = ss.add_parser("check-logrotate", help="check a logrotate config with `logrotate -d`, failing on any error line",
                       description="Run `logrotate -d` on the file (with a throw-away state file) and fail on every "
                       "'error:' line: logrotate itself exits 0 after an unknown directive, which it skips.")
    lr.add_argument("file")
    lr.set_defaults(func=run_check_logrotate)
    e = ss.add_parser("check-env", help="check that a .env file parses (dotenv rules; values never printed)",
                      description="Parse a .env file with the same rules catalyst-ops reads it with. Prints the "
                      "number of keys, never a value.")
    e.add_argument("file")
    e.set_defaults(func=run_check_env)
    _register_foreign_cron(ss)


def _register_foreign_cron(ss) -> None:
    from catalyst_ops.foreigncron import DEFAULT_BACKUP_DIR, DEFAULT_OWN, DEFAULT_PATTERNS

    f = ss.add_parser(
        "foreign-cron", help="find (and with --disable comment out) cron lines outside our files that drive the stack",
        description="Read /etc/crontab, /etc/cron.d/* and the user crontabs in /var/spool/cron/crontabs the way "
        "Debian's cron does (catalyst-ops' own files excepted) and list the job lines whose command matches a "
        "pattern: upstream's workflow/start curls, docker-compose stop|restart|up|down, its health and scan "
        "scripts, pg_dump, calls to ports 5000-5009. With --disable each is commented out with "
        "'# disabled by catalyst-ops YYYY-MM-DD: ' after a backup of its file (system files: atomic rename; user "
        "crontabs: crontab -u USER, which cron notices). A file cron ignores (a line it cannot parse) runs nothing "
        "and is left alone. Exit 0: no live line left; 1: live lines found and left (no --disable, or --dry-run); "
        "2: bad option; 3: a file could not be read or written.")
    f.add_argument("--disable", action="store_true", help="comment the lines out (default: report only)")
    f.add_argument("--dry-run", action="store_true", help="with --disable: show what would be commented out; change nothing")
    f.add_argument("--json", action="store_true", help="print the result as JSON (the cron role reads it)")
    f.add_argument("--own", action="append", metavar="FILE",
                   help=f"catalyst-ops' own cron file, never read or touched (repeat; default {' and '.join(DEFAULT_OWN)})")
    f.add_argument("--pattern", action="append", metavar="REGEX",
                   help="a Python regular expression for a command that drives the stack (repeat); added to the "
                   f"{len(DEFAULT_PATTERNS)} built-in ones unless --no-default-patterns")
    f.add_argument("--no-default-patterns", action="store_true", help="use only the --pattern ones")
    f.add_argument("--backup-dir", metavar="DIR", default=DEFAULT_BACKUP_DIR,
                   help=f"where each edited file is copied first, as PATH_WITH_UNDERSCORES.YYYYMMDDTHHMMSSZ "
                   f"(default {DEFAULT_BACKUP_DIR}; not in /etc/cron.d, where cron could read it)")
    f.add_argument("--cron-root", metavar="DIR", default="/",
                   help="read the cron files under DIR instead of / (a test tree or a mounted image); user "
                   "crontabs there are read, never edited")
    f.set_defaults(func=run_foreign_cron)


def run_check(ctx, args) -> int:
    from catalyst_ops import config

    cfg = config.load(args.file or getattr(args, "config", None))
    if ctx.as_json:
        ctx.emit_json({"file": cfg.source, "valid": True, "services": cfg.enabled_services(),
                       "runtime": cfg.runtime.kind, "state_path": cfg.state_path, "log_dir": cfg.log_dir})
    else:
        print(f"ok: {cfg.source} ({len(cfg.enabled_services())} services, runtime {cfg.runtime.kind})")
    return OK


def run_check_crontab(ctx, args) -> int:
    from catalyst_ops import cronfile
    from catalyst_ops.errors import OpsError

    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise OpsError(f"{args.file}: cannot read: {exc.__class__.__name__}", USAGE)
    try:
        jobs = cronfile.parse(text, None if args.no_user_check else cronfile.local_user_exists)
    except cronfile.CronFileError as exc:
        raise OpsError(f"{args.file}: {exc}", USAGE)
    if ctx.as_json:
        ctx.emit_json({"file": args.file, "valid": True,
                       "jobs": [{"line": j.lineno, "schedule": j.schedule, "user": j.user, "command": j.command}
                                for j in jobs]})
    else:
        print(f"ok: {args.file} ({len(jobs)} jobs)")
    return OK


def run_check_env(ctx, args) -> int:
    from catalyst_ops import envfile

    keys = envfile.load(args.file)
    print(f"ok: {args.file} ({len(keys)} keys)")
    return OK


def run_check_logrotate(ctx, args) -> int:
    import os
    import shutil
    import subprocess
    import tempfile

    from catalyst_ops.errors import CannotRun, OpsError

    exe = shutil.which("logrotate") or next((p for p in ("/usr/sbin/logrotate", "/sbin/logrotate") if os.path.exists(p)), None)
    if not exe:
        raise CannotRun("logrotate is not installed")
    if not os.path.isfile(args.file):
        raise OpsError(f"{args.file}: cannot read: no such file", USAGE)
    with tempfile.TemporaryDirectory(prefix="catalyst-logrotate-") as tmp:
        proc = subprocess.run([exe, "-d", "-s", os.path.join(tmp, "state"), args.file], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    errors = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]
    if errors or proc.returncode != 0:
        first = errors[0] if errors else f"logrotate -d exited {proc.returncode}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise OpsError(f"{args.file}: {first}{more}", USAGE)
    print(f"ok: {args.file}")
    return OK


def run_foreign_cron(ctx, args) -> int:
    import os

    from catalyst_ops import clock, foreigncron
    from catalyst_ops.errors import PROBLEM, OpsError

    patterns = ([] if args.no_default_patterns else list(foreigncron.DEFAULT_PATTERNS)) + (args.pattern or [])
    own = args.own or list(foreigncron.DEFAULT_OWN)
    if not os.path.isdir(args.cron_root):
        raise OpsError(f"--cron-root {args.cron_root}: no such directory", USAGE)
    now = clock.now()
    result = foreigncron.scan(args.cron_root, own, patterns)
    if result.unreadable:
        first = result.unreadable[0]
        raise CannotRun(f"{first['file']}: cannot read: {first['reason']}")
    edits = foreigncron.disable(result, args.backup_dir, now, args.dry_run, args.cron_root) if args.disable else []
    data = foreigncron.report(result, edits, disable_requested=args.disable, dry_run=args.dry_run,
                              date=now.astimezone().strftime("%Y-%m-%d"), own=own, patterns=patterns)
    if ctx.as_json:
        ctx.emit_json(data)
    else:
        for f in result.findings:
            print(foreigncron.describe(f))
        for e in edits:
            print(f"{e['file']}: backup {e['backup']}" if e["backup"] else f"{e['file']}: would be edited (dry run)")
        verb = "would comment out" if args.dry_run else "commented out"
        print(f"{len(result.files)} cron files read; {len(result.findings)} line(s) drive the stack; "
              f"{data['changed']} {verb}; {data['remaining']} live line(s) left")
    ctx.summary = f"{len(result.findings)} foreign cron line(s), {data['changed']} changed"
    return PROBLEM if data["remaining"] else OK
