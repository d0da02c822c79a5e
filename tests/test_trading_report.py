"""The daily trading report at market close, from a real PostgreSQL loaded with rows as the
upstream services write them (tests/realdata.py: the numbers are worked out there), the
stand-in broker over HTTP, and the stand-in reporting service, which must not be asked."""

from __future__ import annotations

import json
import sqlite3
import urllib.request

import psycopg2
import pytest
import realdata

pytestmark = pytest.mark.postgres

MON, TUE = "2026-11-23", "2026-11-24"
BROKER_POSITIONS = [
    {"symbol": "INTC", "qty": "10", "side": "long", "avg_entry_price": "20.00", "current_price": "22.55",
     "market_value": "225.50", "unrealized_pl": "25.50", "asset_class": "us_equity"},
    {"symbol": "MSFT", "qty": "10", "side": "long", "avg_entry_price": "200.00", "current_price": "198.95",
     "market_value": "1989.50", "unrealized_pl": "-10.50", "asset_class": "us_equity"},
]


def state(standin) -> sqlite3.Connection:
    conn = sqlite3.connect(standin.state_db)
    conn.row_factory = sqlite3.Row
    return conn


def reporting_requests(standin) -> list[dict]:
    path = standin.rundir / "reporting-requests.json"
    return json.loads(path.read_text()) if path.exists() else []


def seed_broker(standin, body: dict) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{standin.port('broker')}/_standin/broker", method="POST",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def use_db(standin, url: str) -> None:
    from catalyst_ops import envfile

    envfile.update(standin.env_file, {"DATABASE_URL": url})


@pytest.fixture
def day(standin_factory, pgdb):
    """The real profile's stand-in, its .env pointing at a database loaded with tests/realdata.py,
    the broker holding the two positions still open (equity 101,250.50)."""
    s = standin_factory(stage_seconds=0.1)
    conn = psycopg2.connect(pgdb.url)
    try:
        realdata.load(conn)
    finally:
        conn.close()
    use_db(s, pgdb.url)
    seed_broker(s, {"positions": BROKER_POSITIONS, "equity": "101250.50", "cash": "99035.00"})
    s.pgdb = pgdb
    return s


def close(standin, when: str, *args):
    res = standin.cli("--now", when, "market-close", "--json", *args)
    return res.code, (json.loads(res.out) if res.out.strip().startswith("{") else None), res


def test_market_close_stores_the_sessions_report_from_the_database(day):
    # Monday: 1, 2 and the 19:30 New York close of 4 (00:30 UTC Tuesday) are trades; 3 never filled
    code, out, res = close(day, f"{MON}T16:00:00-05:00")
    assert code == 0, res.text
    assert out["outcome"] == "reported"
    mon = json.loads(open(out["path"]).read())
    assert mon["session_date"] == MON and mon["database"] == {"available": True, "error": None}
    assert mon["summary"] == {
        "opened": 5, "closed": 4, "trades": 3, "wins": 2, "losses": 1, "breakeven": 0, "win_rate": 0.6667,
        "realized_pnl": 250.0, "not_filled": 1, "incomplete": 0,
        "estimates": {"count": 0, "estimated": 0, "emergency_zero": 0, "pnl": 0, "included": False},
        "trades_estimated": 0, "open_positions": 2, "unrealized_pnl": 15.0}
    assert [p["position_id"] for p in mon["positions_opened"]] == [1, 2, 3, 4, 5]
    assert [(p["position_id"], p["close_kind"]) for p in mon["positions_closed"]] == [
        (3, "not_filled"), (1, "trade"), (2, "trade"), (4, "trade")]
    assert mon["positions_closed"][-1]["closed_at"] == "2026-11-23T19:30:00-05:00"
    assert [c["cycle_id"] for c in mon["cycles"]] == ["20261123-001", "20261123-002"]
    assert [e["event_type"] for e in mon["risk_events"]] == ["position_limit"]

    # Tuesday: 5 (opened Monday) and 9 are trades; 6, 11 estimated and 8 the emergency stop's zero;
    # 7 never filled; 4 closed on Tuesday's UTC date but in Monday's session
    code, out, res = close(day, f"{TUE}T16:00:00-05:00")
    assert code == 0, res.text
    tue = json.loads(open(out["path"]).read())
    assert tue["summary"] == {
        "opened": 7, "closed": 6, "trades": 2, "wins": 2, "losses": 0, "breakeven": 0, "win_rate": 1.0,
        "realized_pnl": 300.0, "not_filled": 1, "incomplete": 0,
        "estimates": {"count": 3, "estimated": 2, "emergency_zero": 1, "pnl": -100.0, "included": False},
        "trades_estimated": 0, "open_positions": 2, "unrealized_pnl": 15.0}
    assert [(p["position_id"], p["close_kind"]) for p in tue["positions_closed"]] == [
        (5, "trade"), (6, "estimated"), (7, "not_filled"), (8, "emergency_zero"), (9, "trade"), (11, "estimated")]
    assert [p["position_id"] for p in tue["positions_opened"]] == [6, 7, 9, 11, 8, 10, 12]  # by opening time
    assert [p["position_id"] for p in tue["open_positions"]] == [10, 12]
    assert [c["cycle_id"] for c in tue["cycles"]] == ["20261124-001", "20261124-002"]
    assert [(e["event_type"], e["risk_level"], e["symbol"]) for e in tue["risk_events"]] == [
        ("position_size", "medium", "META"), ("daily_loss", "critical", "AMZN")]
    # the broker, read only
    b = tue["broker"]
    assert b["available"] and b["account"]["equity"] == 101250.5 and b["unrealized_pl"] == 15.0
    assert [p["symbol"] for p in b["positions"]] == ["INTC", "MSFT"]

    # stored as text, JSON and HTML, recorded, mailed; the reporting service never asked
    paths = out["paths"]
    assert sorted(p.rsplit(".", 1)[1] for p in paths) == ["html", "json", "txt"]
    text = open(next(p for p in paths if p.endswith(".txt"))).read()
    assert text.startswith(f"Catalyst trading report {TUE}: 2 closed trades (2 won, 0 lost, win rate 100.0%), "
                           "realized P&L +300.00, 3 estimated (-100.00, left out), 1 never filled")
    assert "Positions closed this session: 6" in text and "emergency zero" in text
    html = open(next(p for p in paths if p.endswith(".html"))).read()
    assert html.startswith("<!DOCTYPE html>") and "20261124-002" in html and "stop_loss_estimated" in html
    rows = state(day).execute("SELECT kind, report_date, path FROM reports ORDER BY id").fetchall()
    assert [(r["kind"], r["report_date"]) for r in rows] == [("daily", MON), ("daily", TUE)]
    assert rows[1]["path"] == out["path"]
    mails = state(day).execute("SELECT severity, subject_key, subject, body FROM alerts ORDER BY id").fetchall()
    assert [(m["severity"], m["subject_key"]) for m in mails] == [("info", f"report:trading:{MON}"),
                                                                   ("info", f"report:trading:{TUE}")]
    assert mails[1]["body"] == text and mails[1]["subject"] == text.splitlines()[0]
    assert reporting_requests(day) == []

    # the same data: db check passes, metrics shows the estimates apart
    check = day.cli("db", "check", "--json")
    assert check.code == 0, check.out
    got = {c["check"]: c["value"] for c in json.loads(check.out)["checks"]}
    assert (got["closed_positions_not_filled"], got["closed_positions_estimated"]) == (2, 3)
    m = day.cli("--now", "2026-11-28T12:00:00+00:00", "metrics", "--json", "--dry-run")
    data = json.loads(m.out)
    assert (data["trades"], data["not_filled"], data["estimates"]["count"], data["estimates"]["pnl"]) == (6, 2, 3, -100)
    assert data["verdict_estimates"].startswith("0 of its 6 trades are estimates; 3 estimated closes left out")


def test_a_session_without_trades_is_a_valid_empty_report(day):
    code, out, res = close(day, "2026-11-30T16:00:00-05:00")
    assert code == 0, res.text
    rep = json.loads(open(out["path"]).read())
    s = rep["summary"]
    assert (s["opened"], s["closed"], s["trades"], s["win_rate"], s["realized_pnl"]) == (0, 0, 0, None, 0)
    assert rep["cycles"] == [] and rep["risk_events"] == [] and s["open_positions"] == 2
    assert "Positions closed this session: 0" in open(out["path"][:-5] + ".txt").read()


def test_database_unreachable_stores_the_brokers_part_alerts_and_exits_3(day):
    use_db(day, day.pgdb.url.replace(f":{day.pgdb.cluster.port}/", ":1/"))
    code, out, res = close(day, f"{TUE}T16:00:00-05:00")
    assert code == 3, res.text
    assert out["outcome"] == "down" and "trading database unreachable" in out["message"]
    rep = json.loads(open(out["path"]).read())
    assert rep["database"]["available"] is False and "cannot connect" in rep["database"]["error"]
    assert rep["summary"] is None and rep["broker"]["account"]["equity"] == 101250.5
    [alert] = state(day).execute("SELECT severity, subject, body FROM alerts").fetchall()
    assert alert["severity"] == "warning" and "could not read the trading database" in alert["subject"]
    assert "equity" in alert["body"] and "Traceback" not in res.err
    # nothing was read from the database: a re-run in the window, with the database back, acts
    use_db(day, day.pgdb.url)
    code, out, res = close(day, f"{TUE}T16:05:00-05:00")
    assert code == 0 and out["outcome"] == "reported", res.text
    assert json.loads(open(out["path"]).read())["summary"]["trades"] == 2


def test_broker_unreachable_is_shown_not_a_crash(day):
    day.fault("broker", "down")
    code, out, res = close(day, f"{TUE}T16:00:00-05:00")
    assert code == 0, res.text
    rep = json.loads(open(out["path"]).read())
    assert rep["broker"]["available"] is False and "broker account" in rep["broker"]["error"]
    assert rep["summary"]["trades"] == 2
    assert "broker unavailable" in open(out["path"][:-5] + ".txt").read().splitlines()[0]


def test_a_missing_database_url_is_a_config_error_before_the_claim(day):
    text = day.env_file.read_text()
    day.env_file.write_text("\n".join(l for l in text.splitlines() if not l.startswith("DATABASE_URL=")) + "\n")
    code, out, res = close(day, f"{TUE}T16:00:00-05:00")
    assert code == 2 and "DATABASE_URL" in res.err and "Traceback" not in res.err
    assert state(day).execute("SELECT COUNT(*) FROM market_actions").fetchone()[0] == 0


def test_dry_run_reads_and_writes_nothing(day):
    res = day.cli("--now", f"{TUE}T16:00:00-05:00", "market-close", "--dry-run")
    assert res.code == 0 and "would build the daily trading report" in res.out
    assert "reporting service" not in res.out
    assert state(day).execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 0
    assert reporting_requests(day) == []


def test_the_reporting_service_call_is_optional_and_fails_as_the_real_one(day):
    """Turned on in the real profile, it is asked with the cycle id market-open got, and refuses."""
    day.append_config("market:\n  reporting_service: true")
    assert day.cli("--now", f"{TUE}T09:30:00-05:00", "market-open").code == 0
    code, out, res = close(day, f"{TUE}T16:00:00-05:00")
    assert code == 1, res.text
    assert out["outcome"] == "refused" and out["reporting_service"]["http_status"] == 422
    [req] = reporting_requests(day)
    assert req["method"] == "GET" and req["params"]["cycle_id"].startswith("cycle_2026") and req["status"] == 422
    # the trading report from the database is stored and mailed all the same
    assert json.loads(open(out["path"]).read())["reporting_service"]["outcome"] == "refused"
    assert state(day).execute("SELECT COUNT(*) FROM alerts WHERE severity='info'").fetchone()[0] == 1


def test_report_trading_prints_any_session_and_can_store_it(day):
    res = day.cli("--now", "2026-11-28T12:00:00-05:00", "report", "trading", "--date", MON, "--json")
    assert res.code == 0, res.text
    rep = json.loads(res.out)
    assert (rep["summary"]["trades"], rep["summary"]["realized_pnl"], rep["session"]["close"][11:16]) == (3, 250.0, "16:00")
    res = day.cli("--now", "2026-11-28T12:00:00-05:00", "report", "trading", "--date", TUE, "--save", "--mail")
    assert res.code == 0 and res.out.startswith(f"Catalyst trading report {TUE}: 2 closed trades"), res.text
    assert [r["kind"] for r in state(day).execute("SELECT kind FROM reports")] == ["daily"]
    assert state(day).execute("SELECT subject_key FROM alerts").fetchone()[0] == f"report:trading:{TUE}"
    use_db(day, day.pgdb.url.replace(f":{day.pgdb.cluster.port}/", ":1/"))
    res = day.cli("report", "trading", "--date", TUE)
    assert res.code == 3 and "DATABASE UNAVAILABLE" in res.out and "equity 101,250.50" in res.out
