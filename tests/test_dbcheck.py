"""`db check` against a real PostgreSQL database shaped like the real schema."""

from __future__ import annotations

import json

import psycopg2
import pytest

from catalyst_ops.sandbox import pgfixture
from conftest import run_cli

pytestmark = pytest.mark.postgres


def _check(pgdb, *args):
    res = run_cli("db", "check", "--json", *args, config=pgdb.config)
    data = json.loads(res.out)
    return res.code, {c["check"]: c for c in data["checks"]}


def test_clean_fixture_passes_every_check(pgdb):
    conn = psycopg2.connect(pgdb.url)
    pgfixture.generate(conn, 100)
    conn.close()
    code, checks = _check(pgdb)
    assert code == 0
    assert checks["tables"]["value"] == 11 and checks["foreign_keys"]["value"] == 15
    assert {c["status"] for c in checks.values()} == {"ok"}
    text = run_cli("db", "check", config=pgdb.config)
    assert text.code == 0 and "foreign_keys" in text.out and "PostgreSQL 1" in text.out


def test_integrity_problems_are_found_with_samples(pgdb):
    conn = psycopg2.connect(pgdb.url)
    pgfixture.generate(conn, 20)
    conn.close()
    # the kind of damage a schema without (or with disabled) constraints lets in
    pgdb.sql("ALTER TABLE positions DROP CONSTRAINT positions_security_id_fkey;"
             "ALTER TABLE orders DROP CONSTRAINT orders_position_id_fkey;"
             "UPDATE positions SET security_id = 9999 WHERE position_id = 3;"
             "UPDATE positions SET quantity = -5 WHERE position_id = 4;"
             "UPDATE positions SET closed_at = NULL WHERE position_id = 5;"
             "UPDATE positions SET closed_at = opened_at - interval '1 hour' WHERE position_id = 6;"
             "DELETE FROM positions WHERE position_id = 7;"
             "ALTER TABLE positions ADD CONSTRAINT positions_security_id_fkey FOREIGN KEY (security_id) "
             "REFERENCES securities(security_id) NOT VALID")
    code, checks = _check(pgdb)
    assert code == 1
    failed = {name: (c["value"], c["samples"]) for name, c in checks.items() if c["status"] == "fail"}
    assert failed == {
        "orphaned_positions_security": (1, [3]),
        "positions_nonpositive_quantity": (1, [4]),
        "closed_positions_incomplete": (1, [5]),
        "positions_closed_before_opened": (1, [6]),
        "orphaned_orders": (1, [7]),
        "constraints_not_valid": (1, ["positions.positions_security_id_fkey"]),
    }
    assert checks["foreign_keys"]["value"] == 14  # one dropped for good, one back as NOT VALID


def test_thresholds_are_configurable_and_missing_tables_reported(pgdb):
    pgdb.sql("DROP TABLE trading_history; DROP TABLE technical_indicators")
    code, checks = _check(pgdb)
    assert code == 1
    assert (checks["tables"]["status"], checks["tables"]["value"]) == ("fail", 9)
    assert checks["foreign_keys"]["value"] == 11
    assert "trading_history" in checks["expected_tables"]["detail"]
    pgdb.config.write_text(pgdb.config.read_text().replace(
        "database:\n", "database:\n  min_tables: 9\n  min_foreign_keys: 11\n  expected_tables: []\n"))
    code, checks = _check(pgdb)
    assert code == 0, checks
    assert "expected_tables" not in checks


def test_checks_on_absent_tables_are_skipped_not_passed(pgdb):
    pgdb.sql("DROP TABLE orders")
    code, checks = _check(pgdb)
    assert checks["orphaned_orders"]["status"] == "skip" and "orders" in checks["orphaned_orders"]["detail"]


def test_unreachable_database_exit_3_with_json(pgdb):
    pgdb.write_config(url=pgdb.url.replace(f":{pgdb.cluster.port}/", ":1/"))
    res = run_cli("db", "check", "--json", config=pgdb.config)
    assert res.code == 3
    data = json.loads(res.out)
    assert data["ok"] is False and data["checks"][0]["check"] == "connection" and data["checks"][0]["status"] == "fail"
    assert "Traceback" not in res.err


def test_fixture_command_creates_the_schema(pgdb):
    pgdb.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION catalyst")
    assert run_cli("db", "fixture", "--dry-run", config=pgdb.config).code == 0
    assert pgdb.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'") == [(0,)]
    res = run_cli("db", "fixture", "--trades", "25", config=pgdb.config)
    assert res.code == 0, res.text
    assert pgdb.sql("SELECT count(*) FROM positions WHERE status='closed'") == [(25,)]
    assert run_cli("db", "check", config=pgdb.config).code == 0
    res = run_cli("db", "fixture", "--trades", "5", config=pgdb.config)
    assert res.code == 1 and "already has rows" in res.err


def test_real_format_rows_pass_with_never_filled_and_estimates_counted_apart(pgdb):
    """Upstream's rows (tests/realdata.py): closed positions with NULL P&L are never-filled entries
    (close_reason alpaca_*), not damage; estimates are counted, neither fails."""
    import realdata

    conn = psycopg2.connect(pgdb.url)
    realdata.load(conn)
    conn.close()
    code, checks = _check(pgdb)
    assert code == 0, {n: c for n, c in checks.items() if c["status"] != "ok"}
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert (checks["closed_positions_not_filled"]["value"], checks["closed_positions_not_filled"]["samples"]) == (2, [3, 7])
    assert (checks["closed_positions_estimated"]["value"], checks["closed_positions_estimated"]["samples"]) == (3, [6, 8, 11])
    assert checks["closed_positions_incomplete"]["value"] == 0
    # a closed position without P&L whose reason is not a never-filled one is still incomplete
    pgdb.sql("UPDATE positions SET realized_pnl = NULL WHERE position_id = 9")
    code, checks = _check(pgdb)
    assert code == 1 and (checks["closed_positions_incomplete"]["value"], checks["closed_positions_incomplete"]["samples"]) == (1, [9])
    text = run_cli("db", "check", config=pgdb.config)
    assert "closed_positions_not_filled" in text.out and "informational" in text.out


def test_the_fixture_schema_has_the_real_shape(pgdb):
    """VARCHAR(20) cycle ids, the trading service's status words, close_reason."""
    assert pgdb.sql("SELECT data_type, character_maximum_length FROM information_schema.columns"
                    " WHERE table_name = 'trading_cycles' AND column_name = 'cycle_id'") == [("character varying", 20)]
    assert pgdb.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'positions'"
                    " AND column_name = 'close_reason'") == [(1,)]
    pgdb.sql("INSERT INTO securities(symbol) VALUES ('X'); INSERT INTO trading_cycles(cycle_id) VALUES ('20261124-001')")
    for status in ("open", "closed", "partial", "risk_reduced"):
        pgdb.sql("INSERT INTO positions(cycle_id, security_id, quantity, entry_price, status)"
                 " SELECT '20261124-001', security_id, 1, 1, %s FROM securities", (status,))
    with pytest.raises(psycopg2.errors.CheckViolation):
        pgdb.sql("INSERT INTO positions(security_id, quantity, entry_price, status) SELECT security_id, 1, 1, 'cancelled'"
                 " FROM securities")
    with pytest.raises(psycopg2.errors.StringDataRightTruncation):
        pgdb.sql("INSERT INTO trading_cycles(cycle_id) VALUES ('cycle_20261124_143000')")  # the workflow's id never fits
