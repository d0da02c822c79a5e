-- A fixture shaped like the real Catalyst Trading System schema (normalized: symbols live in
-- `securities`, every fact table points at it by security_id), as the upstream services at
-- 63de899 read and write it: cycle ids VARCHAR(20) in the scanner's `YYYYMMDD-NNN` format,
-- positions with the trading service's status words and close_reason. Used by the tests, the
-- benchmarks and `catalyst-ops db fixture` for the stand-in stack. Idempotent.
-- 11 tables, 15 foreign keys in `public`.

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
    cycle_id       VARCHAR(20) PRIMARY KEY,          -- YYYYMMDD-NNN (scanner, container date)
    mode           VARCHAR(20) NOT NULL DEFAULT 'normal',
    status         VARCHAR(20) NOT NULL DEFAULT 'active',   -- scanning active stopped completed ...
    max_positions  INTEGER NOT NULL DEFAULT 5,
    max_daily_loss NUMERIC(14,2),
    position_size_multiplier NUMERIC(6,3) DEFAULT 1.0,
    risk_level     NUMERIC(5,4),
    scan_frequency INTEGER,
    total_risk_budget NUMERIC(14,2),
    used_risk_budget  NUMERIC(14,2) DEFAULT 0,
    current_positions INTEGER DEFAULT 0,
    current_exposure  NUMERIC(14,2) DEFAULT 0,
    configuration  JSONB,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped_at     TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS scan_results (
    scan_id        BIGSERIAL PRIMARY KEY,
    cycle_id       VARCHAR(20) REFERENCES trading_cycles(cycle_id),
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    scan_timestamp TIMESTAMPTZ NOT NULL DEFAULT now(),
    momentum_score NUMERIC(8,4),
    volume_score   NUMERIC(8,4),
    catalyst_score NUMERIC(8,4),
    technical_score NUMERIC(8,4),
    composite_score NUMERIC(8,4),
    price          NUMERIC(12,4),
    volume         BIGINT,
    rank           INTEGER,
    selected_for_trading BOOLEAN NOT NULL DEFAULT false,
    scan_metadata  JSONB
);

CREATE TABLE IF NOT EXISTS positions (
    position_id    BIGSERIAL PRIMARY KEY,
    cycle_id       VARCHAR(20) REFERENCES trading_cycles(cycle_id),
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    side           VARCHAR(10) NOT NULL DEFAULT 'long',
    quantity       INTEGER NOT NULL,
    entry_price    NUMERIC(12,4) NOT NULL,
    exit_price     NUMERIC(12,4),
    stop_loss      NUMERIC(12,4),
    take_profit    NUMERIC(12,4),
    -- the trading service's PositionStatus: a never-filled entry is closed too, not "cancelled"
    status         VARCHAR(20) NOT NULL DEFAULT 'open'
                   CONSTRAINT positions_status_check CHECK (status IN ('open', 'closed', 'partial', 'risk_reduced')),
    risk_amount    NUMERIC(14,2),
    realized_pnl   NUMERIC(14,2),                   -- NULL for never-filled closes (alpaca_*)
    unrealized_pnl NUMERIC(14,2),
    pnl_percent    NUMERIC(8,4),
    -- alpaca_expired|canceled|rejected|done_for_day, stop_loss_estimated, take_profit_estimated,
    -- closed_no_exit_price, alpaca_position_closed, EXIT, STOP_LOSS_HIT: ..., NULL (emergency stop)
    close_reason   VARCHAR(255),
    alpaca_order_id VARCHAR(50),
    alpaca_status  VARCHAR(50),
    alpaca_error   TEXT,
    entry_time     TIMESTAMPTZ,
    exit_time      TIMESTAMPTZ,
    opened_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS positions_status_closed ON positions(status, closed_at);

CREATE TABLE IF NOT EXISTS orders (
    order_id       BIGSERIAL PRIMARY KEY,
    position_id    BIGINT REFERENCES positions(position_id),
    security_id    INTEGER NOT NULL REFERENCES securities(security_id),
    cycle_id       VARCHAR(20) REFERENCES trading_cycles(cycle_id),
    broker_order_id VARCHAR(64),
    order_purpose  VARCHAR(20),                     -- entry exit stop_loss take_profit
    side           VARCHAR(10) NOT NULL,
    order_type     VARCHAR(20) NOT NULL DEFAULT 'market',
    quantity       INTEGER NOT NULL,
    limit_price    NUMERIC(12,4),
    filled_price   NUMERIC(12,4),
    status         VARCHAR(50) NOT NULL DEFAULT 'created',
    submitted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    filled_at      TIMESTAMPTZ
);

-- risk-manager's log_risk_event() writes these columns
CREATE TABLE IF NOT EXISTS risk_events (
    event_id       BIGSERIAL PRIMARY KEY,
    cycle_id       VARCHAR(20) REFERENCES trading_cycles(cycle_id),
    security_id    INTEGER REFERENCES securities(security_id),
    event_type     VARCHAR(50) NOT NULL,             -- position_limit sector_limit daily_loss position_size risk_reward
    risk_level     VARCHAR(20) NOT NULL DEFAULT 'low',   -- low medium high critical
    description    TEXT,
    metadata       JSONB,
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
