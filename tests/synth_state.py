"""Synthetic state DBs: what the jobs would have recorded over N hours, row by row in the
documented columns of the shared schema. The schedule here is written out by hand (weekdays
09:30/11:00/13:00/16:00 ET, backup 23:00, health every 5 min) rather than computed with the
code under test, so a bug in validate's schedule cannot hide behind the same bug here.
Only use windows without NYSE holidays or early closes."""

from __future__ import annotations

import json
import random
from datetime import datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from catalyst_ops.resources import SCHEMA as RESOURCE_SCHEMA
from catalyst_ops.state import StateDB

ET = ZoneInfo("America/New_York")
SERVICES = ["orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news", "reporting"]


def _run(db, job, at, status="ok", exit_code=0, took=2.0, summary="", session_date=None):
    db.execute("INSERT INTO job_runs(job, started_at, ended_at, exit_code, status, summary, session_date, host, pid)"
               " VALUES (?,?,?,?,?,?,?,?,?)", (job, at, at + took, exit_code, status, summary or f"{job} {status}",
                                               session_date, "droplet", 4242))


def fill(path, end: datetime, hours: float = 48, health_gap: tuple[datetime, datetime] | None = None,
         skip_backups: tuple = (), failures: list[tuple[str, datetime, datetime, str]] = (),
         restarts: list[tuple[str, datetime, int]] = (), cpu: float = 18.0, mem: float = 38.0,
         monitor_gap: tuple[datetime, datetime] | None = None, seed: int = 7, db_connections: int = 12,
         max_connections: int = 100) -> StateDB:
    """health_gap: no health sweep strictly inside (a, b). skip_backups: dates whose 23:00 backup
    never ran. failures: (service, from, to, state) states recorded by the sweeps in that span.
    restarts: (service, at, planned). db_connections: the trading database's client connections
    (of max_connections) at every sample."""
    rnd = random.Random(seed)
    db = StateDB(path)
    db.ensure_schema(RESOURCE_SCHEMA)
    # elapsed time, not wall-clock time: across a DST change they differ by an hour
    start = datetime.fromtimestamp(end.timestamp() - hours * 3600, ZoneInfo("UTC"))
    # start a little before the window, as a running system would have
    t = (start - timedelta(minutes=30)).replace(second=0, microsecond=0)
    t -= timedelta(minutes=t.minute % 5)
    last_state = {}
    with db.transaction() as conn:
        while t <= end:
            ts = t.timestamp()
            if not (health_gap and health_gap[0] < t < health_gap[1]):
                states = {}
                for s in SERVICES:
                    states[s] = "healthy"
                    for svc, a, b, st in failures:
                        if svc == s and a <= t < b:
                            states[s] = st
                bad = sum(st not in ("healthy", "degraded") for st in states.values())
                deg = sum(st == "degraded" for st in states.values())
                cur = conn.execute("INSERT INTO health_sweeps(started_at, ended_at, source, total, healthy, degraded, failed)"
                                   " VALUES (?,?,?,?,?,?,?)", (ts + 0.4, ts + 0.9, "health", 9, 9 - bad - deg, deg, bad))
                for s, st in states.items():
                    conn.execute("INSERT INTO health_checks(sweep_id, service, checked_at, state, http_status, latency_ms, detail)"
                                 " VALUES (?,?,?,?,?,?,?)", (cur.lastrowid, s, ts + 0.9, st, 200 if st in ("healthy", "degraded") else None,
                                                              round(rnd.uniform(2, 30), 1), f"synthetic {st}"))
                    last_state[s] = (st, ts + 0.9)
                _run(conn, "health", ts + 0.3, "ok" if not bad else "failed", 0 if not bad else 1, 0.7,
                     f"{9 - bad - deg} healthy, {deg} degraded, {bad} failed")
            if not (monitor_gap and monitor_gap[0] < t < monitor_gap[1]):
                conn.execute("INSERT OR IGNORE INTO heartbeat_observations(name, at, observed_at) VALUES (?,?,?)",
                             ("monitor", ts - rnd.uniform(1, 29), ts + 1))
            conn.execute("INSERT INTO resource_samples(at, source, cpu_percent, mem_percent, mem_bytes, detail) VALUES (?,?,?,?,?,?)",
                         (ts + 2, "docker", round(cpu * rnd.uniform(0.6, 1.0), 2), round(mem * rnd.uniform(0.9, 1.0), 2),
                          int(mem * 2e7), json.dumps({"units": [], "reason": ""})))
            conn.execute("INSERT INTO db_connection_samples(at, connections, total, max_connections, reserved, exhausted)"
                         " VALUES (?,?,?,?,?,0)", (ts + 2, db_connections, db_connections + 6, max_connections, 3))
            t += timedelta(minutes=5)
        for s, (st, at) in last_state.items():
            conn.execute("INSERT INTO service_state(service, state, since, last_checked, consecutive_failures) VALUES (?,?,?,?,?)",
                         (s, st, at - 3600, at, 0 if st in ("healthy", "degraded") else 1))
        conn.execute("INSERT INTO heartbeats(name, at, pid, detail) VALUES ('monitor', ?, 99, 'synthetic')",
                     ((end - timedelta(seconds=20)).timestamp(),))
        # the market jobs on weekdays, backups nightly, maintenance on Sundays
        day = (start - timedelta(days=1)).astimezone(ET).date()
        while day <= end.astimezone(ET).date():
            if day.weekday() < 5:
                for job, hm in (("market-open", "09:30"), ("scan", "11:00"), ("scan", "13:00"), ("market-close", "16:00")):
                    at = datetime.combine(day, dtime.fromisoformat(hm), ET) + timedelta(seconds=rnd.uniform(0.5, 4))
                    if start - timedelta(days=1) <= at <= end:
                        _run(conn, job, at.timestamp(), took=rnd.uniform(3, 200), session_date=day.isoformat())
            if day.weekday() == 6:
                at = datetime.combine(day, dtime(2, 0), ET) + timedelta(seconds=3)
                if at <= end:
                    _run(conn, "weekly-maintenance", at.timestamp(), took=240)
            at = datetime.combine(day, dtime(23, 0), ET) + timedelta(seconds=2)
            if at <= end and day not in skip_backups:
                _run(conn, "backup", at.timestamp(), took=95)
                conn.execute("INSERT INTO backups(path, created_at, size_bytes, sha256, verified, status, detail) VALUES (?,?,?,?,?,?,?)",
                             (f"/backups/catalyst/catalyst-{day}.dump", at.timestamp() + 95, 734_003_200 + rnd.randrange(10**6),
                              "ab" * 32, "list", "ok", ""))
            day += timedelta(days=1)
        for svc, at, planned in restarts:
            conn.execute("INSERT INTO restarts(service, at, reason, outcome, planned, detail) VALUES (?,?,?,?,?,?)",
                         (svc, at.timestamp(), "down" if not planned else "weekly maintenance", "recovered", planned, ""))
        for i in range(6):
            at = start + timedelta(hours=7 * i + 1)
            conn.execute("INSERT INTO alerts(created_at, severity, subject_key, subject, body, status, attempts, sent_at)"
                         " VALUES (?,?,?,?,?,?,?,?)", (at.timestamp(), "info", f"k{i}", f"info {i}", "body", "sent", 1,
                                                       at.timestamp() + 3))
    return db


def ops_yaml(tmp_path, state_db, extra: str = "") -> str:
    """An ops.yml for a synthetic DB (nothing listens on its ports: reports read the DB only)."""
    path = tmp_path / "ops.yml"
    path.write_text(f"""state_path: {state_db}
log_dir: {tmp_path / 'log'}
env_file: {tmp_path / '.env'}
backup: {{dir: {tmp_path / 'backups'}}}
runtime: {{kind: command, commands: {{start: "true", stop: "true", restart_service: "true"}}}}
{extra}
""")
    return str(path)
