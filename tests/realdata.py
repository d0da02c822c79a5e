"""Rows as the upstream services at 63de899 write them, for two sessions (Mon 2026-11-23 and
Tue 2026-11-24; New York is UTC-5 then) and one the day after: scanner cycle ids
`YYYYMMDD-NNN`, never-filled closes (`alpaca_*`, NULL P&L), ghost closes with estimated P&L,
a zero-P&L emergency close (no close_reason, exit = entry), a position opened one session and
closed the next, and a close at 19:30 New York time (the same session date, the next UTC date).

  id sym  cycle         opened (UTC)      closed (UTC)      qty entry  exit   P&L   close_reason            kind
  1  AAPL 20261123-001  11-23 14:40       11-23 17:00       10  100    130   +300   EXIT                    trade
  2  MSFT 20261123-001  11-23 14:41       11-23 18:00       10  200    190   -100   STOP_LOSS               trade
  3  TSLA 20261123-001  11-23 14:42       11-23 15:42       10  250    -     NULL   alpaca_expired          never filled
  4  NVDA 20261123-002  11-23 16:05       11-24 00:30       10  100    105    +50   alpaca_position_closed  trade, Mon 19:30 ET
  5  AMD  20261123-002  11-23 16:10       11-24 15:00       10   50     70   +200   EXIT                    trade, opened Mon
  6  META 20261124-001  11-24 14:40       11-24 16:30       10  300    285   -150   stop_loss_estimated     estimate
  7  GOOG 20261124-001  11-24 14:45       11-24 17:00       10  170    -     NULL   alpaca_canceled         never filled
  8  AMZN 20261124-002  11-24 18:05       11-24 19:00       10  150    150      0   NULL (emergency stop)   estimate
  9  NFLX 20261124-001  11-24 14:50       11-24 20:00        4  400    425   +100   TAKE_PROFIT             trade
 10  INTC 20261124-002  11-24 18:10       open              10   20      -   unrealized +25.50  status open
 11  AAPL 20261124-001  11-24 14:55       11-24 20:59        5  100    110    +50   take_profit_estimated   estimate
 12  MSFT 20261124-002  11-24 18:12       open (partial)    10  200      -   unrealized -10.50  status partial
 13  TSLA 20261125-001  11-25 14:40       11-25 15:00       10  200  192.5    -75   EXIT                    trade (Wed)

Session Monday: opened 1-5; closed 1-4 (3 trades: 2 won, 1 lost, P&L +250; 1 never filled);
cycles 20261123-001/-002; 1 risk event.
Session Tuesday: opened 6-12; closed 5, 6, 7, 8, 9, 11 (2 trades: both won, P&L +300; 3
estimates: 2 estimated closes and 1 emergency close, P&L -100; 1 never filled); #4's close is
Monday's although its UTC date is Tuesday; cycles 20261124-001/-002; 2 risk events.
Open now: 10 and 12, unrealized +15.00.
All sessions (metrics): 6 trades (4 won +650, 2 lost -175, total +475), 2 never filled,
3 estimates (-100); with the estimates: 9 trades (5 won, 3 lost, 1 breakeven, total +375).
"""

from __future__ import annotations

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA", "AMD", "META", "GOOG", "AMZN", "NFLX", "INTC"]
CYCLES = [  # cycle_id, mode, status, started (UTC), stopped (UTC)
    ("20261123-001", "normal", "completed", "2026-11-23 14:35", "2026-11-23 14:50"),
    ("20261123-002", "normal", "completed", "2026-11-23 16:00", "2026-11-23 16:15"),
    ("20261124-001", "normal", "completed", "2026-11-24 14:35", "2026-11-24 14:50"),
    ("20261124-002", "normal", "stopped", "2026-11-24 18:00", "2026-11-24 19:00"),
    ("20261125-001", "normal", "completed", "2026-11-25 14:35", "2026-11-25 14:50"),
]
# id, symbol, cycle, opened, closed, qty, entry, exit, pnl, close_reason, status, unrealized
POSITIONS = [
    (1, "AAPL", "20261123-001", "2026-11-23 14:40", "2026-11-23 17:00", 10, 100, 130, 300, "EXIT", "closed", None),
    (2, "MSFT", "20261123-001", "2026-11-23 14:41", "2026-11-23 18:00", 10, 200, 190, -100, "STOP_LOSS", "closed", None),
    (3, "TSLA", "20261123-001", "2026-11-23 14:42", "2026-11-23 15:42", 10, 250, None, None, "alpaca_expired", "closed", None),
    (4, "NVDA", "20261123-002", "2026-11-23 16:05", "2026-11-24 00:30", 10, 100, 105, 50, "alpaca_position_closed", "closed", None),
    (5, "AMD", "20261123-002", "2026-11-23 16:10", "2026-11-24 15:00", 10, 50, 70, 200, "EXIT", "closed", None),
    (6, "META", "20261124-001", "2026-11-24 14:40", "2026-11-24 16:30", 10, 300, 285, -150, "stop_loss_estimated", "closed", None),
    (7, "GOOG", "20261124-001", "2026-11-24 14:45", "2026-11-24 17:00", 10, 170, None, None, "alpaca_canceled", "closed", None),
    (8, "AMZN", "20261124-002", "2026-11-24 18:05", "2026-11-24 19:00", 10, 150, 150, 0, None, "closed", None),
    (9, "NFLX", "20261124-001", "2026-11-24 14:50", "2026-11-24 20:00", 4, 400, 425, 100, "TAKE_PROFIT", "closed", None),
    (10, "INTC", "20261124-002", "2026-11-24 18:10", None, 10, 20, None, None, None, "open", 25.5),
    (11, "AAPL", "20261124-001", "2026-11-24 14:55", "2026-11-24 20:59", 5, 100, 110, 50, "take_profit_estimated", "closed", None),
    (12, "MSFT", "20261124-002", "2026-11-24 18:12", None, 10, 200, None, None, None, "partial", -10.5),
    (13, "TSLA", "20261125-001", "2026-11-25 14:40", "2026-11-25 15:00", 10, 200, 192.5, -75, "EXIT", "closed", None),
]
RISK_EVENTS = [  # cycle, symbol, event_type, risk_level, description
    ("20261123-001", "TSLA", "position_limit", "low", "max positions reached"),
    ("20261124-001", "META", "position_size", "medium", "position size reduced"),
    ("20261124-002", "AMZN", "daily_loss", "critical", "daily loss limit reached: emergency stop"),
]


def load(conn) -> None:
    """Insert the rows above into a database with the schema fixture (catalyst_ops/sandbox/schema.sql)."""
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO securities(symbol) VALUES (%s) ON CONFLICT DO NOTHING", [(s,) for s in SYMBOLS])
        cur.executemany("INSERT INTO trading_cycles(cycle_id, mode, status, started_at, stopped_at)"
                        " VALUES (%s, %s, %s, %s::timestamp AT TIME ZONE 'UTC', %s::timestamp AT TIME ZONE 'UTC')", CYCLES)
        for pid, sym, cycle, opened, closed, qty, entry, exit_, pnl, reason, status, unreal in POSITIONS:
            cur.execute(
                "INSERT INTO positions(position_id, cycle_id, security_id, side, quantity, entry_price, exit_price, status,"
                " realized_pnl, unrealized_pnl, close_reason, opened_at, closed_at, risk_amount)"
                " SELECT %s, %s, security_id, 'long', %s, %s, %s, %s, %s, %s, %s,"
                " %s::timestamp AT TIME ZONE 'UTC', %s::timestamp AT TIME ZONE 'UTC', 100 FROM securities WHERE symbol = %s",
                (pid, cycle, qty, entry, exit_, status, pnl, unreal, reason, opened, closed, sym))
        cur.execute("SELECT setval('positions_position_id_seq', 100)")
        for cycle, sym, etype, level, desc in RISK_EVENTS:
            cur.execute("INSERT INTO risk_events(cycle_id, security_id, event_type, risk_level, description)"
                        " SELECT %s, security_id, %s, %s, %s FROM securities WHERE symbol = %s", (cycle, etype, level, desc, sym))
    conn.commit()
