"""Paper-trading metrics and the go/no-go verdict.

Trades come from ONE configurable query (metrics.trades_query) returning the columns
pnl, entry_time, exit_time, symbol, risk_amount. Everything is aggregated inside PostgreSQL
in a single pass (window functions for the equity curve), so the memory of this process does
not grow with the number of trades and the query runs once (twice with the cache: its check,
then the newer trades). Without a `since`, the figures of trades closed more than an hour before
the run are kept in the state DB (metrics_cache) and reused while a fingerprint of those trades
still matches (see _SQL's comment), so a run sends only the newer trades through the windows.

The query may also return close_reason, entry_price and exit_price (the default does): then
upstream's close reasons are read as catalyst_ops/closes.py describes. Which columns the query
has is asked once with LIMIT 0 (planned, not run), so the seed's `trades` query keeps working.

Definitions (README "Metrics"):
- a never-filled close (close_reason in metrics.unfilled_close_reasons, NULL pnl) is not a
  trade: left out of every figure, counted in `not_filled`;
- an estimate (close_reason in metrics.estimated_close_reasons, or a zero-P&L emergency close)
  is counted apart (`estimates`) and left out of the figures unless metrics.include_estimates;
  the verdict says how many of its trades are estimates;
- any other trade with NULL pnl or NULL exit_time is REJECTED: left out of every figure and
  counted in `rejected` (`db check` reports such closed positions as
  closed_positions_incomplete);
- win: pnl > 0; loss: pnl < 0; breakeven (pnl = 0) counts in the total only;
- win rate = wins / trades; average win/loss = mean pnl of the wins/losses;
- risk:reward = average win / |average loss| (the seed divided by the average of all trades);
  undefined (null) without losses, and then the gate passes only if there are wins;
- profit factor = gross win / |gross loss|; expectancy = total pnl / trades;
- equity curve: starting_equity + cumulative pnl in exit-time order (ties: entry time, then
  pnl); max drawdown = the largest fall from a running peak (the peak starts at
  starting_equity), as a fraction of that peak;
- trading days: distinct exit dates in market.exchange_timezone; consecutive days are
  CALENDAR-AWARE: successive sessions of the exchange calendar (market.calendar, XNYS), so a
  weekend or a holiday between two sessions does not break a run, a missed session does.
  Trades on non-session days count as days but not in runs. Outside the calendar's range the
  rule falls back to weekdays (Mon-Fri) and says so;
- crashes (state DB, during the period): job runs with status 'crashed' plus unplanned
  restarts (restarts.planned = 0, outcome not dry_run): each one is a service or job that died
  and had to be brought back without an operator deciding to.
Naive timestamps from the query are read as UTC. Arithmetic is double precision inside the
server (numeric window sums cost a third more at a million trades); money figures are
rounded to cents.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from catalyst_ops import calendar, closes, clock, db as pg
from catalyst_ops.errors import CannotRun, ConfigError

log = logging.getLogger(__name__)

# `c` classifies each row once, as a small integer (a narrow column for the window sorts):
#   0 a trade; 1, 2 an estimated / zero-P&L emergency close counted as a trade (include_estimates);
#   3, 4 the same, left out; 5 never filled (not a trade); 6 rejected (NULL pnl or exit time).
# It is computed below a fence (OFFSET 0): a flattened subquery's column is re-evaluated at every
# use above, which for this CASE costs a third more time at a million rows.
# The rows pass once, in exit order, through two window levels (equity, then its running peak) and
# end in ONE aggregate grouped by (class, sign of pnl, old): at most 56 small rows, each figure of
# the report a sum, a max or a min of them (combine()). Grouping costs fewer transitions per row than
# two dozen FILTERed aggregates over all rows. The trading days are the local dates of the first
# and last trade exit of each UTC day (local dates are monotone within a UTC day and take at most
# two values there), so the exchange-zone conversion runs on a few hundred rows, not on every one.
#
# The cache (metrics_cache in the state DB; README "Metrics"). Rows whose exit time is before a
# checkpoint (an hour before `until`) are "old": their groups, the equity curve's peak at the
# checkpoint and a fingerprint of those rows (count and the sum of {fp}, a 64-bit hash of each
# row's pnl, times, risk and close inputs) are kept. The next run checks the fingerprint with one
# sort-free pass (_VERIFY_SQL) and, if it matches, sends only the rows from the checkpoint on
# through the windows (`after`), the curve starting at the cached equity and peak (`equity0`,
# `peak0`). Exit time is the first key of the windows' order, so the old rows are exactly a prefix
# of it. A changed, added or removed old row changes the fingerprint and the figures are computed
# from scratch. Without the cache: after = NULL, equity0 = peak0 = the starting equity.
_SQL = """
SELECT c, sign(pnl)::int2 AS s, old, count(*) AS n, sum(pnl) AS total, min(pnl) AS lo, max(pnl) AS hi,
       sum(pnl / risk_amount) FILTER (WHERE risk_amount > 0) AS r_sum,
       count(*) FILTER (WHERE risk_amount > 0) AS r_n,
       max(peak - equity) AS dd_amount, max((peak - equity) / peak) FILTER (WHERE peak > 0) AS dd,
       min(exit_time) AS first_exit, max(exit_time) AS last_exit, min(entry_time) AS first_entry,
       array_agg((exit_time AT TIME ZONE %(tz)s)::date) FILTER (WHERE utc_day IS NOT NULL AND edge) AS days,
       max(peak) AS peak_hi, sum(h) AS h
FROM (
    SELECT c, pnl, risk_amount, entry_time, exit_time, equity, utc_day, h, old,
           utc_day IS DISTINCT FROM lag(utc_day) OVER w OR utc_day IS DISTINCT FROM lead(utc_day) OVER w AS edge,
           GREATEST(%(peak0)s::float8, max(equity) OVER w) AS peak
    FROM (
        SELECT c, pnl, risk_amount, entry_time, exit_time, h,
               coalesce(exit_time < %(checkpoint)s::timestamptz, false) AS old,
               CASE WHEN c < 3 THEN exit_time::date END AS utc_day,  -- the session's zone is UTC
               %(equity0)s::float8 + coalesce(sum(CASE WHEN c < 3 THEN pnl END) OVER w, 0) AS equity
        FROM (
            SELECT q.pnl::float8 AS pnl, q.risk_amount::float8 AS risk_amount,
                   q.entry_time::timestamptz AS entry_time, q.exit_time::timestamptz AS exit_time,
                   CASE WHEN q.pnl IS NULL OR q.exit_time IS NULL THEN CASE {est} WHEN 3 THEN 5 ELSE 6 END
                        ELSE CASE {est} WHEN 0 THEN 0 WHEN 3 THEN 5
                                  WHEN 1 THEN CASE WHEN %(include_estimates)s THEN 1 ELSE 3 END
                                  ELSE CASE WHEN %(include_estimates)s THEN 2 ELSE 4 END END
                   END::int2 AS c,
                   {fp} AS h
            FROM ({query}) AS q
            WHERE (q.exit_time IS NULL OR q.exit_time::timestamptz <= %(until)s)
              AND (%(since)s::timestamptz IS NULL OR q.exit_time IS NULL OR q.exit_time::timestamptz >= %(since)s::timestamptz)
              AND (%(after)s::timestamptz IS NULL OR q.exit_time IS NULL OR q.exit_time::timestamptz >= %(after)s::timestamptz)
            ORDER BY 4, 3, 1  -- the windows' order, so they need no second sort above the fence
            OFFSET 0
        ) typed
        WINDOW w AS (ORDER BY exit_time, entry_time, pnl ROWS UNBOUNDED PRECEDING)
    ) e
    WINDOW w AS (ORDER BY exit_time, entry_time, pnl ROWS UNBOUNDED PRECEDING)
) d
GROUP BY 1, 2, 3
"""

# The check that the rows a cache covers are still the rows it was built from: their number and
# the sum of a 64-bit hash of each row's inputs to the figures ({fp}, the same expression _SQL
# sums per group). One sequential pass with no sort; the rows are the same set _SQL calls "old"
# (exit time before the checkpoint; the cache is only used without `since`).
_VERIFY_SQL = """
SELECT count(*) AS n, sum({fp}) AS h
FROM ({query}) AS q
WHERE q.exit_time::timestamptz < %(after)s::timestamptz AND q.exit_time::timestamptz <= %(until)s
"""


def combine(groups: list[dict]) -> dict:
    """The report's figures from the (class, sign) groups of _SQL."""

    def pick(pred):
        return [g for g in groups if pred(g["c"], g["s"])]

    def total(rows, key):
        vals = [g[key] for g in rows if g[key] is not None]
        return sum(vals) if vals else None

    def count(pred):
        return sum(g["n"] for g in pick(pred))

    trades = pick(lambda c, s: c < 3)
    wins, losses = pick(lambda c, s: c < 3 and s == 1), pick(lambda c, s: c < 3 and s == -1)
    n_wins, n_losses = sum(g["n"] for g in wins), sum(g["n"] for g in losses)
    gross_win, gross_loss = total(wins, "total"), total(losses, "total")
    r_n = sum(g["r_n"] for g in trades)
    highest = [g for g in trades if g["dd"] is not None]
    days = set()
    for g in trades:
        days.update(g["days"] or [])
    return {
        "trades": sum(g["n"] for g in trades), "wins": n_wins, "losses": n_losses,
        "rejected": count(lambda c, s: c == 6), "rejected_null_pnl": count(lambda c, s: c == 6 and s is None),
        "not_filled": count(lambda c, s: c == 5), "estimated": count(lambda c, s: c in (1, 3)),
        "emergency_zero": count(lambda c, s: c in (2, 4)),
        "estimates_pnl": total(pick(lambda c, s: 1 <= c <= 4), "total") or 0,
        "trades_estimated": count(lambda c, s: c in (1, 2)),
        "total_pnl": total(trades, "total") or 0, "gross_win": gross_win, "gross_loss": gross_loss,
        "avg_win": gross_win / n_wins if n_wins else None, "avg_loss": gross_loss / n_losses if n_losses else None,
        "largest_win": max((g["hi"] for g in wins), default=None),
        "largest_loss": min((g["lo"] for g in losses), default=None),
        "avg_r_multiple": total(trades, "r_sum") / r_n if r_n else None,
        "max_drawdown_amount": max((g["dd_amount"] for g in trades if g["dd_amount"] is not None), default=None),
        "max_drawdown": max((g["dd"] for g in highest), default=None),
        "first_exit": min((g["first_exit"] for g in trades if g["first_exit"] is not None), default=None),
        "last_exit": max((g["last_exit"] for g in trades if g["last_exit"] is not None), default=None),
        "first_entry": min((g["first_entry"] for g in trades if g["first_entry"] is not None), default=None),
        "days": sorted(days),
    }


REQUIRED = ("pnl", "entry_time", "exit_time", "symbol", "risk_amount")
# optional: without them every complete row is a trade (the seed's `trades` table)
OPTIONAL = ("close_reason", "entry_price", "exit_price")


@dataclass
class Gate:
    gate: str
    value: float | int | None
    op: str
    threshold: float | int
    passed: bool

    def as_dict(self) -> dict:
        return {"gate": self.gate, "value": self.value, "op": self.op, "threshold": self.threshold, "passed": self.passed}


@dataclass
class Report:
    since: datetime | None
    until: datetime
    days: int | None
    trades: int = 0
    wins: int = 0
    losses: int = 0
    breakeven: int = 0
    rejected: int = 0
    rejected_null_pnl: int = 0
    not_filled: int = 0  # never-filled closes: not trades
    estimates: dict = field(default_factory=dict)  # estimated and zero-P&L emergency closes, shown apart
    trades_estimated: int = 0  # how many of `trades` are estimates (0 unless include_estimates)
    total_pnl: float = 0.0
    gross_win: float = 0.0
    gross_loss: float = 0.0
    avg_win: float | None = None
    avg_loss: float | None = None
    win_rate: float | None = None
    risk_reward: float | None = None
    profit_factor: float | None = None
    expectancy: float | None = None
    avg_r_multiple: float | None = None
    largest_win: float | None = None
    largest_loss: float | None = None
    max_drawdown: float = 0.0
    max_drawdown_amount: float = 0.0
    starting_equity: float = 0.0
    ending_equity: float = 0.0
    trading_days: int = 0
    consecutive_days: int = 0
    day_rule: str = ""
    first_exit: datetime | None = None
    last_exit: datetime | None = None
    crashes: int = 0
    crash_detail: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # how the figures were computed: metrics_cache (README "Metrics")
    gates: list[Gate] = field(default_factory=list)
    verdict: str = "NO-GO"

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "gates"}
        for k in ("since", "until", "first_exit", "last_exit"):
            out[k] = out[k].isoformat() if out[k] is not None else None
        out["gates"] = [g.as_dict() for g in self.gates]
        out["verdict_estimates"] = estimates_line(self)
        return out


def _f(value, digits: int | None = 2) -> float | None:
    if value is None:
        return None
    return round(float(value), digits) if digits is not None else float(value)


def _query_text(cfg) -> str:
    q = cfg.metrics.trades_query.strip().rstrip(";").strip()
    if not q:
        raise ConfigError(cfg.source, "metrics.trades_query", "expected a SELECT returning pnl, entry_time, exit_time, symbol, risk_amount")
    return q


def _query_columns(cur, cfg, query: str) -> set[str]:
    """The trades query's column names, from a LIMIT 0 run (planned, no rows read)."""
    import psycopg2

    try:
        cur.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")
    except psycopg2.OperationalError as exc:
        raise CannotRun(f"metrics: the trades query could not run: {pg.error_text(exc)}")
    except psycopg2.Error as exc:
        raise ConfigError(cfg.source, "metrics.trades_query", f"the query failed: {pg.error_text(exc)} "
                          "(expected columns pnl, entry_time, exit_time, symbol, risk_amount)")
    cols = {d[0] for d in cur.description}
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ConfigError(cfg.source, "metrics.trades_query", f"the query has no column {', '.join(missing)} "
                          "(expected columns pnl, entry_time, exit_time, symbol, risk_amount)")
    return cols


def _has_closes(cols) -> bool:
    return all(c in cols for c in OPTIONAL)


def _fp_expr(cols) -> str:
    """The cache fingerprint's per-row hash over every input of the figures: pnl, both times, the
    risk, the close reason, and whether exit price = entry price where the P&L is 0 (the one place
    the close rule reads the prices). PostgreSQL 14+ (hash_record_extended)."""
    fields = "q.pnl, q.entry_time, q.exit_time, q.risk_amount"
    if _has_closes(cols):
        fields += ", q.close_reason, CASE WHEN q.pnl = 0 THEN q.exit_price = q.entry_price END"
    return f"hash_record_extended(ROW({fields}), 0)"


def _sql(query: str, cols: set[str], fp: str | None = None) -> str:
    # no close reasons: every complete row is a trade
    est = closes.sql_code("q.close_reason", "q.pnl", "q.entry_price", "q.exit_price") if _has_closes(cols) else "0"
    return _SQL.format(query=query, est=est, fp=fp or "NULL::int8")


# ------------------------------------------------------------------ the cache

CACHE_SCHEMA = "CREATE TABLE IF NOT EXISTS metrics_cache (key TEXT PRIMARY KEY, built_at REAL NOT NULL, payload TEXT NOT NULL);"
CHECKPOINT_LAG = timedelta(hours=1)  # trades that closed in the last hour are never cached
_CACHE_FORMAT = 1
_GROUP_KEYS = ("c", "s", "n", "total", "lo", "hi", "r_sum", "r_n", "dd_amount", "dd",
               "first_exit", "last_exit", "first_entry", "days")
_TIMES = ("first_exit", "last_exit", "first_entry")


def _none_pick(fn, a, b):
    return b if a is None else a if b is None else fn(a, b)


def _merge(groups: list[dict]) -> list[dict]:
    """Groups of the same (class, sign) folded into one: what combine() would make of them."""
    out: dict = {}
    for g in groups:
        m = out.get((g["c"], g["s"]))
        if m is None:
            out[(g["c"], g["s"])] = dict({k: g[k] for k in _GROUP_KEYS}, days=sorted(set(g["days"] or [])))
            continue
        m["n"] += g["n"]
        m["r_n"] += g["r_n"]
        for k in ("total", "r_sum"):
            m[k] = _none_pick(operator.add, m[k], g[k])
        for k in ("lo", "first_exit", "first_entry"):
            m[k] = _none_pick(min, m[k], g[k])
        for k in ("hi", "dd_amount", "dd", "last_exit"):
            m[k] = _none_pick(max, m[k], g[k])
        m["days"] = sorted(set(m["days"]) | set(g["days"] or []))
    return list(out.values())


@dataclass
class _Cache:
    """The old rows' figures: groups (one per class and sign), the peak of the equity curve at the
    checkpoint, and the fingerprint (row count, hash sum) of the rows before the checkpoint."""
    checkpoint: datetime
    groups: list[dict]
    n: int
    h: int
    peak: float

    @classmethod
    def build(cls, groups: list[dict], checkpoint: datetime, peak: float) -> "_Cache":
        return cls(checkpoint, [], 0, 0, peak).advanced(groups, checkpoint)

    def advanced(self, groups: list[dict], checkpoint: datetime) -> "_Cache":
        old = [g for g in groups if g["old"]]
        return _Cache(checkpoint, _merge(self.groups + old), self.n + sum(g["n"] for g in old),
                      self.h + sum(int(g["h"] or 0) for g in old),
                      max([self.peak] + [g["peak_hi"] for g in old if g["peak_hi"] is not None]))

    def equity(self, start: float) -> float:
        return start + sum(g["total"] or 0 for g in self.groups if g["c"] < 3)

    def dump(self) -> str:
        def group(g):
            return dict(g, days=[d.isoformat() for d in g["days"]],
                        **{k: g[k].isoformat() if g[k] is not None else None for k in _TIMES})

        return json.dumps({"format": _CACHE_FORMAT, "checkpoint": self.checkpoint.isoformat(), "n": self.n,
                           "h": self.h, "peak": self.peak, "groups": [group(g) for g in self.groups]})

    @classmethod
    def load(cls, text: str) -> "_Cache":
        d = json.loads(text)
        if d.get("format") != _CACHE_FORMAT:
            raise ValueError(f"format {d.get('format')!r}")

        def group(g):
            return dict(g, days=[date.fromisoformat(x) for x in g["days"]],
                        **{k: datetime.fromisoformat(g[k]) if g[k] is not None else None for k in _TIMES})

        return cls(datetime.fromisoformat(d["checkpoint"]), [group(g) for g in d["groups"]], int(d["n"]), int(d["h"]),
                   float(d["peak"]))


def _cache_key(conn, sql: str, params: dict) -> str:
    """The cache holds for one query, one rule set and one database: a hash of all three."""
    dsn = conn.get_dsn_parameters()
    ident = [_CACHE_FORMAT, sql, {k: params[k] for k in ("start", "tz", "include_estimates", "unfilled", "estimated")},
             [dsn.get(k) for k in ("host", "port", "dbname", "user")]]
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def _load_cache(state, key: str) -> _Cache | None:
    try:
        state.ensure_schema(CACHE_SCHEMA)
        row = state.one("SELECT payload FROM metrics_cache WHERE key = ?", (key,))
        return _Cache.load(row["payload"]) if row else None
    except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:  # unreadable: computed from scratch, rewritten
        log.warning("metrics: the cache in %s is unreadable (%s); computing from scratch", state.path, exc)
        return None


def _save_cache(state, key: str, cache: _Cache) -> None:
    """Best effort: the figures are right without it; a state DB that cannot take it is warned about."""
    try:
        state.ensure_schema(CACHE_SCHEMA)
        with state.transaction() as c:
            c.execute("DELETE FROM metrics_cache WHERE key <> ?", (key,))  # an older query's or config's
            c.execute("INSERT INTO metrics_cache(key, built_at, payload) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE"
                      " SET built_at = excluded.built_at, payload = excluded.payload",
                      (key, clock.timestamp(), cache.dump()))
    except (sqlite3.Error, OSError) as exc:
        log.warning("metrics: the cache was not saved in %s: %s", state.path, exc)


# ------------------------------------------------------------------ the figures

def _fetch(cur, sql: str, params: dict) -> list[dict]:
    cur.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _groups(cfg, conn, cur, query: str, cols: set[str], base: dict, state, fresh: bool) -> tuple[list[dict], dict]:
    """The (class, sign, old) groups of every row in the window, from the cache where it holds;
    and what was done ({"state": off|cold|warm|invalidated, ...}). Raw psycopg2 errors."""
    import psycopg2

    start, until = base["start"], base["until"]
    checkpoint = until - CHECKPOINT_LAG
    cold = dict(base, after=None, equity0=start, peak0=start, checkpoint=checkpoint)
    reason = ("metrics.cache is false" if not cfg.metrics.cache else "a window with a start (--days, the weekly review)" if base["since"]
              else f"PostgreSQL {conn.server_version // 10000} has no hash_record_extended (14+)"
              if conn.server_version < 140000 else None)
    if reason:
        return _fetch(cur, _sql(query, cols), cold), {"state": "off", "reason": reason}
    fp = _fp_expr(cols)
    sql = _sql(query, cols, fp)
    key = _cache_key(conn, sql, base)
    cached = None if fresh else _load_cache(state, key)
    info = {"state": "cold", "reason": "--fresh" if fresh else "no cache yet"}  # else overwritten below
    try:
        if cached is not None and cached.checkpoint > until:
            info["reason"], cached = "the window ends before the cache's checkpoint", None
        if cached is not None:
            cur.execute(_VERIFY_SQL.format(query=query, fp=fp), {"after": cached.checkpoint, "until": until})
            n, h = cur.fetchone()
            if (int(n), int(h or 0)) == (cached.n, cached.h):
                ckpt = max(checkpoint, cached.checkpoint)
                new = _fetch(cur, sql, dict(base, after=cached.checkpoint, equity0=cached.equity(start),
                                            peak0=cached.peak, checkpoint=ckpt))
                if ckpt > cached.checkpoint:
                    _save_cache(state, key, cached.advanced(new, ckpt))
                return cached.groups + new, {"state": "warm", "checkpoint": cached.checkpoint.isoformat(),
                                             "cached_trades": cached.n}
            info = {"state": "invalidated", "reason": f"the {cached.n} trades before "
                    f"{cached.checkpoint:%Y-%m-%d %H:%M} UTC changed ({int(n)} now)"}
        groups = _fetch(cur, sql, cold)
    except psycopg2.OperationalError:
        raise
    except psycopg2.Error as exc:  # e.g. a column type without a hash function: no cache for this query
        conn.rollback()
        log.info("metrics: no cache for this query (%s)", pg.error_text(exc))
        return _fetch(cur, _sql(query, cols), cold), {"state": "off", "reason": f"the fingerprint failed: {pg.error_text(exc)}"}
    _save_cache(state, key, _Cache.build(groups, checkpoint, start))
    info["checkpoint"] = checkpoint.isoformat()
    return groups, info


def compute(cfg, state, days: int | None = None, *, since: datetime | None = None,
            until: datetime | None = None, fresh: bool = False) -> Report:
    """Read the trades, compute the figures, the crashes and the gates. CannotRun if the DB is down.
    `since`/`until` (aware) give another window than the last `days` up to now (the weekly review).
    `fresh`: compute every figure from scratch, not from the cache (which is then rebuilt)."""
    import psycopg2

    until = until or clock.now()
    since = since or (until - timedelta(days=days) if days else None)
    m = cfg.metrics
    rep = Report(since=since, until=until, days=days, starting_equity=m.starting_equity)
    conn = pg.connect_cfg(cfg)
    try:
        # one snapshot for the cache's check and the figures
        conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET statement_timeout = %s", (int(cfg.database.statement_timeout * 1000),))
            # JIT compiling this plan costs more than running it (half a second and more at a
            # million rows); off for this session only, where the server has JIT at all (11+)
            cur.execute("SELECT set_config('jit', 'off', false) WHERE current_setting('server_version_num')::int >= 110000")
            conn.commit()  # the settings outlive a statement that fails and is rolled back
            query = _query_text(cfg)
            cols = _query_columns(cur, cfg, query)
            base = {"start": m.starting_equity, "tz": cfg.market.exchange_timezone, "until": until, "since": since,
                    "include_estimates": m.include_estimates, **closes.params(cfg)}
            try:
                groups, rep.cache = _groups(cfg, conn, cur, query, cols, base, state, fresh)
            except psycopg2.OperationalError as exc:
                raise CannotRun(f"metrics: the trades query could not run: {pg.error_text(exc)}")
            except psycopg2.Error as exc:
                raise ConfigError(cfg.source, "metrics.trades_query", f"the query failed: {pg.error_text(exc)} "
                                  "(expected columns pnl, entry_time, exit_time, symbol, risk_amount)")
            row = combine(groups)
    finally:
        conn.close()

    rep.trades, rep.wins, rep.losses = int(row["trades"]), int(row["wins"]), int(row["losses"])
    rep.breakeven = rep.trades - rep.wins - rep.losses
    rep.rejected, rep.rejected_null_pnl = int(row["rejected"]), int(row["rejected_null_pnl"])
    rep.not_filled = int(row["not_filled"])
    rep.estimates = {"estimated": int(row["estimated"]), "emergency_zero": int(row["emergency_zero"]),
                     "count": int(row["estimated"]) + int(row["emergency_zero"]), "pnl": _f(row["estimates_pnl"]),
                     "included": m.include_estimates}
    rep.trades_estimated = int(row["trades_estimated"])
    rep.total_pnl = _f(row["total_pnl"])
    rep.gross_win, rep.gross_loss = _f(row["gross_win"] or 0), _f(row["gross_loss"] or 0)
    # averages unrounded: risk:reward is their ratio
    rep.avg_win, rep.avg_loss = _f(row["avg_win"], None), _f(row["avg_loss"], None)
    rep.largest_win, rep.largest_loss = _f(row["largest_win"]), _f(row["largest_loss"])
    rep.avg_r_multiple = _f(row["avg_r_multiple"], 4)
    rep.max_drawdown = float(row["max_drawdown"] or 0)
    rep.max_drawdown_amount = _f(row["max_drawdown_amount"] or 0)
    rep.ending_equity = round(m.starting_equity + rep.total_pnl, 2)
    rep.first_exit, rep.last_exit = row["first_exit"], row["last_exit"]
    if rep.trades:
        rep.win_rate = rep.wins / rep.trades
        rep.expectancy = float(row["total_pnl"]) / rep.trades
    if rep.avg_win is not None and rep.avg_loss is not None:
        rep.risk_reward = rep.avg_win / abs(rep.avg_loss)
    if rep.gross_loss:
        rep.profit_factor = rep.gross_win / abs(rep.gross_loss)
    trade_days = sorted(set(row["days"] or []))
    rep.trading_days = len(trade_days)
    rep.consecutive_days, rep.day_rule = longest_session_run(trade_days, calendar.from_config(cfg))
    crash_since = since or row["first_entry"] or row["first_exit"]
    rep.crashes, rep.crash_detail = count_crashes(state, crash_since, until)
    rep.gates = gates(cfg, rep)
    rep.verdict = "GO" if rep.trades and all(g.passed for g in rep.gates) else "NO-GO"
    return rep


def longest_session_run(days: list[date], calendar="XNYS") -> tuple[int, str]:
    """Longest run of consecutive exchange sessions among `days`; (length, rule used). `calendar` is
    a calendar.Calendar or the name of one."""
    from catalyst_ops.calendar import Calendar

    cal = calendar if isinstance(calendar, Calendar) else Calendar(calendar)
    if not days:
        return 0, cal.name
    try:
        sessions = cal.sessions_between(days[0], days[-1])
        index = {s.day: i for i, s in enumerate(sessions)}
        positions = [index[d] for d in days if d in index]
        rule = cal.name
    except Exception as exc:  # no calendar for those dates: weekdays, and say so
        log.warning("trading days: %s calendar unavailable for %s..%s (%s); counting weekdays instead",
                    cal.name, days[0], days[-1], exc.__class__.__name__)
        positions = [_weekday_index(d) for d in days if d.weekday() < 5]
        rule = "weekdays"
    best = run = 0
    prev = None
    for p in positions:
        run = run + 1 if prev is not None and p == prev + 1 else 1
        best = max(best, run)
        prev = p
    return best, rule


def _weekday_index(d: date) -> int:
    # Mondays of consecutive weeks are 5 apart, so Friday -> Monday is +1
    ordinal = d.toordinal() - 1  # 0001-01-01 is a Monday
    return (ordinal // 7) * 5 + (ordinal % 7)


def count_crashes(state, since: datetime | None, until: datetime) -> tuple[int, dict]:
    lo = since.timestamp() if since is not None else 0.0
    hi = until.timestamp()
    crashed = state.one("SELECT count(*) AS n FROM job_runs WHERE status = 'crashed' AND started_at BETWEEN ? AND ?",
                        (lo, hi))["n"]
    restarts = state.one("SELECT count(*) AS n FROM restarts WHERE planned = 0 AND coalesce(outcome, '') != 'dry_run'"
                         " AND at BETWEEN ? AND ?", (lo, hi))["n"]
    return int(crashed) + int(restarts), {"crashed_job_runs": int(crashed), "unplanned_restarts": int(restarts)}


def gates(cfg, rep: Report) -> list[Gate]:
    m = cfg.metrics
    rr_ok = (rep.risk_reward >= m.min_risk_reward) if rep.risk_reward is not None else (rep.wins > 0 and rep.losses == 0)
    return [
        Gate("win_rate", _round(rep.win_rate), ">=", m.min_win_rate, rep.win_rate is not None and rep.win_rate >= m.min_win_rate),
        Gate("risk_reward", _round(rep.risk_reward), ">=", m.min_risk_reward, rr_ok),
        Gate("max_drawdown", _round(rep.max_drawdown), "<", m.max_drawdown, rep.trades > 0 and rep.max_drawdown < m.max_drawdown),
        Gate("trades", rep.trades, ">=", m.min_trades, rep.trades >= m.min_trades),
        Gate("consecutive_trading_days", rep.consecutive_days, ">=", m.min_consecutive_days,
             rep.consecutive_days >= m.min_consecutive_days),
        Gate("crashes", rep.crashes, "<=", m.max_crashes, rep.crashes <= m.max_crashes),
    ]


def estimates_line(rep: Report) -> str:
    """How many of the verdict's trades are estimates, and how many estimates it left out."""
    est = rep.estimates
    if est.get("included"):
        return f"{rep.trades_estimated} of its {rep.trades} trades are estimates (metrics.include_estimates)"
    return (f"0 of its {rep.trades} trades are estimates; {est.get('count', 0)} estimated closes left out "
            "(metrics.include_estimates: false)")


def _round(v: float | None, n: int = 6) -> float | None:
    return None if v is None or math.isnan(v) else round(v, n)


def record(state, rep: Report) -> int:
    cur = state.execute("INSERT INTO metrics_verdicts(computed_at, days, verdict, gates_json) VALUES (?,?,?,?)",
                        (clock.timestamp(), rep.days, rep.verdict, json.dumps([g.as_dict() for g in rep.gates])))
    return int(cur.lastrowid)
