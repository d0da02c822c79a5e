"""Command-line entry point. Parses arguments and calls the command modules; no logic here.

Each module in catalyst_ops/commands/ defines `register(subparsers)`, adding its parsers
with `set_defaults(func=..., job=NAME)`; a `job` name means the run is recorded in the
state DB (start, end, exit code, summary, output tail).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from catalyst_ops import __version__
from catalyst_ops.errors import CANNOT_RUN, OK, PROBLEM, USAGE, OpsError

EPILOG = """exit codes: 0 ok; 1 the check found a problem; 2 usage or configuration error;
3 could not run (a dependency is down).
configuration: --config, else $CATALYST_OPS_CONFIG, else /etc/catalyst/ops.yml, else built-in defaults."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


# The commands cron and the monitor's unit start (and `metrics`), and the module that registers each. A run of one
# of them builds only that module's parsers: importing and building all sixty-odd subparsers costs
# more CPU than a skipped market job itself. tests/test_cli_fast.py keeps this table honest.
FAST = {"health": "status", "market-open": "market", "scan": "market", "market-close": "market",
        "backup": "backup", "report": "report", "weekly-maintenance": "maintenance", "rotate-logs": "maintenance", "monitor": "monitor",
        "metrics": "metrics"}  # not scheduled, but its target is one second for the whole command
_GLOBAL_WITH_VALUE = ("--config", "--now")


def command_of(argv: list[str]) -> str | None:
    """The command word in argv: the first word that is neither a global option nor its value."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_WITH_VALUE:
            skip = True
        elif word == "--":
            return None
        elif not word.startswith("-"):
            return word
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; `only` (a module of catalyst_ops/commands) registers that module's commands alone."""
    parser = _Parser(prog="catalyst-ops", description="Run the Catalyst Trading System droplet: schedules, health, "
                     "alerts, backups, validation, trading mode and emergency stop.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"catalyst-ops {__version__}")
    parser.add_argument("--config", metavar="PATH", help="ops config file (default: $CATALYST_OPS_CONFIG or /etc/catalyst/ops.yml)")
    parser.add_argument("--now", metavar="ISO8601", help="act as if it were this moment, e.g. 2026-11-27T12:59:00-05:00 "
                        "(also $CATALYST_OPS_NOW)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    import catalyst_ops.commands as pkg

    if only:
        mods = [only]
    else:
        import pkgutil

        mods = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
    for mod in mods:
        if mod.startswith("_"):
            continue
        importlib.import_module(f"catalyst_ops.commands.{mod}").register(sub)
    return parser


def _status_for(code: int) -> str:
    return "ok" if code == OK else "failed"


def scheduled() -> bool:
    """Whether cron started this run: the crontabs set CATALYST_OPS_SCHEDULED=1."""
    return os.environ.get("CATALYST_OPS_SCHEDULED", "").strip() == "1"


def _alert_job(ctx, job: str, code: int) -> None:
    """A failed scheduled job alerts (and its next success sends a recovery). Never fails the job.
    Exit 2 by hand is the operator's typo, not an incident; from cron it is a job that never runs (a
    broken config, .env or option in the crontab), so it alerts, on the config's alert settings even
    when the rest of the config does not load. `health` exit 1 is the alert policy's."""
    if (code == USAGE and not scheduled()) or (job == "health" and code == PROBLEM):
        return
    try:
        from catalyst_ops import alerts
        from catalyst_ops.alerts import outbox, policy

        if code == USAGE:
            from catalyst_ops import config
            from catalyst_ops.state import open_state

            try:
                cfg, db = ctx.cfg, ctx.db
            except OpsError:  # the config (or the .env) does not load: what alerting needs of it
                cfg = config.load_for_alerts(getattr(ctx.args, "config", None))
                db = ctx._db = open_state(cfg)
        else:
            cfg, db = ctx.cfg, ctx.db
        status = ctx.status or _status_for(code)
        own = alerts.enqueued_by_this_process()
        if policy.job_outcome(cfg, db, job, code, status, ctx.summary, notify=not own) or own:
            outbox.flush(cfg, db)
    except Exception as exc:
        from catalyst_ops import log

        print(f"catalyst-ops: warning: could not raise the job alert: {log.redact(str(exc))}", file=sys.stderr)


LOG_ALERT_KEY = "job-log-write"


def _alert_log_writes(ctx, job: str) -> None:
    """One warning while job logs cannot be written (a full or read-only log partition), one info
    when they are again. The job itself went on; its lines are in job_runs.output_tail."""
    from catalyst_ops import log

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        if log.write_error is None and not log.wrote_ok:
            return  # nothing was written: nothing learned
        from catalyst_ops.alerts import outbox, policy

        db = ctx.db
        if log.write_error is None:
            row = db.one("SELECT alerted_state FROM alert_state WHERE subject_key=?", (LOG_ALERT_KEY,)) \
                if db.one("SELECT 1 FROM sqlite_master WHERE name='alert_state'") else None
            if not row or row["alerted_state"] == "ok":
                return  # the common case: logs written, nothing was wrong
        failing = log.write_error is not None
        aid = policy.condition(
            db, LOG_ALERT_KEY, failing, "warning", f"JOB LOGS NOT WRITTEN: {log.write_error}",
            f"catalyst-ops {job} could not write its log: {log.write_error}.\n"
            "The jobs go on (a trading action never waits on a log line) and each run's last lines are kept "
            "in the state DB (`catalyst-ops report daily`, job_runs.output_tail); free space on the log "
            "partition (du -sh /var/log/catalyst/*; logrotate) and this clears at the next job that can write.",
            "RECOVERED: job logs are written again", f"catalyst-ops {job} wrote its log again.")
        if aid is not None:
            outbox.flush(ctx.cfg, db)
    except Exception as exc:  # never fails the job
        print(f"catalyst-ops: warning: could not raise the log-write alert: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(FAST.get(command_of(sys.argv[1:] if argv is None else argv) or ""))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE
    from catalyst_ops import clock, log
    from catalyst_ops.context import Context

    job = getattr(args, "job", None)
    log.setup(job or args.command, args.verbose, args.quiet)
    logger = logging.getLogger("catalyst_ops")
    ctx = Context(args)
    run_id = None
    code = CANNOT_RUN
    try:
        if args.now is not None:  # `--now ""` is a mistake, not "no override"
            clock.set_now(args.now)
        else:
            clock.init_from_env()
        if job and not getattr(args, "dry_run", False):
            run_id = ctx.db.start_job(job)
        code = int(args.func(ctx, args) or 0)
    except OpsError as exc:
        code = exc.exit_code
        msg = log.redact(str(exc))
        print(f"catalyst-ops: error: {msg}", file=sys.stderr)
        ctx.summary = ctx.summary or msg
    except KeyboardInterrupt:
        code = 130
        ctx.summary = "interrupted"
    except Exception as exc:  # a bug: one line, not a traceback (-v shows it)
        code = CANNOT_RUN
        msg = log.redact(f"internal error: {exc.__class__.__name__}: {exc}")
        logger.debug("traceback", exc_info=True)
        print(f"catalyst-ops: {msg}", file=sys.stderr)
        ctx.summary = msg
    finally:
        if run_id is not None:
            try:
                ctx.db.finish_job(run_id, code, ctx.status or _status_for(code), ctx.summary, log.tail_text(),
                                  ctx.session_date)
            except Exception as exc:  # the state DB itself failed: say so, keep the exit code
                print(f"catalyst-ops: error: could not record the run: {exc}", file=sys.stderr)
            _alert_job(ctx, job, code)
            if not getattr(args, "dry_run", False):
                _alert_log_writes(ctx, job)
        elif job and code == USAGE and scheduled() and not getattr(args, "dry_run", False):
            _alert_job(ctx, job, code)  # the run could not even be recorded (the config did not load)
        ctx.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
