-- The seed's `trades` table (the plan's shape), for the documented alternative metrics query:
--   metrics:
--     trades_query: >-
--       SELECT pnl, entry_time, exit_time, symbol, NULL::numeric AS risk_amount
--       FROM trades WHERE status = 'closed'
CREATE TABLE IF NOT EXISTS trades (
    trade_id       SERIAL PRIMARY KEY,
    symbol         VARCHAR(20) NOT NULL,
    side           VARCHAR(10) NOT NULL DEFAULT 'buy',
    quantity       INTEGER NOT NULL DEFAULT 1,
    entry_price    NUMERIC(12,4),
    exit_price     NUMERIC(12,4),
    pnl            NUMERIC(14,2),
    entry_time     TIMESTAMP,
    exit_time      TIMESTAMP,
    status         VARCHAR(20) NOT NULL DEFAULT 'open'
);
