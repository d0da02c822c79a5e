"""The broker's trading API (Alpaca v2), spoken directly.

The real trading service has no account, order-list or close-all route, and an emergency
stop must work with the whole stack down, so account, positions and the emergency steps
talk to the broker itself with the keys and base URL of the stack's `.env`
(ALPACA_API_KEY, ALPACA_SECRET_KEY, ALPACA_BASE_URL). Plain `requests`, not alpaca-py:
six endpoints, no extra dependency on the droplet, and the same code talks to the
stand-in broker.

Paths come from the contract profile's `broker:` section. Kind `alpaca` (profile real)
is the broker's own API; kind `trading-service` (profile plan) is the plan's
`:5005/api/v1/{account,positions,close-all}`, which goes through the trading service,
has no order or suspend route and so cannot do every emergency step (those steps fail
and say so).
"""

from __future__ import annotations

import logging
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
    def __init__(self, kind: str, base_url: str, paths: dict, headers: dict, timeout: float, label: str):
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        self.paths = paths
        self.headers = headers
        self.timeout = timeout
        self.label = label

    # ------------------------------------------------------------ plumbing
    def _path(self, name: str) -> str:
        path = self.paths.get(name)
        if not path:
            raise Unsupported(f"broker ({self.label}): the profile's broker routes have no {name!r} route")
        return path

    def _call(self, method: str, path: str, what: str, json_body: Any = None, params: dict | None = None,
              ok: tuple = (200, 204, 207)) -> Any:
        url = self.base_url + path
        resp = httpjson.request(method, url, json_body=json_body, params=params, headers=self.headers,
                                timeout=self.timeout, what=f"broker {what}")
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
        body = self._call("DELETE", self._path("orders"), "cancel orders")
        return body if isinstance(body, list) else []

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


def from_config(cfg, env: dict | None = None) -> Broker:
    """Build the client from the profile's broker routes and the stack's .env; registers the keys as secrets."""
    prof = dict(cfg.profile_data.get("broker") or {})
    kind = prof.get("kind", "alpaca")
    paths = {k: prof.get(k) for k in ("account", "positions", "orders", "close_all", "configurations")}
    timeout = cfg.trading.broker_timeout
    if kind == "trading-service":
        service = prof.get("base_service") or cfg.trading.service
        return Broker(kind, cfg.service_url(service), paths, {"Accept": "application/json"}, timeout,
                      f"{service} service")
    if kind != "alpaca":
        raise ConfigError(cfg.source, "profile broker.kind", f"expected alpaca or trading-service, got {kind!r}")
    env = cfg.env() if env is None else env
    key, secret = env.get(KEY_ID, ""), env.get(SECRET, "")
    opslog.add_secret(key)
    opslog.add_secret(secret)
    for name, value in ((KEY_ID, key), (SECRET, secret)):
        if not value:
            raise ConfigError(cfg.env_file, name, "expected the broker's API key (Alpaca trading API v2)")
    base = env.get(BASE_URL) or (cfg.trading.live_url if env.get("TRADING_MODE") == "live" else cfg.trading.paper_url)
    base = base.rstrip("/")
    if base.endswith("/v2"):  # some .env files carry the version; the profile's paths do too
        base = base[:-3]
    if not base.startswith(("http://", "https://")):
        raise ConfigError(cfg.env_file, BASE_URL, f"expected an http(s) URL, got {base!r}")
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret, "Accept": "application/json"}
    return Broker(kind, base, paths, headers, timeout, base)
