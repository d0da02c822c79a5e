"""`catalyst-ops mode|ramp|account|positions|emergency-stop|resume`: trading mode, live ramp-up,
the broker's view, and the emergency stop."""

from __future__ import annotations

import sys

from catalyst_ops.errors import OK, PROBLEM, USAGE, OpsError


def register(sub) -> None:
    m = sub.add_parser("mode", help="show or switch the trading mode (paper | live) of the running stack",
                       description="show: the .env's mode, the broker account it selects, risk keys, ramp stage, halt "
                       "flag, latest metrics verdict and the mode the running trading service has (its environment, "
                       "or its AlpacaTrader log line). paper|live: check that the runtime passes TRADING_MODE to "
                       "trading.env_services (exit 2 naming the compose file and services otherwise, nothing "
                       "changed); set TRADING_MODE, ALPACA_BASE_URL, the per-mode key pair and the ramp stage's "
                       "limits in the .env (backup first, atomic write, mode 0600, every other line untouched); "
                       "recreate those services (a restart does not apply a .env); read TRADING_MODE back from each "
                       "and trading's AlpacaTrader line. Not confirmed: exit 1. live needs the latest metrics "
                       "verdict to be GO (override: --force --reason, recorded) and no halt flag.")
    ms = m.add_subparsers(dest="mode_cmd", metavar="ACTION", required=True)
    show = ms.add_parser("show", help="what mode the .env and the trading service are in")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_mode_show)
    for target in ("paper", "live"):
        p = ms.add_parser(target, help=f"switch to {target} trading")
        p.add_argument("--dry-run", action="store_true", help="print the .env changes and the restart; change nothing")
        p.add_argument("--json", action="store_true", help="print the outcome as JSON")
        p.add_argument("--no-restart", action="store_true", help="edit the .env only; do not recreate the services "
                       "(the running stack keeps its old mode)")
        if target == "live":
            p.add_argument("--force", action="store_true", help="go live without a GO verdict (needs --reason)")
        p.add_argument("--reason", help="why (recorded with the switch; required with --force)")
        p.set_defaults(func=run_mode_switch, target=target, job=f"mode-{target}")

    r = sub.add_parser("ramp", help="live ramp-up stages: status and advance",
                       description="Risk grows in stages (trading.stages: max positions, risk per trade, max daily "
                       "loss). advance moves to the next stage only when every gate of the current one holds: mode "
                       "live, no halt, trading.stages[N].min_days full NYSE sessions in the stage, and, over the "
                       "stage's live trades: no single trade lost more than the stage's risk per trade x "
                       "trading.capital, no day lost more than its max daily loss x trading.capital, win rate >= "
                       "trading.min_win_rate, risk:reward >= trading.min_risk_reward; entering stage "
                       "trading.drill_before_stage (3) also needs an emergency stop or `emergency-stop --drill` with "
                       "every step ok in the last trading.drill_max_age_days.")
    rs = r.add_subparsers(dest="ramp_cmd", metavar="ACTION", required=True)
    st = rs.add_parser("status", help="the current stage and its gate, gate by gate")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_ramp_status)
    adv = rs.add_parser("advance", help="move to the next stage if the gate holds")
    adv.add_argument("--dry-run", action="store_true", help="show the gates and the .env changes; change nothing")
    adv.add_argument("--json", action="store_true")
    adv.add_argument("--reason", help="note recorded with the advance")
    adv.set_defaults(func=run_ramp_advance, job="ramp-advance")

    a = sub.add_parser("account", help="the broker account (read-only, straight from the broker's API)",
                       description="GET /v2/account from the broker with the .env's ALPACA_* keys. Works with the "
                       "Catalyst stack down. Exit 3 if the broker cannot be reached.")
    a.add_argument("--json", action="store_true")
    a.add_argument("--account", choices=["paper", "live"], help="this account instead of the one TRADING_MODE selects "
                   "(uses ALPACA_PAPER_*/ALPACA_LIVE_* keys when the .env has them)")
    a.set_defaults(func=run_account)
    p = sub.add_parser("positions", help="open positions and orders at the broker (read-only)",
                       description="GET /v2/positions and the open orders from the broker with the .env's ALPACA_* "
                       "keys. Works with the Catalyst stack down. Exit 3 if the broker cannot be reached.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--account", choices=["paper", "live"], help="this account instead of the one TRADING_MODE selects")
    p.set_defaults(func=run_positions)

    e = sub.add_parser("emergency-stop", help="halt trading, flatten the account at the broker, suspend it, "
                       "back to paper",
                       description="In order, each step recorded, going on past a failed step: set the halt flag; "
                       "cancel open orders and poll until none is left (pending_cancel included); close all "
                       "positions and poll until flat (trading.close_attempts polls, trading.close_poll apart, "
                       "re-closing what was refused); only then suspend_trade at the broker (a suspended account "
                       "refuses closes); .env to paper (backup first); recreate trading.env_services and read back "
                       "paper; one critical alert; print a summary. On a closed market the closes are accepted but "
                       "wait for the open: 'flatten pending: N orders queued for the open', exit 1, not suspended; "
                       "market-open confirms the account flat at the next open and suspends it then (alerting if "
                       "it is not). Exit 1 naming the failed or pending steps. The broker steps need only the "
                       "broker. Safe to run twice.")
    e.add_argument("--reason", help="why (recorded and sent with the alert)")
    e.add_argument("--drill", action="store_true", help="a drill against the PAPER account while the live stack keeps "
                   "trading: cancel, close and suspend there, check (without writing) the halt flag, the .env and the "
                   "services' environments, deliver a [DRILL] alert, unsuspend; recorded for the ramp's drill gate")
    e.add_argument("--dry-run", action="store_true", help="print the steps (reading the broker); change nothing")
    e.add_argument("--json", action="store_true", help="print the steps as JSON")
    e.set_defaults(func=run_emergency)  # no `job`: its own record, so a broken state DB cannot stop it

    rz = sub.add_parser("resume", help="after an emergency stop: lift the broker's suspend_trade, clear the halt",
                        description="Lift suspend_trade at the broker, then clear the halt flag, and record who and "
                        "why. Needs --yes (or typing yes at a terminal). If the broker cannot be told, the halt stays. "
                        "The mode is not changed: going live again is `catalyst-ops mode live`.")
    rz.add_argument("--yes", action="store_true", help="confirm")
    rz.add_argument("--reason", help="why trading may resume (required; recorded)")
    rz.add_argument("--dry-run", action="store_true", help="print what would be done")
    rz.set_defaults(func=run_resume, job="resume")


# ---------------------------------------------------------------------- mode


def run_mode_show(ctx, args) -> int:
    from catalyst_ops import envfile, mode, ramp, stackenv

    cfg = ctx.cfg
    env = envfile.load(cfg.env_file)
    stage, entered = ramp.state(ctx.db)
    halt = ctx.db.halt_state()
    v = mode.latest_verdict(ctx.db)
    running, how = mode.reported_mode(cfg)
    t = cfg.trading
    account = stackenv.trading_mode(env)
    keys = [k for k in (t.max_positions_key, t.max_daily_loss_key, t.risk_per_trade_key) if k]
    data = {"env_file": cfg.env_file, "mode": env.get(stackenv.MODE_KEY), "account": account,
            "broker_url": t.live_url if account == "live" else t.paper_url, "base_url": env.get("ALPACA_BASE_URL"),
            "risk": {k: env.get(k) for k in keys}, "ramp_stage": stage, "ramp_started": entered is not None,
            "halted": bool(halt), "halt_reason": halt["reason"] if halt else None,
            "verdict": v.verdict, "running": running, "running_source": how}
    if ctx.as_json:
        ctx.emit_json(data)
        return OK
    ctx.out(f"mode:      {data['mode'] or '(unset: paper)'} ({cfg.env_file})")
    ctx.out(f"account:   {account} at {data['broker_url']} (chosen by TRADING_MODE, as the services do)")
    ctx.out("risk:      " + ", ".join(f"{k}={v or '(unset)'}" for k, v in data["risk"].items()))
    ctx.out(f"ramp:      stage {stage} of {len(t.stages)}" + ("" if entered else " (not started: no go-live yet)"))
    ctx.out(f"halt:      {'SET: ' + str(halt['reason']) if halt else 'clear'}")
    ctx.out(f"verdict:   {v.verdict or 'none'}")
    ctx.out(f"running:   {running or 'unknown'} ({how})")
    if running and running != account:
        ctx.out(f"note: the trading service runs {running} but the .env says {account}: the .env is applied only "
                f"when the services are recreated (`catalyst-ops mode {account}` does it)")
    return OK


def run_mode_switch(ctx, args) -> int:
    from catalyst_ops import mode

    res = mode.switch(ctx.cfg, ctx.db, args.target, force=getattr(args, "force", False), reason=args.reason,
                      dry_run=args.dry_run, restart=not args.no_restart)
    if ctx.as_json:
        ctx.emit_json({**res.data, "ok": res.code == OK, "messages": res.lines})
    else:
        for line in res.lines:
            ctx.out(line)
    ctx.summary = res.lines[0] if res.lines else ""
    return res.code


# ---------------------------------------------------------------------- ramp


def _gate_table(gates) -> str:
    from catalyst_ops.fmt import table

    return table([[g.gate, g.value, g.threshold, "pass" if g.passed else ("UNKNOWN" if g.unavailable else "FAIL"), g.detail]
                  for g in gates], ["GATE", "VALUE", "THRESHOLD", "RESULT", "DETAIL"])


def _stage_rows(cfg, current: int) -> str:
    from catalyst_ops.fmt import table

    return table([[("> " if i == current else "  ") + str(i), s.max_positions, f"{s.risk_per_trade * 100:g} %",
                   f"{s.max_daily_loss * 100:g} %", s.min_days] for i, s in enumerate(cfg.trading.stages, 1)],
                 ["STAGE", "MAX POSITIONS", "RISK/TRADE", "MAX DAILY LOSS", "MIN DAYS"])


def run_ramp_status(ctx, args) -> int:
    from catalyst_ops import envfile, ramp

    cfg = ctx.cfg
    env = envfile.load(cfg.env_file)
    stage, entered = ramp.state(ctx.db)
    last = stage >= len(cfg.trading.stages)
    gs = [] if last else ramp.gates(cfg, ctx.db, env)
    running = ramp.running_limits(cfg, stage)
    if ctx.as_json:
        ctx.emit_json({"stage": stage, "stages": len(cfg.trading.stages), "entered_at": entered, "final": last,
                       "values": ramp.env_values(cfg, stage) or ramp.file_values(cfg, stage), "running": running,
                       "gates": [g.as_dict() for g in gs], "can_advance": bool(gs) and all(g.passed for g in gs)})
        return OK
    from catalyst_ops.fmt import table

    ctx.out(_stage_rows(cfg, stage))
    ctx.out("")
    ctx.out(f"limits on the running stack (stage {stage} wants them):")
    ctx.out(table([[r["service"], r["limit"], r["running"] if r["running"] is not None else "-", r["stage_wants"],
                    "ok" if r["matches"] else "DIFFERS", r["source"]] for r in running],
                  ["SERVICE", "LIMIT", "RUNNING", "STAGE", "", "FROM"]))
    ctx.out("")
    if last:
        ctx.out(f"stage {stage} is the last one")
        return OK
    ctx.out(f"gate to leave stage {stage}:")
    ctx.out(_gate_table(gs))
    ctx.out("can advance" if all(g.passed for g in gs) else "cannot advance yet")
    return OK


def run_ramp_advance(ctx, args) -> int:
    from catalyst_ops import ramp

    res = ramp.advance(ctx.cfg, ctx.db, dry_run=args.dry_run, reason=args.reason)
    if ctx.as_json:
        ctx.emit_json({"stage": res.stage, "new_stage": res.new_stage, "ok": res.code == OK,
                       "gates": [g.as_dict() for g in res.gates], "messages": res.lines})
    else:
        if res.gates:
            ctx.out(f"gate to leave stage {res.stage}:")
            ctx.out(_gate_table(res.gates))
        for line in res.lines:
            ctx.out(line)
    ctx.summary = res.lines[0] if res.lines else ""
    return res.code


# ---------------------------------------------------------------------- broker views


def run_account(ctx, args) -> int:
    from catalyst_ops import broker

    b = broker.from_config(ctx.cfg, account=args.account)
    acct = b.account()
    if ctx.as_json:
        ctx.emit_json({**acct, "catalyst_account": b.account_kind, "catalyst_broker_url": b.base_url})
        return OK
    keys = ("account_number", "status", "currency", "equity", "cash", "buying_power", "trade_suspended_by_user",
            "trading_blocked", "pattern_day_trader")
    ctx.out(f"broker: {b.label}")
    for k in keys:
        if k in acct:
            ctx.out(f"{k + ':':26} {acct[k]}")
    return OK


def run_positions(ctx, args) -> int:
    from catalyst_ops import broker
    from catalyst_ops.fmt import table

    b = broker.from_config(ctx.cfg, account=args.account)
    pos = b.positions()
    try:
        orders = b.open_orders()
    except broker.Unsupported:
        orders = None
    if ctx.as_json:
        ctx.emit_json({"account": b.account_kind, "broker_url": b.base_url, "positions": pos, "open_orders": orders})
        return OK
    ctx.out(f"broker: {b.label}")
    ctx.out(table([[p.get("symbol"), p.get("qty"), p.get("side"), p.get("avg_entry_price"), p.get("market_value"),
                    p.get("unrealized_pl")] for p in pos],
                  ["SYMBOL", "QTY", "SIDE", "AVG ENTRY", "MARKET VALUE", "UNREALIZED P/L"]))
    ctx.out(f"{len(pos)} positions; " + (f"{len(orders)} open orders" if orders is not None else
                                        "open orders: not available from these broker routes"))
    if orders:
        ctx.out(table([[o.get("id"), o.get("symbol"), o.get("side"), o.get("qty"), o.get("type"), o.get("status")]
                       for o in orders], ["ORDER", "SYMBOL", "SIDE", "QTY", "TYPE", "STATUS"]))
    return OK


# ---------------------------------------------------------------------- emergency stop / resume


def run_emergency(ctx, args) -> int:
    from catalyst_ops import emergency
    from catalyst_ops.fmt import table
    from catalyst_ops.state import actor

    reason = (args.reason or "").strip() or ("emergency-stop drill" if args.drill else "operator emergency stop")
    if args.dry_run:
        lines = emergency.plan_drill(ctx.cfg, reason) if args.drill else emergency.plan(ctx.cfg, reason)
        if ctx.as_json:
            ctx.emit_json({"dry_run": True, "plan": lines})
        else:
            for line in lines:
                ctx.out(line)
        return OK
    res = emergency.stop(ctx.cfg, reason, actor(), drill=args.drill)
    failed, pending = res.failed, res.pending
    if args.drill:
        return _drill_outcome(ctx, res)
    if ctx.as_json:
        ctx.emit_json({"ok": res.ok, "failed_steps": failed, "pending_steps": pending,
                       "pending_orders": res.pending_orders, "run_id": res.run_id,
                       "steps": [s.as_dict() for s in res.steps]})
    else:
        ctx.out(table([[s.step, s.status.upper() if s.status != "ok" else "ok", s.detail] for s in res.steps],
                      ["STEP", "RESULT", "DETAIL"]))
        ctx.out("")
        outcome = []
        if pending:
            outcome.append(f"flatten pending: {res.pending_orders} orders queued for the open")
        if failed:
            outcome.append(f"FAILED steps: {', '.join(failed)}")
        ctx.out("emergency stop: " + ("; ".join(outcome) or "all steps ok")
                + "; trading stays halted until `catalyst-ops resume --yes --reason ...`")
    if pending:
        print(f"catalyst-ops: emergency stop: flatten pending: {res.pending_orders} orders queued for the open",
              file=sys.stderr)
    if failed:
        print(f"catalyst-ops: emergency stop: failed steps: {', '.join(failed)}", file=sys.stderr)
    return OK if res.ok else PROBLEM


def _drill_outcome(ctx, res) -> int:
    from catalyst_ops.fmt import table

    bad = res.failed + res.pending
    if ctx.as_json:
        ctx.emit_json({"drill": True, "ok": res.ok, "failed_steps": res.failed, "pending_steps": res.pending,
                       "run_id": res.run_id, "steps": [s.as_dict() for s in res.steps]})
    else:
        ctx.out(table([[s.step, s.status.upper() if s.status != "ok" else "ok", s.detail] for s in res.steps],
                      ["STEP", "RESULT", "DETAIL"]))
        ctx.out("")
        ctx.out(f"emergency-stop drill #{res.run_id}: " + ("every step ok; recorded (the ramp's drill gate counts it)"
                                                            if res.ok else f"NOT passed: {', '.join(bad)}"))
    if bad:
        print(f"catalyst-ops: emergency-stop drill: steps not ok: {', '.join(bad)}", file=sys.stderr)
    ctx.summary = "drill ok" if res.ok else f"drill failed: {', '.join(bad)}"
    return OK if res.ok else PROBLEM


def run_resume(ctx, args) -> int:
    from catalyst_ops import emergency
    from catalyst_ops.state import actor

    reason = (args.reason or "").strip()
    if not reason:
        raise OpsError("resume: --reason TEXT is required (who resumed and why is recorded)", USAGE)
    if not args.dry_run and not args.yes:
        if sys.stdin.isatty():
            answer = input("Lift the broker's suspend_trade and clear the halt flag? Type yes: ")
            if answer.strip().lower() != "yes":
                ctx.out("not confirmed; nothing changed")
                return USAGE
        else:
            raise OpsError("resume: add --yes to confirm (lifts the broker's suspend_trade and clears the halt flag)",
                           USAGE)
    ok, lines = emergency.resume(ctx.cfg, ctx.db, reason, actor(), dry_run=args.dry_run)
    for line in lines:
        ctx.out(line)
    ctx.summary = lines[-1] if ok and lines else (lines[0] if lines else "")
    return OK if ok else PROBLEM
