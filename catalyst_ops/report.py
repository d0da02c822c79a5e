"""The daily operations report: built from the state DB (which knows every run), not from
grepping logs, and rendered as text, JSON or HTML (with an inline SVG chart of health).

The day is a calendar day in `host_timezone` (the zone the crontab is written in); a report
for today covers midnight until now.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from catalyst_ops import clock, fmt
from catalyst_ops.errors import USAGE, OpsError

HEALTH_OK = ("healthy", "degraded")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (\S+) (error|critical): (.*)$")
LOG_TAIL_BYTES = 4 * 1024 * 1024
MAX_LOG_LINES = 50


def host_tz(cfg) -> ZoneInfo:
    try:
        return ZoneInfo(cfg.host_timezone)
    except Exception:
        from catalyst_ops.errors import ConfigError

        raise ConfigError(cfg.source, "host_timezone", f"expected an IANA zone name, got {cfg.host_timezone!r}")


def parse_day(text: str | None, tz) -> date:
    if not text:
        return clock.now().astimezone(tz).date()
    if text in ("today", "yesterday"):
        d = clock.now().astimezone(tz).date()
        return d if text == "today" else d - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise OpsError(f"--date: expected YYYY-MM-DD, today or yesterday, got {text!r}", USAGE)


def day_window(tz, day: date) -> tuple[float, float]:
    start = datetime.combine(day, dtime(0), tz)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tz)
    return start.timestamp(), end.timestamp()


def _iso(ts: float | None, tz) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def dir_usage(path: str) -> dict:
    """Bytes on disk under path (st_blocks, so sparse and compressed files count as they are)
    and the free space of its file system."""
    out = {"path": path, "exists": os.path.isdir(path), "bytes": None, "files": None,
           "fs_total": None, "fs_free": None, "fs_used_percent": None}
    if not out["exists"]:
        return out
    total = files = 0
    for root, _dirs, names in os.walk(path, onerror=lambda e: None):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            total += st.st_blocks * 512
            files += 1
    du = shutil.disk_usage(path)
    out.update(bytes=total, files=files, fs_total=du.total, fs_free=du.free,
               fs_used_percent=round(100.0 * (du.total - du.free) / du.total, 1) if du.total else None)
    return out


def scan_logs(log_dir: str, start: float, end: float) -> tuple[int, list[dict]]:
    """error/critical lines (our one-line log format) timestamped inside [start, end).
    Only the tail of each *.log file is read: enough for a day, bounded for a huge file."""
    count, lines = 0, []
    try:
        entries = sorted(Path(log_dir).glob("*.log"))
    except OSError:
        return 0, []
    for path in entries:
        try:
            st = path.stat()
            if st.st_mtime < start:
                continue
            with open(path, "rb") as fh:
                if st.st_size > LOG_TAIL_BYTES:
                    fh.seek(st.st_size - LOG_TAIL_BYTES)
                    fh.readline()
                data = fh.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        for raw in data.splitlines():
            m = LOG_LINE.match(raw)
            if not m:
                continue
            ts = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC")).timestamp()
            if start <= ts < end:
                count += 1
                lines.append({"at": ts, "file": path.name, "job": m.group(2), "level": m.group(3), "message": m.group(4)[:300]})
    lines.sort(key=lambda r: r["at"])
    return count, lines[-MAX_LOG_LINES:]


def _timeline(db, services: list[str], start: float, end: float, slot_minutes: int) -> dict[str, str]:
    """Per service, one character per slot: H healthy, D degraded, F failed, . no check."""
    n = int((end - start) // (slot_minutes * 60))
    rank = {".": 0, "H": 1, "D": 2, "F": 3}
    lines = {s: ["."] * n for s in services}
    for r in db.query("SELECT service, checked_at, state FROM health_checks WHERE checked_at>=? AND checked_at<?", (start, end)):
        if r["service"] not in lines:
            lines[r["service"]] = ["."] * n
        i = int((r["checked_at"] - start) // (slot_minutes * 60))
        if 0 <= i < n:
            code = "H" if r["state"] == "healthy" else "D" if r["state"] == "degraded" else "F"
            if rank[code] > rank[lines[r["service"]][i]]:  # the worst state in the slot
                lines[r["service"]][i] = code
    return {s: "".join(v) for s, v in lines.items()}


def job_summary(db, start: float, end: float, tz) -> list[dict]:
    """Runs per job in [start, end): counts by status, first and last start, the last outcome."""
    jobs = []
    for r in db.query(
            "SELECT job, COUNT(*) AS runs, SUM(status='ok') AS ok, SUM(status='skipped') AS skipped,"
            " SUM(status='failed') AS failed, SUM(status='crashed') AS crashed, SUM(status='running') AS running,"
            " MIN(started_at) AS first, MAX(started_at) AS last FROM job_runs WHERE started_at>=? AND started_at<?"
            " GROUP BY job ORDER BY job", (start, end)):
        last = db.one("SELECT status, exit_code, summary FROM job_runs WHERE job=? AND started_at>=? AND started_at<?"
                      " ORDER BY started_at DESC LIMIT 1", (r["job"], start, end))
        jobs.append({"job": r["job"], "runs": r["runs"], "ok": r["ok"] or 0, "skipped": r["skipped"] or 0,
                     "failed": r["failed"] or 0, "crashed": r["crashed"] or 0, "running": r["running"] or 0,
                     "first": _iso(r["first"], tz), "last": _iso(r["last"], tz), "last_status": last["status"],
                     "last_summary": last["summary"]})
    return jobs


def alert_summary(db, start: float, end: float, tz, limit: int = 100) -> dict:
    """Alerts created in [start, end): counts by status and severity, and the first `limit` of them."""
    a = db.one("SELECT COUNT(*) AS created, SUM(status='sent') AS sent, SUM(status='failed') AS failed,"
               " SUM(status='pending') AS pending, SUM(severity='critical') AS critical, SUM(severity='warning') AS warning,"
               " SUM(severity='info') AS info FROM alerts WHERE created_at>=? AND created_at<?", (start, end))
    pending_now = db.one("SELECT COUNT(*) AS n FROM alerts WHERE status='pending'")["n"]
    return {"created": a["created"], "sent": a["sent"] or 0, "failed": a["failed"] or 0, "pending": a["pending"] or 0,
            "pending_now": pending_now,
            "by_severity": {k: a[k] or 0 for k in ("critical", "warning", "info")},
            "list": [{"at": _iso(r["created_at"], tz), "severity": r["severity"], "subject": r["subject"], "status": r["status"]}
                     for r in db.query("SELECT * FROM alerts WHERE created_at>=? AND created_at<? ORDER BY created_at"
                                       " LIMIT ?", (start, end, limit))]}


def build_daily(cfg, db, day: date | None = None, live_resources: bool = True) -> dict:
    from catalyst_ops import resources

    tz = host_tz(cfg)
    now = clock.timestamp()
    day = day or clock.now().astimezone(tz).date()
    start, day_end = day_window(tz, day)
    if start > now:
        raise OpsError(f"--date {day.isoformat()} is in the future", USAGE)
    end = min(day_end, now)
    resources.ensure_schema(db)

    # services: the latest known state, and how much of the day each was up
    names = list(dict.fromkeys(cfg.enabled_services() + [r["service"] for r in db.query("SELECT service FROM service_state")]))
    state = {r["service"]: r for r in db.query("SELECT * FROM service_state")}
    counts = {r["service"]: r for r in db.query(
        "SELECT service, COUNT(*) AS n, SUM(state IN ('healthy','degraded')) AS up FROM health_checks"
        " WHERE checked_at>=? AND checked_at<? GROUP BY service", (start, end))}
    services = []
    for name in names:
        st, c = state.get(name), counts.get(name)
        services.append({
            "service": name, "state": st["state"] if st else "unknown", "since": _iso(st["since"], tz) if st else None,
            "last_checked": _iso(st["last_checked"], tz) if st else None,
            "consecutive_failures": st["consecutive_failures"] if st else None,
            "checks": c["n"] if c else 0, "failed_checks": (c["n"] - (c["up"] or 0)) if c else 0,
            "uptime_percent": round(100.0 * (c["up"] or 0) / c["n"], 2) if c and c["n"] else None})

    interval = cfg.validation.health_interval_minutes
    sweeps = db.one("SELECT COUNT(*) AS n, SUM(failed>0) AS bad, SUM(degraded>0) AS deg FROM health_sweeps"
                    " WHERE source='health' AND started_at>=? AND started_at<?", (start, end))
    health = {"sweeps": sweeps["n"], "sweeps_with_failures": sweeps["bad"] or 0, "sweeps_with_degraded": sweeps["deg"] or 0,
              "expected": int((end - start) // (interval * 60)), "interval_minutes": interval,
              "checks": sum(s["checks"] for s in services), "failed_checks": sum(s["failed_checks"] for s in services)}

    # scheduled jobs and operator actions
    jobs = job_summary(db, start, end, tz)
    # every run but the 5-minute health job, one line each (health is summarised above)
    runs = [{"job": r["job"], "started": _iso(r["started_at"], tz), "ended": _iso(r["ended_at"], tz),
             "seconds": round(r["ended_at"] - r["started_at"], 1) if r["ended_at"] else None,
             "status": r["status"], "exit_code": r["exit_code"], "summary": r["summary"]}
            for r in db.query("SELECT * FROM job_runs WHERE started_at>=? AND started_at<? AND job NOT IN ('health')"
                              " ORDER BY started_at", (start, end))]

    restarts = [{"at": _iso(r["at"], tz), "service": r["service"], "reason": r["reason"], "outcome": r["outcome"],
                 "planned": bool(r["planned"])}
                for r in db.query("SELECT * FROM restarts WHERE at>=? AND at<? ORDER BY at", (start, end))]

    alerts = alert_summary(db, start, end, tz)

    last = db.one("SELECT * FROM backups WHERE status='ok' AND created_at<? ORDER BY created_at DESC LIMIT 1", (end,))
    b = db.one("SELECT COUNT(*) AS n, SUM(status='ok') AS ok, SUM(status='failed') AS failed FROM backups"
               " WHERE created_at>=? AND created_at<?", (start, end))
    backup = {"last": None, "in_day": b["ok"] or 0, "failed_in_day": b["failed"] or 0}
    if last:
        backup["last"] = {"at": _iso(last["created_at"], tz), "age_hours": round((now - last["created_at"]) / 3600, 1),
                          "size_bytes": last["size_bytes"], "verified": last["verified"], "path": last["path"],
                          "sha256": last["sha256"]}

    failed_runs = [r for r in runs if r["status"] in ("failed", "crashed")]
    failed_runs += [{"job": "health", "started": _iso(r["started_at"], tz), "status": r["status"], "exit_code": r["exit_code"],
                     "summary": r["summary"]}
                    for r in db.query("SELECT * FROM job_runs WHERE job='health' AND status IN ('failed','crashed')"
                                      " AND started_at>=? AND started_at<? ORDER BY started_at DESC LIMIT 20", (start, end))]
    log_count, log_lines = scan_logs(cfg.log_dir, start, end)
    errors = {"failed_runs": failed_runs, "log_error_lines": log_count, "log_dir": cfg.log_dir,
              "log_lines": [dict(l, at=_iso(l["at"], tz)) for l in log_lines]}

    disk = [dict(dir_usage(cfg.log_dir), name="logs"), dict(dir_usage(cfg.backup.dir), name="backups")]

    samples = db.one("SELECT COUNT(*) AS n, MAX(cpu_percent) AS cpu_max, AVG(cpu_percent) AS cpu_avg,"
                     " MAX(mem_percent) AS mem_max, AVG(mem_percent) AS mem_avg FROM resource_samples"
                     " WHERE at>=? AND at<? AND cpu_percent IS NOT NULL", (start, end))
    res = {"runtime": cfg.runtime.kind, "now": None,
           "day": {"samples": samples["n"], "cpu_max": samples["cpu_max"], "cpu_avg": _r(samples["cpu_avg"]),
                   "mem_max": samples["mem_max"], "mem_avg": _r(samples["mem_avg"])},
           "limits": {"cpu_percent": cfg.validation.cpu_limit_percent, "memory_percent": cfg.validation.memory_limit_percent}}
    if live_resources and day_end > now:
        res["now"] = resources.sample(cfg).as_dict()

    halt = db.halt_state()
    hb = db.last_heartbeat("monitor")
    return {
        "kind": "daily", "date": day.isoformat(), "timezone": cfg.host_timezone,
        "window": {"start": _iso(start, tz), "end": _iso(end, tz), "complete": end >= day_end},
        "generated_at": _iso(now, tz),
        "services": services, "health": health, "jobs": jobs, "runs": runs, "restarts": restarts, "alerts": alerts,
        "backup": backup, "errors": errors, "disk": disk, "resources": res,
        "halt": {"since": _iso(halt["since"], tz), "reason": halt["reason"], "actor": halt["actor"]} if halt else None,
        "monitor": {"last_heartbeat": _iso(hb["at"], tz) if hb else None,
                    "age_seconds": round(now - hb["at"], 1) if hb else None},
        "timeline": {"slot_minutes": interval, "start": _iso(start, tz), "slots": int((day_end - start) // (interval * 60)),
                     "services": _timeline(db, names, start, day_end, interval)},
    }


def _r(v, nd=2):
    return None if v is None else round(v, nd)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _hm(iso: str | None, day: str | None = None) -> str:
    """HH:MM, with the date in front when it is not the report's day."""
    if not iso:
        return "-"
    return iso[11:16] if day is None or iso[:10] == day else f"{iso[:10]} {iso[11:16]}"


def _stamp(iso: str | None) -> str:
    return f"{iso[:10]} {iso[11:16]}" if iso else "-"


def verdict_line(data: dict) -> str:
    """One line an operator reads first (also the mail subject)."""
    up = [s["service"] for s in data["services"] if s["state"] in HEALTH_OK]
    never = [s["service"] for s in data["services"] if s["state"] == "unknown"]
    failed = sum(j["failed"] + j["crashed"] for j in data["jobs"])
    unplanned = sum(1 for r in data["restarts"] if not r["planned"])
    parts = [f"{len(up)}/{len(data['services'])} services up" + (f" ({len(never)} never checked)" if never else ""),
             f"{data['health']['sweeps']} health checks ({data['health']['sweeps_with_failures']} with failures)",
             f"{failed} failed job runs", f"{unplanned} unplanned restarts",
             f"{data['alerts']['pending_now']} alerts pending"]
    if data["halt"]:
        parts.insert(0, "HALTED")
    return f"Catalyst daily report {data['date']}: " + ", ".join(parts)


def headline_parts(data: dict) -> str:
    return verdict_line(data).split(": ", 1)[1]


def render_text(data: dict) -> str:
    out = [verdict_line(data), f"window {_stamp(data['window']['start'])} .. {_stamp(data['window']['end'])} {data['timezone']}"
           + ("" if data["window"]["complete"] else " (day in progress)"), ""]
    if data["halt"]:
        out += [f"HALT since {data['halt']['since']}: {data['halt']['reason']} ({data['halt']['actor']})", ""]
    out.append("Services")
    out.append(fmt.table([[s["service"], s["state"], _hm(s["since"], data["date"]), s["checks"], s["failed_checks"], _pct(s["uptime_percent"])]
                          for s in data["services"]], ["SERVICE", "NOW", "SINCE", "CHECKS", "FAILED", "UPTIME"]))
    h = data["health"]
    out += ["", f"Health checks: {h['sweeps']} run (expected about {h['expected']} at every {h['interval_minutes']} min), "
            f"{h['sweeps_with_failures']} with a failed service, {h['sweeps_with_degraded']} with a degraded one",
            f"Monitor heartbeat: {data['monitor']['last_heartbeat'] or 'never'}", "", "Jobs"]
    out.append(fmt.table([[j["job"], j["runs"], j["ok"], j["skipped"], j["failed"] + j["crashed"], _hm(j["first"]), _hm(j["last"]),
                           j["last_status"]] for j in data["jobs"]],
                         ["JOB", "RUNS", "OK", "SKIPPED", "FAILED", "FIRST", "LAST", "LAST STATUS"]) if data["jobs"] else "  no job runs")
    if data["runs"]:
        out += ["", "Runs (other than health)"]
        out.append(fmt.table([[_hm(r["started"]), r["job"], r["status"], r["exit_code"], f"{r['seconds']}s" if r["seconds"] is not None else "-",
                               (r["summary"] or "")[:70]] for r in data["runs"]], ["AT", "JOB", "STATUS", "EXIT", "TOOK", "SUMMARY"]))
    out += ["", f"Restarts: {len(data['restarts'])}"]
    for r in data["restarts"]:
        out.append(f"  {_hm(r['at'])} {r['service']} {'planned' if r['planned'] else 'unplanned'} {r['outcome'] or ''} {r['reason'] or ''}".rstrip())
    a = data["alerts"]
    out += ["", f"Alerts: {a['created']} created ({a['by_severity']['critical']} critical, {a['by_severity']['warning']} warning, "
            f"{a['by_severity']['info']} info), {a['sent']} sent, {a['failed']} failed; {a['pending_now']} pending now"]
    b = data["backup"]
    if b["last"]:
        l = b["last"]
        out += [f"Last backup: {l['at']} ({l['age_hours']} h ago), {fmt.size(l['size_bytes'])}, verified: {l['verified'] or 'none'}"]
    else:
        out += ["Last backup: none recorded"]
    out.append(f"Backups this day: {b['in_day']} ok, {b['failed_in_day']} failed")
    e = data["errors"]
    out += ["", f"Errors: {len(e['failed_runs'])} failed runs, {e['log_error_lines']} error/critical lines in {e['log_dir']}/*.log"]
    for r in e["failed_runs"][:20]:
        out.append(f"  {_hm(r['started'])} {r['job']} exit {r['exit_code']}: {(r['summary'] or '')[:90]}")
    for l in e["log_lines"][-10:]:
        out.append(f"  {_hm(l['at'])} {l['file']} {l['level']}: {l['message'][:90]}")
    out += ["", "Disk"]
    out.append(fmt.table([[d["name"], d["path"], fmt.size(d["bytes"]) if d["exists"] else "missing",
                           fmt.size(d["fs_free"]), _pct(d["fs_used_percent"])] for d in data["disk"]],
                         ["WHAT", "PATH", "USED", "FS FREE", "FS USED"]))
    r = data["resources"]
    out += ["", f"Resources ({r['runtime']} runtime; limits CPU {r['limits']['cpu_percent']:g}%, memory {r['limits']['memory_percent']:g}%)"]
    if r["now"] is not None:
        n = r["now"]
        out.append(f"  now: CPU {_pct(n['cpu_percent'])}, memory {_pct(n['mem_percent'])} ({n['source']})"
                   if n["available"] else f"  now: unavailable ({n['reason']})")
    d = r["day"]
    out.append(f"  day: {d['samples']} samples" + (f", CPU max {_pct(d['cpu_max'])} avg {_pct(d['cpu_avg'])}, memory max "
                                                  f"{_pct(d['mem_max'])} avg {_pct(d['mem_avg'])}" if d["samples"] else
                                                  " (run `catalyst-ops sample-resources` from cron to record them)"))
    return "\n".join(out) + "\n"


COLORS = {"H": "#2f9e5b", "D": "#e3a21a", "F": "#d64541", ".": "#e4e6ea"}


def chart(data: dict, width: int = 960, row_h: int = 18, label_w: int = 110) -> dict:
    """Geometry of the health chart: one row per service, one run of rects per unchanged state."""
    tl = data["timeline"]
    slots = max(tl["slots"], 1)
    sw = width / slots
    rows = []
    for i, (svc, line) in enumerate(tl["services"].items()):
        y = 24 + i * (row_h + 4)
        rects, j = [], 0
        while j < len(line):
            k = j
            while k < len(line) and line[k] == line[j]:
                k += 1
            rects.append({"x": round(label_w + j * sw, 2), "w": round((k - j) * sw, 2), "color": COLORS[line[j]], "code": line[j]})
            j = k
        rows.append({"service": svc, "y": y, "rects": rects})
    start = datetime.fromisoformat(tl["start"])
    px_per_s = sw / (tl["slot_minutes"] * 60)  # elapsed time, so a 23- or 25-hour DST day still lines up
    ticks = []
    for h in range(0, 25, 3):
        local = datetime.combine(start.date() + timedelta(days=h // 24), dtime(h % 24), ZoneInfo(data["timezone"]))
        ticks.append({"x": round(label_w + (local.timestamp() - start.timestamp()) * px_per_s, 2), "label": f"{h:02d}"})
    marks = []
    for r in data["restarts"]:
        for row in rows:
            if row["service"] == r["service"] and r["at"]:
                t = datetime.fromisoformat(r["at"]).timestamp()
                marks.append({"x": round(label_w + (t - start.timestamp()) * px_per_s, 2), "y": row["y"], "planned": r["planned"]})
    height = 24 + len(rows) * (row_h + 4) + 22
    return {"width": label_w + width + 24, "height": height, "label_w": label_w, "plot_w": width, "row_h": row_h,
            "rows": rows, "ticks": ticks, "marks": marks, "axis_y": height - 16}


def jinja_env(day: str | None = None):
    """The template environment every stored report renders with (templates/_base.html.j2)."""
    import jinja2  # lazily: report text/JSON and `status` need no template engine

    env = jinja2.Environment(loader=jinja2.PackageLoader("catalyst_ops", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["size"] = fmt.size
    env.filters["pct"] = _pct
    env.filters["hm"] = lambda iso: _hm(iso, day)
    env.filters["stamp"] = _stamp
    return env


def render_html(data: dict) -> str:
    return jinja_env(data["date"]).get_template("daily-report.html.j2").render(
        d=data, chart=chart(data), headline=verdict_line(data), parts=headline_parts(data), colors=COLORS)


def render(data: dict, form: str) -> str:
    if form == "json":
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if form == "html":
        return render_html(data)
    return render_text(data)


def store(cfg, db, kind: str, report_date: str, stem: str, texts: dict[str, str], summary: str,
          record: str | None = None) -> list[str]:
    """Write `<report dir>/<stem>.<form>` for each form (atomically: a reader never sees half a
    file), then one `reports` row pointing at the `record` form's file (default: the first)."""
    from catalyst_ops.fsutil import atomic_write

    out_dir = Path(cfg.reports_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for form, text in texts.items():
        path = out_dir / f"{stem}.{form}"
        atomic_write(path, text, mode=0o640)
        paths[form] = str(path)
    row_path = paths.get(record) if record else next(iter(paths.values()), None)
    db.execute("INSERT INTO reports(kind, report_date, created_at, path, summary) VALUES (?,?,?,?,?)",
               (kind, report_date, clock.timestamp(), row_path, summary))
    return list(paths.values())


def save(cfg, db, data: dict, forms: tuple[str, ...] = ("txt", "json", "html")) -> list[str]:
    """Write the report files under the report directory (atomically) and record them."""
    texts = {form: render(data, "text" if form == "txt" else form) for form in forms}
    return store(cfg, db, "ops-daily", data["date"], f"ops-daily-{data['date']}", texts, verdict_line(data))
