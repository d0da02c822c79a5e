"""`catalyst-ops report weekly`: the week of 2026-W48 (Thanksgiving Thursday, an early close on
Friday) from a real PostgreSQL loaded with tests/realdata.py plus three trades of our own, and a
synthetic state DB of the same week; the HTML rendered in headless Chromium and its chart's
pixels checked.

The trades of the week, counted as metrics counts them (realdata's table, never-filled closes
and estimates left out), and the two around it that must not count:

  id  closed (New York)        P&L   day
  20  Fri 11-20 15:00        +1000   the week before: not counted
   1  Mon 11-23 12:00         +300   Mon
   2  Mon 11-23 13:00         -100   Mon
   4  Mon 11-23 19:30          +50   Mon (its UTC date is Tuesday)
   5  Tue 11-24 10:00         +200   Tue
   9  Tue 11-24 15:00         +100   Tue
  13  Wed 11-25 10:00          -75   Wed
      Thu 11-26: Thanksgiving, no session
  21  Fri 11-27 12:30          -50   Fri (early close at 13:00)
  22  Mon 11-30 10:00         -500   the week after: not counted

By day: Mon +250 (3 trades), Tue +300 (2), Wed -75 (1), Thu 0 (closed), Fri -50 (1).
The week: 7 trades, 4 won (+650), 3 lost (-225), P&L +425; win rate 4/7 = 0.571429;
average win 162.50, average loss -75.00, risk:reward 162.5/75 = 2.166667; profit factor
650/225 = 2.888889; expectancy 425/7 = 60.714286. Equity from 100,000 in exit order:
100300, 100200, 100250, 100450, 100550, 100475, 100425: the deepest fall is 125 from the
100,550 peak, max drawdown 125/100550 = 0.001243 (the earlier fall, 100/100300, is smaller).
Targets (defaults): win rate >= 0.5, risk:reward >= 1.5, profit factor >= 0.5/0.5 x 1.5 = 1.5,
expectancy > 0, drawdown < 0.10: all five met. With metrics.min_win_rate 0.6 the win rate
misses, and the implied profit factor target is 0.6/0.4 x 1.5 = 2.25 (still met).
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime

import psycopg2
import pytest
import realdata
from conftest import run_cli
from synth_state import ET, fill
from test_report import CHROMIUM, read_png, render_png

pytestmark = pytest.mark.postgres

NOW = "2026-11-29T06:00:00-05:00"  # Sunday, after weekly maintenance: the cron line's moment
EXTRA = [  # id, symbol, opened (UTC), closed (UTC), pnl
    (20, "AAPL", "2026-11-20 14:40", "2026-11-20 20:00", 1000),
    (21, "MSFT", "2026-11-27 14:40", "2026-11-27 17:30", -50),
    (22, "NVDA", "2026-11-30 14:40", "2026-11-30 15:00", -500),
]


def D(day: int, h: int, m: int = 0) -> datetime:
    return datetime(2026, 11, day, h, m, tzinfo=ET)


@pytest.fixture
def week(pgdb):
    conn = psycopg2.connect(pgdb.url)
    try:
        realdata.load(conn)
        with conn.cursor() as cur:
            for pid, sym, opened, closed, pnl in EXTRA:
                cur.execute("INSERT INTO positions(position_id, security_id, side, quantity, entry_price, exit_price, status,"
                            " realized_pnl, close_reason, opened_at, closed_at, risk_amount)"
                            " SELECT %s, security_id, 'long', 10, 100, 100 + %s / 10.0, 'closed', %s, 'EXIT',"
                            " %s::timestamp AT TIME ZONE 'UTC', %s::timestamp AT TIME ZONE 'UTC', 100"
                            " FROM securities WHERE symbol = %s", (pid, pnl, pnl, opened, closed, sym))
        conn.commit()
    finally:
        conn.close()
    # the week's operations: scanner down 30 minutes on Tuesday and restarted, the planned restart
    # of Sunday's maintenance, the health job every 5 minutes, nightly backups, six alerts delivered
    end = datetime.fromisoformat(NOW)
    db = fill(pgdb.state_db, end, hours=(end - D(23, 0)).total_seconds() / 3600,
              failures=[("scanner", D(24, 14), D(24, 14, 30), "down")],
              restarts=[("scanner", D(24, 14, 31), 0), ("*", D(29, 2, 5), 1)])
    with db.transaction() as c:
        for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
            at = datetime.fromisoformat(f"{day}T09:30:02-05:00").timestamp()
            c.execute("INSERT INTO market_actions(session_date, kind, acted_at, outcome, detail) VALUES (?,?,?,?,?)",
                      (day, "market-open", at, "completed", json.dumps({"message": "cycle completed"})))
            c.execute("INSERT INTO market_actions(session_date, kind, acted_at, outcome, detail) VALUES (?,?,?,?,?)",
                      (day, "market-close", at + 6.5 * 3600, "reported", "{}"))
        # Friday: halted before the open, so market-open did nothing
        c.execute("UPDATE job_runs SET status='skipped', summary=? WHERE job='market-open' AND session_date='2026-11-27'",
                  ("halted since 2026-11-27T09:10:00-05:00 (drill, by ops): market-open does nothing until `resume`",))
    db.close()
    return pgdb


def weekly(pgdb, *args, now=NOW):
    return run_cli("--now", now, "report", "weekly", *args, config=pgdb.config)


def test_a_known_week_gives_known_numbers(week):
    res = weekly(week, "--week", "2026-W48", "--json")
    assert res.code == 0, res.text
    d = json.loads(res.out)
    assert (d["week"], d["monday"], d["friday"], d["complete"]) == ("2026-W48", "2026-11-23", "2026-11-27", True)
    days = {x["weekday"]: x for x in d["days"]}
    assert [(x["date"], x["trades"], x["pnl"]) for x in d["days"]] == [
        ("2026-11-23", 3, 250.0), ("2026-11-24", 2, 300.0), ("2026-11-25", 1, -75.0), ("2026-11-26", 0, 0.0),
        ("2026-11-27", 1, -50.0)]
    assert days["Thu"]["session"] is False and days["Thu"]["closed"] == "Thanksgiving: NYSE closed"
    assert days["Fri"]["session"] is True and days["Fri"]["early_close"] is True
    f = d["figures"]
    assert (f["trades"], f["wins"], f["losses"], f["total_pnl"]) == (7, 4, 3, 425.0)
    assert (f["gross_win"], f["gross_loss"]) == (650.0, -225.0)
    assert f["win_rate"] == pytest.approx(4 / 7, abs=1e-6)
    assert f["risk_reward"] == pytest.approx(162.5 / 75, abs=1e-6)
    assert f["profit_factor"] == pytest.approx(650 / 225, abs=1e-6)
    assert f["expectancy"] == pytest.approx(425 / 7, abs=1e-6)
    assert f["max_drawdown"] == pytest.approx(125 / 100550, abs=1e-6) and f["max_drawdown_amount"] == 125.0
    assert (f["not_filled"], f["estimates"]["count"]) == (2, 3)  # #3, #7; #6, #8, #11 shown apart
    targets = {t["gate"]: t for t in f["targets"]}
    assert list(targets) == ["win_rate", "risk_reward", "profit_factor", "expectancy", "max_drawdown"]
    assert [(t["op"], t["threshold"], t["passed"]) for t in targets.values()] == [
        (">=", 0.5, True), (">=", 1.5, True), (">=", 1.5, True), (">", 0, True), ("<", 0.1, True)]
    assert f["targets_met"] == 5 and d["notes"] == []
    # the closed positions: the weeks around it left out, estimates and never-filled closes not counted
    ids = [t["position_id"] for t in d["trades"]]
    assert 20 not in ids and 22 not in ids
    assert sorted(t["position_id"] for t in d["trades"] if t["counted"]) == [1, 2, 4, 5, 9, 13, 21]
    assert {t["position_id"]: t["close_kind"] for t in d["trades"] if not t["counted"]} == {
        3: "not_filled", 6: "estimated", 7: "not_filled", 8: "emergency_zero", 11: "estimated"}

    # the ramp has not started: stage 1, its gate not met (the .env trades paper)
    r = d["ramp"]
    assert (r["stage"], r["started"], r["gate_met"]) == (1, False, False)
    assert r["limits"]["max_daily_loss_usd"] == 2000.0
    assert {g["gate"]: g["passed"] for g in r["gates"]}["mode is live"] is False

    # operations, Monday 00:00 to now (Sunday 06:00)
    o = d["operations"]
    up = {s["service"]: s for s in o["uptime"]}
    assert up["scanner"]["uptime_percent"] == pytest.approx(100 * (150 * 60 - 30) / (150 * 60), abs=0.01)
    assert len(up["scanner"]["gaps"]) == 1 and up["scanner"]["gaps"][0]["minutes"] == 30.0
    assert all(s["uptime_percent"] == 100.0 for name, s in up.items() if name != "scanner")
    assert o["restarts"]["unplanned"] == 1 and o["restarts"]["planned"] == 1
    assert o["alerts"]["delivered"] == 6 and o["alerts"]["created"] == 6
    assert o["backups"] == {"ok": 6, "verified": 6, "failed": 0, "gaps": 0}  # Mon..Sat 23:00
    assert [(s["date"], s["status"]) for s in o["sessions"]] == [
        ("2026-11-23", "traded"), ("2026-11-24", "traded"), ("2026-11-25", "traded"), ("2026-11-27", "skipped")]
    assert [s["date"] for s in o["skipped_sessions"]] == ["2026-11-27"]
    assert "halted since 2026-11-27T09:10" in o["skipped_sessions"][0]["reason"]
    crit = {c["key"]: c for c in o["criteria"]}
    # the calendar's early close: the synthetic week's 16:00 close run is not the 13:00 one it needed
    assert any("market close 2026-11-27 (early close)" in x for x in crit["scheduled_jobs"]["details"])
    assert crit["backups"]["passed"] and not crit["service_uptime"]["passed"]


def test_targets_follow_the_config_and_the_text_reads(week):
    with open(week.config, "a") as fh:
        fh.write("metrics:\n  min_win_rate: 0.6\n")
    res = weekly(week, "--date", "2026-11-25", "--json")
    assert res.code == 0, res.text
    targets = {t["gate"]: t for t in json.loads(res.out)["figures"]["targets"]}
    assert targets["win_rate"]["passed"] is False and targets["win_rate"]["threshold"] == 0.6
    assert targets["profit_factor"]["threshold"] == 2.25 and targets["profit_factor"]["passed"] is True
    res = weekly(week)  # the default: this week (Sunday's week is the one that just traded)
    assert res.code == 0, res.text
    first = res.out.splitlines()[0]
    assert first == ("Catalyst weekly review 2026-W48: 7 closed trades, P&L +425.00, win rate 57.1%, 4 of 5 targets met, "
                     "ramp stage 1 of 3 (not started), lowest uptime 99.67%, 1 unplanned restarts, 1 sessions skipped")
    assert "win rate       57.1%  >= 60.0%  MISSED" in res.out
    assert "max drawdown   0.12%  < 10.00%  met" in res.out
    assert "Thu 2026-11-26  Thanksgiving: NYSE closed" in res.out
    # mid-week: the days to come are not read, the figures stop at now
    res = weekly(week, "--json", now="2026-11-25T12:00:00-05:00")
    assert res.code == 0, res.text
    d = json.loads(res.out)
    assert d["complete"] is False and [x["future"] for x in d["days"]] == [False, False, False, True, True]
    assert [x["pnl"] for x in d["days"]] == [250.0, 300.0, -75.0, None, None]  # #13 closed at 10:00 Wednesday
    assert (d["figures"]["trades"], d["figures"]["total_pnl"], d["notes"]) == (6, 475.0, [])
    assert [(s["date"], s["status"]) for s in d["operations"]["sessions"]][-1] == ("2026-11-27", "to come")


def test_save_and_mail(week):
    res = weekly(week, "--save", "--mail", "--dry-run")
    assert res.code == 0 and not (week.dir / "log" / "reports").exists()
    res = weekly(week, "--save", "--mail")
    assert res.code == 0, res.text
    for ext in ("txt", "json", "html"):
        assert (week.dir / "log" / "reports" / f"weekly-2026-W48.{ext}").stat().st_size > 1000
    db = sqlite3.connect(week.state_db)
    assert db.execute("SELECT kind, report_date, path FROM reports").fetchall() == [
        ("weekly", "2026-W48", str(week.dir / "log" / "reports" / "weekly-2026-W48.json"))]
    sev, subject, body = db.execute("SELECT severity, subject, body FROM alerts WHERE subject_key='report:weekly:2026-W48'").fetchone()
    assert sev == "info" and subject.startswith("Catalyst weekly review 2026-W48: 7 closed trades")
    assert body == (week.dir / "log" / "reports" / "weekly-2026-W48.txt").read_text()
    run = db.execute("SELECT status, exit_code FROM job_runs WHERE job='report-weekly' ORDER BY id DESC").fetchone()
    assert run == ("ok", 0)


def test_bad_arguments_and_a_database_that_is_down(week):
    for args, needle in ((("--week", "2026-48"), "--week: expected YYYY-Www"), (("--week", "2026-W54"), "is not a week of 2026"),
                         (("--week", "2026-W50"), "is in the future"), (("--date", "27/11/2026"), "--date: expected")):
        res = weekly(week, *args)
        assert res.code == 2 and needle in res.err and "Traceback" not in res.err, (args, res.text)
    res = weekly(week, "--week", "2026-W48", "--date", "2026-11-25")
    assert res.code == 2 and "not allowed with argument" in res.err
    week.write_config(url=week.url.replace(f"/{week.name}", "/no_such_database"))
    res = weekly(week, "--json")
    assert res.code == 3, res.text
    d = json.loads(res.out)
    assert d["database"]["available"] is False and d["figures"]["available"] is False
    assert d["operations"]["restarts"]["unplanned"] == 1  # the state DB's part is still there


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (scripts/setup.sh --test installs it)")
def test_html_renders_in_headless_chromium_with_the_chart(week, tmp_path):
    from catalyst_ops.weeklyreport import NEG, POS

    res = weekly(week, "--week", "2026-W48", "--html")
    assert res.code == 0, res.text
    assert res.out.lstrip().startswith("<!DOCTYPE html>") and "<svg" in res.out and "<script" not in res.out
    assert "http://" not in res.out.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    html = tmp_path / "weekly.html"
    html.write_text(res.out)
    png = tmp_path / "weekly.png"
    p = render_png(html, png, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Uncaught" not in p.stderr and ":CONSOLE(" not in p.stderr, p.stderr[-2000:]
    w, h, rows = read_png(png)
    assert (w, h) == (1200, 1400)
    green, red = bytes.fromhex(POS[1:]), bytes.fromhex(NEG[1:])
    count = {"green": 0, "red": 0}
    green_rows, red_rows = [], []
    for y, row in enumerate(rows):
        g = sum(1 for x in range(0, len(row), 3) if row[x:x + 3] == green)
        r = sum(1 for x in range(0, len(row), 3) if row[x:x + 3] == red)
        count["green"] += g
        count["red"] += r
        if g:
            green_rows.append(y)
        if r:
            red_rows.append(y)
    # the bars are there: two winning days (+250, +300) and two losing ones (-75, -50), equal widths,
    # so their areas are in proportion 550:125 = 4.4
    assert count["green"] > 10_000 and count["red"] > 2_000, count
    assert 3.9 < count["green"] / count["red"] < 4.9, count
    # and the losses hang below the zero line the gains stand on
    assert min(red_rows) >= max(green_rows) - 1, (min(red_rows), max(green_rows))
