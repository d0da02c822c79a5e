"""The weekly review (plan phase 7.3, "every Sunday, review full week performance"): one
week's trading and operations, built from what the other reports already read.

- The week is an ISO week, Monday to Sunday. Its trading days are the Monday-Friday dates in
  the exchange's zone; which of them were NYSE sessions (holidays, early closes) comes from
  catalyst_ops/calendar.py.
- P&L by day: each weekday's closed trades from the trading database through
  metrics.session_query, read exactly as the daily trading report reads a session
  (tradingreport.build, without the broker).
- The week's figures (win rate, risk:reward, profit factor, expectancy, max drawdown) come from
  metrics.compute over [Monday 00:00, Saturday 00:00) exchange time (metrics.trades_query), so
  they are the go/no-go's own definitions, judged against the go/no-go's own targets
  (metrics.min_win_rate, min_risk_reward, max_drawdown). Profit factor and expectancy have no
  target of their own: the profit factor the win-rate and risk:reward targets imply
  (win_rate / (1 - win_rate) x risk_reward), and a positive expectancy.
- The ramp: the stage and its gates as `ramp status` evaluates them (now, not at the week's end).
- Operations over the week in host_timezone (Monday 00:00 to the next Monday, or now): the
  validate criteria (per-service uptime with its gaps, health checks, scheduled jobs on time,
  restarts, alerts delivered, backups) over that window, the job runs and alerts as the daily
  report counts them, and the week's sessions on which market-open started no cycle.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from catalyst_ops import clock, fmt
from catalyst_ops.errors import USAGE, OpsError

KIND = "weekly"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri")
POS, NEG, FLAT = "#2f9e5b", "#d64541", "#9aa3b2"  # the chart's bars: a winning day, a losing day, no P&L
STARTED = ("completed", "already_running")  # market-open outcomes after which the session traded
CYCLE_FAILED = ("failed", "timeout")


def stem(label: str) -> str:
    return f"weekly-{label}"


def week_label(monday: date) -> str:
    y, w, _ = monday.isocalendar()
    return f"{y}-W{w:02d}"


def parse_week(week: str | None, day: str | None, tz) -> date:
    """The Monday of the week asked for: --week YYYY-Www (or this, last), --date D (the week
    holding D), else this week (exchange time)."""
    from catalyst_ops import report

    if week and day:
        raise OpsError("--week and --date: give one of them", USAGE)
    if week:
        today = clock.now().astimezone(tz).date()
        if week in ("this", "last"):
            monday = today - timedelta(days=today.weekday())
            return monday - timedelta(days=7) if week == "last" else monday
        m = re.fullmatch(r"(\d{4})-?W(\d{1,2})", week.strip(), re.IGNORECASE)
        if not m:
            raise OpsError(f"--week: expected YYYY-Www (e.g. 2026-W48), this or last, got {week!r}", USAGE)
        try:
            return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
        except ValueError:
            raise OpsError(f"--week: {week!r} is not a week of {m.group(1)}", USAGE)
    d = report.parse_day(day, tz)
    return d - timedelta(days=d.weekday())


def _iso(ts: float | None, tz) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- trading


def _days(cfg, monday: date, today: date) -> tuple[list[dict], dict]:
    """Monday..Friday: the calendar's word on each, and each one's closed trades (session query)."""
    from catalyst_ops import closes, tradingreport
    from catalyst_ops.calendar import from_config

    cal = from_config(cfg)
    days, database = [], {"available": True, "error": None}
    for i, name in enumerate(WEEKDAYS):
        d = monday + timedelta(days=i)
        sess = cal.session(d)
        row = {"date": d.isoformat(), "weekday": name, "session": sess.as_dict() if sess else None,
               "closed": None if sess else cal.why_closed(d), "future": d > today, "summary": None, "trades": []}
        days.append(row)
        if d > today or not database["available"]:
            continue
        data = tradingreport.build(cfg, d, session=row["session"], broker=False)
        if not data["database"]["available"]:
            database = dict(data["database"])
            continue
        row["summary"] = data["summary"]
        counted = lambda p: p["realized_pnl"] is not None and (  # noqa: E731 - as tradingreport.summarize counts
            p["close_kind"] == closes.TRADE or (cfg.metrics.include_estimates and p["close_kind"] in closes.ESTIMATES))
        row["trades"] = [{k: p[k] for k in ("position_id", "symbol", "side", "quantity", "entry_price", "exit_price",
                                            "realized_pnl", "close_reason", "close_kind", "opened_at", "closed_at")}
                         | {"counted": counted(p)} for p in data["positions_closed"]]
    return days, database


def _targets(cfg, rep) -> list[dict]:
    """The week's figures against the plan's targets: the go/no-go's gates for win rate, risk:reward
    and drawdown (metrics.gates, same rules), and the profit factor and expectancy they imply."""
    from catalyst_ops import metrics

    m = cfg.metrics
    by_name = {g.gate: g for g in metrics.gates(cfg, rep)}
    wr = m.min_win_rate
    pf_target = round(wr / (1 - wr) * m.min_risk_reward, 4) if wr < 1 else m.min_risk_reward
    pf_ok = rep.profit_factor >= pf_target if rep.profit_factor is not None else (rep.wins > 0 and rep.losses == 0)
    out = [by_name["win_rate"], by_name["risk_reward"],
           metrics.Gate("profit_factor", metrics._round(rep.profit_factor), ">=", pf_target, pf_ok),
           metrics.Gate("expectancy", metrics._round(rep.expectancy, 2), ">", 0, rep.expectancy is not None and rep.expectancy > 0),
           by_name["max_drawdown"]]
    source = {"win_rate": "metrics.min_win_rate", "risk_reward": "metrics.min_risk_reward",
              "profit_factor": "implied by metrics.min_win_rate and metrics.min_risk_reward",
              "expectancy": "positive", "max_drawdown": "metrics.max_drawdown"}
    return [dict(g.as_dict(), target_from=source[g.gate]) for g in out]


def _figures(cfg, db, monday: date, now: datetime) -> dict:
    from catalyst_ops import metrics
    from catalyst_ops.errors import CannotRun

    xtz = ZoneInfo(cfg.market.exchange_timezone)
    since = datetime.combine(monday, dtime(0), xtz)
    until = min(datetime.combine(monday + timedelta(days=5), dtime(0), xtz), now)
    try:
        rep = metrics.compute(cfg, db, since=since, until=until)
    except CannotRun as exc:
        return {"available": False, "error": str(exc)}
    keep = ("trades", "wins", "losses", "breakeven", "total_pnl", "gross_win", "gross_loss", "avg_win", "avg_loss",
            "win_rate", "risk_reward", "profit_factor", "expectancy", "largest_win", "largest_loss", "max_drawdown",
            "max_drawdown_amount", "starting_equity", "not_filled", "rejected", "estimates", "crashes", "crash_detail")
    d = rep.as_dict()
    out = {"available": True, "error": None, "since": since.isoformat(), "until": until.isoformat(),
           **{k: d[k] for k in keep}}
    for k in ("avg_win", "avg_loss", "win_rate", "risk_reward", "profit_factor", "expectancy"):
        out[k] = None if out[k] is None else round(out[k], 6)
    out["max_drawdown"] = round(out["max_drawdown"], 6)
    out["targets"] = _targets(cfg, rep)
    out["targets_met"] = sum(1 for t in out["targets"] if t["passed"])
    return out


def _ramp(cfg, db) -> dict:
    from catalyst_ops import envfile, ramp

    stage, entered = ramp.state(db)
    st = ramp.stage_config(cfg, stage)
    out = {"available": True, "error": None, "stage": stage, "stages": len(cfg.trading.stages), "started": entered is not None,
           "entered_at": _iso(entered, ZoneInfo(cfg.market.exchange_timezone)),
           "limits": {"max_positions": st.max_positions, "risk_per_trade": st.risk_per_trade,
                      "max_daily_loss": st.max_daily_loss, "max_daily_loss_usd": ramp.daily_loss_usd(cfg, stage),
                      "min_days": st.min_days},
           "as_of": clock.now().isoformat(timespec="seconds"), "gates": [], "gate_met": False}
    try:
        gs = ramp.gates(cfg, db, envfile.load(cfg.env_file))
    except OpsError as exc:
        out.update(available=False, error=str(exc))
        return out
    out["gates"] = [g.as_dict() for g in gs]
    out["gate_met"] = stage < len(cfg.trading.stages) and all(g.passed for g in gs)
    return out


# ---------------------------------------------------------------------------- operations


def _sessions_ops(cfg, db, days: list[dict], now: float) -> list[dict]:
    """Each session of the week: what market-open and market-close did (market_actions), and why
    a session that started no cycle was skipped (the last market-open run that day)."""
    from catalyst_ops import market, validate

    xtz = ZoneInfo(cfg.market.exchange_timezone)
    open_job = validate.job_names(cfg)["market_open"] or market.OPEN
    out = []
    for d in days:
        if not d["session"]:
            continue
        sd = d["date"]
        opened = datetime.fromisoformat(d["session"]["open"]).timestamp()
        acts = {r["kind"]: r for r in db.query("SELECT kind, outcome, acted_at, detail FROM market_actions WHERE session_date=?"
                                               " AND kind IN (?, ?)", (sd, market.OPEN, market.CLOSE))}
        o, c = acts.get(market.OPEN), acts.get(market.CLOSE)
        row = {"date": sd, "open_outcome": o["outcome"] if o else None, "close_outcome": c["outcome"] if c else None,
               "status": None, "reason": None}
        if opened > now:
            row["status"] = "to come"
        elif o and o["outcome"] in STARTED:
            row["status"] = "traded"
        elif o and o["outcome"] in CYCLE_FAILED:
            row["status"] = "cycle failed"
            row["reason"] = _message(o["detail"]) or f"market-open: {o['outcome']}"
        else:
            row["status"] = "skipped"
            day = date.fromisoformat(sd)
            start = datetime.combine(day, dtime(0), xtz).timestamp()
            stop = datetime.combine(day + timedelta(days=1), dtime(0), xtz).timestamp()
            run = db.one("SELECT status, exit_code, summary FROM job_runs WHERE job=? AND started_at>=? AND started_at<?"
                         " ORDER BY started_at DESC LIMIT 1", (open_job, start, stop))
            if o:
                row["reason"] = f"market-open {o['outcome']}" + (f": {_message(o['detail'])}" if _message(o["detail"]) else "")
            elif run:
                row["reason"] = f"market-open {run['status']} (exit {run['exit_code']}): {run['summary'] or ''}".rstrip(": ")
            else:
                row["reason"] = "no market-open run recorded"
        out.append(row)
    return out


def _message(detail: str | None) -> str | None:
    try:
        return (json.loads(detail or "{}") or {}).get("message")
    except (ValueError, AttributeError):
        return None


def _operations(cfg, db, monday: date, days: list[dict]) -> dict:
    from catalyst_ops import report, resources, validate

    htz = report.host_tz(cfg)
    now = clock.timestamp()
    start = datetime.combine(monday, dtime(0), htz).timestamp()
    week_end = datetime.combine(monday + timedelta(days=7), dtime(0), htz).timestamp()
    end = min(week_end, now)
    resources.ensure_schema(db)
    w = validate.Window(start, end, htz)
    crit = {}
    for fn in (validate.service_uptime, validate.health_checks, validate.scheduled_jobs, validate.restarts,
               validate.email_alerts, validate.backups):
        try:
            c = fn(cfg, db, w)
        except OpsError as exc:  # the calendar or a setting: say so in the criterion, keep the rest
            c = validate.Criterion(fn.__name__, fn.__name__.replace("_", " "), False, f"could not be judged: {exc}")
        crit[c.key] = c.as_dict()
    restarts = [{"at": _iso(r["at"], htz), "service": r["service"], "reason": r["reason"], "outcome": r["outcome"],
                 "planned": bool(r["planned"])}
                for r in db.query("SELECT * FROM restarts WHERE at>=? AND at<? AND COALESCE(outcome,'')<>'dry_run'"
                                  " ORDER BY at", (start, end))]
    b = crit["backups"]["data"]
    sessions = _sessions_ops(cfg, db, days, now)
    return {"window": {"start": _iso(start, htz), "end": _iso(end, htz), "complete": end >= week_end,
                       "timezone": cfg.host_timezone},
            "uptime": crit["service_uptime"]["data"].get("services", []),
            "criteria": list(crit.values()),
            "jobs": report.job_summary(db, start, end, htz),
            "restarts": {"unplanned": sum(1 for r in restarts if not r["planned"]),
                         "planned": sum(1 for r in restarts if r["planned"]), "list": restarts},
            "alerts": dict(report.alert_summary(db, start, end, htz, limit=50),
                           delivered=crit["email_alerts"]["data"].get("delivered", 0)),
            "backups": {"ok": b.get("ok", 0), "verified": b.get("verified", 0), "failed": b.get("failed", 0),
                        "gaps": len(b.get("gaps", []))},
            "sessions": sessions,
            "skipped_sessions": [s for s in sessions if s["status"] in ("skipped", "cycle failed")]}


# ---------------------------------------------------------------------------- the report


def build(cfg, db, monday: date) -> dict:
    from catalyst_ops import tradingreport

    tradingreport.check_config(cfg)
    xtz = ZoneInfo(cfg.market.exchange_timezone)
    now = clock.now()
    today = now.astimezone(xtz).date()
    if monday > today:
        raise OpsError(f"week {week_label(monday)} is in the future", USAGE)
    days, database = _days(cfg, monday, today)
    figures = _figures(cfg, db, monday, now) if database["available"] else {"available": False, "error": database["error"]}
    if figures.get("available") is False and database["available"]:
        database = {"available": False, "error": figures["error"]}
    by_day = [{"date": d["date"], "weekday": d["weekday"], "session": bool(d["session"]), "closed": d["closed"],
               "early_close": bool(d["session"] and d["session"]["early_close"]), "future": d["future"],
               "trades": d["summary"]["trades"] if d["summary"] else None,
               "wins": d["summary"]["wins"] if d["summary"] else None,
               "losses": d["summary"]["losses"] if d["summary"] else None,
               "pnl": d["summary"]["realized_pnl"] if d["summary"] else None} for d in days]
    notes = []
    if database["available"] and figures.get("available"):
        day_sum = round(sum(d["pnl"] or 0 for d in by_day), 2)
        if abs(day_sum - figures["total_pnl"]) > 0.005:
            notes.append(f"the days' P&L (metrics.session_query) adds up to {fmt.money(day_sum, True)}, the week's figures "
                         f"(metrics.trades_query) to {fmt.money(figures['total_pnl'], True)}: the two queries disagree")
    return {
        "kind": "weekly", "week": week_label(monday), "monday": monday.isoformat(),
        "friday": (monday + timedelta(days=4)).isoformat(), "timezone": cfg.market.exchange_timezone,
        "generated_at": now.astimezone(xtz).isoformat(timespec="seconds"),
        "complete": now >= datetime.combine(monday + timedelta(days=5), dtime(0), xtz),
        "database": database, "include_estimates": cfg.metrics.include_estimates,
        "days": by_day, "trades": [dict(t, date=d["date"]) for d in days for t in d["trades"]],
        "figures": figures, "notes": notes, "ramp": _ramp(cfg, db),
        "operations": _operations(cfg, db, monday, days),
    }


def _pct(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def headline(data: dict) -> str:
    f = data["figures"]
    parts = []
    if f.get("available"):
        parts.append(f"{f['trades']} closed trades, P&L {fmt.money(f['total_pnl'], True)}")
        if f["trades"]:
            parts.append(f"win rate {_pct(f['win_rate'])}")
        parts.append(f"{f['targets_met']} of {len(f['targets'])} targets met")
    else:
        parts.append(f"TRADING DATABASE UNAVAILABLE ({data['database']['error']})")
    r = data["ramp"]
    parts.append(f"ramp stage {r['stage']} of {r['stages']}" + ("" if r["started"] else " (not started)"))
    o = data["operations"]
    ups = [s["uptime_percent"] for s in o["uptime"] if s["uptime_percent"] is not None]
    if ups:
        parts.append(f"lowest uptime {min(ups):.2f}%")
    parts.append(f"{o['restarts']['unplanned']} unplanned restarts")
    parts.append(f"{len(o['skipped_sessions'])} sessions skipped")
    return f"Catalyst weekly review {data['week']}: " + ", ".join(parts)


def _target_line(t: dict) -> list:
    show = {"win_rate": _pct, "max_drawdown": lambda v: _pct(v, 2)}.get(t["gate"], lambda v: _num(v, 2))
    return [t["gate"].replace("_", " "), show(t["value"]) if t["value"] is not None else "-",
            f"{t['op']} {show(t['threshold'])}", "met" if t["passed"] else "MISSED", t["target_from"]]


def render_text(data: dict) -> str:
    out = [headline(data), f"week {data['monday']} .. {data['friday']} ({data['timezone']})"
           + ("" if data["complete"] else " (week in progress)") + f"; generated {data['generated_at']}", ""]
    out.append("P&L by day (closed trades, metrics.session_query)")
    rows = []
    for d in data["days"]:
        what = "future" if d["future"] else ("session" + (", early close" if d["early_close"] else "")) if d["session"] \
            else d["closed"]
        rows.append([f"{d['weekday']} {d['date']}", what, "-" if d["trades"] is None else d["trades"],
                     "-" if d["trades"] is None else f"{d['wins']}/{d['losses']}",
                     fmt.money(d["pnl"], True) if d["pnl"] is not None else "-"])
    out.append(fmt.table(rows, ["DAY", "", "TRADES", "WON/LOST", "P&L"]))
    f = data["figures"]
    out += ["", "The week (metrics.trades_query, the go/no-go's definitions)"]
    if f.get("available"):
        out.append(fmt.table([
            ["closed trades", f"{f['trades']} ({f['wins']} won, {f['losses']} lost, {f['breakeven']} breakeven)"],
            ["realized P&L", fmt.money(f["total_pnl"], True)],
            ["average win / loss", f"{fmt.money(f['avg_win'])} / {fmt.money(f['avg_loss'])}"],
            ["largest win / loss", f"{fmt.money(f['largest_win'])} / {fmt.money(f['largest_loss'])}"],
            ["max drawdown", f"{_pct(f['max_drawdown'], 2)} ({fmt.money(f['max_drawdown_amount'])}, from "
                             f"{fmt.money(f['starting_equity'])})"],
            ["never filled / estimates", f"{f['not_filled']} / {f['estimates']['count']} "
                                         f"({'included' if f['estimates']['included'] else 'left out'})"],
        ], ["", "VALUE"]))
        out += ["", "Against the plan's targets"]
        out.append(fmt.table([_target_line(t) for t in f["targets"]], ["FIGURE", "WEEK", "TARGET", "", "FROM"]))
    else:
        out.append(f"  unavailable: {f['error']}")
    for n in data["notes"]:
        out.append(f"  note: {n}")
    if data["trades"]:
        out += ["", f"Closed positions: {len(data['trades'])}"]
        out.append(fmt.table([[t["date"], t["position_id"], t["symbol"], fmt.money(t["realized_pnl"], True),
                               t["close_kind"].replace("_", " ") + ("" if t["counted"] else " (not counted)"),
                               t["close_reason"] or "-"] for t in data["trades"]],
                             ["DAY", "ID", "SYMBOL", "P&L", "KIND", "REASON"]))
    r = data["ramp"]
    out += ["", f"Ramp: stage {r['stage']} of {r['stages']}" + (f", entered {r['entered_at']}" if r["entered_at"] else
                                                              " (not started: no go-live yet)")
            + f"; limits {r['limits']['max_positions']} positions, {r['limits']['risk_per_trade'] * 100:g}% per trade, "
            f"daily loss {fmt.money(r['limits']['max_daily_loss_usd'])}"]
    if not r["available"]:
        out.append(f"  gates unavailable: {r['error']}")
    else:
        out.append(f"  gates (as of {r['as_of']}): " + ("all met" if r["gate_met"] else "not met"))
        out.append(fmt.table([[g["gate"], g["value"], g["threshold"], "met" if g["passed"] else
                               ("UNKNOWN" if g["unavailable"] else "NOT MET"), (g["detail"] or "")[:80]] for g in r["gates"]],
                             ["GATE", "VALUE", "THRESHOLD", "", "DETAIL"]))
    o = data["operations"]
    out += ["", f"Operations {o['window']['start'][:16]} .. {o['window']['end'][:16]} {o['window']['timezone']}"
            + ("" if o["window"]["complete"] else " (week in progress)")]
    out.append(fmt.table([[s["service"], "-" if s["uptime_percent"] is None else f"{s['uptime_percent']:.2f}%",
                           len(s["gaps"]), round(sum(g["minutes"] for g in s["gaps"]), 1)] for s in o["uptime"]],
                         ["SERVICE", "UPTIME", "OUTAGES", "MINUTES DOWN"]))
    out += ["", fmt.table([[c["name"], "PASS" if c["passed"] else "FAIL", c["figure"]] for c in o["criteria"]],
                          ["CHECK", "", "FIGURE"])]
    a = o["alerts"]
    out += ["", f"Restarts: {o['restarts']['unplanned']} unplanned, {o['restarts']['planned']} planned",
            f"Alerts: {a['created']} created ({a['by_severity']['critical']} critical, {a['by_severity']['warning']} warning, "
            f"{a['by_severity']['info']} info), {a['delivered']} delivered, {a['failed']} failed; {a['pending_now']} pending now",
            f"Backups: {o['backups']['ok']} ok ({o['backups']['verified']} verified), {o['backups']['failed']} failed"]
    out += ["", "Sessions"]
    out.append(fmt.table([[s["date"], s["status"], s["open_outcome"] or "-", s["close_outcome"] or "-", (s["reason"] or "")[:80]]
                          for s in o["sessions"]], ["SESSION", "", "MARKET-OPEN", "MARKET-CLOSE", "WHY"])
               if o["sessions"] else "  no session this week")
    if o["jobs"]:
        out += ["", "Jobs"]
        out.append(fmt.table([[j["job"], j["runs"], j["ok"], j["skipped"], j["failed"] + j["crashed"], j["last_status"]]
                              for j in o["jobs"]], ["JOB", "RUNS", "OK", "SKIPPED", "FAILED", "LAST"]))
    return "\n".join(out) + "\n"


def chart(data: dict, width: int = 640, height: int = 240) -> dict:
    """Geometry of the P&L-by-day bar chart: one slot per weekday, a bar up (green) for a winning
    day and down (red) for a losing one, from a zero line; a day without a session is labelled."""
    left, right, top, bottom = 70, 16, 22, 46
    # 16 px under the lowest bar for its value, above the day labels
    plot_w, plot_h = width - left - right, height - top - bottom - 16
    vals = [d["pnl"] or 0.0 for d in data["days"]]
    hi, lo = max(vals + [0.0]), min(vals + [0.0])
    flat = hi == lo  # no P&L at all: the zero line alone
    if flat:
        hi = 1.0
    span = hi - lo

    def y(v: float) -> float:
        return round(top + (hi - v) / span * plot_h, 2)

    slot = plot_w / len(data["days"])
    bars = []
    for i, d in enumerate(data["days"]):
        v = d["pnl"] or 0.0
        x = round(left + i * slot + slot * 0.2, 2)
        y0, y1 = sorted((y(v), y(0.0)))
        note = "future" if d["future"] else ("closed" if not d["session"] else ("no trades" if not d["trades"] else ""))
        bars.append({"x": x, "w": round(slot * 0.6, 2), "y": y0, "h": round(y1 - y0, 2),
                     "color": POS if v > 0 else NEG if v < 0 else FLAT, "value": v, "day": f"{d['weekday']} {d['date'][5:]}",
                     "cx": round(left + (i + 0.5) * slot, 2), "label_y": round(y0 - 5 if v >= 0 else y1 + 13, 2),
                     "note": note, "trades": d["trades"]})
    ticks = [{"v": v, "y": y(v), "label": fmt.money(v, True) if v else "0"} for v in sorted({0.0} if flat else {hi, 0.0, lo})]
    return {"width": width, "height": height, "left": left, "plot_w": plot_w, "zero_y": y(0.0), "bars": bars,
            "ticks": ticks, "axis_y": height - bottom + 16}


def render_html(data: dict) -> str:
    from catalyst_ops import report

    env = report.jinja_env(None)
    env.filters["money"] = fmt.money
    env.filters["signed"] = lambda v: fmt.money(v, True)
    env.filters["rate"] = _pct
    env.filters["num"] = _num
    return env.get_template("weekly-report.html.j2").render(d=data, chart=chart(data), headline=headline(data),
                                                            target=_target_line, colors={"pos": POS, "neg": NEG})


def render(data: dict, form: str) -> str:
    if form == "json":
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if form == "html":
        return render_html(data)
    return render_text(data)


def save(cfg, db, data: dict) -> list[str]:
    """weekly-YYYY-Www.{txt,json,html} where the daily reports are saved; the `reports` row points at the JSON."""
    from catalyst_ops import report

    texts = {"txt": render_text(data), "json": render(data, "json"), "html": render_html(data)}
    return report.store(cfg, db, KIND, data["week"], stem(data["week"]), texts, headline(data), record="json")


def mail(db, data: dict) -> int:
    """Queue the text review in the alert outbox, as the daily reports are mailed."""
    from catalyst_ops import alerts

    return alerts.enqueue(db, "info", f"report:weekly:{data['week']}", headline(data), render_text(data))
