"""The stability verdict (the seed's 48-hour criteria), computed from the state DB.

Each criterion is PASS or FAIL with its figure and, when it fails, the evidence (gaps with
their start and end, missed jobs with their slot). The window is [now - hours, now] where
now is catalyst_ops.clock (so `--now` replays any past window).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from catalyst_ops import clock
from catalyst_ops.errors import CannotRun, ConfigError

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
EARLY_SECONDS = 60  # a run this much before its slot still counts (cron and clock skew)
UP_STATES = ("healthy", "degraded")  # answering; degraded is reported elsewhere, but the service is up
# alerts raised by exercises (commands/alert.py's test record, emergency.py's drill): deliveries, never incidents
EXERCISE_KEYS = ("alert-test", "emergency-stop:drill")


@dataclass
class Criterion:
    key: str
    name: str
    passed: bool
    figure: str
    details: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Window:
    start: float
    end: float
    tz: ZoneInfo

    def fmt(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).strftime("%Y-%m-%d %H:%M")

    def span(self, a: float, b: float) -> str:
        da, db_ = datetime.fromtimestamp(a, self.tz), datetime.fromtimestamp(b, self.tz)
        right = db_.strftime("%H:%M") if da.date() == db_.date() else db_.strftime("%Y-%m-%d %H:%M")
        return f"{da.strftime('%Y-%m-%d %H:%M')} -> {right} {db_.strftime('%Z')}"


def _minutes(seconds: float) -> str:
    m = seconds / 60
    if m < 10:
        return f"{m:.1f}".rstrip("0").rstrip(".") + " min"
    return f"{m:.0f} min" if m < 120 else f"{m / 60:.1f} h"


def find_gaps(points: list[float], start: float, end: float, max_gap: float, anchor: float | None = None) -> list[tuple[float, float]]:
    """Stretches longer than max_gap without a point, from start (or the last point before it,
    the anchor) to end. A gap is reported from the last point before it to the first after it."""
    pts = sorted(p for p in points if start <= p <= end)
    prev = anchor if anchor is not None else start
    gaps = []
    for p in pts + [end]:
        if p - prev > max_gap:
            gaps.append((prev, p))
        prev = max(prev, p)
    return gaps


# ---------------------------------------------------------------- the criteria


def health_checks(cfg, db, w: Window) -> Criterion:
    interval = cfg.validation.health_interval_minutes * 60
    rows = db.query("SELECT started_at FROM health_sweeps WHERE source='health' AND started_at>=? AND started_at<=? ORDER BY started_at",
                    (w.start, w.end))
    pts = [r["started_at"] for r in rows]
    before = db.one("SELECT MAX(started_at) AS t FROM health_sweeps WHERE source='health' AND started_at<?", (w.start,))["t"]
    anchor = before if before is not None and w.start - before <= interval * 1.5 else None
    gaps = find_gaps(pts, w.start, w.end, interval * 1.5, anchor)
    expected = int((w.end - w.start) // interval)
    # cron slots and the window edges need not line up: one fewer is still every slot
    enough = len(pts) >= expected - 1
    details = [f"gap {w.span(a, b)} ({_minutes(b - a)}, about {max(round((b - a) / interval) - 1, 1)} checks missed)"
               + (" - still open" if b == w.end else "") for a, b in gaps]
    if not enough and not gaps:
        details.append(f"only {len(pts)} checks where {expected} were due: the job runs less often than every "
                       f"{cfg.validation.health_interval_minutes} min")
    failed_sweeps = db.one("SELECT COUNT(*) AS n FROM health_sweeps WHERE source='health' AND started_at>=? AND started_at<=? AND failed>0",
                           (w.start, w.end))["n"]
    figure = f"{len(pts)} of {expected} expected, {len(gaps)} gap{'s' if len(gaps) != 1 else ''} over " \
             f"{_minutes(interval * 1.5)}; {failed_sweeps} found a failed service"
    return Criterion("health_checks", f"health checks every {cfg.validation.health_interval_minutes} min", enough and not gaps,
                     figure, details, {"count": len(pts), "expected": expected, "failed_sweeps": failed_sweeps,
                                       "gaps": [{"start": a, "end": b, "minutes": round((b - a) / 60, 1)} for a, b in gaps]})


def service_uptime(cfg, db, w: Window) -> Criterion:
    """Each service's uptime over the window from its recorded checks (every source: health, monitor,
    status). A check's state holds until that service's next check; the window opens with the last check
    before it when that one is recent (else the time before its first check is unknown, not counted).
    Stretches without any check are the health-checks criterion's business."""
    anchor_max = cfg.validation.health_interval_minutes * 60 * 1.5
    rows_out, details, never = [], [], []
    for svc in cfg.enabled_services():
        # only the checks where the state changed (a state holds until the next check, so the runs of
        # equal states add up the same): a month of 30-second monitor sweeps stays a few rows in Python
        rows = db.query(
            "SELECT checked_at, state, n FROM (SELECT checked_at, state, COUNT(*) OVER () AS n,"
            " LAG(state) OVER (ORDER BY checked_at, id) AS prev FROM health_checks"
            " WHERE service=? AND checked_at>=? AND checked_at<=?) WHERE prev IS NULL OR prev != state"
            " ORDER BY checked_at", (svc, w.start, w.end))
        points = [(r["checked_at"], r["state"]) for r in rows]
        n_checks = rows[0]["n"] if rows else 0
        before = db.one("SELECT checked_at, state FROM health_checks WHERE service=? AND checked_at<? ORDER BY checked_at DESC LIMIT 1",
                        (svc, w.start))
        if before is not None and w.start - before["checked_at"] <= anchor_max:
            points.insert(0, (w.start, before["state"]))
            n_checks += 1
        if not points:
            never.append(svc)
            rows_out.append({"service": svc, "uptime_percent": None, "checks": 0, "up_seconds": 0, "down_seconds": 0,
                             "degraded_seconds": 0, "gaps": []})
            continue
        up = down = degraded = 0.0
        gaps: list[dict] = []
        gap = None
        for i, (t, st) in enumerate(points):
            span = max((points[i + 1][0] if i + 1 < len(points) else w.end) - t, 0.0)
            if st in UP_STATES:
                up += span
                degraded += span if st == "degraded" else 0
                gap = None
            else:
                down += span
                if gap is None:
                    gap = {"start": t, "end": t + span, "states": [st]}
                    gaps.append(gap)
                else:
                    gap["end"] = t + span
                    if st not in gap["states"]:
                        gap["states"].append(st)
        known = up + down
        pct = round(100.0 * up / known, 2) if known else None
        for g in gaps:
            g["minutes"] = round((g["end"] - g["start"]) / 60, 1)
            details.append(f"{svc} down {w.span(g['start'], g['end'])} ({_minutes(g['end'] - g['start'])}, "
                           f"{'/'.join(g['states'])})" + (" - still down" if g["end"] >= w.end else ""))
        rows_out.append({"service": svc, "uptime_percent": pct, "checks": n_checks, "up_seconds": round(up),
                         "down_seconds": round(down), "degraded_seconds": round(degraded), "gaps": gaps})
    details += [f"{svc}: no health check recorded in the window" for svc in never]
    bad = [r for r in rows_out if r["gaps"] or r["uptime_percent"] is None]
    n = len(rows_out)
    if not bad:
        figure = f"{n} of {n} services up throughout"
    else:
        figure = f"{n - len(bad)} of {n} services up throughout; " + ", ".join(
            f"{r['service']} {r['uptime_percent']:.2f}%" if r["uptime_percent"] is not None else f"{r['service']} not checked"
            for r in bad)
    return Criterion("service_uptime", f"all {n} services up throughout", not bad, figure, details, {"services": rows_out})


def _hhmm(text: str, key: str, cfg) -> dtime:
    try:
        h, m = text.strip().split(":")
        return dtime(int(h), int(m))
    except ValueError:
        raise ConfigError(cfg.source, key, f"expected HH:MM, got {text!r}")


def job_names(cfg) -> dict[str, str]:
    defaults = {"market_open": "market-open", "scan": "scan", "market_close": "market-close", "backup": "backup",
                "weekly_maintenance": "weekly-maintenance"}
    names = dict(defaults)
    for k, v in (cfg.validation.job_names or {}).items():
        if k not in defaults:
            raise ConfigError(cfg.source, f"validation.job_names.{k}", f"unknown job kind; expected one of {', '.join(defaults)}")
        names[k] = v
    return names


def _sessions(cfg, start: float, end: float) -> list[tuple[datetime, datetime, date]]:
    """(open, close, session date) of the exchange sessions that open or close inside [start, end]."""
    from catalyst_ops.calendar import from_config

    utc = ZoneInfo("UTC")
    try:
        sessions = from_config(cfg).sessions_in(datetime.fromtimestamp(start, utc), datetime.fromtimestamp(end, utc))
    except ModuleNotFoundError:
        raise CannotRun("exchange_calendars is not installed: cannot tell which days were sessions")
    except Exception as exc:
        raise CannotRun(f"exchange calendar {cfg.market.calendar}: {exc.__class__.__name__}: {exc}")
    return [(s.open, s.close, s.day) for s in sessions]


def expected_runs(cfg, start: float, end: float) -> list[tuple[str, str, float]]:
    """(job, label, slot) for every scheduled slot in [start, end]."""
    names = job_names(cfg)
    slots: list[tuple[str, str, float]] = []
    xtz = ZoneInfo(cfg.market.exchange_timezone)
    htz = ZoneInfo(cfg.host_timezone)
    if any(names[k] for k in ("market_open", "scan", "market_close")):
        for o, c, d in _sessions(cfg, start, end):
            if names["market_open"]:
                slots.append((names["market_open"], f"market open {d}", o.timestamp()))
            if names["scan"]:
                for i, t in enumerate(cfg.market.scans):
                    at = datetime.combine(d, _hhmm(t, f"market.scans[{i}]", cfg), xtz).timestamp()
                    if at < c.timestamp():  # a scan after an early close is skipped by design
                        slots.append((names["scan"], f"scan {t} {d}", at))
            if names["market_close"]:
                slots.append((names["market_close"], f"market close {d}" + (" (early close)" if c.astimezone(xtz).hour < 16 else ""),
                              c.timestamp()))
    day = datetime.fromtimestamp(start, htz).date()
    last = datetime.fromtimestamp(end, htz).date()
    bt = _hhmm(cfg.validation.backup_time, "validation.backup_time", cfg)
    mparts = cfg.validation.maintenance_time.split()
    if len(mparts) != 2 or mparts[0].lower()[:3] not in WEEKDAYS:
        raise ConfigError(cfg.source, "validation.maintenance_time", f"expected 'DAY HH:MM' like 'Sun 02:00', got {cfg.validation.maintenance_time!r}")
    mday, mt = WEEKDAYS.index(mparts[0].lower()[:3]), _hhmm(mparts[1], "validation.maintenance_time", cfg)
    while day <= last:
        if names["backup"]:
            slots.append((names["backup"], f"backup {day}", datetime.combine(day, bt, htz).timestamp()))
        if names["weekly_maintenance"] and day.weekday() == mday:
            slots.append((names["weekly_maintenance"], f"weekly maintenance {day}", datetime.combine(day, mt, htz).timestamp()))
        day += timedelta(days=1)
    return sorted((s for s in slots if start <= s[2] <= end), key=lambda s: s[2])


def scheduled_jobs(cfg, db, w: Window) -> Criterion:
    tol = cfg.validation.job_tolerance_minutes * 60
    try:
        slots = [s for s in expected_runs(cfg, w.start, w.end) if s[2] + tol <= w.end]  # a slot still inside its tolerance is not judged yet
    except CannotRun as exc:
        return Criterion("scheduled_jobs", "scheduled jobs on time", False, f"cannot compute the schedule: {exc}")
    details, on_time = [], 0
    for job, label, at in slots:
        runs = db.query("SELECT started_at, status, exit_code FROM job_runs WHERE job=? AND started_at>=? AND started_at<=?"
                        " ORDER BY started_at", (job, at - EARLY_SECONDS, at + tol))
        good = [r for r in runs if r["status"] in ("ok", "skipped", "running")]
        if good:
            on_time += 1
            continue
        if runs:
            r = runs[0]
            details.append(f"{label} ({w.fmt(at)}): `{job}` ran at {w.fmt(r['started_at'])} and {r['status']} (exit {r['exit_code']})")
            continue
        late = db.one("SELECT started_at FROM job_runs WHERE job=? AND started_at>? AND started_at<=? ORDER BY started_at LIMIT 1",
                      (job, at + tol, at + 6 * 3600))
        details.append(f"{label} ({w.fmt(at)}): `{job}` " + (f"started late at {w.fmt(late['started_at'])}" if late else
                                                             f"did not run within {cfg.validation.job_tolerance_minutes} min"))
    figure = f"{on_time} of {len(slots)} scheduled runs on time (within {cfg.validation.job_tolerance_minutes} min)"
    return Criterion("scheduled_jobs", "scheduled jobs on time", on_time == len(slots), figure, details,
                     {"slots": len(slots), "on_time": on_time,
                      "schedule": [{"job": j, "slot": label, "at": at} for j, label, at in slots]})


def monitor(cfg, db, w: Window) -> Criterion:
    from catalyst_ops import resources

    resources.ensure_schema(db)
    max_gap = cfg.validation.monitor_max_gap_minutes * 60
    pts = [r["at"] for r in db.query("SELECT at FROM heartbeat_observations WHERE name='monitor' AND at>=? AND at<=?", (w.start, w.end))]
    pts += [r["started_at"] for r in db.query("SELECT started_at FROM health_sweeps WHERE source='monitor' AND started_at>=? AND started_at<=?",
                                              (w.start, w.end))]
    hb = db.last_heartbeat("monitor")
    if hb and w.start <= hb["at"] <= w.end:
        pts.append(hb["at"])
    before = db.one("SELECT MAX(t) AS t FROM (SELECT MAX(at) AS t FROM heartbeat_observations WHERE name='monitor' AND at<?"
                    " UNION ALL SELECT MAX(started_at) FROM health_sweeps WHERE source='monitor' AND started_at<?)", (w.start, w.start))["t"]
    anchor = before if before is not None and w.start - before <= max_gap else None
    if not pts:
        return Criterion("monitor", "monitor running throughout", False, "no monitor heartbeat seen in the window",
                         ["nothing recorded: is the monitor running, and does `catalyst-ops sample-resources` run from cron?"],
                         {"evidence": 0})
    gaps = find_gaps(pts, w.start, w.end, max_gap, anchor)
    longest = max([b - a for a, b in gaps], default=0)
    figure = f"{len(set(pts))} signs of life, {len(gaps)} gap{'s' if len(gaps) != 1 else ''} over {_minutes(max_gap)}" + \
             (f" (longest {_minutes(longest)})" if gaps else "")
    return Criterion("monitor", "monitor running throughout", not gaps, figure,
                     [f"no monitor heartbeat {w.span(a, b)} ({_minutes(b - a)})" for a, b in gaps],
                     {"evidence": len(set(pts)), "gaps": [{"start": a, "end": b} for a, b in gaps]})


def restarts(cfg, db, w: Window) -> Criterion:
    rows = db.query("SELECT * FROM restarts WHERE planned=0 AND at>=? AND at<=? AND COALESCE(outcome,'')<>'dry_run' ORDER BY at",
                    (w.start, w.end))
    planned = db.one("SELECT COUNT(*) AS n FROM restarts WHERE planned=1 AND at>=? AND at<=?", (w.start, w.end))["n"]
    details = [f"{w.fmt(r['at'])} {r['service']}: {r['outcome'] or '?'} ({r['reason'] or 'no reason recorded'})" for r in rows]
    return Criterion("restarts", "no unplanned restarts", not rows, f"{len(rows)} unplanned, {planned} planned", details,
                     {"unplanned": len(rows), "planned": planned})


def critical_errors(cfg, db, w: Window) -> Criterion:
    from catalyst_ops.report import scan_logs

    # an operator's `alert test` and an emergency-stop drill are exercises, not incidents
    alerts = db.query("SELECT created_at, subject FROM alerts WHERE severity='critical' AND created_at>=? AND created_at<=?"
                      f" AND subject_key NOT IN ({','.join('?' * len(EXERCISE_KEYS))}) ORDER BY created_at",
                      (w.start, w.end, *EXERCISE_KEYS))
    crashed = db.query("SELECT job, started_at, status, exit_code, summary FROM job_runs WHERE started_at>=? AND started_at<=?"
                       " AND (status='crashed' OR exit_code=3) ORDER BY started_at", (w.start, w.end))
    _, lines = scan_logs(cfg.log_dir, w.start, w.end)
    crit = [l for l in lines if l["level"] == "critical"]
    details = [f"{w.fmt(a['created_at'])} critical alert: {a['subject']}" for a in alerts]
    details += [f"{w.fmt(r['started_at'])} `{r['job']}` {r['status']} (exit {r['exit_code']}): {(r['summary'] or '')[:120]}" for r in crashed]
    details += [f"{w.fmt(l['at'])} {l['file']}: {l['message'][:120]}" for l in crit]
    n = len(alerts) + len(crashed) + len(crit)
    figure = f"{len(alerts)} critical alerts, {len(crashed)} runs that crashed or could not run, {len(crit)} critical log lines"
    return Criterion("critical_errors", "no critical errors", n == 0, figure, details,
                     {"critical_alerts": len(alerts), "crashed_runs": len(crashed), "critical_log_lines": len(crit)})


def email_alerts(cfg, db, w: Window) -> Criterion:
    """Email alerts work when one was delivered in the window (an `alert test` the server accepted counts)
    and none created in it waited longer than validation.alert_max_delay_minutes to be delivered. Queued is
    not delivered: only rows the sender marked sent."""
    max_delay = cfg.validation.alert_max_delay_minutes * 60
    sent = db.query("SELECT id, created_at, sent_at, severity, subject FROM alerts WHERE status='sent' AND sent_at>=? AND sent_at<=?"
                    " ORDER BY sent_at", (w.start, w.end))
    # judged only once their allowance has run out inside the window; delivered after the window's end = not yet then
    late = db.query("SELECT id, created_at, sent_at, status, subject, last_error FROM alerts WHERE created_at>=? AND created_at<=?"
                    " AND status<>'suppressed' AND (status<>'sent' OR sent_at>? OR sent_at-created_at>?)"
                    " ORDER BY created_at", (w.start, w.end - max_delay, w.end, max_delay))
    details = []
    for r in late:
        if r["status"] == "sent" and r["sent_at"] is not None and r["sent_at"] <= w.end:
            details.append(f"{w.fmt(r['created_at'])} alert #{r['id']} delivered only after {_minutes(r['sent_at'] - r['created_at'])}: "
                           f"{r['subject'][:80]}")
        else:
            details.append(f"{w.fmt(r['created_at'])} alert #{r['id']} not delivered by the window's end ({r['status']}"
                           + (f": {r['last_error'][:80]}" if r["last_error"] else "") + f"): {r['subject'][:80]}")
    if not sent:
        details.insert(0, "no alert delivered in the window: run `catalyst-ops alert test` (it is recorded), and check "
                          "`catalyst-ops alert list --status pending`")
    figure = f"{len(sent)} delivered" + (f", last {w.fmt(sent[-1]['sent_at'])} ({sent[-1]['subject'][:60]})" if sent else "") + \
             f"; {len(late)} waited over {cfg.validation.alert_max_delay_minutes:g} min"
    return Criterion("email_alerts", "email alerts functioning", bool(sent) and not late, figure, details,
                     {"delivered": len(sent), "late_or_undelivered": len(late),
                      "last_delivered": sent[-1]["sent_at"] if sent else None})


def backups(cfg, db, w: Window) -> Criterion:
    max_gap = cfg.validation.backup_max_gap_hours * 3600
    # a pruned backup was still created; retention decides what is kept, not this criterion
    ok = db.query("SELECT created_at, size_bytes, verified FROM backups WHERE status IN ('ok','pruned') AND created_at>=? AND created_at<=?"
                  " ORDER BY created_at", (w.start, w.end))
    failed = db.query("SELECT created_at, detail FROM backups WHERE status='failed' AND created_at>=? AND created_at<=?", (w.start, w.end))
    before = db.one("SELECT MAX(created_at) AS t FROM backups WHERE status IN ('ok','pruned') AND created_at<?", (w.start,))["t"]
    gaps = find_gaps([r["created_at"] for r in ok], w.start, w.end, max_gap, before)
    details = [f"no successful backup {w.span(a, b)} ({_minutes(b - a)})" for a, b in gaps]
    details += [f"{w.fmt(r['created_at'])} backup failed: {(r['detail'] or '')[:120]}" for r in failed]
    verified = sum(1 for r in ok if r["verified"] in ("list", "restore"))
    figure = f"{len(ok)} successful ({verified} verified), {len(failed)} failed; longest stretch without one allowed " \
             f"{cfg.validation.backup_max_gap_hours:g} h"
    if ok:
        last = ok[-1]
        from catalyst_ops.fmt import size

        figure += f"; last {w.fmt(last['created_at'])}, {size(last['size_bytes'])}"
    return Criterion("backups", "backups created daily", bool(ok) and not gaps, figure, details,
                     {"ok": len(ok), "verified": verified, "failed": len(failed), "gaps": [{"start": a, "end": b} for a, b in gaps]})


def resource_use(cfg, db, w: Window) -> Criterion:
    from catalyst_ops import resources

    resources.ensure_schema(db)
    v = cfg.validation
    rows = db.query("SELECT at, cpu_percent, mem_percent, source, detail FROM resource_samples WHERE at>=? AND at<=? ORDER BY at",
                    (w.start, w.end))
    good = [r for r in rows if r["cpu_percent"] is not None and r["mem_percent"] is not None]
    unavailable = len(rows) - len(good)
    name = f"resource use under limits (CPU < {v.cpu_limit_percent:g}%, memory < {v.memory_limit_percent:g}%)"
    if not good:
        reason = "no resource samples in the window (run `catalyst-ops sample-resources` from cron)"
        if unavailable:
            import json

            reason = f"{unavailable} samples, all unavailable: {json.loads(rows[-1]['detail'] or '{}').get('reason', '?')}"
        return Criterion("resources", name, False, reason, [], {"samples": 0, "unavailable": unavailable})
    cpu_max = max(good, key=lambda r: r["cpu_percent"])
    mem_max = max(good, key=lambda r: r["mem_percent"])
    details = [f"{w.fmt(r['at'])} CPU {r['cpu_percent']:.1f}%" for r in good if r["cpu_percent"] >= v.cpu_limit_percent][:20]
    details += [f"{w.fmt(r['at'])} memory {r['mem_percent']:.1f}%" for r in good if r["mem_percent"] >= v.memory_limit_percent][:20]
    # the limit has to hold throughout, so every hour of the window needs at least one sample
    hours = max(int((w.end - w.start) // 3600), 1)
    covered = {int((r["at"] - w.start) // 3600) for r in good}
    missing = [h for h in range(hours) if h not in covered]
    for a, b in _ranges(missing):
        details.append(f"no resource sample {w.span(w.start + a * 3600, w.start + (b + 1) * 3600)}")
    under = cpu_max["cpu_percent"] < v.cpu_limit_percent and mem_max["mem_percent"] < v.memory_limit_percent
    figure = (f"max CPU {cpu_max['cpu_percent']:.1f}% ({w.fmt(cpu_max['at'])}), max memory {mem_max['mem_percent']:.1f}% "
              f"({w.fmt(mem_max['at'])}); {len(good)} samples covering {hours - len(missing)} of {hours} hours"
              + (f", {unavailable} unavailable" if unavailable else "") + f" [{good[-1]['source']}]")
    return Criterion("resources", name, under and not missing, figure, details,
                     {"samples": len(good), "unavailable": unavailable, "cpu_max": cpu_max["cpu_percent"],
                      "mem_max": mem_max["mem_percent"], "hours_covered": hours - len(missing), "hours": hours})


def db_connections(cfg, db, w: Window) -> Criterion:
    """The trading database's busiest recorded moment stayed under the share of max_connections, and
    every hour of the window has a sample (`sample-resources` records them). A sample the server
    refused for want of a slot is exhaustion (100%)."""
    from catalyst_ops import resources

    resources.ensure_schema(db)
    limit = cfg.validation.db_connections_limit_percent
    rows = db.query("SELECT * FROM db_connection_samples WHERE at>=? AND at<=? ORDER BY at", (w.start, w.end))
    good = [r for r in rows if r["exhausted"] or (r["connections"] is not None and r["max_connections"])]

    def pct(r) -> float:
        return 100.0 if r["exhausted"] else 100.0 * r["connections"] / r["max_connections"]

    name = f"no database connection pool exhaustion (peak < {limit:g}% of max_connections)"
    unavailable = len(rows) - len(good)
    if not good:
        reason = "no database connection samples in the window (`catalyst-ops sample-resources` samples them)"
        if unavailable:
            reason = f"{unavailable} samples, all unavailable: {rows[-1]['error']}"
        return Criterion("db_connections", name, False, reason, [], {"samples": 0, "unavailable": unavailable})
    peak = max(good, key=pct)
    over = [r for r in good if pct(r) >= limit]
    details = [(f"{w.fmt(r['at'])} EXHAUSTED: {(r['error'] or '')[:140]}" if r["exhausted"] else
                f"{w.fmt(r['at'])} {r['connections']} of {r['max_connections']} connections ({pct(r):.0f}%)") for r in over[:30]]
    hours = max(int((w.end - w.start) // 3600), 1)
    covered = {int((r["at"] - w.start) // 3600) for r in good}
    missing = [h for h in range(hours) if h not in covered]
    for a, b in _ranges(missing):
        details.append(f"no database connection sample {w.span(w.start + a * 3600, w.start + (b + 1) * 3600)}")
    what = "refused: no slot left" if peak["exhausted"] else f"{peak['connections']} of {peak['max_connections']}"
    figure = (f"peak {pct(peak):.0f}% ({what}, {w.fmt(peak['at'])}); {len(good)} samples covering "
              f"{hours - len(missing)} of {hours} hours"
              + (f", {unavailable} unavailable" if unavailable else ""))
    return Criterion("db_connections", name, not over and not missing, figure, details,
                     {"samples": len(good), "unavailable": unavailable, "peak_percent": round(pct(peak), 1),
                      "peak_connections": peak["connections"], "max_connections": peak["max_connections"],
                      "over_limit": len(over), "exhausted": sum(1 for r in good if r["exhausted"]),
                      "hours_covered": hours - len(missing), "hours": hours})


def _ranges(nums: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in nums:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


CRITERIA = (health_checks, service_uptime, scheduled_jobs, monitor, restarts, critical_errors, email_alerts, backups,
            resource_use, db_connections)


def evaluate(cfg, db, hours: float) -> dict:
    from catalyst_ops.report import host_tz

    end = clock.timestamp()
    w = Window(end - hours * 3600, end, host_tz(cfg))
    results = [c(cfg, db, w) for c in CRITERIA]
    failed = [c for c in results if not c.passed]
    return {"kind": "validation", "hours": hours, "window": {"start": w.fmt(w.start), "end": w.fmt(w.end), "timezone": cfg.host_timezone,
                                                            "start_ts": w.start, "end_ts": w.end},
            "passed": not failed, "failed": [c.key for c in failed], "criteria": [c.as_dict() for c in results]}


def render_text(result: dict) -> str:
    from catalyst_ops.fmt import table

    crit = result["criteria"]
    head = (f"{result['hours']:g}-hour validation {result['window']['start']} .. {result['window']['end']} "
            f"({result['window']['timezone']}): " + ("PASS" if result["passed"] else
                                                     f"FAIL ({len(result['failed'])} of {len(crit)} criteria failed)"))
    lines = [head, "", table([[c["name"], "PASS" if c["passed"] else "FAIL", c["figure"]] for c in crit],
                             ["CRITERION", "RESULT", "FIGURE"])]
    for c in crit:
        if c["details"]:
            lines += ["", f"{c['name']}:"] + [f"  {d}" for d in c["details"][:50]]
            if len(c["details"]) > 50:
                lines.append(f"  ... and {len(c['details']) - 50} more (see --json)")
    return "\n".join(lines) + "\n"
