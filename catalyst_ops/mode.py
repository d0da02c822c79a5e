"""Trading mode (paper | live): the stack's .env, applied to the running services and confirmed.

A switch sets TRADING_MODE (the only key the services choose paper or live by), ALPACA_BASE_URL
(trading.paper_url / live_url; no service reads it, kept consistent for people reading the
file) and the current ramp stage's limits; when the .env also holds per-mode keys
(ALPACA_PAPER_API_KEY / ALPACA_PAPER_SECRET_KEY, ALPACA_LIVE_API_KEY / ALPACA_LIVE_SECRET_KEY)
the matching pair is copied into ALPACA_API_KEY / ALPACA_SECRET_KEY, since Alpaca's paper and
live accounts have different keys. The edit, its application to the containers and the
confirmation belong to stackenv; the order here:

 1. the .env lock, then the halt flag and the metrics verdict (live only) inside it, so an
    emergency stop's paper write can never be overtaken by a live switch that checked first;
 2. the runtime must pass TRADING_MODE to every trading.env_services service, or nothing is
    written (exit 2 naming the compose file, the services and the lines to add);
 3. backup + atomic write;
 4. recreate those services, wait for health, read back TRADING_MODE from each running
    service and trading's `AlpacaTrader ... (PAPER|LIVE mode)` log line. Not confirmed is a
    failure (exit 1), never a success.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from catalyst_ops import envfile, stackenv
from catalyst_ops.errors import PROBLEM, USAGE, OpsError
from catalyst_ops.stackenv import MODE_KEY

log = logging.getLogger(__name__)

MODES = ("paper", "live")
PER_MODE_KEYS = {"paper": ("ALPACA_PAPER_API_KEY", "ALPACA_PAPER_SECRET_KEY"),
                 "live": ("ALPACA_LIVE_API_KEY", "ALPACA_LIVE_SECRET_KEY")}


@dataclass
class Verdict:
    ok: bool
    verdict: str | None
    computed_at: float | None
    failing: list[dict] = field(default_factory=list)
    message: str = ""


def latest_verdict(db) -> Verdict:
    row = db.one("SELECT * FROM metrics_verdicts ORDER BY computed_at DESC, id DESC LIMIT 1")
    if row is None:
        return Verdict(False, None, None, [], "no metrics verdict yet (run `catalyst-ops metrics`)")
    try:
        gates = json.loads(row["gates_json"] or "[]")
    except ValueError:
        gates = []
    failing = [g for g in gates if isinstance(g, dict) and not g.get("passed")]
    verdict = str(row["verdict"])
    ok = verdict == "GO"
    when = datetime.fromtimestamp(row["computed_at"], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    msg = f"latest metrics verdict: {verdict} (computed {when})"
    return Verdict(ok, verdict, row["computed_at"], failing, msg)


def updates_for(cfg, env: dict, target: str, stage: int) -> dict[str, str]:
    from catalyst_ops import ramp

    if target not in MODES:
        raise OpsError(f"mode: expected paper or live, got {target!r}", USAGE)
    ups = {MODE_KEY: target, "ALPACA_BASE_URL": cfg.trading.live_url if target == "live" else cfg.trading.paper_url}
    key_name, secret_name = PER_MODE_KEYS[target]
    if env.get(key_name) and env.get(secret_name):
        ups["ALPACA_API_KEY"] = env[key_name]
        ups["ALPACA_SECRET_KEY"] = env[secret_name]
    ups.update(ramp.env_values(cfg, stage))
    return ups


def expected_running(cfg, target: str, stage: int) -> dict[str, str]:
    """What every env service must run with after the switch. Live: the mode and the stage's limits;
    paper (the safe direction, and the services' default) only asks for the mode."""
    from catalyst_ops import ramp

    if target == "paper":
        return {MODE_KEY: target}
    return {MODE_KEY: target, **ramp.env_values(cfg, stage)}


def reported_mode(cfg) -> tuple[str | None, str]:
    """What the running trading service runs with (no restart): (mode, how it was read)."""
    from catalyst_ops.runtime import get_runtime

    runtime = get_runtime(cfg)
    svc = cfg.trading.service
    env = runtime.service_env(svc)
    if env is not None:
        return stackenv.trading_mode(env), f"{svc}'s environment (TRADING_MODE={env.get(MODE_KEY, '(unset)')})"
    logged, line = stackenv.mode_from_logs(cfg, runtime.service_logs(svc))
    if logged:
        return logged, f"{svc}'s log: {line}"
    return None, f"{svc}: neither its environment nor its log can be read"


@dataclass
class SwitchResult:
    code: int
    target: str
    lines: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)


def _halt_refusal(halt) -> str:
    return (f"refused: the halt flag is set (since {datetime.fromtimestamp(halt['since'], timezone.utc):%Y-%m-%d %H:%M} "
            f"UTC, reason: {halt['reason']}); run `catalyst-ops resume --yes --reason ...` first")


def switch(cfg, db, target: str, force: bool = False, reason: str | None = None, dry_run: bool = False,
           restart: bool = True) -> SwitchResult:
    """`mode paper|live`: gate, check the runtime passes the mode, edit the .env, recreate, confirm."""
    from catalyst_ops import ramp, state

    if target not in MODES:
        raise OpsError(f"mode: expected paper or live, got {target!r}", USAGE)
    if force and not (reason and reason.strip()):
        raise OpsError("mode live --force needs --reason TEXT (the override is recorded)", USAGE)
    out = SwitchResult(PROBLEM, target)
    out.data.update({"target": target, "env_file": cfg.env_file, "dry_run": dry_run})
    with stackenv.env_lock(cfg):
        env = envfile.load(cfg.env_file)
        before = env.get(MODE_KEY, "")
        out.data["previous"] = before or None
        forced = False
        if target == "live":
            # inside the lock: an emergency stop sets the halt before it takes the lock to write paper
            halt = db.halt_state()
            if halt is not None:
                out.lines.append(_halt_refusal(halt))
                out.data.update({"refused": "halted"})
                return out
            v = latest_verdict(db)
            out.data["verdict"] = {"verdict": v.verdict, "computed_at": v.computed_at, "failing_gates": v.failing}
            if not v.ok:
                if not force:
                    out.lines.append(f"refused: {v.message}; live needs GO")
                    for g in v.failing:
                        out.lines.append(f"  FAIL {g.get('gate')}: {g.get('value')} (threshold {g.get('threshold')})")
                    out.lines.append("the .env is unchanged (override: --force --reason TEXT, recorded)")
                    out.data["refused"] = "verdict"
                    return out
                forced = True
                out.lines.append(f"override: {v.message}; forced by {state.actor()}: {reason}")
            else:
                out.lines.append(v.message)
        stage, _ = ramp.state(db)
        ups = updates_for(cfg, env, target, stage)
        ch = stackenv.changes(env, ups)
        expected = expected_running(cfg, target, stage)
        out.data["changes"] = {k: ("(secret)" if stackenv.is_secret(k) else new) for k, (_, new) in ch.items()}
        out.data["ramp_stage"] = stage
        # refuse before writing anything when the runtime would not hand the mode to the services
        note = stackenv.check_passthrough(cfg, {**env, **ups}, expected) if restart else ""
        if note:
            out.lines.append(note)
        if dry_run:
            out.lines.append(f"dry run: would set {cfg.env_file} to {target} (ramp stage {stage}), backing it up first:"
                             if ch else f"dry run: {cfg.env_file} already {target} with stage {stage}'s values; no edit")
            out.lines += [f"  {line}" for line in stackenv.describe_changes(ch)]
            if restart:
                out.lines.append(f"  then: {stackenv.apply(cfg, None, expected, target, dry_run=True).detail}")
            out.code = 0
            return out
        ch, backup = stackenv.write(cfg, ups)
        if target == "live":
            fch, _ = ramp.write_limits_file(cfg, stage)
            ch.update({f"{cfg.trading.risk_file}: risk_limits.{k}": v for k, v in fch.items()})
    out.data["backup"] = str(backup) if backup else None
    if ch:
        out.lines.append(f"{cfg.env_file}: {before or '(unset)'} -> {target} (ramp stage {stage}); backup {backup}")
        out.lines += [f"  {line}" for line in stackenv.describe_changes(ch)]
    else:
        out.lines.append(f"{cfg.env_file}: already {target} with stage {stage}'s values; unchanged")
    if target == "live" and ramp.start_if_new(db):
        out.lines.append("ramp-up started: stage 1")
    db.record_event("mode-switch", {"from": before or None, "to": target, "forced": forced, "reason": reason,
                                    "changed": sorted(ch), "backup": str(backup) if backup else None,
                                    "verdict": out.data.get("verdict", {}).get("verdict")})
    if not restart:
        out.lines.append(f"not applied (--no-restart): the services still run their old environment; recreate "
                         f"{', '.join(stackenv.services(cfg))} to apply it")
        out.code = 0
        return out
    applied = stackenv.apply(cfg, db, expected, target, reason=f"mode {target}")
    out.data["confirm"] = {"ok": applied.ok, "detail": applied.detail, "seen": applied.seen}
    if applied.ok and target == "live" and db.halt_state() is not None:
        # an emergency stop came in while the services were recreated; it puts them back to paper
        applied.ok, applied.detail = False, "an emergency stop set the halt meanwhile: it switches back to paper"
    out.lines.append(("confirmed: " if applied.ok else "FAILED: ") + applied.detail)
    out.code = 0 if applied.ok else PROBLEM
    return out
