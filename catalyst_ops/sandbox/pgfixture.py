"""Load the schema fixture (schema.sql) into a PostgreSQL database and fill it with generated rows.

The rows are made by `generate_series` inside the server (a million positions in seconds) and
are deterministic: the same `trades` count gives the same data, so the tests and the
benchmarks can work numbers out. Used by `catalyst-ops db fixture`, tests and bench/.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA_SQL = HERE / "schema.sql"
SEED_TRADES_SQL = HERE / "seed_trades.sql"

SEED_TRADES_QUERY = ("SELECT pnl, entry_time, exit_time, symbol, NULL::numeric AS risk_amount "
                     "FROM trades WHERE status = 'closed'")

SECTORS = ["Technology", "Healthcare", "Financials", "Energy", "Industrials", "Utilities", "Materials",
           "Consumer Discretionary", "Consumer Staples", "Real Estate", "Communication Services"]


def load_schema(conn, seed_trades: bool = False) -> None:
    with conn.cursor() as cur:
        cur.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        if seed_trades:
            cur.execute(SEED_TRADES_SQL.read_text(encoding="utf-8"))
    conn.commit()


def generate(conn, trades: int, securities: int = 50, per_day: int | None = None,
             start: str = "2026-01-05 14:30:00+00", orders: bool = True) -> None:
    """Fill the fixture: sectors, securities, one cycle per day (`YYYYMMDD-001`, the scanner's
    format, UTC date), `trades` closed positions filled and exited (close_reason EXIT, with an
    order each when `orders`), a few rows in every other table.

    pnl of position i is ((i * 7919) % 2001) - 900 dollars: deterministic, ~55 % winners; the
    exit price is the entry price plus pnl / quantity, as a real fill would make it.
    """
    per_day = per_day or max(1, trades // 250 or 1)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO sectors(sector_name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (SECTORS,))
        cur.execute(
            "INSERT INTO securities(symbol, company_name, sector_id)"
            " SELECT 'SYM' || g, 'Company ' || g, 1 + (g %% %s) FROM generate_series(1, %s) g"
            " ON CONFLICT (symbol) DO NOTHING", (len(SECTORS), securities))
        days = (trades + per_day - 1) // per_day if trades else 0
        cur.execute(
            "INSERT INTO trading_cycles(cycle_id, mode, status, started_at, stopped_at)"
            " SELECT to_char(d AT TIME ZONE 'UTC', 'YYYYMMDD') || '-001', 'normal', 'completed', d, d + interval '6 hours'"
            " FROM generate_series(%s::timestamptz, %s::timestamptz + (%s - 1) * interval '1 day', interval '1 day') d"
            " ON CONFLICT DO NOTHING", (start, start, max(days, 1)))
        cur.execute(
            "INSERT INTO positions(cycle_id, security_id, side, quantity, entry_price, exit_price, status,"
            " risk_amount, realized_pnl, close_reason, alpaca_status, opened_at, closed_at)"
            " SELECT to_char(o AT TIME ZONE 'UTC', 'YYYYMMDD') || '-001', 1 + (g %% %s), 'long', 100, 50,"
            "        50 + (((g::bigint * 7919) %% 2001) - 900) / 100.0, 'closed',"
            "        500, ((g::bigint * 7919) %% 2001) - 900, 'EXIT', 'filled', o, o + interval '30 minutes'"
            " FROM (SELECT g, %s::timestamptz + ((g - 1) / %s) * interval '1 day' + ((g - 1) %% %s) * interval '1 second' AS o"
            "       FROM generate_series(1, %s) g) s",
            (securities, start, per_day, per_day, trades))
        if orders:
            cur.execute(
                "INSERT INTO orders(position_id, security_id, cycle_id, broker_order_id, order_purpose, side, quantity,"
                " filled_price, status, submitted_at, filled_at)"
                " SELECT position_id, security_id, cycle_id, md5(position_id::text), 'entry', 'buy', quantity, entry_price,"
                " 'filled', opened_at, opened_at FROM positions")
        cur.execute(
            "INSERT INTO time_dimension(ts, trading_date, hour, minute, day_of_week, is_market_hours)"
            " SELECT t, t::date, extract(hour FROM t), extract(minute FROM t), extract(dow FROM t), true"
            " FROM generate_series(%s::timestamptz, %s::timestamptz + interval '2 hours', interval '5 minutes') t"
            " ON CONFLICT DO NOTHING", (start, start))
        cur.execute(
            "INSERT INTO scan_results(cycle_id, security_id, scan_timestamp, momentum_score, volume_score, price, volume,"
            " rank, selected_for_trading)"
            " SELECT c.cycle_id, s.security_id, c.started_at, s.security_id / 10.0, 1.5, 50, 100000, s.security_id,"
            " s.security_id <= 5"
            " FROM (SELECT cycle_id, started_at FROM trading_cycles ORDER BY cycle_id LIMIT 5) c"
            " CROSS JOIN (SELECT security_id FROM securities ORDER BY security_id LIMIT 10) s")
        cur.execute(
            "INSERT INTO news_sentiment(security_id, headline, source, sentiment_score)"
            " SELECT security_id, 'Headline for ' || symbol, 'wire', 0.25 FROM securities ORDER BY security_id LIMIT 20")
        cur.execute(
            "INSERT INTO technical_indicators(security_id, time_id, rsi_14, macd, vwap, atr_14)"
            " SELECT s.security_id, t.time_id, 55, 0.1, 50, 1.2 FROM (SELECT security_id FROM securities LIMIT 5) s"
            " CROSS JOIN (SELECT time_id FROM time_dimension ORDER BY time_id LIMIT 5) t")
        cur.execute(
            "INSERT INTO trading_history(security_id, time_id, open_price, high_price, low_price, close_price, volume)"
            " SELECT s.security_id, t.time_id, 50, 51, 49, 50.5, 10000 FROM (SELECT security_id FROM securities LIMIT 5) s"
            " CROSS JOIN (SELECT time_id FROM time_dimension ORDER BY time_id LIMIT 5) t")
        cur.execute(
            "INSERT INTO risk_events(cycle_id, event_type, risk_level, description)"
            " SELECT cycle_id, 'daily_loss', 'low', 'within limits' FROM trading_cycles ORDER BY cycle_id LIMIT 3")
    conn.commit()
