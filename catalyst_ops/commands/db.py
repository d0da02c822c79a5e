"""`catalyst-ops db check` and `catalyst-ops db fixture`."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.argtypes import integer
from catalyst_ops.errors import CANNOT_RUN, OK, PROBLEM

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("db", help="the trading database: integrity checks; load the schema fixture",
                       description="The trading database named by DATABASE_URL in the stack's .env (sslmode and the "
                       "other URL parameters are passed through).")
    actions = p.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    c = actions.add_parser(
        "check", help="connection, tables, foreign keys and data integrity (read-only)",
        description="Connection; tables in public (>= database.min_tables); foreign keys (>= database.min_foreign_keys); "
        "the expected tables of the real schema (database.expected_tables); constraints left NOT VALID; positions "
        "pointing at missing securities or cycles; orders pointing at missing positions; closed positions without "
        "closed_at or realized_pnl (a never-filled close, close_reason alpaca_*, needs no P&L); positions with "
        "quantity <= 0; positions closed before opened; and, informational, how many closes were never filled and "
        "how many carry an estimated P&L. A check whose table or column is absent is skipped. Exit 1 if any check "
        "fails, 3 if the database cannot be reached.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=run_check, job="db-check")
    f = actions.add_parser(
        "fixture", help="create the schema fixture (11 tables shaped like the real schema) and optional sample rows",
        description="Create the tables of the schema fixture (CREATE TABLE IF NOT EXISTS) in the database of "
        "DATABASE_URL, for the stand-in stack and drills; --trades N also generates N closed positions (refused when "
        "positions already has rows). Never run this against production.")
    f.add_argument("--trades", type=integer(0, 1_000_000), default=0, metavar="N", help="generate N closed positions (default 0)")
    f.add_argument("--seed-trades-table", action="store_true", help="also create the seed's `trades` table")
    f.add_argument("--dry-run", action="store_true", help="say what would be created; change nothing")
    f.set_defaults(func=run_fixture, job=None)


def run_check(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import dbcheck
    from catalyst_ops.errors import CannotRun
    from catalyst_ops.fmt import table

    code = OK
    try:
        checks = dbcheck.run_checks(ctx.cfg)
    except CannotRun as exc:
        checks = dbcheck.unreachable(str(exc))
        code = CANNOT_RUN
    failed = [c for c in checks if c.status == dbcheck.FAIL]
    if code == OK and failed:
        code = PROBLEM
    if ctx.as_json:
        ctx.emit_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        rows = [[c.name, c.status.upper() if c.status == dbcheck.FAIL else c.status,
                 "-" if c.value is None else c.value, c.threshold,
                 c.detail + (f" (e.g. {', '.join(map(str, c.samples))})" if c.samples else "")] for c in checks]
        ctx.out(table(rows, ["CHECK", "STATUS", "VALUE", "EXPECTED", "DETAIL"]))
    if code == CANNOT_RUN:
        import sys

        print(f"catalyst-ops: error: {checks[0].detail}", file=sys.stderr)
    ctx.summary = (f"{len(failed)} of {len(checks)} checks failed: {', '.join(c.name for c in failed)}" if failed
                   else f"{len(checks)} checks ok")
    return code


def run_fixture(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import db as pg
    from catalyst_ops.errors import OpsError, USAGE
    from catalyst_ops.sandbox import pgfixture

    if args.trades < 0:
        raise OpsError("db fixture: --trades: expected 0 or more", USAGE)
    target = pg.target_from_config(ctx.cfg)
    if args.dry_run:
        ctx.out(f"would create the schema fixture in {target.describe()}"
                + (f" and generate {args.trades} closed positions" if args.trades else ""))
        return OK
    conn = pg.connect(target, ctx.cfg.database.connect_timeout)
    try:
        pgfixture.load_schema(conn, seed_trades=args.seed_trades_table)
        if args.trades:
            with conn.cursor() as cur:
                cur.execute("SELECT EXISTS (SELECT 1 FROM positions)")
                if cur.fetchone()[0]:
                    raise OpsError("db fixture: positions already has rows; refusing to add generated ones", PROBLEM)
            pgfixture.generate(conn, args.trades)
    finally:
        conn.close()
    ctx.out(f"schema fixture ready in {target.describe()}" + (f", {args.trades} closed positions" if args.trades else ""))
    return OK
