"""Dead-man's switch: alert when a scheduled job has NOT run when it should have.

Checked by the monitor on every sweep:
- health: the cron health job has not recorded a run for alerts.health_stale seconds;
- market-open: no market-open run recorded by alerts.market_open_deadline (exchange time) on
  an NYSE session day;
- backup: no successful backup for alerts.backup_stale_hours.
A fresh install has no history: the baseline is then the monitor's first start (kept in the
state DB), so a job that never runs still alerts, once its allowance has passed.
Each condition alerts once when it starts and once when it clears (policy.condition).
"""

from __future__ import annotations

import logging
from datetime import datetime, time as dtime
from zoneinfo import ZoneInfo

from catalyst_ops import clock
from catalyst_ops.alerts import policy

log = logging.getLogger(__name__)

def is_session(cfg, day) -> bool:
    """Is `day` (a date) a session of cfg.market.calendar? Falls back to Mon-Fri if the calendar is unusable."""
    try:
        from catalyst_ops import calendar

        return calendar.from_config(cfg).session(day) is not None
    except Exception as exc:  # no calendar must not stop the other checks
        log.warning("exchange calendar %s unavailable (%s): treating Mon-Fri as sessions", cfg.market.calendar,
                    exc.__class__.__name__)
        return day.weekday() < 5


def baseline(db) -> float:
    """When the monitor first started on this host (the allowance of a job with no history starts there)."""
    row = db.one("SELECT value FROM meta WHERE key='monitor_first_start'")
    if row:
        return float(row["value"])
    now = clock.timestamp()
    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('monitor_first_start', ?)", (str(now),))
    return now


def _ago(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def check(cfg, db) -> list[dict]:
    """Evaluate every dead-man condition; enqueue alerts on changes. Returns the conditions' states."""
    a = cfg.alerts
    now = clock.timestamp()
    base = baseline(db)
    out = []

    row = db.one("SELECT MAX(started_at) AS t FROM job_runs WHERE job='health'")
    last = row["t"] if row and row["t"] else None
    age = now - (last or base)
    stale = age > a.health_stale
    seen = f"last run {_ago(now - last)} ago" if last else "no run recorded since the monitor started"
    policy.condition(db, "deadman:health", stale, "critical", "DEAD-MAN: the health job has stopped running",
                     f"The cron health job (`catalyst-ops health`) has not recorded a run for {_ago(age)} "
                     f"(allowed: {_ago(a.health_stale)}); {seen}. Check cron (`systemctl status cron`) and the "
                     "crontab in /etc/cron.d.",
                     "CLEARED: the health job runs again", f"The cron health job recorded a run again ({seen}).")
    out.append({"check": "health", "alert": stale, "detail": seen})

    tz = ZoneInfo(cfg.market.exchange_timezone)
    local = clock.now().astimezone(tz)
    try:
        hh, mm = (int(x) for x in a.market_open_deadline.split(":"))
        deadline_t = dtime(hh, mm)
    except ValueError:
        from catalyst_ops.errors import ConfigError

        raise ConfigError(cfg.source, "alerts.market_open_deadline", f"expected HH:MM, got {a.market_open_deadline!r}")
    day = local.date()
    deadline = datetime.combine(day, deadline_t, tz)
    key = f"deadman:market-open:{day.isoformat()}"
    missing = False
    detail = "not a session day"
    if is_session(cfg, day):
        start_of_day = datetime.combine(day, dtime(0, 0), tz).timestamp()
        ran = db.one("SELECT 1 FROM job_runs WHERE job='market-open' AND (session_date=? OR started_at>=?) LIMIT 1",
                     (day.isoformat(), start_of_day))
        if ran is None:
            ran = db.one("SELECT 1 FROM market_actions WHERE session_date=? AND kind='market-open'", (day.isoformat(),))
        # only on the day itself and only if the monitor could have seen the deadline pass
        missing = ran is None and local >= deadline and base <= deadline.timestamp() + 3600
        detail = "recorded" if ran else f"not recorded (deadline {a.market_open_deadline} {tz.key})"
    policy.condition(db, key, missing, "critical",
                     f"DEAD-MAN: market open not run on {day.isoformat()}",
                     f"No market-open run is recorded for the session of {day.isoformat()}, and it is past "
                     f"{a.market_open_deadline} {tz.key}. The trading day has not started: check cron and "
                     "`catalyst-ops` logs (market-open).",
                     f"CLEARED: market open ran on {day.isoformat()}",
                     f"A market-open run is now recorded for {day.isoformat()}.")
    out.append({"check": "market-open", "alert": missing, "detail": detail})

    row = db.one("SELECT MAX(created_at) AS t FROM backups WHERE status='ok'")
    last = row["t"] if row and row["t"] else None
    age = now - (last or base)
    stale = age > a.backup_stale_hours * 3600
    seen = f"last good backup {_ago(now - last)} ago" if last else "no good backup recorded"
    policy.condition(db, "deadman:backup", stale, "critical", "DEAD-MAN: no backup",
                     f"No successful backup for {_ago(age)} (allowed: {a.backup_stale_hours:g} h); {seen}.",
                     "CLEARED: backups run again", f"A successful backup is recorded again ({seen}).")
    out.append({"check": "backup", "alert": stale, "detail": seen})
    return out


def check_monitor_heartbeat(cfg, db) -> dict:
    """Who watches the watcher: called by the cron health job."""
    hb = db.last_heartbeat("monitor")
    now = clock.timestamp()
    limit = cfg.health.monitor_heartbeat_stale
    if hb is None:
        stale, seen = True, "it has never sent a heartbeat on this host"
    else:
        stale, seen = now - hb["at"] > limit, f"last heartbeat {_ago(now - hb['at'])} ago (pid {hb['pid']})"
    policy.condition(db, "watchdog:monitor", stale, "critical", "WATCHDOG: the monitor daemon is not running",
                     f"The monitor (catalyst-monitor.service) has not heartbeated for more than {_ago(limit)}: {seen}. "
                     "Alerts are sent only every 5 minutes (by the health job) until it is back: "
                     "`systemctl status catalyst-monitor`, `journalctl -u catalyst-monitor`.",
                     "CLEARED: the monitor daemon is back", f"The monitor heartbeats again ({seen}).")
    return {"check": "monitor-heartbeat", "alert": stale, "detail": seen}
