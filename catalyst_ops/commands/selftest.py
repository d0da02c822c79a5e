"""`catalyst-ops selftest`: the integration checks before paper trading, one command."""

from __future__ import annotations

import argparse

from catalyst_ops.errors import OK, PROBLEM


def register(sub) -> None:
    from catalyst_ops.selftest import CHECKS

    p = sub.add_parser("selftest", help="integration checks: services, database, one workflow cycle, daily report",
                       description="Run the integration checks and print a PASS/FAIL/SKIP line for each: all services "
                       "healthy (degraded fails); the database (`catalyst-ops db check` with the same config); one "
                       "workflow cycle started and followed to completion within workflow.deadline with every stage of the "
                       "contract profile seen; a daily report produced. The workflow check starts a REAL cycle: it refuses "
                       "while halted or in live mode (unless --allow-live). Exit 0 when nothing failed.")
    p.add_argument("--skip", action="append", default=[], choices=CHECKS, metavar="CHECK",
                   help=f"skip a check, shown as SKIP (repeatable; one of {', '.join(CHECKS)}), e.g. --skip database "
                   "on a host without PostgreSQL")
    p.add_argument("--allow-live", action="store_true", help="run the workflow cycle even with TRADING_MODE=live")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run, job="selftest")


def run(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import selftest

    results = selftest.run(ctx.cfg, ctx.db, set(args.skip), {"config": args.config, "allow_live": args.allow_live})
    failed = [r.name for r in results if r.result == selftest.FAIL]
    skipped = [r.name for r in results if r.result == selftest.SKIP]
    if ctx.as_json:
        ctx.emit_json({"passed": not failed, "failed": failed, "skipped": skipped, "checks": [r.as_dict() for r in results]})
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            ctx.out(f"{r.result}  {r.name.ljust(width)}  {r.detail}")
        ctx.out(f"selftest: {'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}"
                + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    ctx.summary = f"selftest {'passed' if not failed else 'failed: ' + ', '.join(failed)}" + \
                  (f" (skipped {', '.join(skipped)})" if skipped else "")
    return PROBLEM if failed else OK
