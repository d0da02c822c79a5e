"""`db check`: is the trading database reachable and is its shape and content sane?

Structure (the seed's checks, thresholds in `database.*`): connection, tables in `public`
(>= min_tables), foreign keys (>= min_foreign_keys), the expected tables of the real schema,
constraints left NOT VALID. Content (the seed's integrity checks, on the real schema's
`positions`/`orders`; a check whose table or column is absent is reported as skipped, not
passed): positions pointing at missing securities or cycles, orders pointing at missing
positions, closed positions without closed_at or realized_pnl (metrics cannot use them),
positions with a quantity <= 0, positions closed before they were opened.

Upstream's close reasons (catalyst_ops/closes.py): a never-filled close has no realized_pnl by
design, so it is not incomplete; never-filled closes and estimates (ghost closes with a guessed
exit, zero-P&L emergency closes) are counted in two informational checks, which never fail.
Without a close_reason column every closed position needs its realized_pnl, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from catalyst_ops import closes, db as pg
from catalyst_ops.errors import CannotRun

OK, FAIL, SKIP = "ok", "fail", "skip"


@dataclass
class Check:
    name: str
    status: str
    value: object = None
    threshold: str = ""
    detail: str = ""
    samples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"check": self.name, "status": self.status, "value": self.value, "threshold": self.threshold,
                "detail": self.detail, "samples": self.samples}


# name, needed {table: [columns]}, SQL counting bad rows, SQL listing sample keys, what it means
INTEGRITY = [
    ("orphaned_positions_security", {"positions": ["position_id", "security_id"], "securities": ["security_id"]},
     "FROM positions p WHERE p.security_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM securities s WHERE s.security_id = p.security_id)",
     "p.position_id", "positions whose security_id has no row in securities"),
    ("orphaned_positions_cycle", {"positions": ["position_id", "cycle_id"], "trading_cycles": ["cycle_id"]},
     "FROM positions p WHERE p.cycle_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM trading_cycles c WHERE c.cycle_id = p.cycle_id)",
     "p.position_id", "positions whose cycle_id has no row in trading_cycles"),
    ("orphaned_orders", {"orders": ["order_id", "position_id"], "positions": ["position_id"]},
     "FROM orders o WHERE o.position_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM positions p WHERE p.position_id = o.position_id)",
     "o.order_id", "orders whose position_id has no row in positions"),
    ("closed_positions_incomplete", {"positions": ["position_id", "status", "closed_at", "realized_pnl"]},
     "FROM positions p WHERE p.status = 'closed' AND (p.closed_at IS NULL OR p.realized_pnl IS NULL)",
     "p.position_id", "closed positions without closed_at or realized_pnl (left out of metrics)"),
    ("positions_nonpositive_quantity", {"positions": ["position_id", "quantity"]},
     "FROM positions p WHERE p.quantity <= 0",
     "p.position_id", "positions with quantity <= 0 (side carries the direction)"),
    ("positions_closed_before_opened", {"positions": ["position_id", "opened_at", "closed_at"]},
     "FROM positions p WHERE p.closed_at < p.opened_at",
     "p.position_id", "positions whose closed_at is before opened_at"),
]


# with a close_reason column: a never-filled close needs no realized_pnl
INCOMPLETE_WITH_REASON = ("FROM positions p WHERE p.status = 'closed' AND (p.closed_at IS NULL OR "
                          "(p.realized_pnl IS NULL AND (p.close_reason IS NULL OR NOT p.close_reason = ANY(%(unfilled)s::text[]))))")
INCOMPLETE_WITH_REASON_MEANING = ("closed positions without closed_at, or without realized_pnl and not a never-filled "
                                  "close (left out of metrics)")

# name, needed columns, the kinds counted, what it means; informational: ok with a count, never fail
CLOSE_KINDS = [
    ("closed_positions_not_filled", [closes.UNFILLED],
     "never-filled entries closed by the trading service (close_reason alpaca_*, no P&L): not trades"),
    ("closed_positions_estimated", list(closes.ESTIMATES),
     "closes with an estimated P&L (stop_loss_estimated, take_profit_estimated, closed_no_exit_price, zero-P&L "
     "emergency closes): counted apart by metrics"),
]
CLOSE_KIND_COLUMNS = ["position_id", "status", "close_reason", "realized_pnl", "entry_price", "exit_price"]


def _columns(cur) -> dict[str, set[str]]:
    cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'")
    out: dict[str, set[str]] = {}
    for t, c in cur.fetchall():
        out.setdefault(t, set()).add(c)
    return out


def run_checks(cfg) -> list[Check]:
    """All checks. Raises CannotRun when the database cannot be reached (the caller reports it)."""
    dbc = cfg.database
    target = pg.target_from_config(cfg)
    started = time.monotonic()
    conn = pg.connect(target, dbc.connect_timeout)
    try:
        return _checks(conn, cfg, target, started)
    except Exception as exc:
        import psycopg2

        if isinstance(exc, psycopg2.Error):
            raise CannotRun(f"db check: a query failed: {pg.error_text(exc)}")
        raise
    finally:
        conn.close()


def _checks(conn, cfg, target, started: float) -> list[Check]:
    dbc = cfg.database
    checks: list[Check] = []
    conn.set_session(readonly=True, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (int(dbc.statement_timeout * 1000),))
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        cur.execute("SELECT current_setting('ssl', true), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())")
        _, ssl_used = cur.fetchone()
        checks.append(Check("connection", OK, f"{(time.monotonic() - started) * 1000:.0f} ms", "",
                            f"{target.describe()}, PostgreSQL {version}, ssl {'on' if ssl_used else 'off'}"))

        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                    " AND table_type = 'BASE TABLE' ORDER BY 1")
        tables = [r[0] for r in cur.fetchall()]
        checks.append(Check("tables", OK if len(tables) >= dbc.min_tables else FAIL, len(tables),
                            f">= {dbc.min_tables}", "tables in public"))

        cur.execute("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                    " WHERE c.contype = 'f' AND n.nspname = 'public'")
        fks = int(cur.fetchone()[0])
        checks.append(Check("foreign_keys", OK if fks >= dbc.min_foreign_keys else FAIL, fks,
                            f">= {dbc.min_foreign_keys}", "foreign keys in public"))

        if dbc.expected_tables:
            missing = [t for t in dbc.expected_tables if t not in tables]
            checks.append(Check("expected_tables", FAIL if missing else OK, len(dbc.expected_tables) - len(missing),
                                f"= {len(dbc.expected_tables)}",
                                ("missing: " + ", ".join(missing)) if missing else "all present"))

        cur.execute("SELECT c.conname, c.conrelid::regclass::text FROM pg_constraint c"
                    " JOIN pg_namespace n ON n.oid = c.connamespace"
                    " WHERE NOT c.convalidated AND n.nspname = 'public' ORDER BY 1 LIMIT 20")
        invalid = cur.fetchall()
        checks.append(Check("constraints_not_valid", FAIL if invalid else OK, len(invalid), "= 0",
                            "constraints created NOT VALID (existing rows never checked)",
                            [f"{t}.{c}" for c, t in invalid[:5]]))

        cols = _columns(cur)
        params = closes.params(cfg)
        has_reason = "close_reason" in cols.get("positions", set())
        for name, needs, from_where, key, meaning in INTEGRITY:
            absent = [f"{t}.{c}" for t, cs in needs.items() for c in cs if c not in cols.get(t, set())]
            if absent:
                checks.append(Check(name, SKIP, None, "= 0", f"{meaning}; skipped: no {', '.join(absent[:3])}"))
                continue
            if name == "closed_positions_incomplete" and has_reason:
                from_where, meaning = INCOMPLETE_WITH_REASON, INCOMPLETE_WITH_REASON_MEANING
            cur.execute(f"SELECT count(*) {from_where}", params)
            bad = int(cur.fetchone()[0])
            samples = []
            if bad:
                cur.execute(f"SELECT {key} {from_where} ORDER BY 1 LIMIT 5", params)
                samples = [r[0] for r in cur.fetchall()]
            checks.append(Check(name, FAIL if bad else OK, bad, "= 0", meaning, samples))
        checks += _close_kinds(cur, cols, params)
    return checks


def _close_kinds(cur, cols: dict[str, set[str]], params: dict) -> list[Check]:
    """How many closed positions are not plain trades, in one pass; informational."""
    absent = [f"positions.{c}" for c in CLOSE_KIND_COLUMNS if c not in cols.get("positions", set())]
    if absent:
        return [Check(name, SKIP, None, "", f"{meaning}; skipped: no {', '.join(absent[:3])}")
                for name, _kinds, meaning in CLOSE_KINDS]
    code = closes.sql_code("p.close_reason", "p.realized_pnl", "p.entry_price", "p.exit_price")
    cur.execute(f"SELECT k, count(*), (array_agg(position_id ORDER BY position_id))[1:5] FROM "
                f"(SELECT p.position_id, {code} AS k FROM positions p WHERE p.status = 'closed') c GROUP BY k", params)
    names = {v: k for k, v in closes.CODES.items()}
    by_kind = {names[k]: (int(n), list(ids)) for k, n, ids in cur.fetchall()}
    out = []
    for name, kinds, meaning in CLOSE_KINDS:
        n = sum(by_kind.get(k, (0, []))[0] for k in kinds)
        samples = sorted(i for k in kinds for i in by_kind.get(k, (0, []))[1])[:5]
        out.append(Check(name, OK, n, "any (informational)", meaning, samples))
    return out


def unreachable(message: str) -> list[Check]:
    return [Check("connection", FAIL, None, "", message)]
