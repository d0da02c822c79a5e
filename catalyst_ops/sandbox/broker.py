"""Stand-in of Alpaca's trading API v2, with the rules that decide whether an emergency stop works.

Two accounts, as Alpaca has: paper at the base URL and live under `/live`, each with its own
key pair (a pair is refused by the other account, 403). State per account in
`broker.json` / `broker-live.json` of the run directory. The rules it keeps (DESIGN.md, "What
the real code does"):

- `suspend_trade` refuses every new order with 403, and a position close is a new order: a
  DELETE of positions while suspended answers 207 with a 403 item per position;
- DELETE /v2/orders answers 207, one item per order, and the orders go to `pending_cancel`
  first; they become `canceled` `cancel_delay` seconds later (an order still held by a
  pending cancel keeps its quantity, so a close of that position is refused meanwhile);
- on a closed market (`market_open: false`), close orders are accepted and stay open until the
  market opens (`sandbox broker-market open` fills them);
- DELETE /v2/positions answers 207 with {symbol, status, body} per position;
- the `rate-limit` fault answers 429 to the next N requests.
"""

from __future__ import annotations

import re
import time

OPEN_STATUSES = ("new", "accepted", "pending_new", "accepted_for_bidding", "held", "partially_filled")
SUSPENDED = {"code": 40310000, "message": "new orders are rejected by user request"}
ACCOUNTS = {"paper": {"number": "PA0000STANDIN", "state": "broker.json"},
            "live": {"number": "LA0000STANDIN", "state": "broker-live.json"}}
LIVE_PREFIX = "/live"


def default_state() -> dict:
    return {"positions": [], "orders": [], "suspend_trade": False, "market_open": True, "equity": "100000",
            "cash": "100000", "order_seq": 0, "cancel_delay": 0.3}


def split_account(path: str) -> tuple[str, str]:
    """('live', '/v2/...') for /live/v2/..., else ('paper', path)."""
    if path == LIVE_PREFIX or path.startswith(LIVE_PREFIX + "/"):
        return "live", path[len(LIVE_PREFIX):] or "/"
    return "paper", path


class Account:
    """One account's rules over its state dict (the caller loads, locks and saves)."""

    def __init__(self, name: str, st: dict):
        self.name = name
        self.st = st
        for k, v in default_state().items():
            st.setdefault(k, v)
        self.settle()

    # ------------------------------------------------------------------ time passes
    def settle(self) -> None:
        now = time.time()
        for o in self.st["orders"]:
            # a seeded pending_cancel with no time of its own stays pending (a broker that is slow to cancel)
            if o["status"] == "pending_cancel" and "cancel_at" in o and now >= o["cancel_at"]:
                o["status"] = "canceled"
                o["canceled_at"] = now
        if self.st["market_open"]:
            self.fill_queued()

    def fill_queued(self) -> None:
        """Market orders that were waiting for the open fill (a close removes its position)."""
        for o in self.st["orders"]:
            if o["status"] in OPEN_STATUSES and o.get("type") == "market":
                o["status"] = "filled"
                o["filled_at"] = time.time()
                if o.get("position_intent") == "close":
                    self.st["positions"] = [p for p in self.st["positions"] if p["symbol"] != o["symbol"]]

    # ------------------------------------------------------------------ helpers
    def _order(self, symbol: str, qty: str, side: str, typ: str, intent: str | None = None) -> dict:
        self.st["order_seq"] += 1
        o = {"id": f"{self.name}-order-{self.st['order_seq']}", "client_order_id": f"standin-{self.st['order_seq']}",
             "symbol": symbol, "qty": str(qty), "side": side, "type": typ, "time_in_force": "day",
             "status": "accepted", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if intent:
            o["position_intent"] = intent
        self.st["orders"].append(o)
        return o

    def open_orders(self) -> list[dict]:
        return [o for o in self.st["orders"] if o["status"] in OPEN_STATUSES + ("pending_cancel",)]

    def holding_orders(self, pos: dict) -> list[dict]:
        """Open orders that hold the position's shares: those on the closing side (a pending cancel
        still holds them until it is done)."""
        closing = "buy" if pos.get("side") == "short" else "sell"
        return [o for o in self.open_orders() if o["symbol"] == pos["symbol"] and o.get("side") == closing]

    def _cancel_open(self, symbol: str | None = None) -> list[dict]:
        out = []
        for o in self.st["orders"]:
            if o["status"] in OPEN_STATUSES and (symbol is None or o["symbol"] == symbol):
                o["status"] = "pending_cancel"
                o["cancel_at"] = time.time() + float(self.st.get("cancel_delay", 0.3))
                out.append({"id": o["id"], "status": 200})
        return out

    def close(self, pos: dict, failing) -> tuple[int, dict]:
        sym = pos["symbol"]
        if self.st["suspend_trade"]:
            return 403, dict(SUSPENDED)
        if failing(sym):
            return 500, {"code": 50010000, "message": "internal error closing position"}
        holding = self.holding_orders(pos)
        held = sum(float(o["qty"]) for o in holding)
        if held > 0:
            avail = max(0.0, float(pos["qty"]) - held)
            return 403, {"code": 40310000, "message": f"insufficient qty available for order (requested: {pos['qty']}, "
                         f"available: {avail:g})", "symbol": sym, "existing_qty": pos["qty"],
                         "held_for_orders": f"{held:g}", "available": f"{avail:g}",
                         "related_orders": [o["id"] for o in holding]}
        side = "buy" if pos.get("side") == "short" else "sell"
        o = self._order(sym, pos["qty"], side, "market", intent="close")
        if self.st["market_open"]:
            self.fill_queued()
        return 200, dict(o)

    # ------------------------------------------------------------------ the API
    def handle(self, method: str, path: str, params: dict, body, failing) -> tuple[int, dict | list]:
        """One request; `failing(symbol)` says whether a close of that symbol fails now (asked only for a close)."""
        st = self.st
        if path == "/v2/account" and method == "GET":
            return 200, {"id": f"standin-{self.name}-account", "account_number": ACCOUNTS[self.name]["number"],
                         "status": "ACTIVE", "currency": "USD", "equity": st["equity"], "cash": st["cash"],
                         "buying_power": st["cash"], "trade_suspended_by_user": st["suspend_trade"],
                         "trading_blocked": False, "pattern_day_trader": False}
        if path == "/v2/account/configurations":
            if method == "PATCH" and isinstance(body, dict) and "suspend_trade" in body:
                st["suspend_trade"] = bool(body["suspend_trade"])
            return 200, {"suspend_trade": st["suspend_trade"], "dtbp_check": "entry", "no_shorting": False,
                         "trade_confirm_email": "all"}
        if path == "/v2/positions" and method == "GET":
            return 200, st["positions"]
        if path == "/v2/orders" and method == "GET":
            status = params.get("status", "open")
            if status == "all":
                return 200, st["orders"]
            if status == "closed":
                return 200, [o for o in st["orders"] if o not in self.open_orders()]
            return 200, self.open_orders()
        one_order = re.fullmatch(r"/v2/orders/([A-Za-z0-9._-]+)", path)
        if one_order and method == "GET":
            found = [o for o in st["orders"] if o["id"] == one_order.group(1)]
            return (200, found[0]) if found else (404, {"code": 40410000, "message": "order not found"})
        if path == "/v2/orders" and method == "POST":
            if st["suspend_trade"]:
                return 403, dict(SUSPENDED)
            body = body or {}
            # limit orders rest at the broker; the stand-in never fills them
            return 200, self._order(body.get("symbol"), body.get("qty", 1), body.get("side", "buy"),
                                    body.get("type", "limit") if body.get("type") != "market" else "limit")
        if path == "/v2/orders" and method == "DELETE":
            return 207, self._cancel_open()
        one = re.fullmatch(r"/v2/positions/([A-Za-z0-9.]+)", path)
        if one and method == "DELETE":
            sym = one.group(1).upper()
            pos = [p for p in st["positions"] if p["symbol"] == sym]
            if not pos:
                return 404, {"code": 40410000, "message": "position does not exist"}
            return self.close(pos[0], failing)
        if path == "/v2/positions" and method == "DELETE":
            if params.get("cancel_orders") not in (None, "true", "false"):
                return 422, {"code": 40010001, "message": "invalid cancel_orders value"}
            if params.get("cancel_orders") == "true":
                self._cancel_open()
            out = []
            for p in list(st["positions"]):
                code, b = self.close(p, failing)
                out.append({"symbol": p["symbol"], "status": code, "body": b})
            return 207, out
        return 404, {"code": 40410000, "message": "endpoint not found"}
