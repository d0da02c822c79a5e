"""`catalyst-ops metrics [--days N] [--json] [--dry-run]`: paper-trading figures and the go/no-go verdict."""

from __future__ import annotations

import argparse
import logging

from catalyst_ops.argtypes import integer
from catalyst_ops.errors import OK, PROBLEM, USAGE, OpsError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "metrics", help="paper-trading metrics from closed trades and the GO/NO-GO verdict",
        description="Read closed trades through metrics.trades_query (default: the real schema's positions with "
        "status 'closed'), compute win rate, average win/loss, risk:reward (average win / |average loss|), profit "
        "factor, expectancy, max drawdown of the equity curve, trading days and the longest run of consecutive "
        "exchange sessions, and crashes recorded in the state DB; check the gates (metrics.*) and record the verdict "
        "for `mode live`. Never-filled closes (close_reason alpaca_*) are not trades; estimated closes and "
        "zero-P&L emergency closes are counted apart and left out unless metrics.include_estimates; other trades "
        "with NULL pnl or exit time are rejected (left out, counted). Without --days, the figures of trades "
        "closed more than an hour ago are kept in the state DB and reused while a fingerprint of those trades "
        "(count and a hash of every row) still matches; any change to them recomputes everything. Exit 0 GO, 1 NO-GO, 3 database unreachable.")
    p.add_argument("--days", type=integer(1, 36500), metavar="N", help="only trades closed in the last N days (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--dry-run", action="store_true", help="compute and print; do not record the verdict (the "
                   "figures' cache in the state DB is still kept up to date: it is derived data, not a decision)")
    p.add_argument("--fresh", action="store_true", help="compute every figure from the trades, not from the cache of "
                   "trades older than an hour (metrics.cache), and rebuild the cache")
    p.set_defaults(func=run, job="metrics")


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _gate_value(g) -> str:
    if g.value is None:
        return "-"
    if g.gate in ("win_rate", "max_drawdown"):
        return _pct(g.value)
    if g.gate == "risk_reward":
        return f"{g.value:.2f}"
    return str(g.value)


def _gate_threshold(g) -> str:
    t = _pct(g.threshold) if g.gate in ("win_rate", "max_drawdown") else str(g.threshold)
    return f"{g.op} {t}"


def _computed(cache: dict) -> str:
    state = cache.get("state")
    if state == "warm":
        return (f"trades before {cache['checkpoint'][:16].replace('T', ' ')} UTC from the cache (fingerprint of "
                f"{cache['cached_trades']} rows checked), later ones from the database")
    if state == "invalidated":
        return f"from scratch: {cache['reason']}; cache rebuilt"
    if state == "cold":
        return f"from scratch ({cache['reason']}); cache rebuilt"
    return f"from scratch (no cache: {cache.get('reason', '')})"


def run(ctx, args: argparse.Namespace) -> int:
    from catalyst_ops import metrics
    from catalyst_ops.fmt import table

    if args.days is not None and args.days < 1:
        raise OpsError("metrics: --days: expected a whole number of days >= 1", USAGE)
    rep = metrics.compute(ctx.cfg, ctx.db, args.days, fresh=args.fresh)
    if not args.dry_run:
        metrics.record(ctx.db, rep)
    if ctx.as_json:
        ctx.emit_json(rep.as_dict())
    else:
        period = (f"last {rep.days} days ({rep.since:%Y-%m-%d %H:%M} .. {rep.until:%Y-%m-%d %H:%M} UTC)" if rep.days
                  else f"all closed trades up to {rep.until:%Y-%m-%d %H:%M} UTC")
        ctx.out(f"period: {period}")
        ctx.out(f"computed: {_computed(rep.cache)}")
        est = rep.estimates
        apart = [["never filled (not trades)", rep.not_filled],
                 ["estimates (" + ("included" if est["included"] else "excluded") + ")",
                  f"{est['count']} ({est['estimated']} estimated closes, {est['emergency_zero']} zero-P&L emergency "
                  f"closes), pnl {_num(est['pnl'])}"]]
        if not rep.trades:
            ctx.out("no closed trades" + (f" ({rep.rejected} rejected: NULL pnl or exit time)" if rep.rejected else ""))
            if rep.not_filled or est["count"]:
                ctx.out(table(apart, ["LEFT OUT", "COUNT"]))
        else:
            rows = [
                ["trades", f"{rep.trades} ({rep.wins} wins, {rep.losses} losses, {rep.breakeven} breakeven)"],
                ["rejected (NULL pnl/exit time)", rep.rejected],
                *apart,
                ["win rate", _pct(rep.win_rate)],
                ["average win / loss", f"{_num(rep.avg_win)} / {_num(rep.avg_loss)}"],
                ["risk:reward", _num(rep.risk_reward) if rep.risk_reward is not None else "- (no losing trades)"],
                ["profit factor", _num(rep.profit_factor)],
                ["expectancy per trade", _num(rep.expectancy)],
                ["average R multiple", _num(rep.avg_r_multiple)],
                ["total pnl", _num(rep.total_pnl)],
                ["largest win / loss", f"{_num(rep.largest_win)} / {_num(rep.largest_loss)}"],
                ["equity", f"{_num(rep.starting_equity)} -> {_num(rep.ending_equity)}"],
                ["max drawdown", f"{_pct(rep.max_drawdown)} ({_num(rep.max_drawdown_amount)})"],
                ["trading days", rep.trading_days],
                ["longest consecutive run", f"{rep.consecutive_days} sessions ({rep.day_rule})"],
                ["crashes", f"{rep.crashes} ({rep.crash_detail.get('crashed_job_runs', 0)} crashed runs, "
                            f"{rep.crash_detail.get('unplanned_restarts', 0)} unplanned restarts)"],
            ]
            ctx.out(table(rows, ["METRIC", "VALUE"]))
        ctx.out("")
        ctx.out(table([[g.gate, _gate_value(g), _gate_threshold(g), "PASS" if g.passed else "FAIL"] for g in rep.gates],
                      ["GATE", "VALUE", "THRESHOLD", "RESULT"]))
        ctx.out("")
        ctx.out(f"verdict: {rep.verdict} ({metrics.estimates_line(rep)})"
                + ("" if not args.dry_run else " (dry run: not recorded)"))
    failed = [g.gate for g in rep.gates if not g.passed]
    ctx.summary = (f"{rep.verdict}: {rep.trades} trades, {rep.trades_estimated} of them estimates"
                   + (f"; failed: {', '.join(failed)}" if failed else ""))
    log.info(ctx.summary)
    return OK if rep.verdict == "GO" else PROBLEM
