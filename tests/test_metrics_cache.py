"""The metrics cache (metrics_cache in the state DB) against a real PostgreSQL database.

The figures of trades closed before a checkpoint (an hour before the run) are kept with a
fingerprint of those rows; a run that finds the fingerprint unchanged computes only the later
trades and starts the equity curve from the cached equity and peak. These tests hold the cached
path to the from-scratch one on randomised trades (every close class, ties, exits around New
York's midnight, rows landing exactly on the checkpoint), and show that every kind of change to
an old row is noticed.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from catalyst_ops import config as cfgmod, metrics
from catalyst_ops.state import StateDB
from conftest import run_cli

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


def _trades(rng: random.Random, n: int, lo: datetime, hi: datetime) -> list[tuple]:
    """n random closed positions with exit times in [lo, hi): (pnl, entry, exit, reason, entry_px, exit_px, risk)."""
    out = []
    span = int((hi - lo).total_seconds())
    for _ in range(n):
        exit_ = lo + timedelta(seconds=rng.randrange(span))
        if out and rng.random() < 0.1:  # a tie on the exit time
            exit_ = rng.choice(out)[2]
        entry = exit_ - timedelta(minutes=rng.choice([0, 5, 30, 90]))
        pnl = round(rng.uniform(-500, 600), 2) if rng.random() > 0.05 else 0.0
        kind = rng.random()
        reason, entry_px, exit_px = None, 100.0, 100.0 + (pnl / 10 or 1)
        if kind < 0.05:
            reason, pnl, exit_px = "alpaca_expired", None, None  # never filled
        elif kind < 0.10:
            reason = "stop_loss_estimated"  # an estimate
        elif kind < 0.15:
            pnl, exit_px = 0.0, entry_px  # risk-manager's emergency close: an estimate
        elif kind < 0.18:
            pnl = None  # rejected
        elif kind < 0.35:
            reason = "EXIT"
        risk = None if rng.random() < 0.1 else rng.choice([100, 200, 250])
        out.append((pnl, entry, exit_, reason, entry_px, exit_px, risk))
    return out


def _insert(pgdb, trades) -> None:
    conn = psycopg2.connect(pgdb.url)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO securities(symbol) VALUES ('AAPL') ON CONFLICT DO NOTHING")
            for pnl, entry, exit_, reason, entry_px, exit_px, risk in trades:
                cur.execute("INSERT INTO positions(security_id, quantity, entry_price, exit_price, status, risk_amount,"
                            " realized_pnl, close_reason, opened_at, closed_at)"
                            " SELECT security_id, 10, %s, %s, 'closed', %s, %s, %s, %s, %s FROM securities WHERE symbol = 'AAPL'",
                            (entry_px, exit_px, risk, pnl, reason, entry, exit_))
        conn.commit()
    finally:
        conn.close()


def _sql(pgdb, statement: str, params=()) -> None:
    conn = psycopg2.connect(pgdb.url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def env(pgdb):
    pgdb.write_config("metrics:\n  starting_equity: 5000\n")
    cfg = cfgmod.load(str(pgdb.config))
    state = StateDB(pgdb.state_db)
    yield pgdb, cfg, state
    state.close()


def _seed(pgdb, seed: int, n: int, days: int) -> datetime:
    """n random trades closed over `days` days from T0; a run's end a day after the last."""
    _insert(pgdb, _trades(random.Random(seed), n, T0, T0 + timedelta(days=days)))
    return T0 + timedelta(days=days + 1)


def _scratch(cfg, state, until):
    """The reference: the figures with the cache turned off."""
    return metrics.compute(dataclasses.replace(cfg, metrics=dataclasses.replace(cfg.metrics, cache=False)), state,
                           until=until)


def _figures(rep) -> dict:
    d = rep.as_dict()
    d.pop("cache")
    return d


def _same(a, b) -> None:
    fa, fb = _figures(a), _figures(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        if isinstance(fa[k], float) or isinstance(fb[k], float):
            assert fa[k] == pytest.approx(fb[k], rel=1e-9, abs=1e-9), k
        else:
            assert fa[k] == fb[k], k


def test_cached_runs_match_the_from_scratch_figures_as_trades_arrive(env):
    pgdb, cfg, state = env
    rng = random.Random(20261204)
    until = T0 + timedelta(days=10)
    _insert(pgdb, _trades(rng, 300, T0, until + timedelta(days=1)))  # some close after the first run's end
    first = metrics.compute(cfg, state, until=until)
    assert first.cache["state"] == "cold" and first.trades > 100
    _same(first, _scratch(cfg, state, until))
    checkpoint = until - metrics.CHECKPOINT_LAG

    for step in range(6):
        # trades after the checkpoint, some exactly on it, some around New York's midnight (04:00/05:00 UTC)
        until = checkpoint + timedelta(hours=rng.choice([2, 7, 26, 31]))
        new = _trades(rng, 40, checkpoint, checkpoint + timedelta(hours=30))
        for at in (checkpoint, until - metrics.CHECKPOINT_LAG):  # on this run's checkpoint, and on the one it writes
            new.append((123.45, at - timedelta(minutes=5), at, None, 100.0, 112.0, 200))
        _insert(pgdb, new)
        warm = metrics.compute(cfg, state, until=until)
        assert warm.cache["state"] == "warm", (step, warm.cache)
        assert datetime.fromisoformat(warm.cache["checkpoint"]) == checkpoint
        _same(warm, _scratch(cfg, state, until))
        checkpoint = max(checkpoint, until - metrics.CHECKPOINT_LAG)  # the run moved the cache forward
    # the curve fell and rose across the checkpoints: the drawdown is not the trivial one
    assert warm.max_drawdown > 0 and warm.trading_days > 10 and warm.not_filled and warm.rejected
    assert warm.estimates["count"] > 0


def test_the_curve_continues_from_the_cached_equity_and_peak(env):
    """Equity 5000 -> 6000 (the peak) -> 5800 before the checkpoint; -900 after it: 4900, a fall of
    1100 from the cached peak (18.33 %), not 100 from the starting equity."""
    pgdb, cfg, state = env
    _insert(pgdb, [(1000.0, T0, T0 + timedelta(hours=1), None, 100.0, 200.0, 500),
                   (-200.0, T0 + timedelta(hours=2), T0 + timedelta(hours=3), None, 100.0, 80.0, 500)])
    until = T0 + timedelta(days=1)
    assert metrics.compute(cfg, state, until=until).cache["state"] == "cold"
    _insert(pgdb, [(-900.0, until, until + timedelta(hours=1), None, 100.0, 10.0, 500)])
    rep = metrics.compute(cfg, state, until=until + timedelta(hours=2))
    assert rep.cache["state"] == "warm"
    assert (rep.ending_equity, rep.max_drawdown_amount) == (4900, 1100)
    assert rep.max_drawdown == pytest.approx(1100 / 6000)
    _same(rep, _scratch(cfg, state, until + timedelta(hours=2)))


def test_an_earlier_window_is_computed_from_scratch(env):
    pgdb, cfg, state = env
    metrics.compute(cfg, state, until=_seed(pgdb, 3, 80, 5))
    earlier = metrics.compute(cfg, state, until=T0 + timedelta(days=2))
    assert earlier.cache["state"] == "cold" and "before the cache's checkpoint" in earlier.cache["reason"]
    _same(earlier, _scratch(cfg, state, T0 + timedelta(days=2)))


# Each changes one old trade (closed well before the checkpoint): trade A, the first of all, or Z, a
# breakeven trade without a close reason whose prices differ. "seen": the change shows in the
# figures, so a stale cache would have reported wrong ones.
EDITS = {
    "pnl": ("UPDATE positions SET realized_pnl = realized_pnl + 0.01 WHERE position_id = %(a)s", True),
    "exit time": ("UPDATE positions SET closed_at = closed_at - interval '1 second' WHERE position_id = %(a)s", True),
    "entry time": ("UPDATE positions SET opened_at = opened_at - interval '1 minute' WHERE position_id = %(a)s", False),
    "risk": ("UPDATE positions SET risk_amount = risk_amount / 2 WHERE position_id = %(a)s", True),
    "close reason": ("UPDATE positions SET close_reason = 'take_profit_estimated' WHERE position_id = %(a)s", True),
    "pnl to NULL": ("UPDATE positions SET realized_pnl = NULL WHERE position_id = %(a)s", True),
    "deleted": ("DELETE FROM positions WHERE position_id = %(a)s", True),
    "reopened": ("UPDATE positions SET status = 'open' WHERE position_id = %(a)s", True),
    "late insert": ("INSERT INTO positions(security_id, quantity, entry_price, exit_price, status, realized_pnl, opened_at,"
                    " closed_at) SELECT security_id, 1, 100, 90, 'closed', -10, opened_at, closed_at FROM positions"
                    " WHERE position_id = %(a)s", True),
    "emergency-close prices": ("UPDATE positions SET exit_price = entry_price WHERE position_id = %(z)s", True),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_any_change_to_an_old_trade_recomputes_from_scratch(env, edit):
    pgdb, cfg, state = env
    until = T0 + timedelta(days=8)
    _insert(pgdb, _trades(random.Random(11), 120, T0, T0 + timedelta(days=6)))
    _insert(pgdb, [(250.0, T0 - timedelta(hours=1), T0 - timedelta(minutes=30), None, 100.0, 125.0, 200),  # A
                   (0.0, T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1), None, 100.0, 101.0, 100)])  # Z
    ids = {"a": pgdb.sql("SELECT position_id FROM positions WHERE closed_at = %s", (T0 - timedelta(minutes=30),))[0][0],
           "z": pgdb.sql("SELECT max(position_id) FROM positions WHERE realized_pnl = 0 AND exit_price = 101"
                         " AND close_reason IS NULL")[0][0]}
    before = metrics.compute(cfg, state, until=until)
    assert before.cache["state"] == "cold"
    statement, seen = EDITS[edit]
    _sql(pgdb, statement, ids)
    rep = metrics.compute(cfg, state, until=until)
    assert rep.cache["state"] == "invalidated", rep.cache
    _same(rep, _scratch(cfg, state, until))
    assert (_figures(rep) != _figures(before)) == seen
    again = metrics.compute(cfg, state, until=until)
    assert again.cache["state"] == "warm"
    _same(again, rep)


def test_changes_the_figures_do_not_read_keep_the_cache(env):
    pgdb, cfg, state = env
    until = _seed(pgdb, 5, 60, 4)
    first = metrics.compute(cfg, state, until=until)
    _sql(pgdb, "UPDATE positions SET updated_at = now() + interval '1 day', alpaca_status = 'filled', quantity = 7")
    _sql(pgdb, "INSERT INTO positions(security_id, quantity, entry_price, status, opened_at)"
               " SELECT security_id, 1, 100, 'open', %s FROM securities", (T0,))  # an open position is not read
    rep = metrics.compute(cfg, state, until=until)
    assert rep.cache["state"] == "warm"
    _same(rep, first)


def test_a_config_change_is_another_cache_and_the_old_one_goes(env):
    pgdb, cfg, state = env
    until = _seed(pgdb, 9, 60, 4)
    metrics.compute(cfg, state, until=until)
    assert metrics.compute(cfg, state, until=until).cache["state"] == "warm"
    for change in ({"include_estimates": True}, {"starting_equity": 100.0}, {"estimated_close_reasons": []},
                   {"trades_query": cfg.metrics.trades_query + " AND p.risk_amount IS NOT NULL"}):
        other = dataclasses.replace(cfg, metrics=dataclasses.replace(cfg.metrics, **change))
        rep = metrics.compute(other, state, until=until)
        assert rep.cache["state"] == "cold", change
        _same(rep, _scratch(other, state, until))
        assert state.one("SELECT count(*) AS n FROM metrics_cache")["n"] == 1
    # a --days window and metrics.cache: false never use it
    assert metrics.compute(cfg, state, 3, until=until).cache["state"] == "off"
    assert _scratch(cfg, state, until).cache == {"state": "off", "reason": "metrics.cache is false"}


def test_an_unreadable_cache_is_rebuilt(env):
    pgdb, cfg, state = env
    until = _seed(pgdb, 13, 40, 3)
    metrics.compute(cfg, state, until=until)
    state.execute("UPDATE metrics_cache SET payload = '{\"format\": 1, \"checkpoint\": '")
    rep = metrics.compute(cfg, state, until=until)
    assert rep.cache["state"] == "cold"
    _same(rep, _scratch(cfg, state, until))
    assert metrics.compute(cfg, state, until=until).cache["state"] == "warm"


def test_a_query_whose_rows_cannot_be_hashed_runs_without_the_cache(env, monkeypatch):
    pgdb, cfg, state = env
    until = _seed(pgdb, 17, 30, 3)
    # json has no hash function: the fingerprint fails in PostgreSQL, the figures do not
    monkeypatch.setattr(metrics, "_fp_expr", lambda cols: "hash_record_extended(ROW(q.pnl, '{}'::json), 0)")
    rep = metrics.compute(cfg, state, until=until)
    assert rep.cache["state"] == "off" and "hash" in rep.cache["reason"]
    _same(rep, _scratch(cfg, state, until))


def test_cli_says_how_it_computed_and_fresh_rebuilds(env):
    pgdb, cfg, state = env
    now = _seed(pgdb, 19, 30, 3)
    res = run_cli("--now", now.isoformat(), "metrics", "--dry-run", config=pgdb.config)
    assert "computed: from scratch (no cache yet); cache rebuilt" in res.out, res.text
    res = run_cli("--now", now.isoformat(), "metrics", "--dry-run", config=pgdb.config)
    assert "computed: trades before 2026-03-05 23:00 UTC from the cache (fingerprint of 30 rows checked)" in res.out
    res = run_cli("--now", now.isoformat(), "metrics", "--json", "--fresh", config=pgdb.config)
    d = json.loads(res.out)
    assert d["cache"]["state"] == "cold" and d["cache"]["reason"] == "--fresh"
    assert res.code in (0, 1)
    assert sqlite3.connect(pgdb.state_db).execute("SELECT count(*) FROM metrics_verdicts").fetchone()[0] == 1


def test_a_cache_the_state_db_refuses_is_warned_about_and_the_figures_stand(env, caplog):
    pgdb, cfg, state = env
    until = _seed(pgdb, 23, 30, 3)
    state.ensure_schema(metrics.CACHE_SCHEMA)
    state.execute("CREATE TRIGGER refuse BEFORE INSERT ON metrics_cache BEGIN SELECT RAISE(ABORT, 'no room'); END")
    rep = metrics.compute(cfg, state, until=until)
    _same(rep, _scratch(cfg, state, until))
    assert "the cache was not saved" in caplog.text and "no room" in caplog.text
    assert state.one("SELECT count(*) AS n FROM metrics_cache")["n"] == 0
    assert metrics.compute(cfg, state, until=until).cache == dict(rep.cache, reason="no cache yet")
