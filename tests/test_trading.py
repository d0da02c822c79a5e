"""Trading mode, broker views, emergency stop and resume against the stand-in stack over real HTTP."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time

import pytest
import requests

from catalyst_ops.sandbox.manage import STANDIN_KEY, STANDIN_LIVE_KEY, STANDIN_LIVE_SECRET, STANDIN_SECRET
from conftest import run_cli

NINE = ("orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news", "reporting")
HEADERS = {"APCA-API-KEY-ID": STANDIN_KEY, "APCA-API-SECRET-KEY": STANDIN_SECRET}


# ---------------------------------------------------------------------- helpers


def broker_url(s, path: str, account: str = "paper") -> str:
    return f"http://127.0.0.1:{s.port('broker')}{'/live' if account == 'live' else ''}{path}"


def headers(account: str = "paper") -> dict:
    if account == "live":
        return {"APCA-API-KEY-ID": STANDIN_LIVE_KEY, "APCA-API-SECRET-KEY": STANDIN_LIVE_SECRET}
    return HEADERS


def broker_get(s, path: str, account: str = "paper"):
    r = requests.get(broker_url(s, path, account), headers=headers(account), timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def place_order(s, symbol: str = "NVDA", account: str = "paper") -> requests.Response:
    return requests.post(broker_url(s, "/v2/orders", account), headers=headers(account), timeout=5,
                         json={"symbol": symbol, "qty": 1, "side": "buy", "type": "limit", "time_in_force": "day"})


def running_env(s, service: str = "trading") -> dict:
    """What the running stand-in process was started with (`docker compose exec SERVICE printenv`)."""
    from catalyst_ops.sandbox import manage

    env = manage.exec_env(s.rundir, service)
    assert env is not None, f"{service} is not running"
    return env


def trading_runs(s) -> str:
    """The mode the running trading service trades in: its environment, as upstream's AlpacaTrader reads it,
    and the line it logged when it started (they must agree)."""
    from catalyst_ops.sandbox import manage

    mode = "paper" if running_env(s).get("TRADING_MODE", "paper").lower() == "paper" else "live"
    lines = [l for l in manage.logs(s.rundir, "trading").splitlines() if "AlpacaTrader" in l]
    assert lines and lines[-1].endswith(f"({mode.upper()} mode)"), lines
    return mode


def db(s) -> sqlite3.Connection:
    conn = sqlite3.connect(s.state_db)
    conn.row_factory = sqlite3.Row
    return conn


def halted(s) -> bool:
    row = db(s).execute("SELECT halted FROM halt WHERE id=1").fetchone()
    return bool(row and row["halted"])


def add_verdict(s, verdict: str, gates: list[dict]) -> None:
    # the metrics command (another branch) writes these rows; the contract is the table
    run = s.cli("mode", "show", "--json")  # creates the state DB with the shared schema
    assert run.code == 0, run.text
    conn = db(s)
    conn.execute("INSERT INTO metrics_verdicts(computed_at, days, verdict, gates_json) VALUES (?,?,?,?)",
                 (time.time(), 20, verdict, json.dumps(gates)))
    conn.commit()


def go_live(s) -> None:
    add_verdict(s, "GO", [{"gate": "win rate", "value": 0.6, "threshold": 0.5, "passed": True}])
    res = s.cli("mode", "live")
    assert res.code == 0, res.text
    assert trading_runs(s) == "live"


def seed(s, positions="AAPL:10,MSFT:5", orders="AAPL,TSLA", account: str = "paper") -> None:
    s.sandbox("seed-broker", "--positions", positions, "--orders", orders, "--account", account)
    assert len(broker_get(s, "/v2/positions", account)) == len([p for p in positions.split(",") if p])


def backups(s) -> list:
    return sorted(s.rundir.glob(".env.bak-*"))


def assert_stopped(s, res, account: str = "live") -> None:
    """The outcome every emergency stop must leave, whatever else failed: the account that traded is
    flat and suspended, the stack is back on paper."""
    assert broker_get(s, "/v2/positions", account) == []
    assert broker_get(s, "/v2/orders?status=open", account) == []
    refused = place_order(s, account=account)
    assert refused.status_code == 403, refused.text
    assert broker_get(s, "/v2/account", account)["trade_suspended_by_user"] is True
    assert halted(s)
    env = s.env_file.read_text()
    assert "TRADING_MODE=paper" in env.splitlines()
    prev = backups(s)
    assert prev and any("TRADING_MODE=live" in p.read_text().splitlines() for p in prev)
    assert stat.S_IMODE(os.stat(s.env_file).st_mode) == 0o600
    assert trading_runs(s) == "paper"
    alerts = db(s).execute("SELECT * FROM alerts WHERE subject_key='emergency-stop'").fetchall()
    # no SMTP server configured for the stand-in: the alert waits in the outbox for the monitor
    assert alerts and alerts[-1]["severity"] == "critical" and alerts[-1]["status"] == "pending"


def steps(res) -> dict:
    return {s["step"]: s for s in json.loads(res.out)["steps"]}


STEPS = ["halt", "cancel-orders", "close-positions", "suspend-trading", "paper-mode", "recreate-services", "alert"]


# ---------------------------------------------------------------------- emergency stop


def test_emergency_stop_closes_everything_and_is_safe_twice(standin):
    go_live(standin)
    seed(standin, account="live")
    assert place_order(standin, "AMD", "live").status_code == 200  # the broker takes orders before the stop
    res = standin.cli("emergency-stop", "--reason", "drill", "--json")
    assert res.code == 0, res.text
    st = steps(res)
    assert list(st) == STEPS
    assert all(s["status"] == "ok" for s in st.values()), st
    assert "flat" in st["close-positions"]["detail"]
    assert_stopped(standin, res)
    # the paper account was never touched
    assert broker_get(standin, "/v2/account")["trade_suspended_by_user"] is False
    # every step recorded, in order
    rows = db(standin).execute("SELECT step, status FROM emergency_steps ORDER BY run_id, seq").fetchall()
    assert [r["step"] for r in rows] == list(st)
    alert = db(standin).execute("SELECT body FROM alerts WHERE subject_key='emergency-stop'").fetchone()
    assert "drill" in alert["body"] and "close-positions: OK" in alert["body"]

    n_backups = len(backups(standin))  # one from going live, one from the stop
    assert n_backups == 2
    # a second run is safe: nothing left to do, still halted, still paper, nothing reopened
    again = standin.cli("emergency-stop", "--reason", "drill again", "--json")
    assert again.code == 0, again.text
    st2 = steps(again)
    assert st2["halt"]["detail"].startswith("already set")
    assert "unchanged" in st2["paper-mode"]["detail"]
    assert_stopped(standin, again)
    assert len(backups(standin)) == n_backups, "an unchanged .env is not rewritten or backed up again"


def test_suspend_first_would_leave_the_positions_open(standin):
    """Alpaca refuses every new order while suspend_trade is set, and a close is a new order: the stand-in
    keeps that rule, and the stop flattens before it suspends."""
    seed(standin, positions="AAPL:10", orders="")
    requests.patch(broker_url(standin, "/v2/account/configurations"), headers=HEADERS, timeout=5,
                   json={"suspend_trade": True}).raise_for_status()
    refused = requests.delete(broker_url(standin, "/v2/positions"), headers=HEADERS, timeout=5)
    assert refused.status_code == 207
    assert [(i["symbol"], i["status"]) for i in refused.json()] == [("AAPL", 403)]
    assert broker_get(standin, "/v2/positions")[0]["symbol"] == "AAPL"
    requests.patch(broker_url(standin, "/v2/account/configurations"), headers=HEADERS, timeout=5,
                   json={"suspend_trade": False}).raise_for_status()
    res = standin.cli("emergency-stop", "--json")
    assert res.code == 0, res.text
    st = steps(res)
    order = [name for name in st]
    assert order.index("close-positions") < order.index("suspend-trading")
    assert broker_get(standin, "/v2/positions") == []
    assert broker_get(standin, "/v2/account")["trade_suspended_by_user"] is True


def test_cancels_are_polled_through_pending_cancel(standin):
    seed(standin, positions="", orders="AAPL,TSLA")
    requests.post(f"http://127.0.0.1:{standin.port('broker')}/_standin/broker", json={"cancel_delay": 1.0},
                  timeout=5).raise_for_status()
    res = standin.cli("emergency-stop", "--json")
    assert res.code == 0, res.text
    detail = steps(res)["cancel-orders"]["detail"]
    polls = int(detail.split("after ")[1].split(" poll")[0])
    assert polls > 1, detail  # the first read still showed them pending_cancel
    assert broker_get(standin, "/v2/orders?status=open") == []
    # and a cancel that does not finish within the bound is a failed step naming the orders
    seed(standin, positions="", orders="MSFT")
    requests.post(f"http://127.0.0.1:{standin.port('broker')}/_standin/broker", json={"cancel_delay": 60},
                  timeout=5).raise_for_status()
    standin.config.write_text(standin.config.read_text().replace("  close_poll: 0.2", "  close_poll: 0.1\n  cancel_attempts: 3"))
    res = standin.cli("emergency-stop", "--json")
    assert res.code == 1
    cancel = steps(res)["cancel-orders"]
    assert cancel["status"] == "failed" and "MSFT pending_cancel" in cancel["detail"]


def test_emergency_stop_after_the_close_is_pending_until_the_next_open(standin):
    go_live(standin)
    seed(standin, positions="AAPL:10,MSFT:5", orders="", account="live")
    standin.sandbox("broker-market", "closed")
    res = standin.cli("emergency-stop", "--reason", "after hours", "--json")
    assert res.code == 1, res.text
    out = json.loads(res.out)
    st = steps(res)
    assert st["close-positions"]["status"] == "pending"
    assert st["close-positions"]["detail"].startswith("flatten pending: 2 orders queued for the open")
    assert out["pending_steps"] == ["close-positions"] and out["failed_steps"] == []
    # something is pending at the broker: not suspended (it would refuse the closes' replacements)
    assert st["suspend-trading"]["status"] == "skipped"
    assert broker_get(standin, "/v2/account", "live")["trade_suspended_by_user"] is False
    assert "flatten pending: 2 orders queued for the open" in res.err
    # one alert, saying so
    alerts = db(standin).execute("SELECT subject FROM alerts WHERE subject_key='emergency-stop'").fetchall()
    assert len(alerts) == 1 and "flatten pending: 2 orders queued for the open" in alerts[0]["subject"]
    assert halted(standin) and trading_runs(standin) == "paper"
    # the .env is on paper now, but the closes wait in the live account: `positions` can look there
    pos = standin.cli("positions", "--account", "live", "--json")
    assert sorted(p["symbol"] for p in json.loads(pos.out)["positions"]) == ["AAPL", "MSFT"]

    # the next session's open: market-open is halted, but it checks the flatten
    standin.sandbox("broker-market", "open")
    chk = standin.cli("--now", "2026-03-04T09:30:20-05:00", "market-open", "--json")
    assert chk.code == 0, chk.text
    assert "flat at the open" in chk.text
    assert broker_get(standin, "/v2/positions", "live") == []
    assert broker_get(standin, "/v2/account", "live")["trade_suspended_by_user"] is True
    info = db(standin).execute("SELECT severity FROM alerts WHERE subject_key='emergency-stop:open-check'").fetchall()
    assert [r["severity"] for r in info] == ["info"]
    # resolved: a later firing is an ordinary halted skip, with no second check or alert
    again = standin.cli("--now", "2026-03-04T09:31:00-05:00", "market-open")
    assert again.code == 0 and "halted" in again.text and "flat" not in again.text
    assert len(db(standin).execute("SELECT id FROM alerts WHERE subject_key='emergency-stop:open-check'").fetchall()) == 1
    # resume lifts the suspension where it was set: the live account, not the .env's paper one
    ok = standin.cli("resume", "--yes", "--reason", "checked")
    assert ok.code == 0, ok.text
    assert broker_get(standin, "/v2/account", "live")["trade_suspended_by_user"] is False


def test_pending_flatten_not_filled_at_the_open_alerts(standin):
    go_live(standin)
    seed(standin, positions="AAPL:10", orders="", account="live")
    standin.sandbox("broker-market", "closed")
    assert standin.cli("emergency-stop").code == 1
    # (open_flat_wait is 5 s in the stand-in's ops.yml)
    chk = standin.cli("--now", "2026-03-04T09:30:20-05:00", "market-open")
    assert chk.code == 1, chk.text
    assert "NOT FLAT at the open" in chk.text and "AAPL 10" in chk.text
    crit = db(standin).execute("SELECT severity, subject FROM alerts WHERE subject_key='emergency-stop:open-check'").fetchall()
    assert [r["severity"] for r in crit] == ["critical"] and "NOT flat" in crit[0]["subject"]
    assert broker_get(standin, "/v2/account", "live")["trade_suspended_by_user"] is False


def test_emergency_stop_with_every_catalyst_service_down(standin):
    go_live(standin)
    seed(standin, account="live")
    standin.config.write_text(standin.config.read_text().replace("restart_wait: 15", "restart_wait: 2"))
    for svc in NINE:
        standin.fault(svc, "down", *(("--sticky",) if svc == "trading" else ()))
    assert standin.cli("status").code == 1
    res = standin.cli("emergency-stop", "--json")
    st = steps(res)
    for step in ("halt", "cancel-orders", "close-positions", "suspend-trading", "paper-mode", "alert"):
        assert st[step]["status"] == "ok", (step, st[step])
    # trading is held down, so the only step that cannot succeed is applying paper to it: named, exit 1
    assert st["recreate-services"]["status"] == "failed"
    assert json.loads(res.out)["failed_steps"] == ["recreate-services"]
    assert res.code == 1
    assert "failed steps: recreate-services" in res.err
    assert broker_get(standin, "/v2/positions", "live") == []
    assert broker_get(standin, "/v2/account", "live")["trade_suspended_by_user"] is True
    assert halted(standin) and "TRADING_MODE=paper" in standin.env_file.read_text().splitlines()


def test_close_failing_for_some_symbols_is_retried_and_named(standin):
    go_live(standin)
    seed(standin, positions="AAPL:10,MSFT:5,TSLA:3", orders="AAPL", account="live")
    standin.fault("broker", "close-fail", "--symbols", "MSFT,TSLA")
    res = standin.cli("emergency-stop", "--json")
    assert res.code == 1, res.text
    st = steps(res)
    close = st["close-positions"]
    assert close["status"] == "failed"
    assert "MSFT" in close["detail"] and "TSLA" in close["detail"] and "AAPL" not in close["detail"].split("(")[0]
    assert "retried MSFT, TSLA" in close["detail"]
    assert "failed steps: close-positions" in res.err
    # nothing is pending at the broker, so the account is suspended anyway; the rest went on regardless
    assert halted(standin)
    assert st["paper-mode"]["status"] == "ok" and "TRADING_MODE=paper" in standin.env_file.read_text().splitlines()
    assert st["suspend-trading"]["status"] == "ok" and place_order(standin, account="live").status_code == 403
    assert sorted(p["symbol"] for p in broker_get(standin, "/v2/positions", "live")) == ["MSFT", "TSLA"]
    alert = db(standin).execute("SELECT subject FROM alerts WHERE subject_key='emergency-stop'").fetchone()
    assert "close-positions" in alert["subject"]


def test_transient_close_failure_is_retried_until_flat(standin):
    seed(standin, positions="AAPL:10,MSFT:5", orders="")
    standin.fault("broker", "close-fail", "--symbols", "MSFT", "--attempts", "2")
    res = standin.cli("emergency-stop", "--json")
    assert res.code == 0, res.text
    close = steps(res)["close-positions"]
    assert close["status"] == "ok" and "retried MSFT" in close["detail"]
    assert broker_get(standin, "/v2/positions") == []


def test_rate_limited_broker_is_retried_within_a_bound(standin):
    seed(standin, positions="AAPL:10", orders="")
    standin.fault("broker", "rate-limit", "--attempts", "2")
    res = standin.cli("account", "--json")
    assert res.code == 0, res.text
    assert "429" in res.err  # each retry is logged
    standin.fault("broker", "rate-limit", "--attempts", "50")
    res = standin.cli("positions")
    assert res.code == 3
    assert "HTTP 429: still rate limited after 4 tries" in res.err


def test_emergency_stop_dry_run_changes_nothing(standin):
    go_live(standin)
    seed(standin, account="live")
    before = standin.env_file.read_bytes()
    res = standin.cli("emergency-stop", "--dry-run")
    assert res.code == 0, res.text
    assert "close 2 positions (AAPL 10, MSFT 5)" in res.out and "cancel 2 open orders" in res.out
    assert "TRADING_MODE: live -> paper" in res.out and "live account" in res.out
    assert len(broker_get(standin, "/v2/positions", "live")) == 2
    assert place_order(standin, account="live").status_code == 200
    assert not halted(standin)
    assert standin.env_file.read_bytes() == before
    assert trading_runs(standin) == "live"


# ---------------------------------------------------------------------- resume / halt


def test_resume_needs_yes_and_reason_then_lifts_both(standin):
    seed(standin)
    assert standin.cli("emergency-stop").code == 0
    no = standin.cli("resume", "--reason", "fixed")
    assert no.code == 2 and "--yes" in no.err
    assert halted(standin)
    assert standin.cli("resume", "--yes").code == 2
    dry = standin.cli("resume", "--yes", "--reason", "fixed", "--dry-run")
    assert dry.code == 0 and halted(standin) and place_order(standin).status_code == 403
    ok = standin.cli("resume", "--yes", "--reason", "root cause fixed")
    assert ok.code == 0, ok.text
    assert not halted(standin)
    assert broker_get(standin, "/v2/account")["trade_suspended_by_user"] is False
    assert place_order(standin).status_code == 200
    ev = db(standin).execute("SELECT actor, detail FROM events WHERE kind='resume'").fetchone()
    assert json.loads(ev["detail"])["reason"] == "root cause fixed" and ev["actor"]


def test_resume_keeps_halt_when_broker_is_down(standin):
    assert standin.cli("emergency-stop").code == 0
    standin.fault("broker", "down")
    res = standin.cli("resume", "--yes", "--reason", "try")
    assert res.code == 1
    assert "halt flag stays set" in res.out
    assert halted(standin)


def _has_market_open() -> bool:
    return " market-open " in run_cli("--help").out.replace("\n", " ").replace(",", " ")


@pytest.mark.skipif(not _has_market_open(), reason="`market-open` is built on the market branch; this test "
                    "activates once it is merged")
def test_market_open_does_nothing_while_halted_and_works_after_resume(standin):
    now = "2026-03-04T09:30:30-05:00"  # a Wednesday session's open
    starts = standin.rundir / "workflow-starts.json"
    assert standin.cli("emergency-stop").code == 0
    res = standin.cli("--now", now, "market-open")
    assert res.code == 0, res.text
    assert "halt" in res.text.lower()
    assert not starts.exists() or json.loads(starts.read_text()) == []
    run = db(standin).execute("SELECT status FROM job_runs WHERE job='market-open' ORDER BY id DESC").fetchone()
    assert run["status"] == "skipped"
    assert standin.cli("resume", "--yes", "--reason", "drill over").code == 0
    res = standin.cli("--now", now, "market-open")
    assert res.code == 0, res.text
    assert len(json.loads(starts.read_text())) == 1


# ---------------------------------------------------------------------- mode


def test_mode_live_with_no_go_refuses_listing_failing_gates(standin):
    add_verdict(standin, "NO-GO", [
        {"gate": "win rate", "value": 0.41, "threshold": 0.5, "passed": False},
        {"gate": "max drawdown", "value": 0.04, "threshold": 0.1, "passed": True},
        {"gate": "consecutive days", "value": 3, "threshold": 5, "passed": False},
    ])
    before = standin.env_file.read_bytes()
    res = standin.cli("mode", "live")
    assert res.code == 1, res.text
    assert "NO-GO" in res.out
    assert "FAIL win rate: 0.41 (threshold 0.5)" in res.out
    assert "FAIL consecutive days: 3 (threshold 5)" in res.out
    assert "max drawdown" not in res.out
    assert standin.env_file.read_bytes() == before and not backups(standin)
    assert trading_runs(standin) == "paper"
    # the override needs a reason, and is recorded with it
    assert standin.cli("mode", "live", "--force").code == 2
    assert standin.env_file.read_bytes() == before
    forced = standin.cli("mode", "live", "--force", "--reason", "operator accepts the low win rate")
    assert forced.code == 0, forced.text
    assert trading_runs(standin) == "live"
    ev = json.loads(db(standin).execute("SELECT detail FROM events WHERE kind='mode-switch'").fetchone()["detail"])
    assert ev["forced"] is True and ev["reason"] == "operator accepts the low win rate" and ev["verdict"] == "NO-GO"


def test_mode_live_without_any_verdict_refuses(standin):
    before = standin.env_file.read_bytes()
    res = standin.cli("mode", "live")
    assert res.code == 1 and "no metrics verdict" in res.out
    assert standin.env_file.read_bytes() == before


def test_mode_live_refused_while_halted(standin):
    add_verdict(standin, "GO", [])
    assert standin.cli("emergency-stop").code == 0
    res = standin.cli("mode", "live", "--force", "--reason", "x")
    assert res.code == 1 and "halt" in res.out
    assert "TRADING_MODE=paper" in standin.env_file.read_text().splitlines()


ODD_ENV = (
    "# Catalyst stack .env -- hand edited\n"
    "\n"
    "DATABASE_URL='postgresql://catalyst:p%40ss#1@db.example:25060/catalyst_trading?sslmode=require'\n"
    "ALPACA_API_KEY={key}\n"
    "export ALPACA_SECRET_KEY=\"{secret}\"\n"
    "ALPACA_BASE_URL={url}   # paper endpoint\n"
    "export TRADING_MODE=paper\n"
    "  # indented comment with = sign\n"
    "SMTP_PASSWORD=\"pa ss \\\"word\\\" #notacomment\"\n"
    "ALERT_EMAIL_CRITICAL=ops@example.com # pager\n"
    "MAX_POSITIONS=5\n"
    "UNRELATED.KEY-1=some value with spaces\n"
    "EMPTY=\n"
    "MAX_DAILY_LOSS=2000\n"
)


def test_mode_switch_keeps_every_other_line_byte_for_byte(standin):
    text = ODD_ENV.format(key=STANDIN_KEY, secret=STANDIN_SECRET, url=f"http://127.0.0.1:{standin.port('broker')}")
    standin.env_file.write_bytes(text.encode())
    os.chmod(standin.env_file, 0o640)
    add_verdict(standin, "GO", [])
    res = standin.cli("mode", "live", "--dry-run")
    assert res.code == 0, res.text
    assert "TRADING_MODE: paper -> live" in res.out and "MAX_DAILY_LOSS_USD: (unset) -> 2000" in res.out
    assert "RISK_PER_TRADE" not in res.out  # no service reads it
    assert standin.env_file.read_bytes() == text.encode() and not backups(standin)
    res = standin.cli("mode", "live")
    assert res.code == 0, res.text
    assert trading_runs(standin) == "live"
    after = standin.env_file.read_text().split("\n")
    old = text.split("\n")
    changed = {i for i, (a, b) in enumerate(zip(old[:-1], after)) if a != b}
    assert {old[i].split("=")[0] for i in changed} == {"ALPACA_BASE_URL", "export TRADING_MODE", "MAX_POSITIONS"}
    assert after[old.index("export TRADING_MODE=paper")] == "export TRADING_MODE=live"
    assert after[old.index("MAX_POSITIONS=5")] == "MAX_POSITIONS=3"
    assert after[len(old) - 1:] == ["MAX_DAILY_LOSS_USD=2000", ""]  # a new key is appended
    assert stat.S_IMODE(os.stat(standin.env_file).st_mode) == 0o600
    (backup,) = backups(standin)
    assert backup.read_bytes() == text.encode()
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    # and back to paper: only the mode and URL lines move again
    assert standin.cli("mode", "paper").code == 0
    final = standin.env_file.read_text().split("\n")
    assert [l for l in final if l not in after] == [f"ALPACA_BASE_URL=http://127.0.0.1:{standin.port('broker')}",
                                                    "export TRADING_MODE=paper"]
    assert trading_runs(standin) == "paper"


def test_mode_live_applies_the_env_to_every_service_that_reads_it(standin):
    go_live(standin)
    for svc in ("trading", "risk-manager", "workflow", "scanner"):
        env = running_env(standin, svc)
        assert env["TRADING_MODE"] == "live" and env["MAX_POSITIONS"] == "3" and env["MAX_DAILY_LOSS_USD"] == "2000", svc
        assert env["ALPACA_API_KEY"] == STANDIN_LIVE_KEY, svc  # the live account's own key pair
    # a service that does not trade keeps its container
    assert "TRADING_MODE" not in running_env(standin, "news")
    # recreated, not only restarted: planned, so the health job's storm bound does not count them
    rows = db(standin).execute("SELECT service, outcome, planned FROM restarts WHERE reason='mode live'").fetchall()
    assert sorted(r["service"] for r in rows) == ["risk-manager", "scanner", "trading", "workflow"]
    assert all(r["planned"] == 1 and r["outcome"] == "recreated" for r in rows)
    show = json.loads(standin.cli("mode", "show", "--json").out)
    assert show["account"] == "live" and show["running"] == "live" and show["broker_url"].endswith("/live")


def test_mode_live_with_a_runtime_that_only_restarts_is_not_confirmed(standin):
    """`docker compose restart` keeps a container's environment: a switch that does not recreate never
    reaches the services, and must say so (exit 1), never report success."""
    text = standin.config.read_text()
    assert "sandbox recreate {services}" in text
    standin.config.write_text(text.replace("sandbox recreate {services}", "sandbox restart {service}"))
    add_verdict(standin, "GO", [])
    res = standin.cli("mode", "live")
    assert res.code == 1, res.text
    assert "FAILED" in res.out and "trading runs with TRADING_MODE=paper" in res.out
    assert "logged 'AlpacaTrader v2.0.0 initialized (PAPER mode)'" in res.out
    assert trading_runs(standin) == "paper"
    assert "confirmed:" not in res.out


def test_mode_live_refused_when_compose_does_not_pass_trading_mode(standin):
    """Upstream's docker-compose.yml passes TRADING_MODE to no container: nothing is changed, and the error
    names the file, the services and the lines to add."""
    compose = standin.rundir / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("    env_file:\n      - .env\n", ""))
    add_verdict(standin, "GO", [])
    before = standin.env_file.read_bytes()
    for args in (("mode", "live"), ("mode", "live", "--dry-run")):
        res = standin.cli(*args)
        assert res.code == 2, res.text
        err = res.err.strip().splitlines()[-1]
        assert str(compose) in err and "TRADING_MODE" in err
        assert "trading, risk-manager, workflow, scanner" in err and "trading would get TRADING_MODE=(absent)" in err
        assert "env_file:" in err and "- .env" in err and "nothing was changed" in err
        assert "Traceback" not in res.text
    assert standin.env_file.read_bytes() == before and not backups(standin)
    assert trading_runs(standin) == "paper"
    # paper is the services' default when TRADING_MODE is absent: going to paper needs no passthrough
    assert standin.cli("mode", "paper").code == 0


def test_mode_live_racing_an_emergency_stop_is_refused(standin):
    """mode live takes the .env lock before it looks at the halt: an emergency stop that set the halt
    while live waited for the lock wins."""
    from catalyst_ops.lock import JobLock

    add_verdict(standin, "GO", [])
    lock = JobLock(str(standin.rundir), "env-file").acquire()  # an emergency stop writing paper
    try:
        import subprocess
        import sys

        proc = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(standin.config), "mode", "live"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # mode live is now waiting for the lock
        conn = db(standin)
        conn.execute("INSERT INTO halt(id, halted, since, reason, actor) VALUES (1, 1, ?, 'emergency stop: race', 'test')"
                     " ON CONFLICT(id) DO UPDATE SET halted=1, since=excluded.since, reason=excluded.reason",
                     (time.time(),))
        conn.commit()
    finally:
        lock.release()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "refused: the halt flag is set" in out
    assert "TRADING_MODE=paper" in standin.env_file.read_text().splitlines()
    assert trading_runs(standin) == "paper"


def test_mode_show_json(standin):
    res = standin.cli("mode", "show", "--json")
    assert res.code == 0, res.text
    data = json.loads(res.out)
    assert data["mode"] == "paper" and data["running"] == "paper" and data["halted"] is False
    assert data["ramp_stage"] == 1 and data["ramp_started"] is False


# ---------------------------------------------------------------------- broker views and secrets


def test_account_and_positions_json_with_stack_down(standin):
    seed(standin)
    for svc in NINE:
        standin.fault(svc, "down")
    acct = standin.cli("account", "--json")
    assert acct.code == 0, acct.text
    assert json.loads(acct.out)["account_number"] == "PA0000STANDIN"
    pos = standin.cli("positions", "--json")
    assert pos.code == 0, pos.text
    data = json.loads(pos.out)
    assert sorted(p["symbol"] for p in data["positions"]) == ["AAPL", "MSFT"]
    assert sorted(o["symbol"] for o in data["open_orders"]) == ["AAPL", "TSLA"]


def test_broker_errors_are_one_line_and_never_show_keys(standin):
    text = standin.env_file.read_text().replace(STANDIN_SECRET, "wrong-secret-value-987")
    standin.env_file.write_text(text)
    res = standin.cli("-v", "account")
    assert res.code == 3
    assert "HTTP 403" in res.err and "ALPACA_SECRET_KEY" in res.err
    assert "wrong-secret-value-987" not in res.text and STANDIN_KEY not in res.text
    assert "Traceback" not in res.text
    standin.fault("broker", "down")
    res = standin.cli("positions")
    assert res.code == 3 and "connection refused" in res.err
    stop = standin.cli("-v", "emergency-stop")
    assert stop.code == 1
    assert "wrong-secret-value-987" not in stop.text and STANDIN_KEY not in stop.text
    assert halted(standin)


def test_the_account_follows_trading_mode_not_alpaca_base_url(standin):
    """The services pick paper or live from TRADING_MODE alone; ALPACA_BASE_URL is read by nothing. A .env
    that is live with a stale paper URL trades the live account, so that is the one we must watch and close."""
    seed(standin, positions="MSFT:5", orders="")
    seed(standin, positions="AAPL:10", orders="", account="live")
    text = standin.env_file.read_text()
    text = text.replace(f"ALPACA_API_KEY={STANDIN_KEY}", f"ALPACA_API_KEY={STANDIN_LIVE_KEY}")
    text = text.replace(f"ALPACA_SECRET_KEY={STANDIN_SECRET}\n", f"ALPACA_SECRET_KEY={STANDIN_LIVE_SECRET}\n")
    text = text.replace("TRADING_MODE=paper", "TRADING_MODE=live")  # ALPACA_BASE_URL still says paper
    standin.env_file.write_text(text)
    pos = standin.cli("positions", "--json")
    assert pos.code == 0, pos.text
    data = json.loads(pos.out)
    assert data["account"] == "live" and [p["symbol"] for p in data["positions"]] == ["AAPL"]
    assert "ALPACA_BASE_URL" in pos.err and "read by no service" in pos.err
    acct = standin.cli("account")
    assert acct.code == 0 and "broker: live account at" in acct.out and "LA0000STANDIN" in acct.out
    # and a word that is not "paper" trades live at upstream's AlpacaTrader: the live account, with a warning
    standin.env_file.write_text(text.replace("TRADING_MODE=live", "TRADING_MODE=papr"))
    acct = standin.cli("account", "--json")
    assert acct.code == 0 and json.loads(acct.out)["catalyst_account"] == "live"
    assert "trade LIVE" in acct.err


def test_missing_broker_key_is_a_config_error(standin):
    lines = [l for l in standin.env_file.read_text().splitlines() if not l.startswith("ALPACA_API_KEY=")]
    standin.env_file.write_text("\n".join(lines) + "\n")
    res = standin.cli("account")
    assert res.code == 2
    assert ".env: ALPACA_API_KEY: expected" in res.err


def test_plan_profile_routes_through_trading_and_names_what_it_cannot_do(standin_factory):
    s = standin_factory(profile="plan")
    seed(s, positions="AAPL:10", orders="AAPL")
    acct = s.cli("account", "--json")
    assert acct.code == 0 and json.loads(acct.out)["account_number"] == "PA0000STANDIN"
    res = s.cli("emergency-stop", "--json")
    assert res.code == 1
    assert json.loads(res.out)["failed_steps"] == ["cancel-orders", "suspend-trading"]
    assert "no 'configurations' route" in steps(res)["suspend-trading"]["detail"]
    assert steps(res)["close-positions"]["status"] == "ok" and broker_get(s, "/v2/positions") == []
    assert halted(s)


def test_emergency_stop_alert_is_received_by_the_smtp_server(standin, tmp_path):
    """The stop sends its critical alert at once through a real SMTP server (STARTTLS + AUTH)."""
    from smtpserver import SMTPServer

    server = SMTPServer(tmp_path / "smtp").start()
    try:
        with open(standin.env_file, "a") as fh:
            fh.write(server.env())
        standin.append_config(f"alerts:\n  ca_file: {server.cert}\n  smtp_timeout: 5\n")
        go_live(standin)
        seed(standin)
        res = standin.cli("emergency-stop", "--reason", "smtp drill", "--json")
        assert res.code == 0, res.text
        assert steps(res)["alert"]["detail"].endswith("sent"), steps(res)["alert"]
        msgs = [m for m in server.wait_for(1, timeout=10) if "EMERGENCY STOP" in m.subject]
        assert len(msgs) == 1, [m.subject for m in server.messages]
        assert msgs[0].rcpt_tos == ["oncall@example.test"]  # critical goes to the critical address
        assert "smtp drill" in msgs[0].text and "close-positions: OK" in msgs[0].text
        assert server.password not in res.text
        row = db(standin).execute("SELECT status FROM alerts WHERE subject_key='emergency-stop'").fetchone()
        assert row["status"] == "sent"
    finally:
        server.stop()
