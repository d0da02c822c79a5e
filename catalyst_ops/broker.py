"""The broker's trading API (Alpaca v2), spoken directly.

The real trading service has no account, order-list or close-all route, and an emergency
stop must work with the whole stack down, so account, positions and the emergency steps
talk to the broker itself with the stack's `.env` keys. The account is chosen the way the
services choose it (upstream's AlpacaTrader): TRADING_MODE paper -> trading.paper_url, any
other word -> trading.live_url, with ALPACA_API_KEY / ALPACA_SECRET_KEY. ALPACA_BASE_URL is
read by no service, so it is not read here either (a disagreeing one is warned about): we
must watch and close the account that trades. Plain `requests`, not alpaca-py: a handful of
endpoints, no extra dependency on the droplet, and the same code talks to the stand-in.

Alpaca answers DELETE /v2/orders and DELETE /v2/positions with 207 and a status per item;
each item is read. 429 (rate limited) is retried, trading.broker_retries times, waiting
Retry-After (capped at trading.broker_retry_max_wait) or a doubling backoff.

Paths come from the contract profile's `broker:` section. Kind `alpaca` (profile real)
is the broker's own API; kind `trading-service` (profile plan) is the plan's
`:5005/api/v1/{account,positions,close-all}`, which goes through the trading service,
has no order or suspend route and so cannot do every emergency step (those steps fail
and say so).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from catalyst_ops import httpjson
from catalyst_ops import log as opslog
from catalyst_ops.errors import CANNOT_RUN, USAGE, ConfigError, OpsError

log = logging.getLogger(__name__)

KEY_ID = "ALPACA_API_KEY"
SECRET = "ALPACA_SECRET_KEY"
BASE_URL = "ALPACA_BASE_URL"

OPEN_ORDER_STATUSES = ("new", "accepted", "partially_filled", "pending_new", "accepted_for_bidding", "held",
                       "pending_replace", "pending_cancel")


class BrokerError(OpsError):
    """The broker answered with an error (or not at all)."""

    exit_code = CANNOT_RUN

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Unsupported(OpsError):
    """The configured broker routes have no such operation (the plan profile's trading service)."""

    exit_code = USAGE


@dataclass
class CloseResult:
    symbol: str
    ok: bool
    status: int | None
    message: str = ""


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body.get("error") or "")[:200]
    if isinstance(body, str):
        return body.strip()[:200]
    return ""


class Broker:
    def __init__(self, kind: str, base_url: str, paths: dict, headers: dict, timeout: float, label: str,
                 retries: int = 3, retry_max_wait: float = 10.0, account: str | None = None):
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        self.paths = paths
        self.headers = headers
        self.timeout = timeout
        self.label = label
        self.retries = retries
        self.retry_max_wait = retry_max_wait
        self.account_kind = account  # "paper" | "live" | None (not chosen by us)

    # ------------------------------------------------------------ plumbing
    def _path(self, name: str) -> str:
        path = self.paths.get(name)
        if not path:
            raise Unsupported(f"broker ({self.label}): the profile's broker routes have no {name!r} route")
        return path

    def _call(self, method: str, path: str, what: str, json_body: Any = None, params: dict | None = None,
              ok: tuple = (200, 204, 207)) -> Any:
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            resp = httpjson.request(method, url, json_body=json_body, params=params, headers=self.headers,
                                    timeout=self.timeout, what=f"broker {what}")
            if resp.status != 429 or attempt == self.retries:
                break
            wait = _retry_after(resp.headers, 0.5 * 2 ** attempt, self.retry_max_wait)
            log.warning("broker %s: HTTP 429 (rate limited); retry %d of %d in %.1fs", what, attempt + 1,
                        self.retries, wait)
            time.sleep(wait)
        if resp.status == 429:
            raise BrokerError(f"broker {what}: HTTP 429: still rate limited after {self.retries + 1} tries", 429)
        if resp.status not in ok:
            msg = _message(resp.body)
            auth = resp.status == 401 or (resp.status == 403 and msg.lower().startswith("forbidden"))
            hint = " (check ALPACA_API_KEY / ALPACA_SECRET_KEY in the .env)" if auth else ""
            raise BrokerError(f"broker {what}: HTTP {resp.status}{': ' + msg if msg else ''}{hint}", resp.status)
        return resp.body

    # ------------------------------------------------------------ reads
    def account(self) -> dict:
        body = self._call("GET", self._path("account"), "account")
        if not isinstance(body, dict):
            raise BrokerError("broker account: expected a JSON object")
        return body

    def positions(self) -> list[dict]:
        body = self._call("GET", self._path("positions"), "positions")
        if isinstance(body, dict) and isinstance(body.get("positions"), list):
            body = body["positions"]  # the plan's wrapper
        if not isinstance(body, list):
            raise BrokerError("broker positions: expected a JSON list")
        return body

    def open_orders(self) -> list[dict]:
        body = self._call("GET", self._path("orders"), "open orders", params={"status": "open", "limit": 500})
        if not isinstance(body, list):
            raise BrokerError("broker orders: expected a JSON list")
        return [o for o in body if str(o.get("status", "new")) in OPEN_ORDER_STATUSES]

    def configurations(self) -> dict:
        body = self._call("GET", self._path("configurations"), "account configurations")
        return body if isinstance(body, dict) else {}

    # ------------------------------------------------------------ changes
    def set_suspend_trade(self, suspended: bool) -> bool:
        """PATCH suspend_trade and return what the broker now says (it must echo the new value)."""
        body = self._call("PATCH", self._path("configurations"), "suspend_trade",
                          json_body={"suspend_trade": suspended})
        now = body.get("suspend_trade") if isinstance(body, dict) else None
        if now is not suspended:
            raise BrokerError(f"broker suspend_trade: asked for {suspended}, broker reports {now!r}")
        return now

    def cancel_orders(self) -> list[dict]:
        """DELETE /v2/orders: one item per order (207), each {id, status, body}."""
        body = self._call("DELETE", self._path("orders"), "cancel orders")
        return body if isinstance(body, list) else []

    def order(self, order_id: str) -> dict:
        body = self._call("GET", f"{self._path('orders').rstrip('/')}/{order_id}", f"order {order_id}")
        return body if isinstance(body, dict) else {}

    def close_all(self) -> list[CloseResult]:
        path = self._path("close_all")
        method = "DELETE" if self.kind == "alpaca" else "POST"
        body = self._call(method, path, "close all positions")
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            body = body["results"]
        return [_close_result(item) for item in (body if isinstance(body, list) else [])]

    def close_one(self, symbol: str) -> CloseResult:
        """Close one position (DELETE /v2/positions/SYMBOL); the plan's routes have none: close-all again."""
        if self.kind != "alpaca":
            results = [r for r in self.close_all() if r.symbol == symbol]
            return results[0] if results else CloseResult(symbol, True, None, "not in the close-all answer")
        base = self._path("positions").rstrip("/")
        try:
            body = self._call("DELETE", f"{base}/{symbol}", f"close {symbol}")
        except BrokerError as exc:
            if exc.status == 404:  # "position does not exist": it closed meanwhile, which is what was asked
                return CloseResult(symbol, True, 404, "already closed")
            return CloseResult(symbol, False, exc.status, str(exc))
        return CloseResult(symbol, True, 200, _message(body))


def _close_result(item: Any) -> CloseResult:
    if not isinstance(item, dict):
        return CloseResult(str(item), False, None, "unexpected item in the broker's answer")
    status = item.get("status")
    try:
        code = int(status)
    except (TypeError, ValueError):
        code = None
    sym = str(item.get("symbol") or (item.get("body") or {}).get("symbol") or "?")
    ok = code is not None and 200 <= code < 300
    return CloseResult(sym, ok, code, "" if ok else _message(item.get("body")) or f"status {status}")


def _retry_after(headers: dict, default: float, cap: float) -> float:
    """Seconds to wait after a 429: Retry-After, else Alpaca's X-Ratelimit-Reset (epoch seconds), else
    the backoff; never more than `cap`."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        if "retry-after" in h:
            return max(0.0, min(float(h["retry-after"]), cap))
        if "x-ratelimit-reset" in h:
            return max(0.0, min(float(h["x-ratelimit-reset"]) - time.time(), cap))
    except ValueError:
        pass
    return min(default, cap)


def item_ok(item: Any) -> bool:
    """One item of a 207 answer: its own HTTP status decides."""
    try:
        return 200 <= int(item.get("status")) < 300
    except (AttributeError, TypeError, ValueError):
        return False


PER_ACCOUNT_KEYS = {"paper": ("ALPACA_PAPER_API_KEY", "ALPACA_PAPER_SECRET_KEY"),
                    "live": ("ALPACA_LIVE_API_KEY", "ALPACA_LIVE_SECRET_KEY")}


def from_config(cfg, env: dict | None = None, account: str | None = None) -> Broker:
    """Build the client from the profile's broker routes and the stack's .env; registers the keys as secrets.

    account None: the account the services trade (TRADING_MODE) with ALPACA_API_KEY/SECRET. "paper" or
    "live": that account explicitly (an emergency stop's queued closes stay in the account it flattened
    after the .env went back to paper), with the per-account pair when the .env has one."""
    prof = dict(cfg.profile_data.get("broker") or {})
    kind = prof.get("kind", "alpaca")
    paths = {k: prof.get(k) for k in ("account", "positions", "orders", "close_all", "configurations")}
    timeout = cfg.trading.broker_timeout
    if kind == "trading-service":
        service = prof.get("base_service") or cfg.trading.service
        return Broker(kind, cfg.service_url(service), paths, {"Accept": "application/json"}, timeout,
                      f"{service} service", cfg.trading.broker_retries, cfg.trading.broker_retry_max_wait)
    if kind != "alpaca":
        raise ConfigError(cfg.source, "profile broker.kind", f"expected alpaca or trading-service, got {kind!r}")
    from catalyst_ops import stackenv

    env = cfg.env() if env is None else env
    raw_mode = env.get(stackenv.MODE_KEY, "")
    trading = stackenv.trading_mode(env)
    if account is None:
        account = trading
        if raw_mode and raw_mode.lower() not in ("paper", "live"):
            log.warning("%s: TRADING_MODE=%r is not paper: the services trade LIVE with it, so this is the live "
                        "account", cfg.env_file, raw_mode)
    names = (KEY_ID, SECRET)
    if account != trading and all(env.get(k) for k in PER_ACCOUNT_KEYS[account]):
        names = PER_ACCOUNT_KEYS[account]
    key, secret = env.get(names[0], ""), env.get(names[1], "")
    opslog.add_secret(key)
    opslog.add_secret(secret)
    for name, value in zip(names, (key, secret)):
        if not value:
            raise ConfigError(cfg.env_file, name, "expected the broker's API key (Alpaca trading API v2)")
    base = _base(cfg.trading.live_url if account == "live" else cfg.trading.paper_url)
    if not base.startswith(("http://", "https://")):
        key_name = "trading.live_url" if account == "live" else "trading.paper_url"
        raise ConfigError(cfg.source, key_name, f"expected an http(s) URL, got {base!r}")
    stale = env.get(BASE_URL)
    if stale and _base(stale) != base and account == trading:
        log.warning("%s: ALPACA_BASE_URL=%s is read by no service; TRADING_MODE=%s puts the stack on %s, so that is "
                    "the account used", cfg.env_file, stale, raw_mode or "(unset: paper)", base)
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret, "Accept": "application/json"}
    return Broker(kind, base, paths, headers, timeout, f"{account} account at {base}",
                  cfg.trading.broker_retries, cfg.trading.broker_retry_max_wait, account)


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[:-3] if url.endswith("/v2") else url  # some .env files carry the version; the paths do too
