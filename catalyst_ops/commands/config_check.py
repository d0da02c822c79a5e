"""`catalyst-ops config check` and `config check-crontab`: validate files before they are installed.

The Ansible roles use both as `validate:` commands, so a bad ops.yml or cron file never
replaces a good one on the droplet.
"""

from __future__ import annotations

from catalyst_ops.errors import OK, USAGE


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
