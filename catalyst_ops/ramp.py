"""Live ramp-up: risk grows in stages (trading.stages), one stage at a time, only when the
current stage's gate holds.

The stage lives in a private table of the state DB (ramp_state); its values are written
to the stack's .env risk keys (trading.max_positions_key, risk_per_trade_key,
max_daily_loss_key) by `mode` and `ramp advance`. The first `mode live` starts stage 1.

Gate to leave stage N (all must hold, each shown):
- mode is live (a ramp-up is about live risk);
- no halt flag;
- trading days in the stage >= stage.min_days: NYSE sessions (exchange_calendars XNYS)
  that opened after the stage began and have closed by now: full sessions only, so a
  stage entered mid-session does not count that session;
- largest single loss since the stage began <= stage.risk_per_trade x trading.capital,
  from the closed trades of the trading database (metrics.trades_query).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from catalyst_ops import clock

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS ramp_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stage INTEGER NOT NULL,          -- 1-based index into trading.stages
    entered_at REAL NOT NULL,
    actor TEXT,
    reason TEXT
);
"""


@dataclass
class Gate:
    gate: str
    value: object
    threshold: object
    passed: bool
    detail: str = ""
    unavailable: bool = False  # could not be evaluated (a dependency is down)

    def as_dict(self) -> dict:
        return asdict(self)


def ensure(db) -> None:
    db.ensure_schema(SCHEMA)


def state(db) -> tuple[int, float | None]:
    """(stage, entered_at); stage 1 and None before the first `mode live`."""
    ensure(db)
    row = db.one("SELECT stage, entered_at FROM ramp_state WHERE id=1")
    if row is None:
        return 1, None
    return int(row["stage"]), float(row["entered_at"])


def stage_config(cfg, stage: int):
    stages = cfg.trading.stages
    return stages[min(max(stage, 1), len(stages)) - 1]


def env_values(cfg, stage: int) -> dict[str, str]:
    """The .env risk keys for a stage."""
    st = stage_config(cfg, stage)
    t = cfg.trading
    return {
        t.max_positions_key: str(st.max_positions),
        t.risk_per_trade_key: _num(st.risk_per_trade),
        t.max_daily_loss_key: _num(round(st.max_daily_loss * t.capital, 2)),
    }


def _num(x: float) -> str:
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def start_if_new(db, who: str | None = None) -> bool:
    """Begin stage 1 at the first go-live; later go-lives keep the stage reached."""
    ensure(db)
    cur = db.execute("INSERT OR IGNORE INTO ramp_state(id, stage, entered_at, actor, reason) VALUES (1,1,?,?,?)",
                     (clock.timestamp(), who, "first go-live"))
    return cur.rowcount > 0


def set_stage(db, stage: int, reason: str, who: str | None = None) -> None:
    ensure(db)
    db.execute("INSERT INTO ramp_state(id, stage, entered_at, actor, reason) VALUES (1,?,?,?,?)"
               " ON CONFLICT(id) DO UPDATE SET stage=excluded.stage, entered_at=excluded.entered_at,"
               " actor=excluded.actor, reason=excluded.reason", (stage, clock.timestamp(), who, reason))


# ---------------------------------------------------------------- gates


def sessions_completed(cfg, since: float, now: datetime) -> int:
    """Full NYSE sessions that opened at/after `since` and closed by `now`."""
    import exchange_calendars as xcals
    import pandas as pd

    cal = xcals.get_calendar(cfg.market.calendar)
    start = pd.Timestamp(datetime.fromtimestamp(since, timezone.utc).date())
    end = pd.Timestamp(now.astimezone(timezone.utc).date())
    start = max(start, cal.first_session)
    end = min(end, cal.last_session)
    if end < start:
        return 0
    sessions = cal.sessions_in_range(start, end)
    since_ts = pd.Timestamp(since, unit="s", tz="UTC")
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    return sum(1 for s in sessions if cal.session_open(s) >= since_ts and cal.session_close(s) <= now_ts)


def largest_loss(cfg, since: float) -> tuple[float, str | None, int]:
    """(largest single loss as a positive number, its symbol, trades considered) since `since`."""
    import psycopg2

    from catalyst_ops import log as opslog
    from catalyst_ops.errors import CannotRun, ConfigError

    env = cfg.env()
    url = env.get(cfg.database.url_env)
    if not url:
        raise ConfigError(cfg.env_file, cfg.database.url_env, "expected the trading database URL")
    try:
        from urllib.parse import urlsplit

        opslog.add_secret(urlsplit(url).password)
    except ValueError:
        pass
    sql = f"SELECT pnl, symbol FROM ({cfg.metrics.trades_query}) AS t WHERE t.exit_time >= %s"
    try:
        conn = psycopg2.connect(url, connect_timeout=cfg.database.connect_timeout)
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CannotRun(f"trading database: cannot connect: {opslog.redact(first)}")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, (datetime.fromtimestamp(since, timezone.utc),))
            rows = cur.fetchall()
    except psycopg2.Error as exc:
        raise CannotRun(f"trading database: the trades query failed (metrics.trades_query): "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__}")
    finally:
        conn.close()
    worst, worst_sym = 0.0, None
    for pnl, sym in rows:
        if pnl is not None and -float(pnl) > worst:
            worst, worst_sym = -float(pnl), sym
    return worst, worst_sym, len(rows)


def gates(cfg, db, env: dict) -> list[Gate]:
    from catalyst_ops.errors import OpsError

    stage, entered = state(db)
    st = stage_config(cfg, stage)
    out: list[Gate] = []
    mode = env.get("TRADING_MODE", "")
    out.append(Gate("mode is live", mode or "(unset)", "live", mode == "live"))
    halt = db.halt_state()
    out.append(Gate("no halt flag", "halted" if halt else "clear", "clear", halt is None,
                    f"halted: {halt['reason']}" if halt else ""))
    if entered is None:
        out.append(Gate("trading days in stage", 0, st.min_days, False, "the ramp has not started (no `mode live` yet)"))
        return out
    now = clock.now()
    try:
        days = sessions_completed(cfg, entered, now)
        out.append(Gate("trading days in stage", days, st.min_days, days >= st.min_days,
                        f"full {cfg.market.calendar} sessions since {datetime.fromtimestamp(entered, timezone.utc):%Y-%m-%d %H:%M} UTC"))
    except Exception as exc:  # a calendar problem must not read as "passed"
        out.append(Gate("trading days in stage", "unknown", st.min_days, False, f"calendar: {exc}", True))
    limit = round(st.risk_per_trade * cfg.trading.capital, 2)
    try:
        worst, sym, n = largest_loss(cfg, entered)
        out.append(Gate("largest single loss", round(worst, 2), limit, worst <= limit,
                        f"{n} closed trades in the stage" + (f"; worst {sym}" if sym else "")))
    except OpsError as exc:
        out.append(Gate("largest single loss", "unknown", limit, False, str(exc), True))
    return out


@dataclass
class AdvanceResult:
    code: int
    stage: int
    gates: list[Gate]
    lines: list[str]
    new_stage: int | None = None


def advance(cfg, db, dry_run: bool = False, reason: str | None = None) -> AdvanceResult:
    """Move to the next stage if every gate of the current one holds: .env risk keys (backup first),
    restart trading and confirm it still reports its mode."""
    from catalyst_ops import envfile, mode
    from catalyst_ops.errors import CANNOT_RUN, PROBLEM

    env = envfile.load(cfg.env_file)
    stage, _ = state(db)
    n = len(cfg.trading.stages)
    if stage >= n:
        return AdvanceResult(0, stage, [], [f"stage {stage} of {n} is the last one: nothing to advance"])
    gs = gates(cfg, db, env)
    if not all(g.passed for g in gs):
        failed = [g.gate for g in gs if not g.passed]
        code = CANNOT_RUN if any(g.unavailable for g in gs) else PROBLEM
        return AdvanceResult(code, stage, gs, [f"refused: stage {stage} gate not met ({', '.join(failed)}); the .env is unchanged"])
    nxt = stage + 1
    ups = env_values(cfg, nxt)
    ch = mode.changes(env, ups)
    current_mode = env.get(mode.MODE_KEY, "paper")
    if dry_run:
        lines = [f"dry run: every gate holds; would advance stage {stage} -> {nxt} of {n}, setting (backup first):"]
        lines += [f"  {line}" for line in mode.describe_changes(ch)] or ["  (the .env already holds these values)"]
        lines.append(f"  then: {mode.restart_and_confirm(cfg, current_mode, dry_run=True).detail}")
        return AdvanceResult(0, stage, gs, lines, nxt)
    with mode.env_lock(cfg):
        ch, backup = mode.write_env(cfg, ups)
    set_stage(db, nxt, reason or "gate met")
    db.record_event("ramp-advance", {"from": stage, "to": nxt, "reason": reason, "changed": sorted(ch),
                                     "backup": str(backup) if backup else None,
                                     "gates": [g.as_dict() for g in gs]})
    lines = [f"advanced: stage {stage} -> {nxt} of {n}" + (f"; backup {backup}" if backup else "")]
    lines += [f"  {line}" for line in mode.describe_changes(ch)]
    conf = mode.restart_and_confirm(cfg, current_mode)
    lines.append(("" if conf.ok else "FAILED: ") + conf.detail)
    return AdvanceResult(0 if conf.ok else PROBLEM, stage, gs, lines, nxt)
