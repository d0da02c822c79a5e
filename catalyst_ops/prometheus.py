"""Prometheus textfile-collector metrics from the state DB, so an operator who outgrows one
droplet plugs into Prometheus and Alertmanager (node_exporter --collector.textfile.directory).

Service state is the last one the health job recorded (with its time), not a fresh probe:
the exporter runs from cron and must be cheap and side-effect free.
"""

from __future__ import annotations

from pathlib import Path

from catalyst_ops import clock

FILENAME = "catalyst.prom"


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Out:
    def __init__(self):
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _num(v) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def collect(cfg, db) -> str:
    o = _Out()
    states = {r["service"]: r for r in db.query("SELECT * FROM service_state")}
    names = list(dict.fromkeys(cfg.enabled_services() + list(states)))
    o.metric("catalyst_service_up", "gauge", "1 if the service answered healthy or degraded at its last health check, "
             "0 if it failed or was never checked",
             [({"service": n}, n in states and states[n]["state"] in ("healthy", "degraded")) for n in names])
    o.metric("catalyst_service_healthy", "gauge", "1 if the last health check found the service healthy (not degraded)",
             [({"service": n}, n in states and states[n]["state"] == "healthy") for n in names])
    o.metric("catalyst_service_last_check_timestamp_seconds", "gauge", "time of the last recorded health check of the service",
             [({"service": n}, states[n]["last_checked"]) for n in names if n in states])
    o.metric("catalyst_service_consecutive_failures", "gauge", "failed health checks in a row",
             [({"service": n}, states[n]["consecutive_failures"]) for n in names if n in states])
    # restarts are never pruned, so the count only grows: a counter (rate() over it)
    restarts = {r["service"]: r["n"] for r in db.query(
        "SELECT service, COUNT(*) AS n FROM restarts WHERE planned=0 AND COALESCE(outcome, '')!='dry_run'"
        " GROUP BY service")}
    o.metric("catalyst_service_restarts_total", "counter", "unplanned restarts of the service by the health job",
             [({"service": n}, restarts.get(n, 0)) for n in names])

    jobs = db.query("SELECT job, MAX(CASE WHEN status='ok' THEN COALESCE(ended_at, started_at) END) AS ok_at,"
                    " MAX(started_at) AS last_at FROM job_runs GROUP BY job ORDER BY job")
    last_exit = {r["job"]: r["exit_code"] for r in db.query(
        "SELECT j.job, j.exit_code FROM job_runs j JOIN (SELECT job, MAX(started_at) AS m FROM job_runs"
        " WHERE ended_at IS NOT NULL GROUP BY job) x ON x.job=j.job AND x.m=j.started_at")}
    # job_name, not job: Prometheus gives every scraped series the target's job and instance labels
    # (a series' own "job" would be renamed exported_job)
    o.metric("catalyst_job_last_success_timestamp_seconds", "gauge", "end of the last successful run of the job",
             [({"job_name": r["job"]}, r["ok_at"]) for r in jobs if r["ok_at"] is not None])
    o.metric("catalyst_job_last_run_timestamp_seconds", "gauge", "start of the last run of the job, whatever its outcome",
             [({"job_name": r["job"]}, r["last_at"]) for r in jobs])
    o.metric("catalyst_job_last_exit_code", "gauge", "exit code of the last finished run (0 ok, 1 problem, 2 usage, 3 could not run)",
             [({"job_name": j}, c) for j, c in sorted(last_exit.items()) if c is not None])

    b = db.one("SELECT * FROM backups WHERE status='ok' ORDER BY created_at DESC LIMIT 1")
    o.metric("catalyst_backup_last_success_timestamp_seconds", "gauge", "creation time of the newest successful backup",
             [({}, b["created_at"])] if b else [])
    o.metric("catalyst_backup_last_size_bytes", "gauge", "size of the newest successful backup",
             [({}, b["size_bytes"])] if b and b["size_bytes"] is not None else [])
    o.metric("catalyst_backup_last_verified", "gauge", "1 if the newest successful backup was verified (list or restore)",
             [({}, b["verified"] in ("list", "restore"))] if b else [])

    counts = {r["status"]: r["n"] for r in db.query("SELECT status, COUNT(*) AS n FROM alerts GROUP BY status")}
    o.metric("catalyst_alerts_pending", "gauge", "alerts in the outbox not yet accepted by the mail server",
             [({}, counts.get("pending", 0))])
    o.metric("catalyst_alerts_failed", "gauge", "alerts that gave up sending", [({}, counts.get("failed", 0))])

    halt = db.halt_state()
    o.metric("catalyst_halted", "gauge", "1 while the emergency-stop halt flag is set", [({}, bool(halt))])
    if halt:
        o.metric("catalyst_halted_since_timestamp_seconds", "gauge", "when the halt flag was set", [({}, halt["since"])])

    try:
        mode = (cfg.env(required=False).get("TRADING_MODE") or "unknown").strip().lower() or "unknown"
    except Exception:  # an unreadable .env must not stop the export; the mode is then unknown
        mode = "unknown"
    o.metric("catalyst_trading_mode", "gauge", "1 for the trading mode in the stack's .env (TRADING_MODE)",
             [({"mode": m}, m == mode) for m in sorted({"paper", "live", mode})])

    hb = db.last_heartbeat("monitor")
    o.metric("catalyst_monitor_heartbeat_timestamp_seconds", "gauge", "last heartbeat of the monitor daemon",
             [({}, hb["at"])] if hb else [])
    o.metric("catalyst_export_timestamp_seconds", "gauge", "when this file was written", [({}, round(clock.timestamp(), 3))])
    return o.text()


def write_textfile(directory: str, text: str) -> Path:
    """Temp file in the same directory, fsync, rename: node_exporter never reads half a file
    (it ignores names not ending in .prom, so the temp file is invisible to it)."""
    d = Path(directory)
    if not d.is_dir():
        from catalyst_ops.errors import USAGE, OpsError

        raise OpsError(f"--textfile {directory}: not a directory", USAGE)
    from catalyst_ops.fsutil import atomic_write

    final = atomic_write(d / FILENAME, text, mode=0o644)
    return final
