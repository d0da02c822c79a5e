"""Emergency stop and resume.

The stop runs these steps in order, records each one (emergency_steps, and an event), goes
on past a step that fails and exits 1 naming the failed (or pending) steps. The order is the
one that works at Alpaca: `suspend_trade` refuses every new order, and closing a position IS
a new order, so the account is flattened first and suspended last.

 1. halt              set the halt flag in the state DB; every trading job checks it first, and
                      nothing is deleted from cron, so a playbook re-run cannot undo it
 2. cancel-orders     cancel every open order (207: each item read), then poll the open orders
                      until none is left, pending_cancel included (trading.cancel_attempts polls)
 3. close-positions   close every position (207: each item read); poll until flat, re-closing
                      what was refused (trading.close_attempts polls, trading.close_poll apart).
                      On a closed market the closes are accepted and wait for the open: the step
                      is "pending" ("flatten pending: N orders queued for the open"), not done
 4. suspend-trading   PATCH suspend_trade=true, only when nothing is pending at the broker: a
                      suspension would refuse the queued closes' replacements. When closes are
                      queued, market-open's check at the next open confirms the account flat
                      and suspends then (alerting if it is not flat)
 5. paper-mode        .env back to paper (backup first, atomic write, under the .env lock)
 6. recreate-services recreate trading.env_services and read back TRADING_MODE=paper from them
 7. alert             one critical alert, naming every failed or pending step

Steps 2-4 need only the broker: they work with the whole Catalyst stack down. Running it twice
is safe: every step is idempotent.

A drill (`emergency-stop --drill`, what the ramp's gate before stage 3 asks for) runs the same
steps against the PAPER account while the live stack keeps trading: the halt flag is set and read
back inside a transaction that is rolled back (no trading job ever sees it); orders are cancelled,
positions closed and suspend_trade set at the paper account; the .env is not written, but its lock
is taken and the runtime is checked to pass TRADING_MODE=paper to every env service; the services
are not recreated, but each one's environment is read (how a real stop confirms paper); the alert
(subject "[DRILL] ...", key emergency-stop:drill) must be delivered, not only queued; last, an
extra step lifts the paper account's suspend_trade. It is recorded in emergency_runs with drill=1;
ok=1 only when every step was ok.
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
-- drill=1: `emergency-stop --drill` (paper account, nothing the live stack reads changed); account:
-- the broker account the broker steps acted on (ensure_schema adds both to older state DBs)
CREATE TABLE IF NOT EXISTS emergency_runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    actor TEXT,
    reason TEXT,
    ok INTEGER,
    failed_steps TEXT,
    drill INTEGER NOT NULL DEFAULT 0,
    account TEXT
);
CREATE TABLE IF NOT EXISTS emergency_steps (
    run_id INTEGER NOT NULL REFERENCES emergency_runs(id),
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,            -- ok failed pending skipped
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS flatten_pending (
    run_id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    account TEXT,                    -- paper | live: the account the closes were queued at
    symbols TEXT NOT NULL,           -- comma-separated positions left with a queued close
    orders INTEGER NOT NULL,         -- close orders queued
    resolved_at REAL,
    outcome TEXT                     -- flat | not_flat (the next open's check)
);
CREATE TABLE IF NOT EXISTS suspensions (
    account TEXT PRIMARY KEY,        -- paper | live: an account whose suspend_trade a stop set
    at REAL NOT NULL,
    run_id INTEGER
);
"""

STEPS = ("halt", "cancel-orders", "close-positions", "suspend-trading", "paper-mode", "recreate-services", "alert")
DRILL_STEPS = STEPS + ("unsuspend",)
DRILL_KEY = "emergency-stop:drill"


def ensure_schema(db) -> None:
    """The tables, and the columns a state DB made before drills existed lacks."""
    db.ensure_schema(SCHEMA)
    cols = {r["name"] for r in db.query("PRAGMA table_info(emergency_runs)")}
    for col, ddl in (("drill", "INTEGER NOT NULL DEFAULT 0"), ("account", "TEXT")):
        if col not in cols:
            try:
                db.execute(f"ALTER TABLE emergency_runs ADD COLUMN {col} {ddl}")
            except Exception as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise


def last_good_run(db, since: float) -> dict | None:
    """The newest emergency stop or drill since `since` whose every step was ok."""
    ensure_schema(db)
    row = db.one("SELECT id, started_at, ended_at, drill, account, reason, actor FROM emergency_runs"
                 " WHERE ok=1 AND ended_at IS NOT NULL AND started_at>=? ORDER BY started_at DESC LIMIT 1", (since,))
    return dict(row) if row else None


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

    pending_orders: int = 0

    @property
    def failed(self) -> list[str]:
        return [s.step for s in self.steps if s.status == "failed"]

    @property
    def pending(self) -> list[str]:
        return [s.step for s in self.steps if s.status == "pending"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending


class _StepFailed(Exception):
    pass


class _StepPending(Exception):
    """Done at the broker's side but not finished: closes accepted, waiting for the market."""


class _StepSkipped(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    from catalyst_ops import log as opslog

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if not isinstance(exc, OpsError):
        text = f"{exc.__class__.__name__}: {text}"
    return opslog.redact(text)


class _Recorder:
    """Writes each step as it ends; a state DB that cannot be opened must not stop the broker steps."""

    def __init__(self, open_db, actor: str, reason: str, drill: bool = False):
        self.db = None
        self.run_id = None
        self.error = None
        try:
            self.db = open_db()
            ensure_schema(self.db)
            cur = self.db.execute("INSERT INTO emergency_runs(started_at, actor, reason, drill, account) VALUES (?,?,?,?,?)",
                                  (clock.timestamp(), actor, reason, int(drill), "paper" if drill else None))
            self.run_id = int(cur.lastrowid)
            self.db.record_event("emergency-stop", {"phase": "started", "run": self.run_id, "reason": reason,
                                                    "drill": drill}, actor)
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
                            (clock.timestamp(), int(result.ok), ",".join(result.failed + result.pending), self.run_id))
            self.db.record_event("emergency-stop", {"phase": "finished", "run": self.run_id,
                                                    "failed_steps": result.failed, "pending_steps": result.pending},
                                 actor)
        except Exception as exc:
            log.error("could not record the emergency stop's outcome: %s", _one_line(exc))


def plan_drill(cfg, reason: str) -> list[str]:
    """What a drill would do, for --dry-run."""
    from catalyst_ops import stackenv

    return [f"dry run: emergency-stop drill (reason: {reason}) would, in order, against the PAPER account "
            f"({cfg.trading.paper_url}) while the live stack keeps trading:",
            f" 1. halt: set the halt flag in {cfg.state_path} inside a transaction, read it back, roll it back",
            " 2. cancel-orders: cancel every open order of the paper account; poll until none is open",
            " 3. close-positions: close every position of the paper account; poll until flat",
            " 4. suspend-trading: PATCH suspend_trade=true at the paper account",
            f" 5. paper-mode: take the .env lock and check {cfg.env_file} is writable and that the runtime passes "
            "TRADING_MODE=paper to the env services; write nothing",
            f" 6. recreate-services: recreate nothing; read the environment of {', '.join(stackenv.services(cfg))}",
            " 7. alert: one critical [DRILL] alert, sent at once; it must be delivered",
            " 8. unsuspend: PATCH suspend_trade=false at the paper account",
            "recorded in emergency_runs (drill=1); the ramp's drill gate counts it when every step was ok"]


def plan(cfg, reason: str) -> list[str]:
    """What a stop would do, for --dry-run; reads the broker (read-only) when it can."""
    from catalyst_ops import broker as brk, envfile, mode, stackenv

    lines = [f"dry run: emergency stop (reason: {reason}) would, in order:"]
    try:
        b = brk.from_config(cfg)
        where = b.label
    except OpsError as exc:
        b, where = None, f"(broker not usable: {_one_line(exc)})"
    lines.append(f" 1. halt: set the halt flag in {cfg.state_path}")
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
    lines.append(f" 2. cancel-orders: cancel {n_orders} at {where}; poll until none is open or pending_cancel "
                 f"(at most {cfg.trading.cancel_attempts} polls, {cfg.trading.close_poll:g}s apart)")
    if positions is not None:
        syms = ", ".join(f"{p.get('symbol')} {p.get('qty')}" for p in positions) or "none open"
        what = f"close {len(positions)} positions ({syms})"
    else:
        what = "close every position"
    lines.append(f" 3. close-positions: {what}; poll until flat (at most {cfg.trading.close_attempts} polls, "
                 f"{cfg.trading.close_poll:g}s apart); closes queued on a closed market are reported pending")
    lines.append(" 4. suspend-trading: PATCH suspend_trade=true once nothing is pending at the broker (else the next "
                 "open's check suspends)")
    try:
        env = envfile.load(cfg.env_file)
        ch = stackenv.changes(env, mode.updates_for(cfg, env, "paper", _stage_or_1(cfg)))
        what = "; ".join(stackenv.describe_changes(ch)) or "already paper: no edit"
        lines.append(f" 5. paper-mode: {cfg.env_file}: {what} (backup first)")
    except OpsError as exc:
        lines.append(f" 5. paper-mode: {cfg.env_file}: {_one_line(exc)}")
    try:
        lines.append(f" 6. recreate-services: {stackenv.apply(cfg, None, {stackenv.MODE_KEY: 'paper'}, 'paper', dry_run=True).detail}")
    except OpsError as exc:
        lines.append(f" 6. recreate-services: {_one_line(exc)}")
    lines.append(" 7. alert: one critical alert naming any failed or pending step")
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


def _orders_text(orders: list[dict]) -> str:
    return ", ".join(f"{o.get('symbol')} {o.get('status')}" for o in orders[:10]) + (" ..." if len(orders) > 10 else "")


def stop(cfg, reason: str, actor: str, drill: bool = False) -> StopResult:
    from catalyst_ops import alerts, broker as brk, envfile, mode, ramp, stackenv
    from catalyst_ops.state import open_state

    result = StopResult()
    rec = _Recorder(lambda: open_state(cfg), actor, reason, drill)
    result.run_id = rec.run_id
    db = rec.db
    state = {"broker": None, "broker_error": None}
    retried_syms: set[str] = set()
    queued: dict = {}

    def get_broker():
        if state["broker"] is None:
            if state["broker_error"]:
                raise _StepFailed(state["broker_error"])
            try:
                state["broker"] = brk.from_config(cfg, account="paper" if drill else None)
            except OpsError as exc:
                state["broker_error"] = f"broker not usable: {_one_line(exc)}"
                raise _StepFailed(state["broker_error"])
        return state["broker"]

    # ------------------------------------------------------------------ the steps
    def s_halt() -> str:
        if db is None:
            raise _StepFailed(f"state DB unavailable: {rec.error}")
        if drill:
            return _drill_halt(db, reason, actor)
        before = db.halt_state()
        db.set_halt(f"emergency stop: {reason}", actor)
        if db.halt_state() is None:
            raise _StepFailed("the halt flag did not stick")
        return "already set; kept" if before is not None else "halt flag set"

    def s_cancel() -> str:
        b = get_broker()
        answers = b.cancel_orders()
        refused = [a for a in answers if isinstance(a, dict) and not brk.item_ok(a)]
        left: list[dict] = []
        for poll in range(1, cfg.trading.cancel_attempts + 1):
            left = b.open_orders()
            if not left:
                note = f"{len(answers) - len(refused)} cancels accepted; no open order left after {poll} poll(s)"
                return note + (f" ({len(refused)} cancel answers refused, but nothing is open)" if refused else "")
            if poll < cfg.trading.cancel_attempts:
                time.sleep(cfg.trading.close_poll)
        why = "; ".join(f"{a.get('id')}: HTTP {a.get('status')}" for a in refused[:5])
        raise _StepFailed(f"{len(left)} orders still open after {cfg.trading.cancel_attempts} polls: {_orders_text(left)}"
                          + (f" (refused: {why})" if why else ""))

    def s_close() -> str:
        b = get_broker()
        attempts = cfg.trading.close_attempts
        history = []
        failures: dict[str, str] = {}
        results = b.close_all()
        for r in results:
            if not r.ok:
                failures[r.symbol] = f"HTTP {r.status}: {r.message}" if r.status else r.message
        history.append(f"close-all: {sum(r.ok for r in results)} accepted" +
                       (f", refused: {', '.join(sorted(failures))}" if failures else ""))
        retried = False
        left: list[dict] = []
        for poll in range(1, attempts + 1):
            left = b.positions()
            if not left:
                note = f"flat: all positions closed after {poll} poll(s)"
                if retried:
                    note += f"; retried {', '.join(sorted(retried_syms))}"
                return note + " | " + "; ".join(history)
            if poll == attempts:
                break
            time.sleep(cfg.trading.close_poll)
            # re-close only what was refused: a close order that was accepted is still working
            for p in left:
                sym = str(p.get("symbol"))
                if sym in failures:
                    retried = True
                    retried_syms.add(sym)
                    r = b.close_one(sym)
                    if r.ok:
                        failures.pop(sym, None)
                        history.append(f"retry {sym}: accepted")
                    else:
                        failures[sym] = f"HTTP {r.status}: {r.message}" if r.status else r.message
                        history.append(f"retry {sym}: refused")
        left_syms = sorted(str(p.get("symbol")) for p in left)
        try:
            working = [o for o in b.open_orders() if str(o.get("symbol")) in left_syms]
        except OpsError:
            working = []
        waiting = sorted({str(o.get("symbol")) for o in working})
        unqueued = [s for s in left_syms if s not in waiting]
        if not unqueued:
            queued.update({"symbols": waiting, "orders": len(working), "account": b.account_kind or "paper"})
            raise _StepPending(f"flatten pending: {len(working)} orders queued for the open ({', '.join(waiting)}): "
                               f"the broker accepted the closes but did not fill them (market closed?); "
                               f"market-open confirms the account flat at the next open")
        why = "; ".join(f"{s}: {failures[s]}" for s in unqueued if s in failures)
        raise _StepFailed(f"{len(left_syms)} positions still open after {attempts} polls: {', '.join(unqueued)}"
                          + (f" ({why})" if why else " (no close order working for them)")
                          + (f"; queued for the open: {', '.join(waiting)}" if waiting else "")
                          + (f"; retried {', '.join(sorted(retried_syms))}" if retried else ""))

    def s_suspend() -> str:
        b = get_broker()
        try:
            working = b.open_orders()
        except brk.Unsupported:  # the plan's routes cannot list orders; the suspend itself will say what it lacks
            working = []
        if working:
            raise _StepSkipped(f"not suspended: {len(working)} orders still open at the broker ({_orders_text(working)}); "
                               "suspend_trade would refuse the closes' replacements. The next open's check suspends "
                               "once the account is flat")
        b.set_suspend_trade(True)
        _record_suspension(db, b.account_kind, rec.run_id)
        return f"suspend_trade=true at {b.label}: the broker refuses new orders"

    def s_paper() -> str:
        stage = ramp.state(db)[0] if db is not None else 1
        if drill:
            with stackenv.env_lock(cfg):
                env = envfile.load(cfg.env_file)
                ups = mode.updates_for(cfg, env, "paper", stage)
                note = stackenv.check_passthrough(cfg, {**env, **ups}, mode.expected_running(cfg, "paper", stage))
                import os

                if not os.access(cfg.env_file, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(cfg.env_file)), os.W_OK):
                    raise _StepFailed(f"{cfg.env_file}: not writable here (a real stop writes it and its backup beside it)")
            what = "; ".join(stackenv.describe_changes(stackenv.changes(env, ups))) or "already paper"
            return f"drill: {cfg.env_file} not changed (lock taken, writable; a real stop would set: {what})" + \
                (f"; {note}" if note else "")
        with stackenv.env_lock(cfg):
            env = envfile.load(cfg.env_file)
            ch, backup = stackenv.write(cfg, mode.updates_for(cfg, env, "paper", stage))
        if db is not None:
            db.record_event("mode-switch", {"from": env.get(stackenv.MODE_KEY), "to": "paper", "forced": False,
                                            "reason": f"emergency stop: {reason}", "changed": sorted(ch),
                                            "backup": str(backup) if backup else None}, actor)
        if not ch:
            return f"{cfg.env_file} already paper; unchanged"
        return (f"{cfg.env_file}: {env.get(stackenv.MODE_KEY) or '(unset)'} -> paper ({', '.join(sorted(ch))} set); "
                f"backup {backup}")

    def s_recreate() -> str:
        if drill:
            from catalyst_ops.runtime import get_runtime

            runtime = get_runtime(cfg)
            seen = {svc: runtime.service_env(svc) for svc in stackenv.services(cfg)}
            blind = [svc for svc, env in seen.items() if env is None]
            if blind:
                raise _StepFailed(f"drill: the environment of {', '.join(blind)} cannot be read, so a real stop could not "
                                  "confirm paper there")
            modes = ", ".join(f"{svc} {stackenv.trading_mode(env)}" for svc, env in seen.items())
            return f"drill: not recreated; every env service's environment is readable ({modes})"
        applied = stackenv.apply(cfg, db, {stackenv.MODE_KEY: "paper"}, "paper", reason="emergency stop")
        if not applied.ok:
            raise _StepFailed(applied.detail)
        return applied.detail

    def s_alert() -> str:
        if db is None:
            raise _StepFailed(f"state DB unavailable, no outbox: {rec.error}")
        failed, pending = result.failed, result.pending
        if drill:
            return _drill_alert(cfg, db, result, reason, actor)
        if queued and rec.run_id is not None:
            ensure_schema(db)
            db.execute("INSERT OR REPLACE INTO flatten_pending(run_id, created_at, account, symbols, orders)"
                       " VALUES (?,?,?,?,?)", (rec.run_id, clock.timestamp(), queued["account"],
                                                ",".join(queued["symbols"]), queued["orders"]))
        subject = "EMERGENCY STOP: trading halted"
        if queued:
            subject += f" - flatten pending: {queued['orders']} orders queued for the open"
        if failed:
            subject += f" - FAILED STEPS: {', '.join(failed)}"
        if not failed and not pending:
            subject += " - all steps ok"
        body = [f"Emergency stop by {actor}: {reason}", ""]
        body += [f"{s.step}: {s.status.upper()} - {s.detail}" for s in result.steps]
        body += ["", "Trading stays halted until `catalyst-ops resume --yes --reason ...`."]
        if queued:
            body += ["The account is NOT flat yet: market-open checks it at the next open and alerts if it is not."]
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

    def s_unsuspend() -> str:
        b = get_broker()
        b.set_suspend_trade(False)
        if db is not None:
            db.execute("DELETE FROM suspensions WHERE account=?", (b.account_kind,))
        return f"drill over: suspend_trade=false at {b.label} again"

    funcs = {"halt": s_halt, "cancel-orders": s_cancel, "close-positions": s_close, "suspend-trading": s_suspend,
             "paper-mode": s_paper, "recreate-services": s_recreate, "alert": s_alert, "unsuspend": s_unsuspend}
    for seq, name in enumerate(DRILL_STEPS if drill else STEPS, 1):
        s = Step(name, started_at=clock.timestamp())
        try:
            s.detail = funcs[name]()
            s.status = "ok"
        except _StepFailed as exc:
            s.status, s.detail = "failed", str(exc)
        except _StepPending as exc:
            s.status, s.detail = "pending", str(exc)
        except _StepSkipped as exc:
            s.status, s.detail = "skipped", str(exc)
        except Exception as exc:  # every step is attempted, whatever the one before did
            s.status, s.detail = "failed", _one_line(exc)
            log.debug("step %s: %s", name, traceback.format_exc())
        s.ended_at = clock.timestamp()
        (log.info if s.status == "ok" else log.error)("emergency stop: %s: %s: %s", name, s.status, s.detail)
        result.steps.append(s)
        rec.step(seq, s)
    result.pending_orders = queued.get("orders", 0)
    rec.finish(result, actor)
    return result


def _drill_halt(db, reason: str, actor: str) -> str:
    """Set the halt flag and read it back inside a transaction that is rolled back: the state DB takes
    it, and no trading job (other connections see only committed rows) ever does."""
    before = db.halt_state() is not None
    db.execute("BEGIN IMMEDIATE")
    try:
        db.set_halt(f"emergency stop drill: {reason}", actor)
        took = db.halt_state() is not None
    finally:
        db.execute("ROLLBACK")
    if not took:
        raise _StepFailed("drill: the halt flag did not stick")
    if (db.halt_state() is not None) != before:
        raise _StepFailed("drill: the halt flag changed outside the drill's transaction")
    return ("drill: halt flag set and read back, then rolled back (no trading job saw it)"
            + ("; a real halt is set and stays" if before else ""))


def _drill_alert(cfg, db, result: StopResult, reason: str, actor: str) -> str:
    """The drill's alert goes the critical route, like a real stop's, and must be delivered."""
    from catalyst_ops import alerts
    from catalyst_ops.alerts import outbox

    bad = result.failed + result.pending
    subject = "[DRILL] EMERGENCY STOP drill (paper account)" + (f" - FAILED STEPS: {', '.join(bad)}" if bad else " - steps ok so far")
    body = [f"Emergency-stop drill by {actor}: {reason}", "Nothing the live stack reads was changed; the paper account "
            "was flattened and suspended, and is unsuspended at the end.", ""]
    body += [f"{s.step}: {s.status.upper()} - {s.detail}" for s in result.steps]
    alert_id = alerts.enqueue(db, "critical", DRILL_KEY, subject, "\n".join(body))
    try:
        flushed = outbox.flush(cfg, db, force=True)
    except Exception as exc:
        raise _StepFailed(f"drill alert #{alert_id} not delivered: {_one_line(exc)}")
    if alert_id in (flushed.sent or []):
        return f"drill alert #{alert_id} delivered (critical route)"
    why = flushed.skipped or "; ".join(flushed.errors) or "not sent"
    raise _StepFailed(f"drill alert #{alert_id} not delivered ({why}): a real stop's alert would wait in the outbox too")


# ---------------------------------------------------------------------- the next open


def _record_suspension(db, account: str | None, run_id: int | None) -> None:
    """Resume must lift suspend_trade where it was set, even after the .env moved to another account."""
    if db is None or not account:
        return
    try:
        db.ensure_schema(SCHEMA)
        db.execute("INSERT OR REPLACE INTO suspensions(account, at, run_id) VALUES (?,?,?)",
                   (account, clock.timestamp(), run_id))
    except Exception as exc:
        log.error("could not record the suspension of the %s account: %s", account, _one_line(exc))


def pending_flatten(db) -> dict | None:
    """The newest unresolved 'flatten pending' of an emergency stop, if any."""
    db.ensure_schema(SCHEMA)
    row = db.one("SELECT * FROM flatten_pending WHERE resolved_at IS NULL ORDER BY created_at DESC LIMIT 1")
    return dict(row) if row else None


def check_flat_at_open(cfg, db, pend: dict) -> tuple[int, str]:
    """At the first open after a stop that left closes queued: wait (trading.open_flat_wait) for the
    account to be flat, then suspend trading at the broker. Not flat: a critical alert, exit 1."""
    from catalyst_ops import alerts, broker as brk
    from catalyst_ops.errors import CANNOT_RUN, OK, PROBLEM

    deadline = time.monotonic() + cfg.trading.open_flat_wait
    while True:
        try:
            # the account the stop flattened: the .env has gone back to paper since
            account = pend.get("account") if pend.get("account") in ("paper", "live") else None
            b = brk.from_config(cfg, account=account)
            left, working = b.positions(), b.open_orders()
        except OpsError as exc:
            msg = f"flat check at the open: broker unreadable: {_one_line(exc)}; {pend['symbols']} may still be open"
            alerts.enqueue(db, "critical", "emergency-stop:open-check", "EMERGENCY STOP: flat check failed", msg)
            return CANNOT_RUN, msg
        if not left and not working:
            break
        if time.monotonic() >= deadline:
            syms = ", ".join(f"{p.get('symbol')} {p.get('qty')}" for p in left) or "none"
            msg = (f"NOT FLAT at the open: {len(left)} positions ({syms}) and {len(working)} open orders at {b.label} "
                   f"{cfg.trading.open_flat_wait:g}s after the open; the emergency stop's queued closes did not fill. "
                   "Close them by hand or run `catalyst-ops emergency-stop` again.")
            db.execute("UPDATE flatten_pending SET outcome='not_flat' WHERE run_id=?", (pend["run_id"],))
            alerts.enqueue(db, "critical", "emergency-stop:open-check", "EMERGENCY STOP: account NOT flat at the open", msg)
            return PROBLEM, msg
        time.sleep(min(cfg.trading.close_poll, max(0.05, deadline - time.monotonic())))
    try:
        b.set_suspend_trade(True)
        _record_suspension(db, b.account_kind, pend["run_id"])
        suspended = f"suspend_trade=true at {b.label}"
    except OpsError as exc:
        suspended = f"suspend_trade NOT set: {_one_line(exc)}"
    db.execute("UPDATE flatten_pending SET resolved_at=?, outcome='flat' WHERE run_id=?", (clock.timestamp(), pend["run_id"]))
    db.record_event("emergency-stop", {"phase": "flat-at-open", "run": pend["run_id"], "suspended": suspended})
    msg = f"flat at the open: the queued closes of {pend['symbols']} filled; {suspended}; trading stays halted"
    ok = suspended.startswith("suspend_trade=true")
    alerts.enqueue(db, "info" if ok else "critical", "emergency-stop:open-check",
                   "EMERGENCY STOP: account flat at the open" + ("" if ok else " - suspend failed"), msg)
    return (OK if ok else PROBLEM), msg


# ---------------------------------------------------------------------- resume


def resume(cfg, db, reason: str, actor: str, dry_run: bool = False) -> tuple[bool, list[str]]:
    """Lift suspend_trade at the broker (every account a stop suspended, and the current one), then
    clear the halt flag. If the broker cannot be told, the halt stays: resuming half-way would leave
    the state DB saying "go" while the broker says "no"."""
    from catalyst_ops import broker as brk, stackenv

    db.ensure_schema(SCHEMA)
    halt = db.halt_state()
    suspended = [r["account"] for r in db.query("SELECT account FROM suspensions ORDER BY at")]
    current = stackenv.trading_mode(cfg.env(required=False))
    accounts = list(dict.fromkeys(suspended + [current]))
    lines = []
    if dry_run:
        lines.append("dry run: resume would:")
        lines.append(f" 1. PATCH suspend_trade=false at the broker ({', '.join(a + ' account' for a in accounts)})")
        lines.append(" 2. clear the halt flag" + (f" (set since {datetime.fromtimestamp(halt['since'], timezone.utc):%Y-%m-%d %H:%M} UTC, "
                                                   f"reason: {halt['reason']})" if halt else " (not set now)"))
        lines.append(f" 3. record who ({actor}) and why ({reason})")
        lines.append(" the trading mode is not changed: going live again is `catalyst-ops mode live`")
        return True, lines
    for account in accounts:
        try:
            b = brk.from_config(cfg, account=account)
            b.set_suspend_trade(False)
            db.execute("DELETE FROM suspensions WHERE account=?", (account,))
            lines.append(f"broker: suspend_trade=false at {b.label}")
        except OpsError as exc:
            msg = _one_line(exc)
            if account not in suspended:  # only the current account, never suspended by a stop: say so, go on
                lines.append(f"broker: {account} account not reachable ({msg}); no stop had suspended it")
                continue
            db.record_event("resume", {"ok": False, "reason": reason, "error": msg}, actor)
            lines.append(f"FAILED: broker ({account} account): {msg}; the halt flag stays set")
            return False, lines
    db.clear_halt(actor)
    db.record_event("resume", {"ok": True, "reason": reason, "was_halted": bool(halt), "accounts": accounts,
                               "halt_reason": halt["reason"] if halt else None}, actor)
    lines.append("halt flag cleared" if halt else "halt flag was not set")
    lines.append(f"recorded: {actor}: {reason}")
    lines.append("the trading mode is unchanged (paper after an emergency stop); `catalyst-ops mode live` to go live")
    return True, lines
