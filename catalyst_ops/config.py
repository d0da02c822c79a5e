"""Configuration: one YAML file plus the stack's `.env`, validated once into typed objects.

The file is `--config PATH`, else $CATALYST_OPS_CONFIG, else /etc/catalyst/ops.yml; when
none of those exists the embedded defaults apply (the stand-in stack on localhost).
Every section is a dataclass below; each field's default is the documented default
(README "Configuration"). Unknown keys are errors, so a typo never passes silently.
A bad value raises ConfigError naming the file, the dotted key and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalyst_ops import yamlio
from catalyst_ops.closes import ESTIMATED_REASONS, UNFILLED_REASONS
from catalyst_ops.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/catalyst/ops.yml"

# Redis beside the nine (upstream compose: service `redis`, container catalyst-redis); checked where
# the stack has it, see _load_services.
REDIS = "redis"
REDIS_PORT = 6379

# The nine services of the contract and their default ports (DESIGN.md).
DEFAULT_PORTS = {
    "orchestration": 5000,
    "scanner": 5001,
    "pattern": 5002,
    "technical": 5003,
    "risk-manager": 5004,
    "trading": 5005,
    "workflow": 5006,
    "news": 5008,
    "reporting": 5009,
}


def _meta(**kw: Any) -> dict:
    return {"metadata": kw}


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _default_state_path() -> str:
    if _is_root():
        return "/var/lib/catalyst/state.db"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "catalyst", "state.db")


def _default_dir(root_path: str, leaf: str) -> str:
    if _is_root():
        return root_path
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "catalyst", leaf)


@dataclass
class ServiceConfig:
    port: int = field(default=0, **_meta(min=1, max=65535))
    host: str = "127.0.0.1"
    health_path: str | None = None  # None: the profile's path
    timeout: float | None = field(default=None, **_meta(min=0.1))  # None: health.timeout
    healthy_words: list[str] | None = None  # None: the profile's words
    unit: str | None = None  # systemd unit; None: runtime.systemd_unit with {service}
    container: str | None = None  # compose service name; None: the service name
    enabled: bool = True
    extra: bool = False  # a service beyond the nine: must say so, so a typo is never a new service
    # http: GET health_path; redis: AUTH + PING in the Redis protocol (no HTTP health route)
    kind: str = field(default="http", **_meta(choices=["http", "redis"]))
    password_env: str | None = None  # kind redis: the .env key holding its password


@dataclass
class CommandRuntime:
    start: str = ""
    stop: str = ""
    restart: str = ""  # whole stack
    restart_service: str = ""  # {service} is replaced
    status: str = ""
    # applying a .env change needs a fresh environment, which a restart does not give (compose's
    # `up -d --no-deps --force-recreate`); {service} is replaced (one command per service), or
    # {services} by all of them (one command). "": not possible with this runtime
    recreate_service: str = ""
    env: str = ""  # prints the running service's environment as KEY=value lines; {service}
    logs: str = ""  # prints the running service's log since it was (re)created; {service}
    # exits 0 while {service}'s process runs, non-zero once it has exited (what it prints says why);
    # lets a restart notice a service that died as it started. "": not known with this runtime
    running: str = ""


@dataclass
class RuntimeConfig:
    kind: str = field(default="compose", **_meta(choices=["compose", "systemd", "command"]))
    # "": the first of COMPOSE_CANDIDATES that exists (upstream checks out in /root/catalyst-trading-system)
    compose_file: str = ""
    # []: `docker compose` (v2) when the docker CLI has it, else `docker-compose` (v1), found when first used
    compose_command: list[str] = field(default_factory=list)
    systemd_unit: str = "catalyst-{service}.service"
    command_timeout: float = field(default=120.0, **_meta(min=1))
    commands: CommandRuntime = field(default_factory=CommandRuntime)


@dataclass
class HealthConfig:
    timeout: float = field(default=5.0, **_meta(min=0.1))
    restart_wait: float = field(default=60.0, **_meta(min=0))  # bounded wait for a restarted service
    restart_poll: float = field(default=1.0, **_meta(min=0.05))
    max_restarts_per_hour: int = field(default=3, **_meta(min=0))
    start_timeout: float = field(default=180.0, **_meta(min=1))  # start/restart of the whole stack
    monitor_heartbeat_stale: float = field(default=180.0, **_meta(min=1))


@dataclass
class WorkflowConfig:
    service: str = "workflow"
    mode: str = "normal"
    max_positions: int = field(default=5, **_meta(min=1))
    scan_frequency: int = field(default=300, **_meta(min=1))
    # the real service's WorkflowStartRequest.risk_level is a float 0.0-1.0 (a word is a 422)
    risk_level: float = field(default=0.5, **_meta(min=0, max=1))
    risk_per_trade: float = field(default=0.01, **_meta(min=0, max=1))
    deadline: float = field(default=300.0, **_meta(min=1))
    poll_interval: float = field(default=5.0, **_meta(min=0.05))
    # the wait for the start's answer; a start sent but not answered in time is recorded `unknown`
    start_timeout: float = field(default=10.0, **_meta(min=0.1, max=300))


@dataclass
class MarketConfig:
    calendar: str = field(default="XNYS", **_meta(fmt="calendar"))
    exchange_timezone: str = field(default="America/New_York", **_meta(fmt="zone"))
    # a job fired later than this after its moment does not act (a late cron catch-up, or a host
    # clock an hour off across DST); below 60 so an hour's error can never pass
    late_tolerance_minutes: int = field(default=15, **_meta(min=1, max=59))
    market_open: str = field(default="09:30", **_meta(fmt="hhmm"))
    scans: list[str] = field(default_factory=lambda: ["11:00", "13:00"], **_meta(fmt="hhmm"))
    market_close: str = field(default="16:00", **_meta(fmt="hhmm"))
    # the real reporting service wants the integer trading_cycles id; None: the cycle id that
    # today's market-open got from the workflow service
    report_cycle_id: int | None = field(default=None, **_meta(min=1))
    # also fetch the reporting service's daily report at the close; None: the profile's
    # reporting.daily.enabled (real: false, it cannot answer for the real schema; plan: true)
    reporting_service: bool | None = None


@dataclass
class MailDnsConfig:
    """What `alert dns` expects of the sender domain's SPF, DKIM and DMARC records."""
    domain: str = ""  # "": the domain of the .env's SMTP_FROM (else SMTP_USERNAME)
    spf_include: str = ""  # the SMTP provider's SPF include, e.g. sendgrid.net
    dkim_selector: str = ""  # the provider's DKIM selector: <selector>._domainkey.<domain>
    dmarc_policy: str = field(default="quarantine", **_meta(choices=["quarantine", "reject"]))
    dmarc_rua: str = ""  # the DMARC aggregate report address ("": no rua= in the record)
    resolver: str = ""  # IP address of the resolver to ask; "": the host's (/etc/resolv.conf)
    port: int = field(default=53, **_meta(min=1, max=65535))
    timeout: float = field(default=5.0, **_meta(min=0.1, max=60))  # seconds per lookup, all tries included
    tcp: bool = False  # ask over TCP (networks that drop DNS over UDP); UDP falls back to TCP on truncation anyway


@dataclass
class AlertsConfig:
    enabled: bool = True
    interval: float = field(default=30.0, **_meta(min=0.1))  # monitor sweep interval, seconds
    repeat_every: int = field(default=5, **_meta(min=1))
    cooldown: float = field(default=900.0, **_meta(min=0))
    smtp_timeout: float = field(default=10.0, **_meta(min=0.1))
    verify_tls: bool = True
    ca_file: str | None = None
    retry_base: float = field(default=30.0, **_meta(min=0.01))
    retry_max: float = field(default=900.0, **_meta(min=0.01))
    # a route refused permanently (SMTP 5xx for its recipients) this many times in a row: its pending
    # alerts are marked failed there and an alert naming the route goes to the other routes
    refused_attempts: int = field(default=3, **_meta(min=1, max=100))
    webhook_url: str | None = None
    health_stale: float = field(default=900.0, **_meta(min=1))
    market_open_deadline: str = field(default="09:45", **_meta(fmt="hhmm"))
    backup_stale_hours: float = field(default=26.0, **_meta(min=1))
    dns: MailDnsConfig = field(default_factory=MailDnsConfig)


@dataclass
class DatabaseConfig:
    url_env: str = "DATABASE_URL"  # the .env key that holds the PostgreSQL URL
    connect_timeout: int = field(default=10, **_meta(min=1))
    min_tables: int = field(default=11, **_meta(min=0))
    min_foreign_keys: int = field(default=5, **_meta(min=0))
    # tables of the real schema that `db check` expects in `public` ([] to skip the check)
    expected_tables: list[str] = field(default_factory=lambda: [
        "securities", "sectors", "trading_cycles", "positions", "scan_results", "orders", "risk_events",
        "news_sentiment", "technical_indicators", "time_dimension", "trading_history"])
    statement_timeout: float = field(default=60.0, **_meta(min=1))  # seconds per query of db check / metrics


@dataclass
class BackupConfig:
    dir: str = field(default_factory=lambda: _default_dir("/backups/catalyst", "backups"))
    retention_days: int = field(default=30, **_meta(min=1))
    keep_min: int = field(default=7, **_meta(min=1))
    verify_restore: bool = False
    pg_bin_dir: str | None = None  # where pg_dump/pg_restore live; None: PATH
    timeout: float = field(default=3600.0, **_meta(min=1))


DEFAULT_TRADES_QUERY = """
SELECT p.realized_pnl AS pnl, p.opened_at AS entry_time, p.closed_at AS exit_time,
       s.symbol AS symbol, p.risk_amount AS risk_amount,
       p.close_reason AS close_reason, p.entry_price AS entry_price, p.exit_price AS exit_price
FROM positions p LEFT JOIN securities s ON s.security_id = p.security_id
WHERE p.status = 'closed'
""".strip()

# The daily trading report's one query: ONE row of three JSON arrays. Parameters: %(session_date)s
# (the session's date), %(tz)s (market.exchange_timezone), %(cycle_prefix)s ('YYYYMMDD-%': the
# scanner's cycle ids of that date). Positions: opened or closed that session in exchange time,
# plus every position still open now; as upstream's scripts/generate_daily_report_db.py does.
DEFAULT_SESSION_QUERY = """
SELECT
  (SELECT coalesce(json_agg(row_to_json(x) ORDER BY x.opened_at, x.position_id), '[]'::json)
   FROM (SELECT p.position_id, p.cycle_id, s.symbol, p.side, p.quantity, p.entry_price, p.exit_price,
                p.status, p.realized_pnl, p.unrealized_pnl, p.close_reason, p.opened_at, p.closed_at
         FROM positions p LEFT JOIN securities s ON s.security_id = p.security_id
         WHERE (p.opened_at AT TIME ZONE %(tz)s)::date = %(session_date)s
            OR (p.closed_at AT TIME ZONE %(tz)s)::date = %(session_date)s
            OR p.status <> 'closed') x) AS positions,
  (SELECT coalesce(json_agg(row_to_json(c) ORDER BY c.started_at, c.cycle_id), '[]'::json)
   FROM (SELECT cycle_id, mode, status, started_at, stopped_at FROM trading_cycles
         WHERE cycle_id LIKE %(cycle_prefix)s) c) AS cycles,
  (SELECT coalesce(json_agg(row_to_json(e) ORDER BY e.cycle_id), '[]'::json)
   FROM (SELECT r.cycle_id, r.event_type, r.risk_level, r.description, s.symbol
         FROM risk_events r LEFT JOIN securities s ON s.security_id = r.security_id
         WHERE r.cycle_id LIKE %(cycle_prefix)s) e) AS risk_events
""".strip()


@dataclass
class MetricsConfig:
    trades_query: str = DEFAULT_TRADES_QUERY
    # the daily trading report's query (market-close, `report trading`)
    session_query: str = DEFAULT_SESSION_QUERY
    # closed positions whose close_reason says the entry never filled: not trades (catalyst_ops/closes.py)
    unfilled_close_reasons: list[str] = field(default_factory=lambda: list(UNFILLED_REASONS))
    # ghost closes with a guessed exit; with zero-P&L emergency closes, "estimates"
    estimated_close_reasons: list[str] = field(default_factory=lambda: list(ESTIMATED_REASONS))
    # count estimates as trades in the figures and the verdict (they are always shown apart)
    include_estimates: bool = False
    # keep the figures of trades older than an hour in the state DB, checked by a fingerprint each run
    cache: bool = True
    starting_equity: float = field(default=100000.0, **_meta(min=0.01))
    min_win_rate: float = field(default=0.50, **_meta(min=0, max=1))
    min_risk_reward: float = field(default=1.5, **_meta(min=0))
    max_drawdown: float = field(default=0.10, **_meta(min=0, max=1))
    min_trades: int = field(default=20, **_meta(min=0))
    min_consecutive_days: int = field(default=5, **_meta(min=0))
    max_crashes: int = field(default=0, **_meta(min=0))


@dataclass
class RampStage:
    max_positions: int = field(default=3, **_meta(min=1))
    risk_per_trade: float = field(default=0.005, **_meta(min=0, max=1))
    max_daily_loss: float = field(default=0.02, **_meta(min=0, max=1))
    min_days: int = field(default=3, **_meta(min=0))


def _default_stages() -> list[RampStage]:
    return [RampStage(3, 0.005, 0.02, 3), RampStage(4, 0.0075, 0.025, 3), RampStage(5, 0.01, 0.03, 3)]


@dataclass
class TradingConfig:
    # the services pick the account from TRADING_MODE alone (paper unless it says otherwise), so
    # the broker client does too; ALPACA_BASE_URL is read by no service
    paper_url: str = "https://paper-api.alpaca.markets"
    live_url: str = "https://api.alpaca.markets"
    service: str = "trading"
    # recreated after a .env change, and each must receive TRADING_MODE (and the ramp's keys)
    env_services: list[str] = field(default_factory=lambda: ["trading", "risk-manager", "workflow", "scanner"])
    cancel_attempts: int = field(default=10, **_meta(min=1))  # polls until no order is pending_cancel
    close_attempts: int = field(default=5, **_meta(min=1))
    close_poll: float = field(default=2.0, **_meta(min=0.01))
    broker_timeout: float = field(default=10.0, **_meta(min=0.1))
    broker_retries: int = field(default=3, **_meta(min=0, max=10))  # on HTTP 429
    broker_retry_max_wait: float = field(default=10.0, **_meta(min=0, max=120))
    # after an emergency stop left closes queued on a closed market: how long market-open's check
    # at the next session's open waits for them to fill before it alerts
    open_flat_wait: float = field(default=300.0, **_meta(min=0, max=3600))
    stages: list[RampStage] = field(default_factory=_default_stages)
    # the account size the stage fractions are applied to: MAX_DAILY_LOSS is written in dollars
    # (the stack reads it as dollars) and the ramp's "no loss above the stage's risk" gate compares
    # each trade's loss with risk_per_trade x capital
    capital: float = field(default=100000.0, **_meta(min=0.01))
    # the env overrides upstream's config_loader.py reads (MAX_DAILY_LOSS, RISK_PER_TRADE: read by nothing)
    max_positions_key: str = "MAX_POSITIONS"
    max_daily_loss_key: str = "MAX_DAILY_LOSS_USD"  # dollars
    risk_per_trade_key: str = ""  # "": not written (no service reads one)
    # "": the ramp writes the env keys above; a path (config/risk_parameters.yaml of the stack,
    # hot reloaded by the services): the ramp writes risk_limits.max_positions / max_daily_loss_usd there
    risk_file: str = ""
    restart_trading: bool = True  # apply .env changes to the running services (recreate) and confirm them
    # the ramp's live success criteria (phase 7.5), over the live trades of the stage
    min_win_rate: float = field(default=0.50, **_meta(min=0, max=1))
    min_risk_reward: float = field(default=1.5, **_meta(min=0))
    # entering this stage (and any later one) needs a recorded emergency-stop drill; 0: never
    drill_before_stage: int = field(default=3, **_meta(min=0))
    drill_max_age_days: float = field(default=30.0, **_meta(min=1))  # an older drill does not count


@dataclass
class RetentionConfig:
    job_runs_days: int = field(default=90, **_meta(min=1))
    health_days: int = field(default=30, **_meta(min=1))
    logs_days: int = field(default=30, **_meta(min=1))
    # backups of the .env (and of trading.risk_file) kept beside it by mode, ramp and emergency stop
    env_backups: int = field(default=10, **_meta(min=1, max=1000))
    # the monitor sweeps every alerts.interval (30 s): ten times the health job's rows; its per-service
    # checks are kept this long (its sweep rows, the evidence that it ran, for health_days)
    monitor_checks_days: int = field(default=3, **_meta(min=1))
    compact: bool = True  # VACUUM the state DB after pruning when a tenth or more of it is free pages


@dataclass
class ValidationConfig:
    cpu_limit_percent: float = field(default=70.0, **_meta(min=0, max=100))
    memory_limit_percent: float = field(default=80.0, **_meta(min=0, max=100))
    health_interval_minutes: int = field(default=5, **_meta(min=1))
    # a scheduled job counts as on time when it started within this many minutes of its slot
    job_tolerance_minutes: int = field(default=10, **_meta(min=1))
    # job names the on-time criterion looks for in job_runs; "" drops that kind from the check
    job_names: dict[str, str] = field(default_factory=lambda: {
        "market_open": "market-open", "scan": "scan", "market_close": "market-close",
        "backup": "backup", "weekly_maintenance": "weekly-maintenance"})
    backup_time: str = field(default="23:00", **_meta(fmt="hhmm"))  # host timezone, daily (the crontab's backup line)
    maintenance_time: str = field(default="Sun 02:00", **_meta(fmt="day_hhmm"))  # host timezone, weekly
    backup_max_gap_hours: float = field(default=26.0, **_meta(min=1))  # longest stretch without an ok backup
    monitor_max_gap_minutes: float = field(default=10.0, **_meta(min=1))  # longest stretch without monitor evidence
    resource_sample_seconds: float = field(default=1.0, **_meta(min=0.1, max=30))  # CPU measured over this interval
    # the database criterion fails when the busiest sample used this share of max_connections
    db_connections_limit_percent: float = field(default=80.0, **_meta(min=1, max=100))
    # the email criterion fails when an alert created in the window waited longer than this undelivered
    alert_max_delay_minutes: float = field(default=30.0, **_meta(min=1))


@dataclass
class Config:
    env_file: str = ""  # "": the .env of the compose project (runtime.compose_file's directory), else /opt/catalyst/.env
    state_path: str = field(default_factory=_default_state_path)
    log_dir: str = field(default_factory=lambda: _default_dir("/var/log/catalyst", "log"))
    report_dir: str | None = None  # None: <log_dir>/reports
    host_timezone: str = field(default="America/New_York", **_meta(fmt="zone"))  # the zone the crontab's times are written in
    profile: str = "real"  # "real", "plan", or a path to a profile YAML
    profile_overrides: dict[str, Any] = field(default_factory=dict)
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    market: MarketConfig = field(default_factory=MarketConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    trading: TradingConfig = field(default_factory=TradingConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    # filled in by load(), not read from YAML
    source: str = "<defaults>"
    profile_data: dict[str, Any] = field(default_factory=dict)
    _env: dict[str, str] | None = None
    _compose_redis: Any = None  # composefile.RedisService of the compose file, when it has one

    @property
    def reports_path(self) -> str:
        return self.report_dir or os.path.join(self.log_dir, "reports")

    @property
    def state_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.state_path))

    def env(self, required: bool = True) -> dict[str, str]:
        """The stack's .env (loaded once, on first use). Missing file: {} unless required."""
        if self._env is None:
            from catalyst_ops import envfile

            if not os.path.exists(self.env_file) and not required:
                return {}
            self._env = envfile.load(self.env_file)
        return self._env

    def service(self, name: str) -> ServiceConfig:
        try:
            return self.services[name]
        except KeyError:
            raise ConfigError(self.source, f"services.{name}", f"unknown service {name!r}; known: {', '.join(self.services)}")

    def enabled_services(self) -> list[str]:
        return [n for n, s in self.services.items() if s.enabled]

    def service_url(self, name: str, path: str = "") -> str:
        svc = self.service(name)
        return f"http://{svc.host}:{svc.port}{path}"

    def health_path(self, name: str) -> str:
        svc = self.service(name)
        if svc.health_path:
            return svc.health_path
        h = self.profile_data.get("health", {})
        return (h.get("paths") or {}).get(name) or h.get("default_path", "/health")

    def healthy_words(self, name: str) -> list[str]:
        return self.service(name).healthy_words or self.profile_data.get("health", {}).get("healthy_words", ["healthy"])

    def service_timeout(self, name: str) -> float:
        return self.service(name).timeout or self.health.timeout

    def service_password(self, name: str) -> str | None:
        """A kind-redis service's password: the .env's `password_env` key, else what the compose file's
        `--requirepass ${REDIS_PASSWORD:-...}` gives it (compose's own default), else none."""
        from catalyst_ops import composefile

        svc = self.service(name)
        env = self.env(required=False)
        if svc.password_env and env.get(svc.password_env):
            return env[svc.password_env]
        cr = self._compose_redis
        if cr is not None and cr.requirepass and (svc.container or name) == cr.name:
            return composefile.interpolate(cr.requirepass, env) or None
        return None


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, where: str, source: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where, source, meta)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(source, where, f"expected {_type_name(tp)}, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)
        item_meta = {k: v for k, v in meta.items() if k == "fmt"}  # a list of times: each one a time
        return [_coerce(v, inner, f"{where}[{i}]", source, item_meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, where, f"expected a mapping, got {type(value).__name__}")
        key_t, val_t = typing.get_args(tp)
        if val_t is Any:
            return dict(value)
        return {str(k): _coerce(v, val_t, f"{where}.{k}", source, {}) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, where, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, where, f"expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, where, f"expected a number, got {value!r}")
        value = float(value)
        # NaN fails every comparison below, so it would pass them all: a NaN timeout is a wait
        # that never ends, an infinite one the same
        if not math.isfinite(value):
            raise ConfigError(source, where, f"expected a finite number, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, where, f"expected a string, got {value!r}")
        if "fmt" in meta:
            _check_format(value, meta["fmt"], where, source)
    elif tp is Any:
        return value
    if "min" in meta and value < meta["min"]:
        raise ConfigError(source, where, f"expected at least {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(source, where, f"expected at most {meta['max']}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(source, where, f"expected one of {', '.join(meta['choices'])}, got {value!r}")
    return value


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# calendars known good without importing exchange_calendars (a second of start-up for every command)
_KNOWN_CALENDARS = {"XNYS", "NYSE", "XNAS", "NASDAQ"}


def _check_format(value: str, fmt: str, where: str, source: str) -> None:
    """Times, zones and calendar names are checked when the file is loaded, so `config check` (the
    roles' validate step) refuses what every job would refuse later at its run."""
    if fmt == "hhmm":
        if not _HHMM.match(value.strip()):
            raise ConfigError(source, where, f"expected a time HH:MM (00:00-23:59), got {value!r}")
    elif fmt == "day_hhmm":
        parts = value.split()
        if len(parts) != 2 or parts[0].lower()[:3] not in WEEKDAYS or not _HHMM.match(parts[1]):
            raise ConfigError(source, where, f"expected 'DAY HH:MM' like 'Sun 02:00', got {value!r}")
    elif fmt == "zone":
        if not valid_zone(value):
            raise ConfigError(source, where, f"expected an IANA time zone name like America/New_York, got {value!r}")
    elif fmt == "calendar":
        if value not in _KNOWN_CALENDARS and not _calendar_exists(value):
            raise ConfigError(source, where, f"expected an exchange calendar name like XNYS (exchange_calendars), "
                              f"got {value!r}")


def valid_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
        return True
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError; a bad path a ValueError
        return False


def _calendar_exists(name: str) -> bool:
    try:
        import exchange_calendars as xcals
    except ImportError:  # pragma: no cover - a dependency of the package
        return True
    return name in xcals.get_calendar_names(include_aliases=True)


_INTERNAL = {"source", "profile_data", "_env", "_compose_redis"}


def _build(cls: type, raw: Any, where: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, where or None, f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(source, dotted, f"unknown key; expected one of {', '.join(sorted(fields))}")
        if cls is Config and key == "services":
            continue  # handled by load(): merged over the nine defaults
        kwargs[key] = _coerce(value, hints[key], dotted, source, dict(fields[key].metadata))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - a dataclass without defaults
        raise ConfigError(source, where, str(exc))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        # an empty mapping replaces (clears) rather than merges: `degraded_fields: {}` turns the rule off
        if isinstance(v, dict) and v and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


class DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int):
        super().__init__(f"duplicate key {key!r} at lines {first} and {second}")
        self.key, self.first, self.second = key, first, second


def yaml_load(text: str):
    """yaml.safe_load, except that a key given twice in one mapping is an error: PyYAML keeps the
    last silently, so `timeout: 3` further down would quietly win over the one the operator reads."""
    import yaml

    def walk(node, where: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                dotted = f"{where}.{name}" if where else str(name)
                if name is not None and key.tag != "tag:yaml.org,2002:merge":
                    if name in seen:
                        raise DuplicateKey(dotted, seen[name], key.start_mark.line + 1)
                    seen[name] = key.start_mark.line + 1
                walk(value, dotted)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{where}[{i}]")

    walk(yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)), "")
    return yamlio.safe_load(text)


def load_profile(name: str, source: str, overrides: dict | None = None) -> dict:
    import yaml

    if name in ("real", "plan"):
        path = Path(__file__).with_name("profiles") / f"{name}.yml"
    else:
        path = Path(name)
    try:
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(source, "profile", f"expected real, plan or a profile file; {str(path)!r} not found")
    except DuplicateKey as exc:
        raise ConfigError(str(path), exc.key, f"given twice (lines {exc.first} and {exc.second}); keep one")
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), None, f"invalid YAML: {exc.__class__.__name__}")
    if not isinstance(data, dict):
        raise ConfigError(str(path), None, "expected a mapping at the top level")
    return _merge(data, overrides or {})


def mode_refusal(profile_data: dict, mode: str) -> str | None:
    """Why the profile refuses a workflow mode word, or None when it is one of `workflow.modes`."""
    w = profile_data.get("workflow", {}) or {}
    modes = w.get("modes") or []
    if not modes or mode in modes:
        return None
    reason = (w.get("refused_modes") or {}).get(mode) or "the service treats any other word as aggressive"
    return f"expected one of {', '.join(modes)}, got {mode!r}: {reason}"


def resolve_path(cli_path: str | None) -> tuple[str | None, bool]:
    """(path, explicit): the config file to read and whether the operator named it."""
    if cli_path:
        return cli_path, True
    env = os.environ.get("CATALYST_OPS_CONFIG")
    if env:
        return env, True
    return DEFAULT_CONFIG_PATH, False


def load(cli_path: str | None = None) -> Config:
    """Load and validate the configuration. Raises ConfigError (exit 2) on any problem."""
    path, explicit = resolve_path(cli_path)
    raw: Any = {}
    source = "<defaults>"
    if path and (explicit or os.path.exists(path)):
        import yaml

        source = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(path, None, "config file not found")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(path, None, f"cannot read config file: {exc.__class__.__name__}")
        try:
            raw = yaml_load(text)
        except DuplicateKey as exc:
            raise ConfigError(path, exc.key, f"given twice (lines {exc.first} and {exc.second}); keep one")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(path, None, f"invalid YAML{where}")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(path, None, "expected a mapping at the top level")
    cfg = _build(Config, raw, "", source)
    cfg.source = source
    compose_path = detect_compose_file(cfg) if cfg.runtime.kind == "compose" else None
    if compose_path:
        from catalyst_ops import composefile

        cfg._compose_redis = composefile.redis_service(composefile.load_data(compose_path))
    cfg.services = _load_services(raw.get("services"), source, cfg._compose_redis)
    if not cfg.enabled_services():
        raise ConfigError(source, "services", "expected at least one service")
    cfg.profile_data = load_profile(cfg.profile, source, cfg.profile_overrides)
    # cross-field checks
    if cfg.workflow.service not in cfg.services:
        raise ConfigError(source, "workflow.service", f"expected one of the configured services, got {cfg.workflow.service!r}")
    refusal = mode_refusal(cfg.profile_data, cfg.workflow.mode)
    if refusal:
        raise ConfigError(source, "workflow.mode", refusal)
    if not cfg.trading.stages:
        raise ConfigError(source, "trading.stages", "expected at least one ramp stage")
    if cfg.runtime.kind == "command":
        for key in ("start", "stop", "restart_service"):
            if not getattr(cfg.runtime.commands, key):
                raise ConfigError(source, f"runtime.commands.{key}", "expected a command line (runtime.kind is command)")
    for i, name in enumerate(cfg.trading.env_services):
        if name not in DEFAULT_PORTS and name not in cfg.services:
            raise ConfigError(source, f"trading.env_services[{i}]", f"unknown service {name!r}")
    if not cfg.env_file:
        cfg.env_file = default_env_file(cfg)
    return cfg


# what a job needs to raise its own failure alert: where the state DB and the .env are, and how to alert
_RESCUE_KEYS = ("env_file", "state_path", "log_dir", "alerts", "runtime")


def load_for_alerts(cli_path: str | None = None) -> Config:
    """The config, or when it does not load, the parts of it that alerting needs (each bad one left
    at its default): a scheduled job whose config is broken still gets its failure to the operator."""
    try:
        return load(cli_path)
    except ConfigError:
        pass
    import yaml

    path, _ = resolve_path(cli_path)
    raw: Any = {}
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path and os.path.exists(path) else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = {}
    kept: dict = {}
    for key in _RESCUE_KEYS:
        if isinstance(raw, dict) and key in raw:
            try:
                _build(Config, {key: raw[key]}, "", str(path))
                kept[key] = raw[key]
            except ConfigError:
                continue
    cfg = _build(Config, kept, "", str(path))
    cfg.source = str(path)
    if not cfg.env_file:
        cfg.env_file = default_env_file(cfg)
    return cfg


# where upstream's stack lives on a droplet, newest layout first
COMPOSE_CANDIDATES = ("/root/catalyst-trading-system/docker-compose.yml", "/opt/catalyst/docker-compose.yml",
                      "/root/catalyst-trading-mcp/docker-compose.yml")
DEFAULT_ENV_FILE = "/opt/catalyst/.env"


def detect_compose_file(cfg: "Config") -> str | None:
    """runtime.compose_file, or the first candidate that exists (None: none does)."""
    if cfg.runtime.compose_file:
        return cfg.runtime.compose_file
    return next((c for c in COMPOSE_CANDIDATES if os.path.isfile(c)), None)


def default_env_file(cfg: "Config") -> str:
    """The .env compose reads is the one in the project directory: edit that one."""
    compose = detect_compose_file(cfg) if cfg.runtime.kind in ("compose", "command") else None
    return os.path.join(os.path.dirname(compose), ".env") if compose else DEFAULT_ENV_FILE


def _load_services(raw: Any, source: str, compose_redis=None) -> dict[str, ServiceConfig]:
    """The nine default services, with per-service overrides; a name outside the nine needs a port.
    Redis is a tenth, enabled by default only where the stack has it: a compose runtime whose file
    runs a published Redis (its service name is what a restart takes)."""
    services = {name: ServiceConfig(port=port) for name, port in DEFAULT_PORTS.items()}
    services[REDIS] = ServiceConfig(port=compose_redis.port if compose_redis else REDIS_PORT, kind="redis",
                                    container=compose_redis.name if compose_redis else None,
                                    password_env="REDIS_PASSWORD", enabled=compose_redis is not None)
    if raw is None:
        return services
    if not isinstance(raw, dict):
        raise ConfigError(source, "services", f"expected a mapping of service name to settings, got {type(raw).__name__}")
    for name, body in raw.items():
        where = f"services.{name}"
        if body is False:
            services.pop(str(name), None)
            continue
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ConfigError(source, where, "expected a mapping (port, host, health_path, ...) or false to remove it")
        if name not in services and not (body.get("extra") is True and "port" in body):
            raise ConfigError(source, where, f"unknown service; the nine are {', '.join(DEFAULT_PORTS)} "
                              f"(and {REDIS}; another one needs `extra: true` and a port)")
        base = dataclasses.asdict(services.get(name, ServiceConfig()))
        base.update(body)
        services[str(name)] = _build(ServiceConfig, base, where, source)
    return services
