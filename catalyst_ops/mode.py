"""Trading mode (paper | live) in the stack's .env, and the trading service's confirmation of it.

A switch sets TRADING_MODE, ALPACA_BASE_URL (trading.paper_url / live_url) and the risk keys
of the current ramp stage; when the .env also holds per-mode keys (ALPACA_PAPER_API_KEY /
ALPACA_PAPER_SECRET_KEY, ALPACA_LIVE_API_KEY / ALPACA_LIVE_SECRET_KEY) the matching pair is
copied into ALPACA_API_KEY / ALPACA_SECRET_KEY, since Alpaca's paper and live accounts
have different keys. The file is backed up first (mode 0600), written atomically, and every
other line is kept byte for byte (envfile.update). Then the trading service is restarted
through the runtime and must report the new mode in its health body (trading.mode_field).

`live` needs the latest metrics verdict to be GO; `--force` with a reason overrides it
(recorded). A halt flag blocks `live` outright: resume first.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from catalyst_ops import clock, envfile
from catalyst_ops.errors import PROBLEM, USAGE, OpsError

log = logging.getLogger(__name__)

MODES = ("paper", "live")
MODE_KEY = "TRADING_MODE"
SECRET_KEYS = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")
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


def changes(env: dict, updates: dict) -> dict[str, tuple[str | None, str]]:
    return {k: (env.get(k), v) for k, v in updates.items() if env.get(k) != v}


def describe_changes(ch: dict) -> list[str]:
    lines = []
    for k, (old, new) in ch.items():
        if k in SECRET_KEYS or "SECRET" in k or "PASSWORD" in k:
            lines.append(f"{k}: (secret) replaced")
        else:
            lines.append(f"{k}: {old if old is not None else '(unset)'} -> {new}")
    return lines


def _backup_suffix(path: Path) -> str:
    stamp = clock.now().strftime("%Y%m%dT%H%M%S")
    suffix = f".bak-{stamp}"
    n = 1
    while path.with_name(path.name + suffix).exists():
        n += 1
        suffix = f".bak-{stamp}-{n}"
    return suffix


@contextmanager
def env_lock(cfg, wait: float = 15.0):
    """One writer of the .env at a time (mode, ramp advance, emergency stop); waits a bounded time."""
    from catalyst_ops.lock import JobLock, LockHeld

    lock = JobLock(cfg.state_dir, "env-file")
    deadline = time.monotonic() + wait
    while True:
        try:
            lock.acquire()
            break
        except LockHeld as exc:
            if time.monotonic() > deadline:
                raise OpsError(f"{cfg.env_file}: {exc}; try again", PROBLEM)
            time.sleep(0.1)
    try:
        yield lock
    finally:
        lock.release()


def write_env(cfg, updates: dict) -> tuple[dict, Path | None]:
    """Apply updates to the .env with a backup; returns (changes, backup path). No change: no write."""
    path = Path(cfg.env_file)
    env = envfile.load(path)
    ch = changes(env, updates)
    if not ch:
        return ch, None
    backup = envfile.update(path, {k: v for k, (_, v) in ch.items()}, backup_suffix=_backup_suffix(path))
    cfg._env = None  # re-read on next use
    return ch, backup


@dataclass
class Confirm:
    ok: bool
    reported: str | None
    detail: str


def restart_and_confirm(cfg, expected: str, dry_run: bool = False) -> Confirm:
    """Restart the trading service through the runtime, wait for it, and read the mode it reports."""
    from catalyst_ops import control
    from catalyst_ops.runtime import get_runtime

    service = cfg.trading.service
    cfg.service(service)  # a clear config error if it is not configured
    if not cfg.trading.restart_trading:
        return Confirm(True, None, "restart skipped (trading.restart_trading: false); restart trading yourself")
    runtime = get_runtime(cfg, dry_run=dry_run)
    res = runtime.restart_service(service)
    if dry_run:
        return Confirm(True, None, f"would restart {service}: {res.output}")
    if not res.ok:
        return Confirm(False, None, f"restart of {service} failed: {res.output}")
    waited = control.wait_healthy(cfg, [service], cfg.health.restart_wait, cfg.health.restart_poll)
    result = waited.results[0] if waited.results else None
    if not waited.ok:
        state = f"{result.state} ({result.detail})" if result else "no answer"
        return Confirm(False, None, f"{service} not healthy {cfg.health.restart_wait:g}s after the restart: {state}")
    body = result.body if result is not None else None
    field_name = cfg.trading.mode_field
    reported = body.get(field_name) if isinstance(body, dict) and field_name else None
    if reported is None:
        log.warning("%s does not report its mode (no %r in its health body): mode not confirmed", service, field_name)
        return Confirm(True, None, f"{service} restarted; it does not report {field_name!r}, mode not confirmed")
    if str(reported).lower() != expected:
        return Confirm(False, str(reported), f"{service} reports {field_name}={reported}, expected {expected}")
    return Confirm(True, str(reported), f"{service} restarted and reports {field_name}={reported}")


def reported_mode(cfg) -> tuple[str | None, str]:
    """What the running trading service says its mode is (no restart)."""
    from catalyst_ops import health

    res = health.sweep(cfg, [cfg.trading.service])[0]
    body = res.body if isinstance(res.body, dict) else {}
    value = body.get(cfg.trading.mode_field) if cfg.trading.mode_field else None
    return (str(value) if value is not None else None), res.state


@dataclass
class SwitchResult:
    code: int
    target: str
    lines: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)


def switch(cfg, db, target: str, force: bool = False, reason: str | None = None, dry_run: bool = False,
           restart: bool = True) -> SwitchResult:
    """`mode paper|live`: gate, back up and edit the .env, restart trading, confirm the reported mode."""
    from catalyst_ops import ramp, state

    if target not in MODES:
        raise OpsError(f"mode: expected paper or live, got {target!r}", USAGE)
    if force and not (reason and reason.strip()):
        raise OpsError("mode live --force needs --reason TEXT (the override is recorded)", USAGE)
    out = SwitchResult(PROBLEM, target)
    env = envfile.load(cfg.env_file)
    before = env.get(MODE_KEY, "")
    out.data.update({"target": target, "previous": before or None, "env_file": cfg.env_file, "dry_run": dry_run})
    forced = False
    if target == "live":
        halt = db.halt_state()
        if halt is not None:
            out.lines.append(f"refused: the halt flag is set (since {datetime.fromtimestamp(halt['since'], timezone.utc):%Y-%m-%d %H:%M} UTC, "
                             f"reason: {halt['reason']}); run `catalyst-ops resume --yes --reason ...` first")
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
    stage, entered = ramp.state(db)
    ups = updates_for(cfg, env, target, stage)
    ch = changes(env, ups)
    out.data["changes"] = {k: ("(secret)" if k in SECRET_KEYS else new) for k, (_, new) in ch.items()}
    out.data["ramp_stage"] = stage
    if dry_run:
        out.lines.append(f"dry run: would set {cfg.env_file} to {target} (ramp stage {stage}), backing it up first:"
                         if ch else f"dry run: {cfg.env_file} already {target} with stage {stage}'s values; no edit")
        out.lines += [f"  {line}" for line in describe_changes(ch)]
        if restart:
            out.lines.append(f"  then: {restart_and_confirm(cfg, target, dry_run=True).detail} and confirm it reports {target}")
        out.code = 0
        return out
    with env_lock(cfg):
        ch, backup = write_env(cfg, ups)
    out.data["backup"] = str(backup) if backup else None
    if ch:
        out.lines.append(f"{cfg.env_file}: {before or '(unset)'} -> {target} (ramp stage {stage}); backup {backup}")
        out.lines += [f"  {line}" for line in describe_changes(ch)]
    else:
        out.lines.append(f"{cfg.env_file}: already {target} with stage {stage}'s values; unchanged")
    if target == "live" and ramp.start_if_new(db):
        out.lines.append("ramp-up started: stage 1")
    db.record_event("mode-switch", {"from": before or None, "to": target, "forced": forced, "reason": reason,
                                    "changed": sorted(ch), "backup": str(backup) if backup else None,
                                    "verdict": out.data.get("verdict", {}).get("verdict")})
    if not restart:
        out.code = 0
        return out
    conf = restart_and_confirm(cfg, target)
    out.data["confirm"] = {"ok": conf.ok, "reported": conf.reported, "detail": conf.detail}
    out.lines.append(("" if conf.ok else "FAILED: ") + conf.detail)
    out.code = 0 if conf.ok else PROBLEM
    return out
