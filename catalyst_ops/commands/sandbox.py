"""`catalyst-ops sandbox ...`: the stand-in trading stack for tests, demos and drills."""

from __future__ import annotations

from pathlib import Path

from catalyst_ops.errors import OK, PROBLEM

FAULT_HELP = ("down (process killed), hung (accepts, never answers), 500 (plain-text Internal Server Error), slow "
              "(--seconds), unhealthy (200 with status unhealthy; 503 on pattern/orchestration), degraded, "
              "db-disconnected (each service's answer without its database pool: healthy with \"database\": "
              "\"disconnected\" on scanner/news/pattern, degraded on technical, unhealthy on trading/reporting), "
              "cycle-failed / cycle-hang / start-supervised (400) / start-config-error (500) / start-slow (the start "
              "is acted on at once, answered after --seconds) (workflow), "
              "close-fail (broker, --symbols, --attempts N: only the first N closes of each fail), rate-limit "
              "(broker: the next --attempts N requests get 429), crash-start (the next --attempts N starts, default 1, exit at "
              "once without listening; kill the process to make it start), clear")


def register(sub) -> None:
    p = sub.add_parser("sandbox", help="the stand-in trading stack (nine services + broker) for tests and drills",
                       description="Run the stand-in of the nine Catalyst services and of the broker's v2 API over real "
                       "HTTP on localhost, with the real services' quirks and injectable faults. `up` writes "
                       "RUNDIR/ops.yml, a config that points catalyst-ops at it.")
    ss = p.add_subparsers(dest="sandbox_cmd", metavar="ACTION", required=True)

    def common(sp):
        sp.add_argument("--rundir", type=Path, default=None, help="state of the stand-in (default $CATALYST_STANDIN_DIR "
                        "or /tmp/catalyst-standin-UID)")
        return sp

    u = common(ss.add_parser("up", help="start every stand-in service (idempotent)"))
    u.add_argument("--base-port", type=int, default=5000, help="orchestration's port; the others keep their offsets "
                   "(scanner base+1 ... reporting base+9, broker base+10). Default 5000")
    u.add_argument("--profile", choices=["real", "plan"], default="real", help="contract profile served (default real)")
    u.add_argument("--stage-seconds", type=float, default=0.5, help="seconds per workflow stage (default 0.5)")
    u.add_argument("--database-url", help="DATABASE_URL written to the stand-in .env")
    u.add_argument("--only", nargs="*", metavar="SERVICE", help="start only these")
    u.set_defaults(func=run_up)
    common(ss.add_parser("down", help="stop every stand-in service")).set_defaults(func=run_down)
    st = common(ss.add_parser("status", help="list stand-in processes and faults"))
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)
    f = common(ss.add_parser("fault", help="inject a fault", description=f"Kinds: {FAULT_HELP}."))
    f.add_argument("service")
    f.add_argument("kind")
    f.add_argument("--sticky", action="store_true", help="survive restarts (a restart does not fix it)")
    f.add_argument("--seconds", type=float, help="delay for slow")
    f.add_argument("--symbols", help="comma-separated symbols whose close fails (close-fail)")
    f.add_argument("--attempts", type=int, help="close-fail: each symbol fails only its first N close attempts "
                   "(default: every attempt); rate-limit: how many requests get 429 (default 1); crash-start: how many starts crash (default 1)")
    f.set_defaults(func=run_fault)
    r = common(ss.add_parser("restart", help="restart one stand-in service, keeping its environment "
                             "(`docker compose restart`)"))
    r.add_argument("service")
    r.set_defaults(func=run_restart)
    rc = common(ss.add_parser("recreate", help="recreate services with a new environment from docker-compose.yml "
                              "and .env (`docker compose up -d --no-deps --force-recreate`)"))
    rc.add_argument("services", nargs="+", metavar="SERVICE")
    rc.set_defaults(func=run_recreate)
    ex = common(ss.add_parser("exec", help="`exec SERVICE printenv [KEY]`: the running service's environment"))
    ex.add_argument("service")
    ex.add_argument("command", choices=["printenv"])
    ex.add_argument("key", nargs="?")
    ex.set_defaults(func=run_exec)
    lg = common(ss.add_parser("logs", help="the service's output since its process was created"))
    lg.add_argument("service")
    lg.set_defaults(func=run_logs)
    rn = common(ss.add_parser("running", help="exit 0 while the service's process runs, 1 once it has exited "
                              "(its last output line says why); runtime.commands.running"))
    rn.add_argument("service")
    rn.set_defaults(func=run_running)
    b = common(ss.add_parser("seed-broker", help="set the stand-in broker's positions and open orders"))
    b.add_argument("--positions", default="", help="e.g. AAPL:10,MSFT:5")
    b.add_argument("--orders", default="", help="symbols with one open order each, e.g. AAPL,TSLA")
    b.add_argument("--account", choices=["paper", "live"], default="paper", help="which account (default paper)")
    b.set_defaults(func=run_seed)
    bm = common(ss.add_parser("broker-market", help="open or close the stand-in broker's market: closed, close "
                              "orders are accepted and wait; opening fills them"))
    bm.add_argument("state", choices=["open", "closed"])
    bm.add_argument("--account", choices=["paper", "live", "both"], default="both")
    bm.set_defaults(func=run_broker_market)
    s = common(ss.add_parser("serve", help="run one stand-in service in the foreground (used by up and by units)"))
    s.add_argument("service")
    s.set_defaults(func=run_serve)


def _rd(args) -> Path:
    from catalyst_ops.sandbox.manage import default_rundir

    return (args.rundir or default_rundir()).resolve()


def run_up(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    rd = _rd(args)
    s = manage.up(rd, args.base_port, args.profile, args.stage_seconds, args.database_url, only=args.only)
    print(f"stand-in stack up in {rd} (orchestration :{s['ports']['orchestration']} ... broker :{s['ports']['broker']})")
    print(f"use it with: catalyst-ops --config {rd / 'ops.yml'} status")
    return OK


def run_down(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    stopped = manage.down(_rd(args))
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return OK


def run_status(ctx, args) -> int:
    from catalyst_ops.fmt import table
    from catalyst_ops.sandbox import manage

    rows = manage.status(_rd(args))
    if args.json:
        ctx.emit_json(rows)
    else:
        print(table([[r["service"], r["port"], r["pid"] or "-", r["fault"] or "-", "yes" if r["sticky"] else ""]
                     for r in rows], ["SERVICE", "PORT", "PID", "FAULT", "STICKY"]))
    return OK


def run_fault(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    symbols = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else None
    manage.set_fault(_rd(args), args.service, args.kind, args.sticky, args.seconds, symbols, args.attempts)
    print(f"{args.service}: {args.kind}" + (" (sticky)" if args.sticky else ""))
    return OK


def run_restart(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    answered = manage.restart(_rd(args), args.service)
    # like `systemctl restart` of a unit that dies at once: the restart itself succeeded
    print(f"{args.service}: restarted" + ("" if answered else " (not answering yet)"))
    return OK


def run_recreate(ctx, args) -> int:
    from catalyst_ops.errors import CANNOT_RUN
    from catalyst_ops.sandbox import manage

    silent = manage.recreate(_rd(args), args.services)
    print(f"recreated: {', '.join(args.services)}" + (f" (not answering yet: {', '.join(silent)})" if silent else ""))
    return CANNOT_RUN if silent else OK


def run_exec(ctx, args) -> int:
    import sys

    from catalyst_ops.sandbox import manage

    env = manage.exec_env(_rd(args), args.service)
    if env is None:
        print(f"service {args.service!r} is not running", file=sys.stderr)
        return 1
    if args.key:
        if args.key not in env:
            return 1
        print(env[args.key])
    else:
        for k, v in env.items():
            print(f"{k}={v}")
    return OK


def run_logs(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    print(manage.logs(_rd(args), args.service), end="")
    return OK


def run_running(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    why = manage.exited(_rd(args), args.service)
    if why is None:
        print(f"{args.service}: running")
        return OK
    print(f"{args.service}: {why}")
    return PROBLEM


def run_seed(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    orders = [s for s in args.orders.split(",") if s.strip()]
    st = manage.seed_broker(_rd(args), manage.make_positions(args.positions), manage.make_orders(orders), False,
                            account=args.account)
    print(f"broker ({args.account}): {len(st['positions'])} positions, {len(st['orders'])} orders")
    return OK


def run_broker_market(ctx, args) -> int:
    from catalyst_ops.sandbox import manage

    for account in (("paper", "live") if args.account == "both" else (args.account,)):
        st = manage.seed_broker(_rd(args), account=account, market_open=args.state == "open")
        print(f"broker ({account}): market {args.state}; {len(st['positions'])} positions")
    return OK


def run_serve(ctx, args) -> int:
    from catalyst_ops.sandbox.server import serve

    serve(args.service, _rd(args))
    return OK
