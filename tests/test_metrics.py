"""Metrics and the go/no-go verdict on hand-made trades in a real PostgreSQL database.

The trade list (starting equity 10,000), times in UTC (11:00 New York):
  #  exit (New York date)   pnl    equity   peak    drawdown
  1  Mon 2026-03-30         +300   10300    10300   0
  2  Mon 2026-03-30 (12:00) -100   10200    10300   100/10300
  3  Tue 2026-03-31         +200   10400    10400   0
  4  Wed 2026-04-01         -400   10000    10400   400/10400 = 3.846 %  <- max
  5  Thu 2026-04-02         +150   10150    10400
     Fri 2026-04-03 is Good Friday: NYSE closed
  6  Mon 2026-04-06         +500   10650    10650
  7  Tue 2026-04-07         +100   10750    10750
     Wed 2026-04-08: no trade (breaks the run)
  8  Thu 2026-04-09 21:30 NY (= 2026-04-10 01:30 UTC) -200   10550
  9  Fri 2026-04-10         0      10550
wins 5 (1250, avg 250), losses 3 (-700, avg -233.33), breakeven 1; win rate 5/9 = 55.56 %;
R:R = 250 / 233.33 = 1.0714 (the seed's avg win / |avg of all trades| = 250 / 61.11 = 4.09
would pass the 1.5 gate); profit factor 1250/700 = 1.7857; expectancy 550/9 = 61.11;
trading days 8 (New York dates); longest run of consecutive sessions 6 (Mar 30 .. Apr 7,
across the weekend and Good Friday; counting weekdays would give 4).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import psycopg2
import pytest

from catalyst_ops import metrics as metrics_mod
from catalyst_ops.sandbox import pgfixture
from conftest import run_cli

pytestmark = pytest.mark.postgres

NOW = "2026-04-11T12:00:00+00:00"
TRADES = [  # (pnl, entry UTC, exit UTC, symbol)
    (300, "2026-03-30 14:00", "2026-03-30 15:00", "AAPL"),
    (-100, "2026-03-30 14:30", "2026-03-30 16:00", "MSFT"),
    (200, "2026-03-31 14:00", "2026-03-31 15:00", "AAPL"),
    (-400, "2026-04-01 14:00", "2026-04-01 15:00", "TSLA"),
    (150, "2026-04-02 14:00", "2026-04-02 15:00", "NVDA"),
    (500, "2026-04-06 14:00", "2026-04-06 15:00", "AAPL"),
    (100, "2026-04-07 14:00", "2026-04-07 15:00", "MSFT"),
    (-200, "2026-04-09 19:00", "2026-04-10 01:30", "TSLA"),
    (0, "2026-04-10 14:00", "2026-04-10 15:00", "NVDA"),
]


def _insert_positions(pgdb, trades, status="closed") -> None:
    conn = psycopg2.connect(pgdb.url)
    try:
        with conn.cursor() as cur:
            for pnl, entry, exit_, sym in trades:
                cur.execute("INSERT INTO securities(symbol) VALUES (%s) ON CONFLICT DO NOTHING", (sym,))
                cur.execute("INSERT INTO positions(security_id, quantity, entry_price, status, risk_amount, realized_pnl,"
                            " opened_at, closed_at) SELECT security_id, 10, 100, %s, 200, %s, %s::timestamp AT TIME ZONE 'UTC',"
                            " %s::timestamp AT TIME ZONE 'UTC' FROM securities WHERE symbol = %s",
                            (status, pnl, entry, exit_, sym))
        conn.commit()
    finally:
        conn.close()


def _config(pgdb, **metrics) -> None:
    body = "".join(f"  {k}: {v}\n" for k, v in {"starting_equity": 10000, **metrics}.items())
    pgdb.write_config("metrics:\n" + body)


def _metrics(pgdb, *args, now=NOW):
    res = run_cli("--now", now, "metrics", "--json", *args, config=pgdb.config)
    assert res.code in (0, 1), res.text
    return res.code, json.loads(res.out)


def _gates(data) -> dict:
    return {g["gate"]: (g["value"], g["passed"]) for g in data["gates"]}


def test_hand_made_trades_figures_and_no_go(pgdb):
    _insert_positions(pgdb, TRADES)
    _config(pgdb)
    code, d = _metrics(pgdb)
    assert code == 1 and d["verdict"] == "NO-GO"
    assert (d["trades"], d["wins"], d["losses"], d["breakeven"], d["rejected"]) == (9, 5, 3, 1, 0)
    assert d["win_rate"] == pytest.approx(5 / 9)
    assert d["avg_win"] == pytest.approx(250) and d["avg_loss"] == pytest.approx(-700 / 3)
    assert d["risk_reward"] == pytest.approx(250 / (700 / 3))  # 1.0714
    seed_rr = 250 / abs(550 / 9)  # the seed's formula: average win / |average of all trades|
    assert seed_rr == pytest.approx(4.0909, abs=1e-4) and d["risk_reward"] < 1.5 < seed_rr
    assert d["profit_factor"] == pytest.approx(1250 / 700)
    assert d["expectancy"] == pytest.approx(550 / 9)
    assert d["total_pnl"] == 550 and d["ending_equity"] == 10550
    assert (d["largest_win"], d["largest_loss"]) == (500, -400)
    assert d["max_drawdown"] == pytest.approx(400 / 10400) and d["max_drawdown_amount"] == 400
    assert d["avg_r_multiple"] == pytest.approx(550 / 9 / 200, abs=1e-4)
    assert d["trading_days"] == 8  # trade 8 closed on Apr 9 in New York, Apr 10 in UTC
    assert (d["consecutive_days"], d["day_rule"]) == (6, "XNYS")
    gates = _gates(d)
    assert gates == {"win_rate": (pytest.approx(5 / 9, abs=1e-6), True),
                     "risk_reward": (pytest.approx(1.071429, abs=1e-6), False),
                     "max_drawdown": (pytest.approx(0.038462, abs=1e-6), True),
                     "trades": (9, False), "consecutive_trading_days": (6, True), "crashes": (0, True)}
    row = sqlite3.connect(pgdb.state_db).execute("SELECT verdict, gates_json FROM metrics_verdicts").fetchone()
    assert row[0] == "NO-GO"
    assert [(g["gate"], g["passed"]) for g in json.loads(row[1])] == [(g["gate"], g["passed"]) for g in d["gates"]]
    assert set(json.loads(row[1])[0]) >= {"gate", "value", "threshold", "passed"}


def test_text_report_prints_every_gate_with_its_value(pgdb):
    _insert_positions(pgdb, TRADES)
    _config(pgdb)
    res = run_cli("--now", NOW, "metrics", config=pgdb.config)
    assert res.code == 1
    lines = {ln.split()[0]: ln for ln in res.out.splitlines() if ln.strip()}
    assert "55.56%" in lines["win_rate"] and "PASS" in lines["win_rate"]
    assert "1.07" in lines["risk_reward"] and "FAIL" in lines["risk_reward"]
    assert "3.85%" in lines["max_drawdown"] and "< 10.00%" in lines["max_drawdown"]
    assert "verdict: NO-GO" in res.out


def test_go_when_gates_pass_then_crash_in_period_turns_it_no_go(pgdb):
    _insert_positions(pgdb, TRADES)
    _config(pgdb, min_trades=9, min_risk_reward=1.0)
    code, d = _metrics(pgdb)
    assert (code, d["verdict"]) == (0, "GO")
    st = sqlite3.connect(pgdb.state_db)
    # outside the period (before the first trade) and a planned restart: neither is a crash
    st.execute("INSERT INTO restarts(service, at, reason, outcome, planned) VALUES ('scanner', 1700000000, 'x', 'recovered', 0)")
    st.execute("INSERT INTO restarts(service, at, reason, outcome, planned) VALUES ('*', 1775400000, 'weekly', 'recovered', 1)")
    st.commit()
    code, d = _metrics(pgdb)
    assert (code, d["verdict"], d["crashes"]) == (0, "GO", 0)
    # an automatic restart and a crashed job during the period
    st.execute("INSERT INTO restarts(service, at, reason, outcome, planned) VALUES ('trading', 1775400000, 'down', 'recovered', 0)")
    st.execute("INSERT INTO job_runs(job, started_at, status, exit_code) VALUES ('market-open', 1775400000, 'crashed', NULL)")
    st.commit()
    code, d = _metrics(pgdb)
    assert (code, d["verdict"], d["crashes"]) == (1, "NO-GO", 2)
    assert d["crash_detail"] == {"crashed_job_runs": 1, "unplanned_restarts": 1}
    assert _gates(d)["crashes"] == (2, False)
    verdicts = [r[0] for r in st.execute("SELECT verdict FROM metrics_verdicts ORDER BY id")]
    assert verdicts == ["GO", "GO", "NO-GO"]


def test_days_window_keeps_only_recent_trades(pgdb):
    _insert_positions(pgdb, TRADES)
    _config(pgdb)
    code, d = _metrics(pgdb, "--days", "3")  # since 2026-04-08 12:00 UTC: trades 8 and 9
    assert (d["trades"], d["losses"], d["total_pnl"]) == (2, 1, -200)
    assert d["max_drawdown"] == pytest.approx(200 / 10000)


def test_empty_data_is_no_go_with_clear_message(pgdb):
    _config(pgdb)
    res = run_cli("--now", NOW, "metrics", config=pgdb.config)
    assert res.code == 1
    assert "no closed trades" in res.out and "verdict: NO-GO" in res.out
    code, d = _metrics(pgdb)
    assert (code, d["trades"], d["verdict"], d["win_rate"], d["risk_reward"]) == (1, 0, "NO-GO", None, None)
    assert not any(passed for gate, (value, passed) in _gates(d).items() if gate != "crashes")


def test_null_pnl_is_rejected_and_open_positions_ignored(pgdb):
    _insert_positions(pgdb, TRADES)
    _insert_positions(pgdb, [(None, "2026-04-02 14:00", "2026-04-02 16:00", "AMD")])  # closed, no pnl
    _insert_positions(pgdb, [(None, "2026-04-06 14:00", "2026-04-06 16:00", "AMD"),
                             (999, "2026-04-06 14:00", "2026-04-06 16:00", "AMD")], status="open")
    _config(pgdb)
    code, d = _metrics(pgdb)
    assert (d["trades"], d["rejected"], d["rejected_null_pnl"]) == (9, 1, 1)
    assert d["risk_reward"] == pytest.approx(250 / (700 / 3)) and d["total_pnl"] == 550
    assert d["max_drawdown"] == pytest.approx(400 / 10400) and d["consecutive_days"] == 6
    check = json.loads(run_cli("db", "check", "--json", config=pgdb.config).out)
    incomplete = next(c for c in check["checks"] if c["check"] == "closed_positions_incomplete")
    assert (incomplete["status"], incomplete["value"]) == ("fail", 1)


def test_seed_trades_table_through_the_alternative_query(pgdb):
    conn = psycopg2.connect(pgdb.url)
    try:
        pgfixture.load_schema(conn, seed_trades=True)
        with conn.cursor() as cur:
            for pnl, entry, exit_, sym in TRADES:  # naive timestamps: read as UTC
                cur.execute("INSERT INTO trades(symbol, pnl, entry_time, exit_time, status) VALUES (%s,%s,%s,%s,'closed')",
                            (sym, pnl, entry, exit_))
            cur.execute("INSERT INTO trades(symbol, pnl, entry_time, status) VALUES ('OPEN', NULL, '2026-04-06 14:00', 'open')")
        conn.commit()
    finally:
        conn.close()
    _config(pgdb, trades_query=json.dumps(pgfixture.SEED_TRADES_QUERY))
    code, d = _metrics(pgdb)
    assert (d["trades"], d["wins"], d["losses"]) == (9, 5, 3)
    assert d["risk_reward"] == pytest.approx(250 / (700 / 3))
    assert d["max_drawdown"] == pytest.approx(400 / 10400)
    assert (d["trading_days"], d["consecutive_days"]) == (8, 6)
    assert d["avg_r_multiple"] is None  # the seed's table has no risk amount


def test_bad_query_is_a_config_error_and_unreachable_db_exit_3(pgdb):
    _config(pgdb, trades_query=json.dumps("SELECT 1 AS nothing FROM positions"))
    res = run_cli("metrics", config=pgdb.config)
    assert res.code == 2 and "metrics.trades_query" in res.err and "Traceback" not in res.err
    pgdb.write_config(url=pgdb.url.replace(f":{pgdb.cluster.port}/", ":1/"))
    res = run_cli("metrics", config=pgdb.config)
    assert res.code == 3 and "cannot connect" in res.err
    res = run_cli("metrics", "--days", "0", config=pgdb.config)
    assert res.code == 2


def test_consecutive_sessions_rule():
    run = metrics_mod.longest_session_run
    # Thanksgiving 2026 (Thu Nov 26) is a holiday: Wed -> Fri is consecutive
    assert run([date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30)]) == (4, "XNYS")
    assert run([date(2026, 11, 23), date(2026, 11, 25)]) == (1, "XNYS")  # Tue missed
    assert run([]) == (0, "XNYS")
    # outside the calendar's range: weekdays, and it says so
    assert run([date(1970, 1, 1), date(1970, 1, 2), date(1970, 1, 5)]) == (3, "weekdays")


# ------------------------------------------------------------------ upstream's close reasons


REAL_NOW = "2026-11-28T12:00:00+00:00"


def _load_realdata(pgdb) -> None:
    import realdata

    conn = psycopg2.connect(pgdb.url)
    try:
        realdata.load(conn)
    finally:
        conn.close()


def test_real_format_rows_never_filled_are_not_trades_and_estimates_are_apart(pgdb):
    """tests/realdata.py: 6 trades (+475), 2 never-filled closes, 3 estimates (-100) left out."""
    _load_realdata(pgdb)
    _config(pgdb, min_trades=5, min_consecutive_days=1, min_risk_reward=1.5)
    code, d = _metrics(pgdb, now=REAL_NOW)
    assert (d["trades"], d["wins"], d["losses"], d["breakeven"]) == (6, 4, 2, 0)
    assert (d["not_filled"], d["rejected"], d["rejected_null_pnl"]) == (2, 0, 0)
    assert d["estimates"] == {"estimated": 2, "emergency_zero": 1, "count": 3, "pnl": -100, "included": False}
    assert d["trades_estimated"] == 0
    assert d["total_pnl"] == 475 and d["win_rate"] == pytest.approx(4 / 6)
    assert d["risk_reward"] == pytest.approx(162.5 / 87.5)
    assert d["trading_days"] == 3  # Mon (incl. the 19:30 close), Tue, Wed in New York
    assert (code, d["verdict"]) == (0, "GO")
    assert d["verdict_estimates"].startswith("0 of its 6 trades are estimates; 3 estimated closes left out")
    text = run_cli("--now", REAL_NOW, "metrics", "--dry-run", config=pgdb.config)
    lines = {ln.split("  ")[0]: ln for ln in text.out.splitlines() if ln.strip()}
    assert "2" in lines["never filled (not trades)"]
    assert "3 (2 estimated closes, 1 zero-P&L emergency closes), pnl -100.00" in lines["estimates (excluded)"]
    assert "verdict: GO (0 of its 6 trades are estimates; 3 estimated closes left out" in text.out


def test_estimates_counted_when_configured_and_the_verdict_says_how_many(pgdb):
    _load_realdata(pgdb)
    _config(pgdb, include_estimates="true", min_trades=5, min_consecutive_days=1, min_risk_reward=1.5)
    code, d = _metrics(pgdb, now=REAL_NOW)
    assert (d["trades"], d["wins"], d["losses"], d["breakeven"], d["not_filled"]) == (9, 5, 3, 1, 2)
    assert d["total_pnl"] == 375 and d["trades_estimated"] == 3
    assert d["estimates"]["included"] is True
    # (300+50+200+100+50)/5 = 140 over (100+150+75)/3 = 108.33: below the 1.5 gate only with the estimates
    assert d["risk_reward"] == pytest.approx(140 / (325 / 3))
    assert (code, d["verdict"]) == (1, "NO-GO")
    assert d["verdict_estimates"] == "3 of its 9 trades are estimates (metrics.include_estimates)"


def test_close_reason_lists_are_configurable(pgdb):
    _load_realdata(pgdb)
    _config(pgdb, unfilled_close_reasons="[alpaca_expired]", estimated_close_reasons="[stop_loss_estimated]")
    code, d = _metrics(pgdb, now=REAL_NOW)
    # alpaca_canceled is now an ordinary close without P&L: rejected; take_profit_estimated is a trade
    assert (d["not_filled"], d["rejected"], d["trades"]) == (1, 1, 7)
    assert d["estimates"]["count"] == 2 and d["estimates"]["pnl"] == -150


def test_sql_rule_and_python_rule_agree(pg):
    """closes.sql_code (metrics, in PostgreSQL) and closes.classify (the daily report) on the same rows."""
    from catalyst_ops import closes, config

    cases = [(r, pnl, e, x) for r in (None, "EXIT", "alpaca_expired", "alpaca_done_for_day", "stop_loss_estimated",
                                      "closed_no_exit_price", "STOP_LOSS_HIT: X @ $1.00 <= $2.00")
             for pnl in (None, 0, 12.5, -3) for e, x in ((100, 100), (100, 101), (100, None))]
    conn = pg.connect("postgres", True)
    try:
        with conn.cursor() as cur:
            expr = closes.sql_code("r", "p", "e", "x")
            params = closes.params(config.Config())
            for r, pnl, e, x in cases:
                cur.execute(f"SELECT {expr} FROM (SELECT %(r)s::varchar AS r, %(p)s::numeric AS p, %(e)s::numeric AS e,"
                            f" %(x)s::numeric AS x) t", dict(params, r=r, p=pnl, e=e, x=x))
                code = cur.fetchone()[0]
                assert code == closes.CODES[closes.classify(r, pnl, e, x)], (r, pnl, e, x, code)
    finally:
        conn.close()
