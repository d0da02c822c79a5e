"""Live ramp-up: risk grows in stages (trading.stages), one stage at a time, only when the
current stage's gate holds.

The stage lives in a private table of the state DB (ramp_state). Its limits go where the
services read them (upstream's config_loader.py): either the env overrides MAX_POSITIONS and
MAX_DAILY_LOSS_USD in the stack's .env (trading.max_positions_key / max_daily_loss_key;
applied by recreating the services, like a mode switch), or, with trading.risk_file set, the
`risk_limits` of config/risk_parameters.yaml, which the services hot-reload. While live, the
stage's max_positions also caps the workflow start body's max_positions. `ramp status` reads
back what the running services have, not only what was written. The first `mode live`
starts stage 1.

Gate to leave stage N (all must hold, each shown):
- mode is live (a ramp-up is about live risk);
- no halt flag;
- trading days in the stage >= stage.min_days: NYSE sessions (exchange_calendars XNYS)
  that opened after the stage began and have closed by now: full sessions only, so a
  stage entered mid-session does not count that session;
- largest single loss since the stage began <= stage.risk_per_trade x trading.capital,
  from the closed trades of the trading database (metrics.trades_query);
- no day's loss above the stage's daily limit (stage.max_daily_loss x trading.capital, the
  MAX_DAILY_LOSS_USD the services get): each exchange day's net P&L of the trades it closed;
- win rate >= trading.min_win_rate and risk:reward >= trading.min_risk_reward (average win /
  |average loss|, as in metrics) over the stage's trades; none yet: not met;
- before entering stage trading.drill_before_stage (3): an emergency stop or drill with every
  step ok within trading.drill_max_age_days (emergency_runs; `emergency-stop --drill`).
The trade gates read the stage's LIVE trades: closed since the stage began and opened while the
mode was live (the mode-switch events; after an emergency stop the stack trades paper).
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


def daily_loss_usd(cfg, stage: int) -> float:
    return round(stage_config(cfg, stage).max_daily_loss * cfg.trading.capital, 2)


def env_values(cfg, stage: int) -> dict[str, str]:
    """The .env risk keys for a stage ({} when the limits live in trading.risk_file)."""
    if cfg.trading.risk_file:
        return {}
    st = stage_config(cfg, stage)
    t = cfg.trading
    out = {t.max_positions_key: str(st.max_positions), t.max_daily_loss_key: _num(daily_loss_usd(cfg, stage))}
    if t.risk_per_trade_key:
        out[t.risk_per_trade_key] = _num(st.risk_per_trade)
    return out


RISK_SECTION = "risk_limits"


def file_values(cfg, stage: int) -> dict[str, float | int]:
    """risk_limits values of config/risk_parameters.yaml for a stage."""
    return {"max_positions": stage_config(cfg, stage).max_positions, "max_daily_loss_usd": daily_loss_usd(cfg, stage)}


def risk_file_path(cfg) -> str | None:
    """The risk_parameters.yaml the services read: trading.risk_file, else the compose project's copy."""
    import os

    from catalyst_ops.config import detect_compose_file

    if cfg.trading.risk_file:
        return cfg.trading.risk_file
    compose = detect_compose_file(cfg)
    if compose:
        candidate = os.path.join(os.path.dirname(compose), "config", "risk_parameters.yaml")
        if os.path.isfile(candidate):
            return candidate
    return None


def read_risk_file(path: str) -> dict:
    import yaml

    from catalyst_ops.errors import ConfigError

    try:
        data = yaml.safe_load(open(path, encoding="utf-8").read()) or {}
    except FileNotFoundError:
        raise ConfigError(path, None, "risk parameters file not found (trading.risk_file)")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(path, None, f"cannot read the risk parameters file: {exc.__class__.__name__}")
    section = data.get(RISK_SECTION) if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


def set_yaml_scalars(text: str, section: str, values: dict, source: str) -> str:
    """Set `section.key: value` lines of a YAML file in place, keeping comments and every other line."""
    import re

    import yaml

    from catalyst_ops.errors import ConfigError

    lines = text.splitlines(keepends=True)
    top = next((i for i, ln in enumerate(lines) if re.match(rf"^{re.escape(section)}\s*:\s*(#.*)?$", ln.rstrip("\r\n"))), None)
    if top is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{section}:\n")
        top = len(lines) - 1
    end = next((i for i in range(top + 1, len(lines)) if re.match(r"^[^\s#]", lines[i])), len(lines))
    indent = "  "
    for i in range(top + 1, end):
        m = re.match(r"^(\s+)\S", lines[i])
        if m and not lines[i].lstrip().startswith("#"):
            indent = m.group(1)
            break
    for key, value in values.items():
        shown = _num(value) if isinstance(value, float) else str(value)
        pat = re.compile(rf"^({re.escape(indent)}{re.escape(key)}\s*:\s*)([^#\r\n]*?)(\s*#.*)?(\r?\n)?$")
        for i in range(top + 1, end):
            m = pat.match(lines[i])
            if m:
                lines[i] = f"{m.group(1)}{shown}{m.group(3) or ''}{m.group(4) or ''}"
                break
        else:
            lines.insert(top + 1, f"{indent}{key}: {shown}\n")
            end += 1
    new = "".join(lines)
    try:
        parsed = (yaml.safe_load(new) or {}).get(section) or {}
    except yaml.YAMLError:
        parsed = {}
    if any(parsed.get(k) != v for k, v in values.items()):
        raise ConfigError(source, section, "could not set the limits in place (unusual layout); edit it by hand")
    return new


def write_limits_file(cfg, stage: int) -> tuple[dict, str | None]:
    """With trading.risk_file: set the stage's risk_limits there (backup first, atomic); (changes, backup)."""
    from catalyst_ops import stackenv
    from catalyst_ops.fsutil import atomic_write

    path = cfg.trading.risk_file
    if not path:
        return {}, None
    current = read_risk_file(path)
    want = file_values(cfg, stage)
    ch = {k: (current.get(k), v) for k, v in want.items() if current.get(k) != v}
    if not ch:
        return {}, None
    import os
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    new = set_yaml_scalars(text, RISK_SECTION, want, path)
    saved = stackenv.backup(cfg, path)
    atomic_write(path, new, os.stat(path).st_mode & 0o777)
    return ch, str(saved)


def running_limits(cfg, stage: int) -> list[dict]:
    """Each limit as the running services have it: their environment's override (config_loader's
    rule: the env wins), else risk_parameters.yaml; plus the workflow start body's max_positions."""
    from catalyst_ops import stackenv
    from catalyst_ops.errors import OpsError
    from catalyst_ops.runtime import get_runtime

    t = cfg.trading
    path = risk_file_path(cfg)
    try:
        file_limits = read_risk_file(path) if path else {}
        file_note = path or "no risk_parameters.yaml found"
    except OpsError as exc:
        file_limits, file_note = {}, str(exc)
    want = file_values(cfg, stage)
    runtime = get_runtime(cfg)
    rows = []
    for svc in stackenv.services(cfg):
        env = runtime.service_env(svc)
        for key, yaml_key in ((t.max_positions_key, "max_positions"), (t.max_daily_loss_key, "max_daily_loss_usd")):
            if env is None:
                value, source = None, "environment unreadable"
            elif env.get(key):
                value, source = env[key], f"environment {key}"
            elif yaml_key in file_limits:
                value, source = file_limits[yaml_key], file_note
            else:
                value, source = None, f"not set ({key} absent, {file_note})"
            ok = value is not None and _same(value, want[yaml_key])
            rows.append({"service": svc, "limit": yaml_key, "running": value, "source": source,
                         "stage_wants": want[yaml_key], "matches": ok})
    cap = min(cfg.workflow.max_positions, want["max_positions"])
    rows.append({"service": cfg.workflow.service, "limit": "workflow start max_positions", "running": cap,
                 "source": "sent by market-open and scan while live", "stage_wants": want["max_positions"],
                 "matches": cap <= want["max_positions"]})
    return rows


def _same(a, b) -> bool:
    try:
        return abs(float(a) - float(b)) < 0.005
    except (TypeError, ValueError):
        return False


def workflow_overrides(cfg, db) -> dict:
    """While live with the ramp started, the stage caps the cycle's max_positions."""
    from catalyst_ops import stackenv

    try:
        env = cfg.env(required=False)
    except Exception:
        return {}
    stage, entered = state(db)
    if entered is None or stackenv.trading_mode(env) != "live" or not env.get(stackenv.MODE_KEY):
        return {}
    return {"max_positions": min(cfg.workflow.max_positions, stage_config(cfg, stage).max_positions)}


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
    from catalyst_ops.calendar import from_config

    return from_config(cfg).count_sessions(datetime.fromtimestamp(since, timezone.utc), now)


def stage_trades(cfg, since: float) -> list[tuple]:
    """(pnl, symbol, entry_time, exit_time) of the trades closed since `since` (metrics.trades_query);
    NULL P&L (never-filled entries) is left out, as metrics does."""
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
    sql = (f"SELECT pnl, symbol, entry_time, exit_time FROM ({cfg.metrics.trades_query}) AS t"
           " WHERE t.exit_time >= %s AND t.pnl IS NOT NULL ORDER BY t.exit_time")
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
    return [(float(pnl), sym, _ts(entry), _ts(exit_)) for pnl, sym, entry, exit_ in rows]


def _ts(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()  # naive: UTC, as metrics
    return None


def live_intervals(db, until: float) -> list[tuple[float, float]] | None:
    """When the stack traded live, from the mode-switch events; None when there are none to tell."""
    import json

    rows = db.query("SELECT at, detail FROM events WHERE kind='mode-switch' ORDER BY at, id")
    if not rows:
        return None
    out, start = [], None
    for r in rows:
        try:
            to = json.loads(r["detail"] or "{}").get("to")
        except ValueError:
            continue
        if to == "live" and start is None:
            start = r["at"]
        elif to != "live" and start is not None:
            out.append((start, r["at"]))
            start = None
    if start is not None:
        out.append((start, until))
    return out


def live_trades(db, rows: list[tuple], until: float) -> tuple[list[tuple], str]:
    """The trades opened while the mode was live (by entry time; a trade without one, by its exit)."""
    spans = live_intervals(db, until)
    if spans is None:
        return rows, "no mode-switch recorded: every trade of the stage counted as live"
    kept = [r for r in rows if any(a <= (r[2] if r[2] is not None else r[3]) <= b for a, b in spans)]
    left = len(rows) - len(kept)
    return kept, (f"{left} trade{'s' if left != 1 else ''} opened while paper left out" if left else "")


def trade_gates(cfg, db, stage: int, entered: float) -> list[Gate]:
    """Largest single loss, worst day, win rate and risk:reward over the stage's live trades."""
    from zoneinfo import ZoneInfo

    from catalyst_ops.errors import OpsError

    st = stage_config(cfg, stage)
    t = cfg.trading
    per_trade = round(st.risk_per_trade * t.capital, 2)
    per_day = daily_loss_usd(cfg, stage)
    names = (("largest single loss", per_trade), ("worst day's loss", per_day), ("win rate", t.min_win_rate),
             ("risk:reward", t.min_risk_reward))
    try:
        rows = stage_trades(cfg, entered)
    except OpsError as exc:
        return [Gate(n, "unknown", thr, False, str(exc), True) for n, thr in names]
    rows, note = live_trades(db, rows, clock.timestamp())
    n = len(rows)
    scope = f"{n} closed live trade{'s' if n != 1 else ''} in the stage" + (f" ({note})" if note else "")
    out = []
    worst = min(rows, key=lambda r: r[0], default=None)
    loss = max(-worst[0], 0.0) if worst else 0.0
    out.append(Gate("largest single loss", round(loss, 2), per_trade, loss <= per_trade,
                    scope + (f"; worst {worst[1]}" if worst and loss > 0 else "")))
    tz = ZoneInfo(cfg.market.exchange_timezone)
    days: dict[str, list[float]] = {}
    for pnl, _, _, exit_ts in rows:
        days.setdefault(datetime.fromtimestamp(exit_ts, tz).date().isoformat(), []).append(pnl)
    net = {d: sum(p) for d, p in days.items()}
    bad_day = min(net, key=net.get, default=None)
    day_loss = max(-net[bad_day], 0.0) if bad_day else 0.0
    over = sorted(d for d, v in net.items() if -v > per_day)
    detail = (f"{bad_day}: net {net[bad_day]:+,.2f} over {len(days[bad_day])} trades" if bad_day and day_loss > 0
              else "no losing day") + f"; limit = max_daily_loss {st.max_daily_loss * 100:g} % x capital {t.capital:,.0f}"
    if len(over) > 1:
        detail += f"; over the limit on {', '.join(over)}"
    out.append(Gate("worst day's loss", round(day_loss, 2), per_day, day_loss <= per_day, detail))
    wins = [r[0] for r in rows if r[0] > 0]
    losses = [r[0] for r in rows if r[0] < 0]
    if not n:
        out.append(Gate("win rate", None, t.min_win_rate, False, "no closed live trade in the stage yet"))
        out.append(Gate("risk:reward", None, t.min_risk_reward, False, "no closed live trade in the stage yet"))
        return out
    rate = len(wins) / n
    out.append(Gate("win rate", round(rate, 4), t.min_win_rate, rate >= t.min_win_rate, f"{len(wins)} wins of {scope}"))
    if not losses:
        out.append(Gate("risk:reward", None, t.min_risk_reward, bool(wins),
                        "no losing trade: undefined; passes only with wins" if wins else "no winning or losing trade"))
    else:
        avg_win = sum(wins) / len(wins) if wins else 0.0
        avg_loss = abs(sum(losses) / len(losses))
        rr = avg_win / avg_loss
        out.append(Gate("risk:reward", round(rr, 2), t.min_risk_reward, rr >= t.min_risk_reward,
                        f"average win {avg_win:,.2f} / |average loss| {avg_loss:,.2f}"))
    return out


def drill_gate(cfg, db) -> Gate:
    from catalyst_ops import emergency

    days = cfg.trading.drill_max_age_days
    now = clock.timestamp()
    threshold = f"ok within {days:g} days"
    good = emergency.last_good_run(db, now - days * 86400)
    if good:
        when = datetime.fromtimestamp(good["started_at"], timezone.utc)
        what = "drill" if good["drill"] else "emergency stop"
        return Gate("emergency-stop drill", f"{what} #{good['id']} {when:%Y-%m-%d %H:%M} UTC", threshold, True,
                    f"by {good['actor']}: {good['reason']}")
    last = db.one("SELECT id, started_at, failed_steps FROM emergency_runs ORDER BY started_at DESC LIMIT 1")
    detail = "run `catalyst-ops emergency-stop --drill` (against the paper account; the live stack keeps trading)"
    if last is not None:
        detail += (f"; the last run, #{last['id']} {datetime.fromtimestamp(last['started_at'], timezone.utc):%Y-%m-%d} UTC, "
                   + (f"had steps not ok: {last['failed_steps']}" if last["failed_steps"] else "is older or unfinished"))
    return Gate("emergency-stop drill", "none", threshold, False, detail)


def gates(cfg, db, env: dict) -> list[Gate]:
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
    out += trade_gates(cfg, db, stage, entered)
    if 0 < cfg.trading.drill_before_stage <= stage + 1:
        out.append(drill_gate(cfg, db))
    return out


@dataclass
class AdvanceResult:
    code: int
    stage: int
    gates: list[Gate]
    lines: list[str]
    new_stage: int | None = None


def advance(cfg, db, dry_run: bool = False, reason: str | None = None) -> AdvanceResult:
    """Move to the next stage if every gate of the current one holds: the limits go to the .env
    (recreate + read back) or to trading.risk_file (hot reloaded), backup first."""
    from catalyst_ops import envfile, stackenv
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
    ch = stackenv.changes(env, ups)
    note = stackenv.check_passthrough(cfg, {**env, **ups}, ups) if ups else ""
    if dry_run:
        lines = [f"dry run: every gate holds; would advance stage {stage} -> {nxt} of {n}, setting (backup first):"]
        if cfg.trading.risk_file:
            lines += [f"  {cfg.trading.risk_file}: risk_limits.{k} -> {v}" for k, v in file_values(cfg, nxt).items()]
        else:
            lines += [f"  {line}" for line in stackenv.describe_changes(ch)] or ["  (the .env already holds these values)"]
            lines.append(f"  then: {stackenv.apply(cfg, None, ups, dry_run=True).detail}")
        if note:
            lines.append(f"  {note}")
        return AdvanceResult(0, stage, gs, lines, nxt)
    with stackenv.env_lock(cfg):
        ch, backup = stackenv.write(cfg, ups)
        fch, fbackup = write_limits_file(cfg, nxt)
    set_stage(db, nxt, reason or "gate met")
    db.record_event("ramp-advance", {"from": stage, "to": nxt, "reason": reason, "changed": sorted(ch) + sorted(fch),
                                     "backup": str(backup or fbackup or "") or None,
                                     "gates": [g.as_dict() for g in gs]})
    lines = [f"advanced: stage {stage} -> {nxt} of {n}" + (f"; backup {backup or fbackup}" if backup or fbackup else "")]
    lines += [f"  {line}" for line in stackenv.describe_changes(ch)]
    lines += [f"  {cfg.trading.risk_file}: risk_limits.{k}: {old} -> {new}" for k, (old, new) in fch.items()]
    if ups:
        applied = stackenv.apply(cfg, db, ups, reason=f"ramp stage {nxt}")
        lines.append(("confirmed: " if applied.ok else "FAILED: ") + applied.detail)
        ok = applied.ok
    else:
        shadow = [r for r in running_limits(cfg, nxt) if not r["matches"] and r["limit"] != "workflow start max_positions"]
        ok = not shadow
        lines.append("confirmed: the services read the new limits from the file (hot reload)" if ok else
                     "FAILED: " + "; ".join(f"{r['service']} {r['limit']}={r['running']} ({r['source']})" for r in shadow))
    return AdvanceResult(0 if ok else PROBLEM, stage, gs, lines, nxt)
