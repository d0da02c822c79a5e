"""What a closed position's `close_reason` says about its P&L (upstream services at 63de899).

A row of `positions` with `status = 'closed'` is not always a trade:

- never filled: the trading service's order sync closes an entry whose order ended unfilled
  with `close_reason` `alpaca_expired`, `alpaca_canceled`, `alpaca_rejected` or
  `alpaca_done_for_day` and leaves `realized_pnl` NULL. Nothing was bought: not a trade,
  and not a damaged row either;
- estimated: the ghost check closes a position the broker no longer holds with a guessed
  exit (`stop_loss_estimated`, `take_profit_estimated`, `closed_no_exit_price`, the last one
  at the entry price, so P&L 0). Its P&L is a guess;
- zero-P&L emergency close: risk-manager's own emergency stop writes `exit_price =
  entry_price, realized_pnl = 0` and sets NO close_reason (it marks `alpaca_status =
  'closed_by_emergency_stop'`, a column the orders migration drops), so the signature is
  what is left: close_reason NULL, P&L exactly 0, exit price = entry price. The broker's fill
  was something else: a guess too;
- everything else (`EXIT`, `STOP_LOSS`, `TAKE_PROFIT` from filled exit orders,
  `STOP_LOSS_HIT: ...` from the fallback close, `alpaca_position_closed` priced at the
  market) is a trade.

`classify()` (one day's positions, in Python) and `sql_code()` (metrics and `db check`, in
PostgreSQL) are the same rule; a test holds them to each other.
"""

from __future__ import annotations

UNFILLED_REASONS = ("alpaca_expired", "alpaca_canceled", "alpaca_rejected", "alpaca_done_for_day")
ESTIMATED_REASONS = ("stop_loss_estimated", "take_profit_estimated", "closed_no_exit_price")

TRADE = "trade"
UNFILLED = "not_filled"
ESTIMATED = "estimated"
EMERGENCY_ZERO = "emergency_zero"
ESTIMATES = (ESTIMATED, EMERGENCY_ZERO)  # closes whose P&L is not the broker's fill


def _num(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def classify(close_reason, pnl, entry_price=None, exit_price=None, unfilled=UNFILLED_REASONS,
             estimated=ESTIMATED_REASONS) -> str:
    if close_reason in unfilled:
        return UNFILLED
    if close_reason in estimated:
        return ESTIMATED
    p, e, x = _num(pnl), _num(entry_price), _num(exit_price)
    if close_reason is None and p == 0 and e is not None and x == e:
        return EMERGENCY_ZERO
    return TRADE


CODES = {TRADE: 0, ESTIMATED: 1, EMERGENCY_ZERO: 2, UNFILLED: 3}


def sql_code(reason: str, pnl: str, entry: str, exit_: str) -> str:
    """The same rule as a SQL expression over the given column expressions, giving the small
    integer of CODES (cheaper to carry through a sort of a million rows than a word). The lists
    are the query parameters %(unfilled)s and %(estimated)s (text arrays, `params()`)."""
    return (f"CASE WHEN {reason} IS NULL THEN CASE WHEN {pnl} = 0 AND {exit_} = {entry} THEN {CODES[EMERGENCY_ZERO]}"
            f" ELSE {CODES[TRADE]} END"
            f" WHEN {reason} = ANY(%(unfilled)s::text[]) THEN {CODES[UNFILLED]}"
            f" WHEN {reason} = ANY(%(estimated)s::text[]) THEN {CODES[ESTIMATED]} ELSE {CODES[TRADE]} END")


def params(cfg) -> dict:
    return {"unfilled": list(cfg.metrics.unfilled_close_reasons), "estimated": list(cfg.metrics.estimated_close_reasons)}
