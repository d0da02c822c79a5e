"""The daily trading report: what the trading database says about one session, and what the
broker says now. market-close stores and mails it; `report trading` prints it for any day.

The reporting service cannot produce it (its `cycle_id` is an integer, the column is
VARCHAR(20) `YYYYMMDD-NNN`), so it is read the way upstream's own
scripts/generate_daily_report_db.py reads it: by session date. The session date is the
exchange's (`closed_at AT TIME ZONE market.exchange_timezone`), so a close at 19:30 New York
time belongs to that session although its UTC date is the next day; the day's cycles are
`cycle_id LIKE 'YYYYMMDD-%'`.

One query (metrics.session_query) returns one row of three JSON arrays: positions, cycles,
risk events. The figures are worked out here from the positions, with upstream's close
reasons read as catalyst_ops/closes.py says (never-filled closes are not trades; estimates
are shown apart and counted only with metrics.include_estimates, as in `metrics`).

Each source may fail alone: a database that cannot be reached leaves the broker's part (and
`available: false` with the reason); a broker that cannot be reached is shown as unavailable.
A bad query is a configuration error.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from catalyst_ops import clock, closes, fmt
from catalyst_ops.errors import CannotRun, ConfigError, OpsError

log = logging.getLogger(__name__)

KIND = "daily"  # the `reports` row: market-close's report, as before it came from the database
COLUMNS = ("positions", "cycles", "risk_events")
ACCOUNT_FIELDS = ("status", "currency", "equity", "last_equity", "cash", "buying_power", "portfolio_value",
                  "long_market_value", "short_market_value", "daytrade_count")
POSITION_FIELDS = ("symbol", "qty", "side", "avg_entry_price", "current_price", "market_value", "cost_basis",
                   "unrealized_pl", "unrealized_plpc")


def stem(session_date: str) -> str:
    return f"trading-daily-{session_date}"


def _float(v) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _when(v, tz) -> datetime | None:
    if not v:
        return None
    try:
        t = datetime.fromisoformat(str(v))
    except ValueError:
        return None
    if t.tzinfo is None:  # a naive timestamp is UTC, as in metrics
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(tz)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def query_text(cfg) -> str:
    q = cfg.metrics.session_query.strip().rstrip(";").strip()
    if not q:
        raise ConfigError(cfg.source, "metrics.session_query",
                          "expected a SELECT returning one row with the JSON arrays positions, cycles, risk_events")
    return q


def check_config(cfg) -> None:
    """What can fail on configuration, checked before market-close claims its one action."""
    from catalyst_ops import db as pg

    query_text(cfg)
    pg.target_from_config(cfg)
    try:
        ZoneInfo(cfg.market.exchange_timezone)
    except Exception:
        raise ConfigError(cfg.source, "market.exchange_timezone",
                          f"expected an IANA zone name, got {cfg.market.exchange_timezone!r}")


# ---------------------------------------------------------------------------- sources


def read_database(cfg, day: date) -> dict:
    """{"available", "error", "positions", "cycles", "risk_events"}; ConfigError for a bad query."""
    import psycopg2

    from catalyst_ops import db as pg

    query = query_text(cfg)
    params = {"session_date": day, "tz": cfg.market.exchange_timezone, "cycle_prefix": day.strftime("%Y%m%d") + "-%"}
    try:
        conn = pg.connect_cfg(cfg)
    except CannotRun as exc:
        return {"available": False, "error": str(exc)}
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET statement_timeout = %s", (int(cfg.database.statement_timeout * 1000),))
            try:
                cur.execute(query, params)
            except psycopg2.OperationalError as exc:
                return {"available": False, "error": f"the session query could not run: {pg.error_text(exc)}"}
            except psycopg2.Error as exc:
                raise ConfigError(cfg.source, "metrics.session_query", f"the query failed: {pg.error_text(exc)}")
            names = [d[0] for d in cur.description or []]
            row = cur.fetchone() if names else None
    except psycopg2.OperationalError as exc:  # the server went away between connect and query
        return {"available": False, "error": f"the trading database went away: {pg.error_text(exc)}"}
    finally:
        conn.close()
    found = dict(zip(names, row)) if row is not None else {}
    out = {"available": True, "error": None}
    for col in COLUMNS:
        value = found.get(col)
        if isinstance(value, str):  # a text column holding JSON
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, list):
            raise ConfigError(cfg.source, "metrics.session_query",
                              f"expected one row with the JSON arrays {', '.join(COLUMNS)}; {col} is "
                              f"{'missing' if col not in found else type(value).__name__}")
        out[col] = value
    return out


def read_broker(cfg) -> dict:
    """The broker's account and positions, read only; any failure makes it 'unavailable'."""
    from catalyst_ops import broker

    try:
        b = broker.from_config(cfg)
        account = b.account()
        positions = b.positions()
    except OpsError as exc:
        return {"available": False, "error": str(exc)}
    # only these fields: figures, never the account's number or id
    acct = {k: (account.get(k) if k in ("status", "currency") else _float(account.get(k))) for k in ACCOUNT_FIELDS}
    pos = [{k: (p.get(k) if k in ("symbol", "side") else _float(p.get(k))) for k in POSITION_FIELDS}
           for p in positions if isinstance(p, dict)]
    pos.sort(key=lambda p: (-(p.get("unrealized_pl") or 0), p.get("symbol") or ""))
    equity, last = acct.get("equity"), acct.get("last_equity")
    unreal = [p["unrealized_pl"] for p in pos if p.get("unrealized_pl") is not None]
    return {"available": True, "error": None, "source": b.label, "account": acct, "positions": pos,
            "daily_change": round(equity - last, 2) if equity is not None and last is not None else None,
            "unrealized_pl": round(sum(unreal), 2) if unreal else (0.0 if not pos else None)}


# ---------------------------------------------------------------------------- the report


def build(cfg, day: date, session: dict | None = None, broker: bool = True) -> dict:
    """The report for session `day`. Never raises for an unreachable database or broker.
    broker=False: the database's part only (the weekly review reads five sessions)."""
    tz = ZoneInfo(cfg.market.exchange_timezone)
    dbpart = read_database(cfg, day)
    brk = read_broker(cfg) if broker else {"available": False, "error": "not asked"}
    data = {"kind": "trading-daily", "session_date": day.isoformat(), "timezone": cfg.market.exchange_timezone,
            "generated_at": _iso(clock.now().astimezone(tz)), "session": session,
            "cycle_prefix": day.strftime("%Y%m%d") + "-",
            "database": {"available": dbpart["available"], "error": dbpart["error"]}, "broker": brk,
            "include_estimates": cfg.metrics.include_estimates}
    if not dbpart["available"]:
        data.update(summary=None, positions_opened=[], positions_closed=[], open_positions=[], cycles=[], risk_events=[])
        return data
    unfilled, estimated = cfg.metrics.unfilled_close_reasons, cfg.metrics.estimated_close_reasons
    opened, closed, still_open = [], [], []
    for raw in dbpart["positions"]:
        if not isinstance(raw, dict):
            continue
        o, c = _when(raw.get("opened_at"), tz), _when(raw.get("closed_at"), tz)
        p = {"position_id": raw.get("position_id"), "cycle_id": raw.get("cycle_id"), "symbol": raw.get("symbol"),
             "side": raw.get("side"), "quantity": raw.get("quantity"), "entry_price": _float(raw.get("entry_price")),
             "exit_price": _float(raw.get("exit_price")), "status": raw.get("status"),
             "realized_pnl": _float(raw.get("realized_pnl")), "unrealized_pnl": _float(raw.get("unrealized_pnl")),
             "close_reason": raw.get("close_reason"), "opened_at": _iso(o), "closed_at": _iso(c)}
        if o is not None and o.date() == day:
            opened.append(p)
        if p["status"] == "closed":
            if c is not None and c.date() == day:
                p["close_kind"] = closes.classify(p["close_reason"], p["realized_pnl"], p["entry_price"],
                                                  p["exit_price"], unfilled, estimated)
                closed.append(p)
        else:
            still_open.append(p)
    closed.sort(key=lambda p: (p["closed_at"] or "", p["position_id"] or 0))
    data.update(summary=summarize(closed, opened, still_open, cfg.metrics.include_estimates),
                positions_opened=opened, positions_closed=closed, open_positions=still_open,
                cycles=[_cycle(c, tz) for c in dbpart["cycles"] if isinstance(c, dict)],
                risk_events=[e for e in dbpart["risk_events"] if isinstance(e, dict)])
    return data


def _cycle(c: dict, tz) -> dict:
    return {"cycle_id": c.get("cycle_id"), "mode": c.get("mode"), "status": c.get("status"),
            "started_at": _iso(_when(c.get("started_at"), tz)), "stopped_at": _iso(_when(c.get("stopped_at"), tz))}


def summarize(closed: list[dict], opened: list[dict], still_open: list[dict], include_estimates: bool) -> dict:
    def counted(p):
        return p["realized_pnl"] is not None and (
            p["close_kind"] == closes.TRADE or (include_estimates and p["close_kind"] in closes.ESTIMATES))

    trades = [p for p in closed if counted(p)]
    est = [p for p in closed if p["close_kind"] in closes.ESTIMATES]
    wins = sum(1 for p in trades if p["realized_pnl"] > 0)
    losses = sum(1 for p in trades if p["realized_pnl"] < 0)
    unreal = [p["unrealized_pnl"] for p in still_open if p["unrealized_pnl"] is not None]
    return {
        "opened": len(opened), "closed": len(closed), "trades": len(trades), "wins": wins, "losses": losses,
        "breakeven": len(trades) - wins - losses,
        "win_rate": round(wins / len(trades), 4) if trades else None,
        "realized_pnl": round(sum(p["realized_pnl"] for p in trades), 2),
        "not_filled": sum(1 for p in closed if p["close_kind"] == closes.UNFILLED),
        "incomplete": sum(1 for p in closed if p["close_kind"] != closes.UNFILLED and p["realized_pnl"] is None),
        "estimates": {"count": len(est), "estimated": sum(1 for p in est if p["close_kind"] == closes.ESTIMATED),
                      "emergency_zero": sum(1 for p in est if p["close_kind"] == closes.EMERGENCY_ZERO),
                      "pnl": round(sum(p["realized_pnl"] or 0 for p in est), 2), "included": include_estimates},
        "trades_estimated": sum(1 for p in trades if p["close_kind"] in closes.ESTIMATES),
        "open_positions": len(still_open),
        "unrealized_pnl": round(sum(unreal), 2) if unreal else (0.0 if not still_open else None),
    }


# ---------------------------------------------------------------------------- rendering


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def headline(data: dict) -> str:
    parts = []
    s = data["summary"]
    if s is None:
        parts.append(f"DATABASE UNAVAILABLE ({data['database']['error']})")
    else:
        parts.append(f"{s['trades']} closed trades" + (f" ({s['wins']} won, {s['losses']} lost, win rate {_pct(s['win_rate'])})"
                                                     if s["trades"] else ""))
        parts.append(f"realized P&L {fmt.money(s['realized_pnl'], True)}")
        e = s["estimates"]
        if e["count"]:
            parts.append(f"{e['count']} estimated ({fmt.money(e['pnl'], True)}, {'included' if e['included'] else 'left out'})")
        if s["not_filled"]:
            parts.append(f"{s['not_filled']} never filled")
        parts.append(f"{s['opened']} opened, {s['open_positions']} open")
        parts.append(f"{len(data['cycles'])} cycles, {len(data['risk_events'])} risk events")
    b = data["broker"]
    if b["available"]:
        eq = b["account"].get("equity")
        parts.append(f"equity {fmt.money(eq)}" + (f" ({fmt.money(b['daily_change'], True)} today)"
                                                 if b["daily_change"] is not None else ""))
    else:
        parts.append("broker unavailable")
    return f"Catalyst trading report {data['session_date']}: " + ", ".join(parts)


def _hm(iso: str | None, day: str) -> str:
    if not iso:
        return "-"
    return iso[11:16] if iso[:10] == day else f"{iso[:10]} {iso[11:16]}"


def render_text(data: dict) -> str:
    day = data["session_date"]
    sess = data.get("session") or {}
    when = (f"session {day} ({sess['open'][11:16]}-{sess['close'][11:16]}"
            + (", early close" if sess.get("early_close") else "") + f" {data['timezone']})") if sess else \
        f"session date {day} ({data['timezone']})"
    out = [headline(data), f"{when}; generated {data['generated_at']}", ""]
    b = data["broker"]
    out.append(f"Account (broker{', ' + b['source'] if b.get('source') else ''})")
    if b["available"]:
        a = b["account"]
        out.append(fmt.table([["equity", fmt.money(a.get("equity"))], ["last equity", fmt.money(a.get("last_equity"))],
                              ["change today", fmt.money(b["daily_change"], True)], ["cash", fmt.money(a.get("cash"))],
                              ["buying power", fmt.money(a.get("buying_power"))],
                              ["portfolio value", fmt.money(a.get("portfolio_value"))]], ["", "VALUE"]))
    else:
        out.append(f"  unavailable: {b['error']}")
    if data["summary"] is None:
        out += ["", f"Trading database: unavailable: {data['database']['error']}",
                "  positions, P&L, cycles and risk events could not be read"]
    else:
        s = data["summary"]
        e = s["estimates"]
        out += ["", "P&L (trading database)"]
        out.append(fmt.table([
            ["closed trades", f"{s['trades']} ({s['wins']} won, {s['losses']} lost, {s['breakeven']} breakeven)"],
            ["win rate", _pct(s["win_rate"])],
            ["realized P&L", fmt.money(s["realized_pnl"], True)],
            ["estimates", f"{e['count']} ({e['estimated']} estimated closes, {e['emergency_zero']} zero-P&L emergency "
                          f"closes), P&L {fmt.money(e['pnl'], True)}, " + ("included" if e["included"] else "left out")],
            ["never filled (not trades)", s["not_filled"]],
            ["closed without P&L", s["incomplete"]],
            ["unrealized P&L (open positions)", f"{fmt.money(s['unrealized_pnl'], True)} over {s['open_positions']}"],
        ], ["", "VALUE"]))
        out += ["", f"Trading cycles ({data['cycle_prefix']}NNN): {len(data['cycles'])}"]
        if data["cycles"]:
            out.append(fmt.table([[c["cycle_id"], c["mode"], c["status"], _hm(c["started_at"], day),
                                   _hm(c["stopped_at"], day)] for c in data["cycles"]],
                                 ["CYCLE", "MODE", "STATUS", "STARTED", "STOPPED"]))
        out += ["", f"Positions opened this session: {len(data['positions_opened'])}"]
        if data["positions_opened"]:
            out.append(fmt.table([[p["position_id"], p["cycle_id"] or "-", p["symbol"], p["side"], p["quantity"],
                                   fmt.money(p["entry_price"]), p["status"], _hm(p["opened_at"], day)]
                                  for p in data["positions_opened"]],
                                 ["ID", "CYCLE", "SYMBOL", "SIDE", "QTY", "ENTRY", "STATUS", "OPENED"]))
        out += ["", f"Positions closed this session: {len(data['positions_closed'])}"]
        if data["positions_closed"]:
            out.append(fmt.table([[p["position_id"], p["symbol"], p["side"], p["quantity"], fmt.money(p["entry_price"]),
                                   fmt.money(p["exit_price"]), fmt.money(p["realized_pnl"], True),
                                   p["close_kind"].replace("_", " "), p["close_reason"] or "-", _hm(p["closed_at"], day)]
                                  for p in data["positions_closed"]],
                                 ["ID", "SYMBOL", "SIDE", "QTY", "ENTRY", "EXIT", "P&L", "KIND", "REASON", "CLOSED"]))
        out += ["", f"Risk events: {len(data['risk_events'])}"]
        for ev in data["risk_events"]:
            out.append(f"  {ev.get('cycle_id') or '-'} {ev.get('event_type') or '-'} {ev.get('risk_level') or ''} "
                       f"{ev.get('symbol') or ''} {(ev.get('description') or '')[:100]}".rstrip())
    if b["available"]:
        out += ["", f"Open positions (broker): {len(b['positions'])}, unrealized {fmt.money(b['unrealized_pl'], True)}"]
        if b["positions"]:
            out.append(fmt.table([[p.get("symbol"), p.get("qty"), fmt.money(p.get("avg_entry_price")),
                                   fmt.money(p.get("current_price")), fmt.money(p.get("unrealized_pl"), True)]
                                  for p in b["positions"]], ["SYMBOL", "QTY", "ENTRY", "CURRENT", "UNREALIZED"]))
    svc = data.get("reporting_service")
    if svc:
        out += ["", f"Reporting service: {svc['outcome']}" + (f" (HTTP {svc['http_status']})" if svc.get("http_status") else "")
                + (f": {svc['message']}" if svc.get("message") else "")]
    return "\n".join(out) + "\n"


def render_html(data: dict) -> str:
    from catalyst_ops import report

    env = report.jinja_env(data["session_date"])
    env.filters["money"] = fmt.money
    env.filters["signed"] = lambda v: fmt.money(v, True)
    env.filters["rate"] = _pct
    env.filters["hm"] = lambda iso: _hm(iso, data["session_date"])
    return env.get_template("trading-report.html.j2").render(d=data, headline=headline(data))


def render(data: dict, form: str) -> str:
    if form == "json":
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if form == "html":
        return render_html(data)
    return render_text(data)


def save(cfg, db, data: dict) -> list[str]:
    """txt, json and html under the report directory; the `reports` row points at the JSON."""
    from catalyst_ops import report

    texts = {"txt": render_text(data), "json": render(data, "json"), "html": render_html(data)}
    return report.store(cfg, db, KIND, data["session_date"], stem(data["session_date"]), texts, headline(data),
                        record="json")


def mail(db, data: dict, severity: str = "info", prefix: str = "") -> int:
    """Queue the text report in the alert outbox (the alert sender mails it)."""
    from catalyst_ops import alerts

    return alerts.enqueue(db, severity, f"report:trading:{data['session_date']}", prefix + headline(data),
                          render_text(data))
