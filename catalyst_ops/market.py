"""The market-hours jobs: market open, the scans, market close.

Cron fires them at host times; these functions decide, from the exchange calendar and the
one clock, whether this firing acts:

- halt flag set: skip (the emergency stop wins over every schedule);
- no session today (weekend, holiday): skip;
- outside the job's window: skip. The window starts at the job's real moment in the
  exchange's zone (the session's real open/close, a scan's configured time) and lasts
  `market.late_tolerance_minutes`. A host whose clock or zone is off by an hour therefore
  skips instead of trading at the wrong time, and the skip is alerted;
- already done for this session and kind (market_actions): skip. The claim is an INSERT
  inside BEGIN IMMEDIATE, so two firings at once cannot both act. A claim left `running` by a
  process that was killed (its pid, boot id and start time no longer match a live process) is
  taken over by the next firing, which records that it did and acts once.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from catalyst_ops import alerts, clock, proclive, state, workflow
from catalyst_ops.httpjson import NoAnswer
from catalyst_ops.errors import CANNOT_RUN, OK, PROBLEM, USAGE, CannotRun, OpsError

log = logging.getLogger(__name__)

OPEN = "market-open"
CLOSE = "market-close"

# outcomes after which nothing happened at the service, so a later firing may claim again; after
# `unknown` (a start sent, not answered in time) the re-run first asks the workflow what it is doing
RECLAIMABLE = {"down", "refused", "unknown"}


@dataclass
class Decision:
    kind: str
    act: bool
    reason: str
    session_date: str | None = None
    target: datetime | None = None  # the moment the job is meant to act (exchange time)
    misfire: bool = False  # a session day but far from the job's moment: the host clock/zone is suspect
    session: dict | None = None


@dataclass
class Outcome:
    kind: str
    exit_code: int
    status: str  # ok failed skipped
    outcome: str  # completed failed timeout already_running down refused reported skipped dry_run
    message: str
    session_date: str | None = None
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "exit_code": self.exit_code, "status": self.status, "outcome": self.outcome,
                "message": self.message, "session_date": self.session_date, **self.data}


def parse_hhmm(text: str, where: str) -> time:
    try:
        h, m = text.split(":")
        return time(int(h), int(m))
    except (ValueError, AttributeError):
        raise OpsError(f"{where}: expected HH:MM (exchange time), got {text!r}", USAGE)


def scan_kind(slot: str) -> str:
    return f"scan-{slot}"


def decide(cfg, cal, kind: str, now: datetime, slot: str | None = None) -> Decision:
    """Whether `kind` acts at `now` (calendar and window only; halt and claims are checked by run())."""
    tol = timedelta(minutes=cfg.market.late_tolerance_minutes)
    day = cal.local_date(now)
    session = cal.session(day)
    if session is None:
        return Decision(kind, False, f"{day.isoformat()} {cal.why_closed(day)}")
    sd = day.isoformat()
    local_now = now.astimezone(cal.tz)
    close_txt = session.close_local.strftime("%H:%M") + (", early close" if session.early_close else "")
    if kind == OPEN:
        # the configured time (a few minutes after the bell if the operator wants), never before a late open
        target = max(session.open, datetime.combine(day, parse_hhmm(cfg.market.market_open, "market.market_open"),
                                                    tzinfo=cal.tz))
    elif kind == CLOSE:
        target = session.close
    else:
        t = parse_hhmm(slot or "", "scan --slot")
        target = datetime.combine(day, t, tzinfo=cal.tz)
        if target >= session.close:
            return Decision(kind, False, f"the {slot} scan is at or after today's close at {close_txt}", sd, target,
                            session=session.as_dict())
    if kind != CLOSE and now >= session.close:
        return Decision(kind, False, f"the session closed at {close_txt}", sd, target, session=session.as_dict())
    target_txt = target.astimezone(cal.tz).strftime("%H:%M %Z")
    if now < target:
        early = target - now
        # the close job also fires at 13:00 every weekday to catch early closes; not a misfire
        probe = kind == CLOSE and now >= session.open
        return Decision(kind, False, f"too early: acts at {target_txt}"
                        + (f" (the close, {close_txt})" if kind == CLOSE else "")
                        + f", now {local_now.strftime('%H:%M %Z')}", sd, target,
                        misfire=not probe and early >= timedelta(minutes=5), session=session.as_dict())
    if now >= target + tol:
        return Decision(kind, False, f"too late: meant for {target_txt}, now {local_now.strftime('%H:%M %Z')} "
                        f"(tolerance {cfg.market.late_tolerance_minutes} min)", sd, target,
                        misfire=kind != CLOSE or now < session.close + timedelta(hours=2), session=session.as_dict())
    return Decision(kind, True, f"session {sd} ({session.open_local.strftime('%H:%M')}-{close_txt}); "
                    f"acting for {target_txt}", sd, target, session=session.as_dict())


# ---------------------------------------------------------------------------- claims


def claim(db, session_date: str, kind: str, job_run_id: int | None,
          force: bool = False) -> tuple[bool, dict | None, dict | None]:
    """Atomically take (session_date, kind). Returns (claimed, previous row, reclaim).

    The claim records its holder (pid, boot id, start time). A row left `running` by a holder that
    is provably dead (killed after claiming) is taken over inside the same transaction, so of two
    firings only one takes it; `reclaim` then says from whom and why. A live holder keeps it."""
    holder = proclive.me()
    reclaim = None
    with db.transaction() as conn:
        row = conn.execute("SELECT * FROM market_actions WHERE session_date=? AND kind=?", (session_date, kind)).fetchone()
        prev = dict(row) if row else None
        if prev and not force and prev["outcome"] not in RECLAIMABLE:
            if prev["outcome"] != "running":
                return False, prev, None
            old = _holder(conn, prev)
            why = proclive.dead_reason(old)
            if why is None:
                return False, prev, None
            reclaim = {"holder": old.as_dict(), "job_run_id": prev["job_run_id"], "claimed_at": prev["acted_at"],
                       "reason": why}
        conn.execute("INSERT INTO market_actions(session_date, kind, acted_at, job_run_id, outcome, detail,"
                     " holder_pid, holder_boot_id, holder_start_time)"
                     " VALUES (?,?,?,?,'running',NULL,?,?,?) ON CONFLICT(session_date, kind) DO UPDATE SET"
                     " acted_at=excluded.acted_at, job_run_id=excluded.job_run_id, outcome='running', detail=NULL,"
                     " holder_pid=excluded.holder_pid, holder_boot_id=excluded.holder_boot_id,"
                     " holder_start_time=excluded.holder_start_time",
                     (session_date, kind, clock.timestamp(), job_run_id, holder.pid, holder.boot_id, holder.start_time))
        if reclaim is not None:
            summary = (f"killed while holding the {kind} claim of session {session_date} ({reclaim['reason']}); "
                       f"taken over by run {job_run_id} (pid {holder.pid})")
            if prev["job_run_id"] is not None:
                # the dead run never recorded its end: it crashed, and validate/metrics count it so
                conn.execute("UPDATE job_runs SET status='crashed', ended_at=?, summary=? WHERE id=? AND status='running'",
                             (clock.timestamp(), summary, prev["job_run_id"]))
            conn.execute("INSERT INTO events(at, kind, actor, detail) VALUES (?,?,?,?)",
                         (clock.timestamp(), "market-reclaim", state.actor(),
                          json.dumps({"kind": kind, "session_date": session_date, "by_job_run_id": job_run_id,
                                      "by_pid": holder.pid, **reclaim}, sort_keys=True)))
    return True, prev, reclaim


def _holder(conn, row: dict) -> proclive.Holder:
    """The claim's holder; a row written before holders were recorded: the pid of its job run (no
    boot id or start time, so only a pid that no longer exists proves it dead)."""
    if row.get("holder_pid"):
        return proclive.Holder(int(row["holder_pid"]), row.get("holder_boot_id"), row.get("holder_start_time"))
    if row.get("job_run_id") is not None:
        run = conn.execute("SELECT pid FROM job_runs WHERE id=?", (row["job_run_id"],)).fetchone()
        if run is not None and run["pid"]:
            return proclive.Holder(int(run["pid"]))
    return proclive.Holder(None)


def _reclaim_note(reclaim: dict | None) -> str:
    if not reclaim:
        return ""
    h = reclaim["holder"]
    return (f"reclaimed the session's claim from run {reclaim['job_run_id']} (pid {h['pid']}), which was killed "
            f"after claiming: {reclaim['reason']}; ")


def settle(db, session_date: str, kind: str, outcome: str, detail: dict) -> None:
    db.execute("UPDATE market_actions SET outcome=?, detail=? WHERE session_date=? AND kind=?",
               (outcome, json.dumps(detail, sort_keys=True, default=str), session_date, kind))


def _current_run_id(db, job: str) -> int | None:
    row = db.one("SELECT id FROM job_runs WHERE job=? AND pid=? AND status='running' ORDER BY id DESC LIMIT 1",
                 (job, os.getpid()))
    return int(row["id"]) if row else None


# ---------------------------------------------------------------------------- the jobs


def run(cfg, db, kind: str, *, slot: str | None = None, dry_run: bool = False, force: bool = False,
        deadline: float | None = None, job: str | None = None) -> Outcome:
    from catalyst_ops.calendar import from_config

    halt = db.halt_state()
    if halt is not None:
        since = datetime.fromtimestamp(halt["since"], clock.now().tzinfo).isoformat(timespec="seconds")
        out = Outcome(kind, OK, "skipped", "halted", f"halted since {since} ({halt['reason'] or 'no reason given'}, "
                      f"by {halt['actor']}): {kind} does nothing until `resume`")
        if kind == OPEN and not dry_run:
            return _halted_open_check(cfg, db, out, job)
        return out
    now = clock.now()
    cal = from_config(cfg)
    d = decide(cfg, cal, kind, now, slot)
    if not d.act:
        if d.misfire and not dry_run:
            alerts.enqueue(db, "warning", f"market:{kind}:misfire", f"{kind} fired at the wrong time",
                           f"{kind} fired at {now.astimezone(cal.tz).isoformat(timespec='minutes')} on session day "
                           f"{d.session_date}: {d.reason}. Cron follows the host clock; check the host timezone "
                           f"(`catalyst-ops schedule`).")
        return Outcome(kind, OK, "skipped", "skipped", d.reason, d.session_date, {"session": d.session})
    # everything that can fail on configuration is checked before the claim, so a bad config does
    # not use up the session's one action
    if kind != CLOSE:
        from catalyst_ops import ramp

        body = workflow.build_body(cfg, ramp.workflow_overrides(cfg, db))
    else:
        from catalyst_ops import tradingreport

        body = None
        tradingreport.check_config(cfg)
    if dry_run:
        what = f"would start a workflow cycle with {json.dumps(body, sort_keys=True)}" if body is not None \
            else ("would build the daily trading report from the trading database and the broker, store it "
                  "(txt, json, html) and mail it" + (", and fetch the reporting service's daily report"
                                                     if reporting_service_enabled(cfg) else ""))
        done = db.one("SELECT * FROM market_actions WHERE session_date=? AND kind=?", (d.session_date, kind))
        if done and done["outcome"] not in RECLAIMABLE and not force:
            why = proclive.dead_reason(_holder(db.conn, dict(done))) if done["outcome"] == "running" else None
            if why is None:
                what = f"already done this session ({done['outcome']}): would skip"
            else:
                what = f"would reclaim the claim of a killed run ({why}) and act: {what}"
        return Outcome(kind, OK, "ok", "dry_run", f"{d.reason}; {what}", d.session_date, {"session": d.session})
    claimed, prev, reclaim = claim(db, d.session_date, kind, _current_run_id(db, job or kind), force)
    if not claimed:
        when = datetime.fromtimestamp(prev["acted_at"], cal.tz).strftime("%H:%M:%S %Z")
        held = f", held by live pid {prev['holder_pid']}" if prev["outcome"] == "running" and prev.get("holder_pid") else ""
        return Outcome(kind, OK, "skipped", "already_done",
                       f"already acted for session {d.session_date} at {when} (outcome {prev['outcome']}{held}): skipped",
                       d.session_date, {"previous": prev})
    if force and prev:
        db.record_event("market-force", {"kind": kind, "session_date": d.session_date, "previous": prev["outcome"]})
    if reclaim:
        log.warning("%s: %s", kind, _reclaim_note(reclaim).rstrip("; "))
        alerts.enqueue(db, "warning", f"market:{kind}:reclaim",
                       f"{kind} was killed after claiming its session; the next firing acts ({d.session_date})",
                       f"{_reclaim_note(reclaim)}this firing acts instead. Look in the journal for what killed it "
                       f"(OOM killer, reboot, an operator).")
    try:
        if kind == CLOSE:
            out = _close(cfg, db, d)
        else:
            out = _cycle(cfg, db, kind, d, body, deadline, prev)
    except BaseException as exc:
        settle(db, d.session_date, kind, "error", {"error": f"{exc.__class__.__name__}: {exc}", "reclaimed": reclaim})
        raise
    if reclaim:
        out.message = _reclaim_note(reclaim) + out.message
        out.data["reclaimed"] = reclaim
    settle(db, d.session_date, kind, out.outcome, {"message": out.message, **out.data})
    return out


def _halted_open_check(cfg, db, out: Outcome, job: str | None) -> Outcome:
    """Halted, at the open: an emergency stop that left closes queued on a closed market is
    finished here, once per session: the account must be flat now (then it is suspended)."""
    from catalyst_ops import emergency
    from catalyst_ops.calendar import from_config

    pend = emergency.pending_flatten(db)
    if pend is None:
        return out
    d = decide(cfg, from_config(cfg), OPEN, clock.now())
    if not d.act:
        return Outcome(OPEN, OK, "skipped", "halted", f"{out.message}; the flat check of the emergency stop's queued "
                       f"closes waits for the open ({d.reason})", d.session_date)
    claimed, _, _ = claim(db, d.session_date, "flat-check", _current_run_id(db, job or OPEN))
    if not claimed:
        return Outcome(OPEN, OK, "skipped", "halted", f"{out.message}; flat check already done this session",
                       d.session_date)
    try:
        code, msg = emergency.check_flat_at_open(cfg, db, pend)
    except BaseException as exc:
        settle(db, d.session_date, "flat-check", "error", {"error": f"{exc.__class__.__name__}: {exc}"})
        raise
    # broker unreachable: nothing was decided, a later firing in the window may check again
    outcome = "flat" if code == OK else ("down" if code == CANNOT_RUN else "not_flat")
    settle(db, d.session_date, "flat-check", outcome, {"message": msg})
    return Outcome(OPEN, code, "ok" if code == OK else "failed", "halted", f"{out.message}; {msg}", d.session_date,
                   {"flat_check": msg})


def _severity(kind: str) -> str:
    return "critical" if kind == OPEN else "warning"


def _alert(db, kind: str, session_date: str, severity: str, what: str, message: str) -> None:
    alerts.enqueue(db, severity, f"market:{kind}", f"{kind} {what} ({session_date})", message)


def _after_unknown(cfg, kind: str, d: Decision, prev: dict, deadline: float | None) -> Outcome | None:
    """The last start of this session was sent but not answered: it may have begun a cycle. Ask the
    workflow's status before starting again. None: nothing began since, start."""
    from catalyst_ops import httpjson

    sd = d.session_date
    try:
        detail = json.loads(prev.get("detail") or "{}")
    except ValueError:
        detail = {}
    spec = cfg.profile_data.get("workflow", {}).get("status", {})
    path = spec.get("path", "/api/v1/workflow/status")
    if "{cycle_id}" in path:
        return None  # per-cycle status and no cycle id: the service's 409 guards a running cycle
    try:
        resp = httpjson.request("GET", cfg.service_url(cfg.workflow.service, path), timeout=cfg.workflow.start_timeout,
                                what="workflow status")
    except CannotRun as exc:
        msg = f"the last start was not answered and the workflow's status cannot be read, so not started again: {exc}"
        return Outcome(kind, CANNOT_RUN, "failed", "unknown", msg, sd, {"baseline": detail.get("baseline")})
    body = resp.body if resp.status == 200 and isinstance(resp.body, dict) else {}
    status = str(body.get(spec.get("status_field", "status"), ""))
    running = (set(spec.get("running_words", [])) | set(spec.get("stage_words", []))) - {"idle"}
    terminal = set(spec.get("completed_words", ["completed"])) | set(spec.get("failed_words", ["failed"]))
    if status in running:
        cycle = body.get("current_cycle")
        log.info("%s: the unanswered start began cycle %s; following it instead of starting another", kind, cycle)
        followed = workflow.follow(cfg, cycle, deadline=deadline, baseline=None)
        return _followed(kind, sd, cycle, followed, "the unanswered start's ")
    if status in terminal and workflow._is_ours(body, None, detail.get("baseline"), False):
        cycle = body.get("current_cycle")
        followed = workflow.FollowResult("completed" if status in spec.get("completed_words", ["completed"]) else "failed",
                                         status, [], 0.0, f"cycle ended {status}")
        return _followed(kind, sd, cycle, followed, "the unanswered start's ")
    return None


def _followed(kind: str, sd: str, cycle_id, followed, what: str = "") -> Outcome:
    data = {"cycle_id": cycle_id, "final_status": followed.final_status, "stages": followed.stages_seen,
            "seconds": round(followed.seconds, 2)}
    if followed.outcome == "completed":
        return Outcome(kind, OK, "ok", "completed", f"{what}cycle {cycle_id} completed in {followed.seconds:.1f}s",
                       sd, data)
    return Outcome(kind, PROBLEM, "failed", followed.outcome, f"{what}cycle {cycle_id}: {followed.detail}", sd, data)


def _cycle(cfg, db, kind: str, d: Decision, body: dict, deadline: float | None, prev: dict | None = None) -> Outcome:
    sd = d.session_date
    if prev and prev.get("outcome") == "unknown":
        out = _after_unknown(cfg, kind, d, prev, deadline)
        if out is not None:
            if out.exit_code != OK:
                _alert(db, kind, sd, _severity(kind), "unanswered start" if out.outcome == "unknown" else
                       ("cycle failed" if out.outcome == "failed" else "cycle did not finish"), out.message)
            return out
    baseline = workflow.snapshot(cfg)
    try:
        started = workflow.start(cfg, body, timeout=cfg.workflow.start_timeout)
    except NoAnswer as exc:
        # sent, and maybe acted on: recorded `unknown`, not `down`, so a re-run looks before starting again
        msg = (f"the workflow service did not answer the start in time, so a cycle may have begun: {exc}. A re-run "
               "checks the workflow's status before starting again")
        _alert(db, kind, sd, "critical" if kind == OPEN else "warning", "start not answered", msg)
        return Outcome(kind, CANNOT_RUN, "failed", "unknown", msg, sd, {"baseline": baseline})
    except CannotRun as exc:
        msg = f"workflow service unreachable, no cycle started: {exc}"
        _alert(db, kind, sd, "critical" if kind == OPEN else "warning", "could not start", msg)
        return Outcome(kind, CANNOT_RUN, "failed", "down", msg, sd)
    if started.outcome == workflow.ALREADY_RUNNING:
        msg = f"a cycle is already running ({started.detail}); not started again"
        if kind == OPEN:
            # at the open nothing else should be running: an operator needs to look (--force to start anyway)
            _alert(db, kind, sd, "warning", "found a cycle already running", msg)
            return Outcome(kind, PROBLEM, "failed", "already_running", msg, sd, {"http_status": started.http_status})
        return Outcome(kind, OK, "ok", "already_running", msg + ": this scan is covered by it", sd,
                       {"http_status": started.http_status})
    if started.outcome == workflow.REFUSED:
        msg = f"workflow start refused: {started.detail}"
        _alert(db, kind, sd, _severity(kind), "was refused", msg)
        return Outcome(kind, PROBLEM, "failed", "refused", msg, sd, {"http_status": started.http_status})
    log.info("%s: cycle %s started; following it", kind, started.cycle_id)
    followed = workflow.follow(cfg, started.cycle_id, deadline=deadline, baseline=baseline)
    data = {"cycle_id": started.cycle_id, "final_status": followed.final_status, "stages": followed.stages_seen,
            "seconds": round(followed.seconds, 2)}
    if followed.outcome == "completed":
        return Outcome(kind, OK, "ok", "completed",
                       f"cycle {started.cycle_id} completed in {followed.seconds:.1f}s", sd, data)
    what = "cycle failed" if followed.outcome == "failed" else "cycle did not finish"
    msg = f"cycle {started.cycle_id}: {followed.detail}"
    _alert(db, kind, sd, _severity(kind), what, msg)
    return Outcome(kind, PROBLEM, "failed", followed.outcome, msg, sd, data)


def _fill(template, values: dict):
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, str):
        for k, v in values.items():
            if template == "{" + k + "}":
                return v  # keep the type: the real service wants an integer cycle id
            template = template.replace("{" + k + "}", str(v))
    return template


def _report_cycle_id(cfg, db, session_date: str):
    if cfg.market.report_cycle_id is not None:
        return cfg.market.report_cycle_id
    row = db.one("SELECT detail FROM market_actions WHERE session_date=? AND kind=?", (session_date, OPEN))
    if row and row["detail"]:
        try:
            return json.loads(row["detail"]).get("cycle_id")
        except ValueError:
            return None
    return None


def reporting_service_enabled(cfg) -> bool:
    if cfg.market.reporting_service is not None:
        return cfg.market.reporting_service
    return bool(cfg.profile_data.get("reporting", {}).get("daily", {}).get("enabled", False))


def _reporting_service(cfg, db, sd: str) -> dict:
    """The reporting service's daily report (market.reporting_service): outcome reported, refused or down."""
    from catalyst_ops import httpjson

    spec = cfg.profile_data.get("reporting", {}).get("daily", {})
    cycle_id = _report_cycle_id(cfg, db, sd)
    values = {"cycle_id": cycle_id if cycle_id is not None else "", "date": sd}
    params = _fill(spec.get("params") or {}, values) or None
    body = _fill(spec.get("body"), values) if spec.get("body") is not None else None
    method = spec.get("method", "GET").upper()
    url = cfg.service_url("reporting", spec.get("path", "/api/v1/reports/daily"))
    try:
        resp = httpjson.request(method, url, params=params, json_body=body, timeout=cfg.service_timeout("reporting") * 6,
                                what="daily report")
    except CannotRun as exc:
        return {"outcome": "down", "cycle_id": cycle_id, "http_status": None,
                "message": f"reporting unreachable, no daily report: {exc}"}
    if resp.status != 200 or not isinstance(resp.body, (dict, list)):
        return {"outcome": "refused", "cycle_id": cycle_id, "http_status": resp.status,
                "message": f"daily report refused: {method} {spec.get('path')} → HTTP {resp.status}: {resp.text[:200]}"}
    return {"outcome": "reported", "cycle_id": cycle_id, "http_status": resp.status, "message": None, "body": resp.body}


def _close(cfg, db, d: Decision) -> Outcome:
    """The daily trading report from the database and the broker: stored (txt, json, html) and mailed.

    Database unreachable: what the broker gives is stored, the outcome is `down` (exit 3, so a
    re-run may claim the session again) and a warning alert carries the partial report. No
    trades is a valid report. The reporting service is asked only when market.reporting_service
    (or the profile) says so; its failure is reported as before (refused: 1, down: 3)."""
    from datetime import date

    from catalyst_ops import tradingreport

    sd = d.session_date
    data = tradingreport.build(cfg, date.fromisoformat(sd), session=d.session)
    service = _reporting_service(cfg, db, sd) if reporting_service_enabled(cfg) else None
    if service is not None:
        data["reporting_service"] = service
    close_txt = d.session["close"] if d.session else ""
    paths: list[str] = []
    if data["database"]["available"] or data["broker"]["available"]:
        paths = tradingreport.save(cfg, db, data)
    json_path = next((p for p in paths if p.endswith(".json")), None)
    out = {"path": json_path, "paths": paths, "summary": data["summary"], "database": data["database"],
           "broker_available": data["broker"]["available"]}
    if service is not None:
        out["reporting_service"] = {k: v for k, v in service.items() if k != "body"}
    if not data["database"]["available"]:
        stored = f"stored what the broker gives in {json_path}" if paths else "nothing stored (the broker is unavailable too)"
        msg = f"trading database unreachable, daily report without positions or P&L: {data['database']['error']}; {stored}"
        alerts.enqueue(db, "warning", f"market:{CLOSE}", f"{CLOSE} could not read the trading database ({sd})",
                       msg + "\n\n" + tradingreport.render_text(data))
        return Outcome(CLOSE, CANNOT_RUN, "failed", "down", msg, sd, out)
    tradingreport.mail(db, data)
    base = f"daily trading report for {sd} stored in {json_path} (close {close_txt}): {tradingreport.headline(data).split(': ', 1)[1]}"
    if service is not None and service["outcome"] != "reported":
        _alert(db, CLOSE, sd, "warning", "got no report from the reporting service", service["message"])
        code = CANNOT_RUN if service["outcome"] == "down" else PROBLEM
        return Outcome(CLOSE, code, "failed", service["outcome"], f"{service['message']}; {base}", sd,
                       dict(out, http_status=service.get("http_status")))
    return Outcome(CLOSE, OK, "ok", "reported", base, sd, out)
