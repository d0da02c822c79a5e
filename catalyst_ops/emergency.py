"""Emergency stop and resume.

The stop runs these steps in order, records each one (emergency_steps, and an event), goes
on past a step that fails and exits 1 naming the failed steps:

 1. halt            set the halt flag in the state DB; every trading job checks it first, and
                    nothing is deleted from cron, so a playbook re-run cannot undo it
 2. suspend-trading PATCH suspend_trade=true at the broker: new orders are refused there
 3. cancel-orders   cancel every open order at the broker
 4. close-positions close every position; poll the broker's positions until none are left,
                    re-closing what is left, at most trading.close_attempts polls
                    trading.close_poll seconds apart
 5. paper-mode      .env back to paper (backup first, atomic write)
 6. restart-trading restart the trading service and confirm it reports paper
 7. alert           a critical alert in the outbox, naming the failed steps

Only the broker is needed for steps 2-4: they talk to it directly, so they work with the
whole Catalyst stack down. Running it twice is safe: every step is idempotent.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from catalyst_ops import clock
from catalyst_ops.errors import OpsError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS emergency_runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    actor TEXT,
    reason TEXT,
    ok INTEGER,
    failed_steps TEXT
);
CREATE TABLE IF NOT EXISTS emergency_steps (
    run_id INTEGER NOT NULL REFERENCES emergency_runs(id),
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,            -- ok failed skipped
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, seq)
);
"""

STEPS = ("halt", "suspend-trading", "cancel-orders", "close-positions", "paper-mode", "restart-trading", "alert")


@dataclass
class Step:
    step: str
    status: str = "ok"
    detail: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StopResult:
    steps: list[Step] = field(default_factory=list)
    run_id: int | None = None

    @property
    def failed(self) -> list[str]:
        return [s.step for s in self.steps if s.status == "failed"]


class _StepFailed(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    from catalyst_ops import log as opslog

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if not isinstance(exc, OpsError):
        text = f"{exc.__class__.__name__}: {text}"
    return opslog.redact(text)


class _Recorder:
    """Writes each step as it ends; a state DB that cannot be opened must not stop the broker steps."""

    def __init__(self, open_db, actor: str, reason: str):
        self.db = None
        self.run_id = None
        self.error = None
        try:
            self.db = open_db()
            self.db.ensure_schema(SCHEMA)
            cur = self.db.execute("INSERT INTO emergency_runs(started_at, actor, reason) VALUES (?,?,?)",
                                  (clock.timestamp(), actor, reason))
            self.run_id = int(cur.lastrowid)
            self.db.record_event("emergency-stop", {"phase": "started", "run": self.run_id, "reason": reason}, actor)
        except Exception as exc:
            self.error = _one_line(exc)
            log.error("state DB unavailable: %s (the broker steps go on)", self.error)

    def step(self, seq: int, s: Step) -> None:
        if self.db is None or self.run_id is None:
            return
        try:
            self.db.execute("INSERT INTO emergency_steps(run_id, seq, step, status, started_at, ended_at, detail)"
                            " VALUES (?,?,?,?,?,?,?)", (self.run_id, seq, s.step, s.status, s.started_at, s.ended_at, s.detail))
        except Exception as exc:
            log.error("could not record step %s: %s", s.step, _one_line(exc))

    def finish(self, result: StopResult, actor: str) -> None:
        if self.db is None or self.run_id is None:
            return
        try:
            self.db.execute("UPDATE emergency_runs SET ended_at=?, ok=?, failed_steps=? WHERE id=?",
                            (clock.timestamp(), int(not result.failed), ",".join(result.failed), self.run_id))
            self.db.record_event("emergency-stop", {"phase": "finished", "run": self.run_id,
                                                    "failed_steps": result.failed}, actor)
        except Exception as exc:
            log.error("could not record the emergency stop's outcome: %s", _one_line(exc))


def plan(cfg, reason: str) -> list[str]:
    """What a stop would do, for --dry-run; reads the broker (read-only) when it can."""
    from catalyst_ops import broker as brk, mode

    lines = [f"dry run: emergency stop (reason: {reason}) would, in order:"]
    try:
        b = brk.from_config(cfg)
        where = b.label
    except OpsError as exc:
        b, where = None, f"(broker not usable: {_one_line(exc)})"
    lines.append(f" 1. halt: set the halt flag in {cfg.state_path}")
    lines.append(f" 2. suspend-trading: PATCH suspend_trade=true at {where}")
    orders = positions = None
    if b is not None:
        try:
            positions = b.positions()
        except OpsError as exc:
            lines.append(f"    (broker positions unreadable now: {_one_line(exc)})")
        try:
            orders = b.open_orders()
        except OpsError:
            orders = None
    n_orders = f"{len(orders)} open orders" if orders is not None else "every open order"
    lines.append(f" 3. cancel-orders: cancel {n_orders}")
    if positions is not None:
        syms = ", ".join(f"{p.get('symbol')} {p.get('qty')}" for p in positions) or "none open"
        lines.append(f" 4. close-positions: close {len(positions)} positions ({syms}); poll until none are left "
                     f"(at most {cfg.trading.close_attempts} polls, {cfg.trading.close_poll:g}s apart)")
    else:
        lines.append(f" 4. close-positions: close every position; poll until none are left "
                     f"(at most {cfg.trading.close_attempts} polls, {cfg.trading.close_poll:g}s apart)")
    try:
        from catalyst_ops import envfile

        env = envfile.load(cfg.env_file)
        ch = mode.changes(env, mode.updates_for(cfg, env, "paper", _stage_or_1(cfg)))
        what = "; ".join(mode.describe_changes(ch)) or "already paper: no edit"
        lines.append(f" 5. paper-mode: {cfg.env_file}: {what} (backup first)")
    except OpsError as exc:
        lines.append(f" 5. paper-mode: {cfg.env_file}: {_one_line(exc)}")
    lines.append(f" 6. restart-trading: {mode.restart_and_confirm(cfg, 'paper', dry_run=True).detail}, confirm it reports paper")
    lines.append(" 7. alert: queue a critical alert naming any failed step")
    return lines


def _stage_or_1(cfg) -> int:
    from catalyst_ops import ramp
    from catalyst_ops.state import open_state

    try:
        db = open_state(cfg)
        try:
            return ramp.state(db)[0]
        finally:
            db.close()
    except Exception:
        return 1


def stop(cfg, reason: str, actor: str) -> StopResult:
    from catalyst_ops import alerts, broker as brk, envfile, mode, ramp
    from catalyst_ops.state import open_state

    result = StopResult()
    rec = _Recorder(lambda: open_state(cfg), actor, reason)
    result.run_id = rec.run_id
    db = rec.db
    state = {"broker": None, "broker_error": None}
    retried_syms: set[str] = set()

    def get_broker():
        if state["broker"] is None:
            if state["broker_error"]:
                raise _StepFailed(state["broker_error"])
            try:
                state["broker"] = brk.from_config(cfg)
            except OpsError as exc:
                state["broker_error"] = f"broker not usable: {_one_line(exc)}"
                raise _StepFailed(state["broker_error"])
        return state["broker"]

    # ------------------------------------------------------------------ the steps
    def s_halt() -> str:
        if db is None:
            raise _StepFailed(f"state DB unavailable: {rec.error}")
        before = db.halt_state()
        db.set_halt(f"emergency stop: {reason}", actor)
        if db.halt_state() is None:
            raise _StepFailed("the halt flag did not stick")
        return "already set; kept" if before is not None else "halt flag set"

    def s_suspend() -> str:
        b = get_broker()
        b.set_suspend_trade(True)
        return f"suspend_trade=true at {b.label}: the broker refuses new orders"

    def s_cancel() -> str:
        b = get_broker()
        answers = b.cancel_orders()
        bad = [a for a in answers if isinstance(a, dict) and not (200 <= int(a.get("status") or 200) < 300)]
        left = b.open_orders()
        if left:
            raise _StepFailed(f"{len(left)} open orders remain: " + ", ".join(f"{o.get('symbol')} ({o.get('id')})" for o in left))
        if bad:
            return f"{len(answers)} cancel answers, {len(bad)} not 2xx, but no open order is left"
        return f"{len(answers)} open orders canceled; none left"

    def s_close() -> str:
        b = get_broker()
        attempts = cfg.trading.close_attempts
        history = []
        failures: dict[str, str] = {}
        results = b.close_all()
        for r in results:
            if not r.ok:
                failures[r.symbol] = f"HTTP {r.status}: {r.message}" if r.status else r.message
        history.append(f"close-all: {sum(r.ok for r in results)} ok" +
                       (f", failed: {', '.join(sorted(failures))}" if failures else ""))
        retried = False
        for poll in range(1, attempts + 1):
            left = b.positions()
            if not left:
                note = f"all positions closed after {poll} poll(s)"
                if retried:
                    note += f"; retried {', '.join(sorted(retried_syms))}"
                return note + " | " + "; ".join(history)
            if poll == attempts:
                break
            time.sleep(cfg.trading.close_poll)
            # re-close only what failed: a close order that was accepted is still working
            for p in left:
                sym = str(p.get("symbol"))
                if sym in failures:
                    retried = True
                    retried_syms.add(sym)
                    r = b.close_one(sym)
                    if r.ok:
                        failures.pop(sym, None)
                        history.append(f"retry {sym}: ok")
                    else:
                        failures[sym] = f"HTTP {r.status}: {r.message}" if r.status else r.message
                        history.append(f"retry {sym}: failed")
        left_syms = sorted(str(p.get("symbol")) for p in left)
        why = "; ".join(f"{s}: {failures[s]}" for s in left_syms if s in failures)
        raise _StepFailed(f"{len(left_syms)} positions still open after {attempts} polls: {', '.join(left_syms)}"
                          + (f" ({why})" if why else " (close orders not filled yet)")
                          + (f"; retried {', '.join(sorted(retried_syms))}" if retried else ""))

    def s_paper() -> str:
        stage = ramp.state(db)[0] if db is not None else 1
        env = envfile.load(cfg.env_file)
        ups = mode.updates_for(cfg, env, "paper", stage)
        with mode.env_lock(cfg):
            ch, backup = mode.write_env(cfg, ups)
        if db is not None:
            db.record_event("mode-switch", {"from": env.get(mode.MODE_KEY), "to": "paper", "forced": False,
                                            "reason": f"emergency stop: {reason}", "changed": sorted(ch),
                                            "backup": str(backup) if backup else None}, actor)
        if not ch:
            return f"{cfg.env_file} already paper; unchanged"
        return (f"{cfg.env_file}: {env.get(mode.MODE_KEY) or '(unset)'} -> paper ({', '.join(sorted(ch))} set); "
                f"backup {backup}")

    def s_restart() -> str:
        conf = mode.restart_and_confirm(cfg, "paper")
        if not conf.ok:
            raise _StepFailed(conf.detail)
        return conf.detail

    def s_alert() -> str:
        if db is None:
            raise _StepFailed(f"state DB unavailable, no outbox: {rec.error}")
        failed = result.failed
        subject = ("EMERGENCY STOP: trading halted" +
                   (f" - FAILED STEPS: {', '.join(failed)}" if failed else " - all steps ok"))
        body = [f"Emergency stop by {actor}: {reason}", ""]
        body += [f"{s.step}: {s.status.upper()} - {s.detail}" for s in result.steps]
        body += ["", "Trading stays halted until `catalyst-ops resume --yes --reason ...`."]
        alert_id = alerts.enqueue(db, "critical", "emergency-stop", subject, "\n".join(body))
        # send now rather than wait for the monitor's next pass: the operator must know at once.
        # A send that fails leaves the alert in the outbox, where the monitor keeps retrying it.
        try:
            from catalyst_ops.alerts import outbox

            flushed = outbox.flush(cfg, db, force=True)
        except Exception as exc:  # a bad SMTP block must not fail the stop
            return f"critical alert #{alert_id} queued (not sent now: {exc})"
        if alert_id in (flushed.sent or []):
            return f"critical alert #{alert_id} sent"
        why = flushed.skipped or "; ".join(flushed.errors) or "not sent yet; the monitor retries it"
        return f"critical alert #{alert_id} queued ({why})"

    funcs = {"halt": s_halt, "suspend-trading": s_suspend, "cancel-orders": s_cancel, "close-positions": s_close,
             "paper-mode": s_paper, "restart-trading": s_restart, "alert": s_alert}
    for seq, name in enumerate(STEPS, 1):
        s = Step(name, started_at=clock.timestamp())
        try:
            s.detail = funcs[name]()
            s.status = "ok"
        except _StepFailed as exc:
            s.status, s.detail = "failed", str(exc)
        except Exception as exc:  # every step is attempted, whatever the one before did
            s.status, s.detail = "failed", _one_line(exc)
            log.debug("step %s: %s", name, traceback.format_exc())
        s.ended_at = clock.timestamp()
        (log.info if s.status == "ok" else log.error)("emergency stop: %s: %s: %s", name, s.status, s.detail)
        result.steps.append(s)
        rec.step(seq, s)
    rec.finish(result, actor)
    return result


# ---------------------------------------------------------------------- resume


def resume(cfg, db, reason: str, actor: str, dry_run: bool = False) -> tuple[bool, list[str]]:
    """Lift suspend_trade at the broker, then clear the halt flag. If the broker cannot be told, the
    halt stays: resuming half-way would leave the state DB saying "go" while the broker says "no"."""
    from catalyst_ops import broker as brk

    halt = db.halt_state()
    lines = []
    if dry_run:
        lines.append("dry run: resume would:")
        lines.append(" 1. PATCH suspend_trade=false at the broker")
        lines.append(" 2. clear the halt flag" + (f" (set since {datetime.fromtimestamp(halt['since'], timezone.utc):%Y-%m-%d %H:%M} UTC, "
                                                   f"reason: {halt['reason']})" if halt else " (not set now)"))
        lines.append(f" 3. record who ({actor}) and why ({reason})")
        lines.append(" the trading mode is not changed: going live again is `catalyst-ops mode live`")
        return True, lines
    try:
        b = brk.from_config(cfg)
        b.set_suspend_trade(False)
        lines.append(f"broker: suspend_trade=false at {b.label}")
    except OpsError as exc:
        msg = _one_line(exc)
        db.record_event("resume", {"ok": False, "reason": reason, "error": msg}, actor)
        lines.append(f"FAILED: broker: {msg}; the halt flag stays set")
        return False, lines
    db.clear_halt(actor)
    db.record_event("resume", {"ok": True, "reason": reason, "was_halted": bool(halt),
                               "halt_reason": halt["reason"] if halt else None}, actor)
    lines.append("halt flag cleared" if halt else "halt flag was not set")
    lines.append(f"recorded: {actor}: {reason}")
    lines.append("the trading mode is unchanged (paper after an emergency stop); `catalyst-ops mode live` to go live")
    return True, lines
