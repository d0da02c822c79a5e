-- A fixture shaped like the real Catalyst Trading System schema (normalized: symbols live in
-- `securities`, every fact table points at it by security_id). Used by the tests, the
-- benchmarks and `catalyst-ops db fixture` for the stand-in stack. Idempotent.
-- 11 tables, 13 foreign keys in `public`.

CREATE TABLE IF NOT EXISTS sectors (
    sector_id      SERIAL PRIMARY KEY,
    sector_name    VARCHAR(100) NOT NULL UNIQUE,
    description    TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS securities (
    security_id    SERIAL PRIMARY KEY,
    symbol         VARCHAR(20) NOT NULL UNIQUE,
    company_name   VARCHAR(200),
    sector_id      INTEGER REFERENCES sectors(sector_id),
    exchange       VARCHAR(20) DEFAULT 'NASDAQ',
    is_active      BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS time_dimension (
    time_id        BIGSERIAL PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL UNIQUE,
    trading_date   DATE NOT NULL,
    hour           SMALLINT,
    minute         SMALLINT,
    day_of_week    SMALLINT,
    is_market_hours BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS trading_cycles (
    cycle_id       VARCHAR(40) PRIMARY KEY,          -- cycle_YYYYMMDD_HHMMSS
    mode           VARCHAR(20) NOT NULL DEFAULT 'normal',
    status         VARCHAR(20) NOT NULL DEFAULT 'active',
    max_positions  INTEGER NOT NULL DEFAULT 5,
    risk_level     NUMERIC(5,4),
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped_at     TIMESTAMPTZ,
    total_pnl      NUMERIC(14,2) DEFAULT 0
);

CREATE TABLE IF NOT EXISTS scan_results (
    scan_id        BIGSERIAL PRIMARY KEY,
    cycle_id       VARCHAR(40) REFERENCES trading_cycles(cycle_id),
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    scan_ts        TIMESTAMPTZ NOT NULL DEFAULT now(),
    momentum_score NUMERIC(8,4),
    volume_ratio   NUMERIC(10,4),
    catalyst_score NUMERIC(8,4),
    rank           INTEGER,
    selected       BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS positions (
    position_id    BIGSERIAL PRIMARY KEY,
    cycle_id       VARCHAR(40) REFERENCES trading_cycles(cycle_id),
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    side           VARCHAR(10) NOT NULL DEFAULT 'long',
    quantity       INTEGER NOT NULL,
    entry_price    NUMERIC(12,4) NOT NULL,
    exit_price     NUMERIC(12,4),
    stop_loss      NUMERIC(12,4),
    take_profit    NUMERIC(12,4),
    status         VARCHAR(20) NOT NULL DEFAULT 'open',   -- open closed cancelled
    risk_amount    NUMERIC(14,2),
    realized_pnl   NUMERIC(14,2),
    unrealized_pnl NUMERIC(14,2),
    opened_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at      TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS positions_status_closed ON positions(status, closed_at);

CREATE TABLE IF NOT EXISTS orders (
    order_id       BIGSERIAL PRIMARY KEY,
    position_id    BIGINT REFERENCES positions(position_id),
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    broker_order_id VARCHAR(64),
    side           VARCHAR(10) NOT NULL,
    order_type     VARCHAR(20) NOT NULL DEFAULT 'market',
    quantity       INTEGER NOT NULL,
    limit_price    NUMERIC(12,4),
    filled_price   NUMERIC(12,4),
    status         VARCHAR(20) NOT NULL DEFAULT 'new',
    submitted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    filled_at      TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS risk_events (
    event_id       BIGSERIAL PRIMARY KEY,
    cycle_id       VARCHAR(40) REFERENCES trading_cycles(cycle_id),
    event_type     VARCHAR(50) NOT NULL,
    severity       VARCHAR(20) NOT NULL DEFAULT 'info',
    message        TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS news_sentiment (
    news_id        BIGSERIAL PRIMARY KEY,
    security_id    INTEGER REFERENCES securities(security_id),
    headline       TEXT NOT NULL,
    source         VARCHAR(100),
    sentiment_score NUMERIC(5,4),
    published_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS technical_indicators (
    indicator_id   BIGSERIAL PRIMARY KEY,
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    time_id        BIGINT REFERENCES time_dimension(time_id),
    timeframe      VARCHAR(10) NOT NULL DEFAULT '5min',
    rsi_14         NUMERIC(8,4),
    macd           NUMERIC(12,6),
    vwap           NUMERIC(12,4),
    atr_14         NUMERIC(12,4)
);

CREATE TABLE IF NOT EXISTS trading_history (
    history_id     BIGSERIAL PRIMARY KEY,
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    time_id        BIGINT REFERENCES time_dimension(time_id),
    open_price     NUMERIC(12,4),
    high_price     NUMERIC(12,4),
    low_price      NUMERIC(12,4),
    close_price    NUMERIC(12,4),
    volume         BIGINT
);
