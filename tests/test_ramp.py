"""Live ramp-up stages: gates shown one by one, trading days from the NYSE calendar, losses from a
real PostgreSQL (a throw-away cluster: initdb/pg_ctl in a temp dir)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

NY = ZoneInfo("America/New_York")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir("/usr/lib/postgresql") else []:
        p = f"/usr/lib/postgresql/{d}/bin/{name}"
        if os.path.exists(p):
            return p
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    """A throw-away cluster with the slice of the real schema the trades query reads."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package")
    # not under pytest's tmp dir: as root that is 0700 and the postgres user could not reach it
    d = Path(tempfile.mkdtemp(prefix="catalyst-ramp-pg-"))
    data = d / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(d, "postgres")
    port = _free_port()
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "ops", "-A", "trust", "--no-sync"], check=True,
                   capture_output=True)
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-w", "-t", "30", "-l", str(d / "log"), "-o",
                    f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], check=True,
                   capture_output=True)
    url = f"postgresql://ops@127.0.0.1:{port}/postgres?sslmode=disable"
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
            CREATE TABLE securities (security_id serial PRIMARY KEY, symbol text NOT NULL);
            CREATE TABLE positions (position_id serial PRIMARY KEY, security_id int REFERENCES securities,
                status text NOT NULL, realized_pnl numeric, opened_at timestamptz, closed_at timestamptz,
                risk_amount numeric, close_reason varchar(255), entry_price numeric, exit_price numeric);
            INSERT INTO securities(symbol) VALUES ('AAPL'), ('MSFT');
        """)
    conn.close()
    yield url
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def _sql(url: str, statement: str, params=()) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


@pytest.fixture
def ramp(standin, pg_url):
    """The stand-in stack, live at stage 1 since Monday 2026-03-02 08:00 New York, trades in PostgreSQL."""
    _sql(pg_url, "DELETE FROM positions")
    text = standin.env_file.read_text()
    lines = [l for l in text.splitlines() if not l.startswith("DATABASE_URL=")]
    standin.env_file.write_text("\n".join([f"DATABASE_URL={pg_url}", *lines]) + "\n")
    db = sqlite3.connect(standin.state_db)
    standin.cli("mode", "show")  # shared schema
    db.execute("INSERT INTO metrics_verdicts(computed_at, days, verdict, gates_json) VALUES (?,?,?,?)",
               (time.time(), 20, "GO", "[]"))
    db.commit()
    res = standin.cli("--now", "2026-03-02T08:00:00-05:00", "mode", "live")
    assert res.code == 0, res.text
    return standin


def trade(url: str, pnl: float, closed: str, symbol: str = "AAPL") -> None:
    _sql(url, "INSERT INTO positions(security_id, status, realized_pnl, opened_at, closed_at, risk_amount) "
              "SELECT security_id, 'closed', %s, %s::timestamptz - interval '1 hour', %s, 500 FROM securities WHERE symbol=%s",
         (pnl, closed, closed, symbol))


def gates(res) -> dict:
    return {g["gate"]: g for g in json.loads(res.out)["gates"]}


def test_ramp_advances_only_when_every_gate_holds(ramp, pg_url):
    trade(pg_url, -300.0, "2026-03-03T11:00:00-05:00")
    trade(pg_url, 800.0, "2026-03-04T11:00:00-05:00", "MSFT")
    trade(pg_url, -9999.0, "2026-02-20T11:00:00-05:00")  # before the stage: does not count
    # Wednesday evening: Mon, Tue, Wed are three full sessions
    early = ramp.cli("--now", "2026-03-03T17:00:00-05:00", "ramp", "status", "--json")
    assert early.code == 0, early.text
    g = gates(early)
    assert g["trading days in stage"]["value"] == 2 and not g["trading days in stage"]["passed"]
    assert g["largest single loss"]["value"] == 300.0 and g["largest single loss"]["threshold"] == 500.0
    assert g["largest single loss"]["passed"] and g["mode is live"]["passed"] and g["no halt flag"]["passed"]
    refused = ramp.cli("--now", "2026-03-03T17:00:00-05:00", "ramp", "advance")
    assert refused.code == 1, refused.text
    assert "trading days in stage  2" in refused.out and "FAIL" in refused.out
    assert "MAX_POSITIONS=3" in ramp.env_file.read_text().splitlines()

    now = "2026-03-04T17:00:00-05:00"
    dry = ramp.cli("--now", now, "ramp", "advance", "--dry-run")
    assert dry.code == 0 and "MAX_POSITIONS: 3 -> 4" in dry.out and "MAX_DAILY_LOSS_USD: 2000 -> 2500" in dry.out
    assert "MAX_POSITIONS=3" in ramp.env_file.read_text().splitlines()
    res = ramp.cli("--now", now, "ramp", "advance", "--json")
    assert res.code == 0, res.text
    assert json.loads(res.out)["new_stage"] == 2
    env = ramp.env_file.read_text().splitlines()
    assert {"MAX_POSITIONS=4", "MAX_DAILY_LOSS_USD=2500", "TRADING_MODE=live"} <= set(env)
    assert not [line for line in env if line.startswith(("RISK_PER_TRADE=", "MAX_DAILY_LOSS="))]  # read by nothing
    assert "confirmed:" in res.text or json.loads(res.out)["ok"]
    status = json.loads(ramp.cli("--now", now, "ramp", "status", "--json").out)
    assert status["stage"] == 2
    # what the running services have, read back from them, not what was written
    running = {(r["service"], r["limit"]): r for r in status["running"]}
    for svc in ("trading", "risk-manager", "workflow", "scanner"):
        assert running[(svc, "max_positions")]["running"] == "4" and running[(svc, "max_positions")]["matches"]
        assert running[(svc, "max_daily_loss_usd")]["running"] == "2500"
        assert running[(svc, "max_daily_loss_usd")]["source"] == "environment MAX_DAILY_LOSS_USD"
    assert running[("workflow", "workflow start max_positions")]["running"] == 4
    # stage 2 starts now: no full session in it yet
    assert {g["gate"]: g["value"] for g in status["gates"]}["trading days in stage"] == 0
    ev = sqlite3.connect(ramp.state_db).execute("SELECT detail FROM events WHERE kind='ramp-advance'").fetchone()
    assert json.loads(ev[0])["to"] == 2


def test_a_loss_above_the_stage_risk_blocks_the_advance(ramp, pg_url):
    trade(pg_url, -612.5, "2026-03-03T11:00:00-05:00", "MSFT")
    trade(pg_url, 2000.0, "2026-03-04T11:00:00-05:00")
    res = ramp.cli("--now", "2026-03-05T17:00:00-05:00", "ramp", "advance", "--json")
    assert res.code == 1
    g = gates(res)
    assert g["trading days in stage"]["passed"]
    assert g["largest single loss"]["value"] == 612.5 and not g["largest single loss"]["passed"]
    assert "MSFT" in g["largest single loss"]["detail"]
    assert "MAX_POSITIONS=3" in ramp.env_file.read_text().splitlines()


def test_trading_days_follow_the_nyse_calendar(ramp):
    # stage entered Thursday 2026-04-02 morning; Good Friday (04-03) is a holiday; Monday 04-06 closes
    conn = sqlite3.connect(ramp.state_db)
    conn.execute("UPDATE ramp_state SET entered_at=?", (datetime(2026, 4, 2, 8, 0, tzinfo=NY).timestamp(),))
    conn.commit()
    res = ramp.cli("--now", "2026-04-06T17:00:00-04:00", "ramp", "status", "--json")
    assert gates(res)["trading days in stage"]["value"] == 2
    # a stage entered mid-session does not count that session
    conn.execute("UPDATE ramp_state SET entered_at=?", (datetime(2026, 4, 2, 10, 0, tzinfo=NY).timestamp(),))
    conn.commit()
    res = ramp.cli("--now", "2026-04-06T17:00:00-04:00", "ramp", "status", "--json")
    assert gates(res)["trading days in stage"]["value"] == 1


def test_database_down_means_unknown_not_passed(ramp, pg_url):
    text = ramp.env_file.read_text().replace(pg_url.split("@")[1].split("/")[0], "127.0.0.1:1")
    ramp.env_file.write_text(text)
    res = ramp.cli("--now", "2026-03-05T17:00:00-05:00", "ramp", "advance")
    assert res.code == 3, res.text
    assert "UNKNOWN" in res.out and "cannot connect" in res.out


def test_halt_blocks_the_advance(ramp):
    assert ramp.cli("emergency-stop").code == 0
    res = ramp.cli("--now", "2026-03-05T17:00:00-05:00", "ramp", "status", "--json")
    g = gates(res)
    assert not g["no halt flag"]["passed"] and not g["mode is live"]["passed"]


def test_market_open_caps_the_cycle_at_the_stage_max_positions(ramp):
    res = ramp.cli("--now", "2026-03-04T09:30:30-05:00", "market-open", "--dry-run")
    assert res.code == 0, res.text
    assert '"max_positions": 3' in res.out  # workflow.max_positions is 5; stage 1 allows 3


RISK_YAML = """# Catalyst risk parameters (hot reloaded)
risk_limits:
  # Daily Loss Limit
  max_daily_loss_usd: 10000         # Increased from $2,000 to $10,000
  warning_threshold_pct: 0.80       # Email warning at 80%

  # Position Limits
  max_positions: 10                 # Increased from 5 to 10
  max_position_size_pct: 0.30

emergency_actions:
  close_all_positions: true
"""


def test_ramp_limits_in_risk_parameters_yaml(ramp, pg_url):
    """With trading.risk_file the stage's limits go to config/risk_parameters.yaml (the services hot-reload
    it), in place, comments kept; an env override in a running service shadows it and is reported."""
    risk = ramp.rundir / "config" / "risk_parameters.yaml"
    risk.parent.mkdir()
    risk.write_text(RISK_YAML)
    ramp.config.write_text(ramp.config.read_text().replace("trading:\n", f"trading:\n  risk_file: {risk}\n"))
    # the services must not get the env overrides, or they win over the file (config_loader.py)
    lines = [l for l in ramp.env_file.read_text().splitlines() if not l.startswith(("MAX_POSITIONS=", "MAX_DAILY_LOSS_USD="))]
    ramp.env_file.write_text("\n".join(lines) + "\n")
    assert ramp.cli("mode", "paper").code == 0
    res = ramp.cli("--now", "2026-03-02T08:00:00-05:00", "mode", "live")
    assert res.code == 0, res.text
    text = risk.read_text()
    assert "  max_daily_loss_usd: 2000         # Increased from $2,000 to $10,000\n" in text
    assert "  max_positions: 3                 # Increased from 5 to 10\n" in text
    assert text.count("#") == RISK_YAML.count("#") and "emergency_actions:\n  close_all_positions: true\n" in text
    status = json.loads(ramp.cli("--now", "2026-03-02T09:00:00-05:00", "ramp", "status", "--json").out)
    rm = {r["limit"]: r for r in status["running"] if r["service"] == "risk-manager"}
    assert rm["max_positions"]["running"] == 3 and rm["max_positions"]["source"] == str(risk)
    assert rm["max_positions"]["matches"]

    now = "2026-03-05T17:00:00-05:00"
    trade(pg_url, 900.0, "2026-03-03T11:00:00-05:00")
    trade(pg_url, -300.0, "2026-03-04T11:00:00-05:00")
    res = ramp.cli("--now", now, "ramp", "advance")
    assert res.code == 0, res.text
    assert "max_positions: 4 " in risk.read_text() and "max_daily_loss_usd: 2500 " in risk.read_text()
    assert list(ramp.rundir.glob("config/risk_parameters.yaml.bak-*"))
    # an operator puts MAX_POSITIONS back in the .env and recreates: the env override wins in the services
    with open(ramp.env_file, "a") as fh:
        fh.write("MAX_POSITIONS=9\n")
    ramp.sandbox("recreate", "risk-manager")
    status = ramp.cli("--now", now, "ramp", "status")
    assert "DIFFERS" in status.out and "environment MAX_POSITIONS" in status.out



# ---------------------------------------------------------------------- the live success criteria (phase 7.5)


def failing(res) -> list[str]:
    return [g["gate"] for g in json.loads(res.out)["gates"] if not g["passed"]]


def test_a_day_over_the_stage_daily_limit_blocks_the_advance(ramp, pg_url):
    """Stage 1: 0.5 % x 100,000 = $500 per trade, 2 % = $2,000 a day. Five $450 losses on Tuesday are each
    within the trade limit, but the day lost $2,250."""
    for h in range(10, 15):
        trade(pg_url, -450.0, f"2026-03-03T{h}:00:00-05:00")
    for h in range(10, 16):
        trade(pg_url, 700.0, f"2026-03-04T{h}:00:00-05:00", "MSFT")
    res = ramp.cli("--now", "2026-03-05T17:00:00-05:00", "ramp", "advance", "--json")
    assert res.code == 1, res.text
    assert failing(res) == ["worst day's loss"]
    g = gates(res)
    day = g["worst day's loss"]
    assert day["value"] == 2250.0 and day["threshold"] == 2000.0
    assert day["detail"].startswith("2026-03-03: net -2,250.00 over 5 trades")
    assert g["largest single loss"]["value"] == 450.0 and g["largest single loss"]["passed"]
    assert g["win rate"]["value"] == round(6 / 11, 4) and g["risk:reward"]["value"] == round(700 / 450, 2)
    assert "MAX_POSITIONS=3" in ramp.env_file.read_text().splitlines()
    text = ramp.cli("--now", "2026-03-05T17:00:00-05:00", "ramp", "status")
    assert "worst day's loss" in text.out and "2250.0" in text.out and "cannot advance yet" in text.out


def test_a_win_rate_below_the_threshold_blocks_the_advance(ramp, pg_url):
    trade(pg_url, 2000.0, "2026-03-03T11:00:00-05:00")
    for h in (10, 11, 12):
        trade(pg_url, -100.0, f"2026-03-04T{h}:00:00-05:00", "MSFT")
    now = "2026-03-05T17:00:00-05:00"
    res = ramp.cli("--now", now, "ramp", "advance", "--json")
    assert res.code == 1, res.text
    assert failing(res) == ["win rate"]
    g = gates(res)["win rate"]
    assert g["value"] == 0.25 and g["threshold"] == 0.5 and g["detail"].startswith("1 wins of 4 closed live trades")
    assert "MAX_POSITIONS=3" in ramp.env_file.read_text().splitlines()
    # the threshold is configuration
    ramp.config.write_text(ramp.config.read_text().replace("trading:\n", "trading:\n  min_win_rate: 0.25\n"))
    ok = ramp.cli("--now", now, "ramp", "advance", "--json")
    assert ok.code == 0, ok.text
    assert json.loads(ok.out)["new_stage"] == 2


def test_risk_reward_and_no_trades(ramp, pg_url):
    now = "2026-03-05T17:00:00-05:00"
    none = gates(ramp.cli("--now", now, "ramp", "status", "--json"))
    assert not none["win rate"]["passed"] and none["win rate"]["detail"] == "no closed live trade in the stage yet"
    assert not none["risk:reward"]["passed"]
    trade(pg_url, 150.0, "2026-03-03T11:00:00-05:00")
    trade(pg_url, 150.0, "2026-03-03T12:00:00-05:00")
    trade(pg_url, -200.0, "2026-03-04T11:00:00-05:00")
    res = ramp.cli("--now", now, "ramp", "advance", "--json")
    assert res.code == 1 and failing(res) == ["risk:reward"]
    assert gates(res)["risk:reward"]["value"] == 0.75


def test_only_live_trades_count(ramp, pg_url):
    """After an emergency stop the stack trades paper: those trades are not the stage's live record."""
    stop = ramp.cli("--now", "2026-03-03T12:00:00-05:00", "emergency-stop")
    assert stop.code == 0, stop.text
    trade(pg_url, -5000.0, "2026-03-03T14:00:00-05:00")  # opened 13:00, while paper
    assert ramp.cli("--now", "2026-03-03T16:30:00-05:00", "resume", "--yes", "--reason", "checked").code == 0
    assert ramp.cli("--now", "2026-03-03T16:40:00-05:00", "mode", "live").code == 0
    trade(pg_url, 800.0, "2026-03-04T11:00:00-05:00")
    trade(pg_url, -300.0, "2026-03-04T12:00:00-05:00")
    res = ramp.cli("--now", "2026-03-05T17:00:00-05:00", "ramp", "status", "--json")
    g = gates(res)
    assert g["largest single loss"]["value"] == 300.0 and g["worst day's loss"]["passed"]
    assert g["win rate"]["value"] == 0.5 and "1 trade opened while paper left out" in g["win rate"]["detail"]
    assert all(x["passed"] for x in json.loads(res.out)["gates"]), failing(res)


def test_stage_3_needs_an_emergency_stop_drill(ramp, pg_url, tmp_path):
    """Leaving stage 2 needs a recorded drill: `emergency-stop --drill` against the paper account, while the
    live stack keeps trading (no halt, .env untouched, the live account's positions untouched)."""
    from smtpserver import SMTPServer
    from test_trading import broker_get, seed

    conn = sqlite3.connect(ramp.state_db)
    conn.execute("UPDATE ramp_state SET stage=2, entered_at=?", (datetime(2026, 3, 2, 8, 0, tzinfo=NY).timestamp(),))
    conn.commit()
    trade(pg_url, 900.0, "2026-03-03T11:00:00-05:00")
    trade(pg_url, -300.0, "2026-03-04T11:00:00-05:00")
    now = "2026-03-05T17:00:00-05:00"
    res = ramp.cli("--now", now, "ramp", "advance", "--json")
    assert res.code == 1 and failing(res) == ["emergency-stop drill"], res.text
    assert "emergency-stop --drill" in gates(res)["emergency-stop drill"]["detail"]

    seed(ramp, positions="AAPL:10", orders="TSLA", account="paper")
    seed(ramp, positions="MSFT:7", orders="", account="live")
    env_before = ramp.env_file.read_bytes()
    # no SMTP server: the drill's alert is not delivered, so the drill does not count
    failed = ramp.cli("--now", "2026-03-05T12:00:00-05:00", "emergency-stop", "--drill", "--json")
    assert failed.code == 1, failed.text
    assert json.loads(failed.out)["failed_steps"] == ["alert"]
    assert ramp.cli("--now", now, "ramp", "advance").code == 1

    server = SMTPServer(tmp_path / "smtp").start()
    try:
        with open(ramp.env_file, "a") as fh:
            fh.write(server.env())
        env_before = ramp.env_file.read_bytes()
        ramp.append_config(f"alerts:\n  ca_file: {server.cert}\n  smtp_timeout: 5\n")
        seed(ramp, positions="AAPL:10", orders="TSLA", account="paper")
        drill = ramp.cli("--now", "2026-03-05T12:30:00-05:00", "emergency-stop", "--drill", "--json")
        assert drill.code == 0, drill.text
        steps = {s["step"]: s for s in json.loads(drill.out)["steps"]}
        assert list(steps) == ["halt", "cancel-orders", "close-positions", "suspend-trading", "paper-mode",
                               "recreate-services", "alert", "unsuspend"]
        assert all(s["status"] == "ok" for s in steps.values()), steps
        assert "rolled back" in steps["halt"]["detail"] and "not changed" in steps["paper-mode"]["detail"]
        msgs = [m for m in server.wait_for(1, timeout=10) if "[DRILL]" in m.subject]
        assert len(msgs) == 1 and msgs[0].rcpt_tos == ["oncall@example.test"]
    finally:
        server.stop()
    # the paper account was flattened and is usable again; nothing the live stack reads changed
    assert broker_get(ramp, "/v2/positions") == [] and broker_get(ramp, "/v2/orders?status=open") == []
    assert broker_get(ramp, "/v2/account")["trade_suspended_by_user"] is False
    assert [p["symbol"] for p in broker_get(ramp, "/v2/positions", "live")] == ["MSFT"]
    assert broker_get(ramp, "/v2/account", "live")["trade_suspended_by_user"] is False
    assert ramp.env_file.read_bytes() == env_before
    assert sqlite3.connect(ramp.state_db).execute("SELECT halted FROM halt").fetchall() in ([], [(0,)])
    row = sqlite3.connect(ramp.state_db).execute("SELECT drill, ok, account FROM emergency_runs ORDER BY id DESC").fetchone()
    assert row == (1, 1, "paper")

    status = ramp.cli("--now", now, "ramp", "status", "--json")
    g = gates(status)["emergency-stop drill"]
    assert g["passed"] and g["value"].startswith("drill #2 2026-03-05 17:30 UTC")
    # a drill older than trading.drill_max_age_days (30) does not count
    old = gates(ramp.cli("--now", "2026-04-20T17:00:00-04:00", "ramp", "status", "--json"))["emergency-stop drill"]
    assert not old["passed"] and old["value"] == "none"
    res = ramp.cli("--now", now, "ramp", "advance", "--json")
    assert res.code == 0, res.text
    assert json.loads(res.out)["new_stage"] == 3 and "MAX_POSITIONS=5" in ramp.env_file.read_text().splitlines()


def test_a_state_db_from_before_drills_gets_the_columns(tmp_path):
    from catalyst_ops import emergency
    from catalyst_ops.state import StateDB

    old = sqlite3.connect(tmp_path / "state.db")
    old.execute("CREATE TABLE emergency_runs (id INTEGER PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, actor TEXT,"
                " reason TEXT, ok INTEGER, failed_steps TEXT)")
    old.execute("INSERT INTO emergency_runs(started_at, ended_at, actor, reason, ok, failed_steps) VALUES (100, 110, 'a', 'real', 1, '')")
    old.commit()
    old.close()
    db = StateDB(tmp_path / "state.db")
    assert emergency.last_good_run(db, 0) == {"id": 1, "started_at": 100.0, "ended_at": 110.0, "drill": 0, "account": None,
                                              "reason": "real", "actor": "a"}
    emergency.ensure_schema(db)  # twice: no error
