"""The nine scheduled jobs, when cron will next fire them, and whether the host's zone makes that wrong.

Debian/Ubuntu cron has no CRON_TZ: it reads the crontab's times in the host's zone. The
crontab (templates/crontab.j2) is written in exchange time, so it is right only while the
host's zone has the exchange zone's offsets all year. `check_zone()` compares the two hour
by hour over the coming year, which catches the classic mistake (a host in Australia/Perth
with hand-converted times is an hour off for half the year) and any zone alias that is not
truly equivalent.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from catalyst_ops.errors import USAGE, OpsError


@dataclass(frozen=True)
class Job:
    name: str
    cron: str  # five fields, in exchange (= intended host) time
    args: tuple[str, ...]  # what follows `catalyst-ops --config CFG`
    log: str  # file name under the log dir
    market: str | None = None  # the market kind it is (for act/skip), if any
    slot: str | None = None


# The source of truth for the schedule; templates/crontab.j2 must match it (tests/test_crontab.py).
# market-close fires at 13:00 too: NYSE early closes are at 13:00 and the job acts at the real close.
JOBS: tuple[Job, ...] = (
    Job("health", "*/5 * * * *", ("health",), "health.log"),
    Job("market-open", "30 9 * * 1-5", ("market-open",), "market-open.log", "market-open"),
    Job("scan-mid-morning", "0 11 * * 1-5", ("scan", "--slot", "11:00"), "scan-mid-morning.log", "scan", "11:00"),
    Job("scan-lunch", "0 13 * * 1-5", ("scan", "--slot", "13:00"), "scan-lunch.log", "scan", "13:00"),
    Job("market-close", "0 13,16 * * 1-5", ("market-close",), "market-close.log", "market-close"),
    Job("backup", "0 23 * * *", ("backup",), "backup.log"),
    Job("weekly-maintenance", "0 2 * * 0", ("weekly-maintenance",), "weekly-maintenance.log"),
    # 03:02, off the */5 grid: logrotate renames a log and creates the new one; a job opening its log
    # (cron's >>) in between would create the file itself, and logrotate's create would then fail
    Job("rotate-logs", "2 3 * * *", ("rotate-logs",), "rotate-logs.log"),
    # the weekly review, once Sunday's maintenance and log rotation are done
    Job("report-weekly", "0 6 * * 0", ("report", "weekly", "--save", "--mail"), "report-weekly.log"),
)

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def parse_field(text: str, lo: int, hi: int, where: str = "cron field") -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part.strip())
        if not m:
            raise OpsError(f"{where}: cannot read {text!r}", USAGE)
        base, step = m.group(1), int(m.group(2) or 1)
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            a, b = (int(x) for x in base.split("-"))
        else:
            a = b = int(base)
            if m.group(2):
                b = hi
        if not (lo <= a <= hi and lo <= b <= hi) or a > b or step < 1:
            raise OpsError(f"{where}: {part!r} is outside {lo}-{hi}", USAGE)
        out.update(range(a, b + 1, step))
    return out


@dataclass
class CronSpec:
    text: str
    minutes: set[int]
    hours: set[int]
    doms: set[int]
    months: set[int]
    dows: set[int]
    dom_star: bool
    dow_star: bool

    @classmethod
    def parse(cls, text: str, where: str = "cron") -> "CronSpec":
        parts = text.split()
        if len(parts) != 5:
            raise OpsError(f"{where}: expected five time fields, got {text!r}", USAGE)
        sets = [parse_field(p, lo, hi, where) for p, (lo, hi) in zip(parts, _RANGES)]
        dows = {0 if d == 7 else d for d in sets[4]}
        return cls(text, sets[0], sets[1], sets[2], sets[3], dows, parts[2] == "*", parts[4] == "*")

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.isoweekday() % 7) in self.dows
        if self.dom_star or self.dow_star:  # cron: both restricted means either may match
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def fires(self, after: datetime, tz: ZoneInfo, count: int = 1, horizon_days: int = 400) -> list[datetime]:
        """The next `count` instants after `after` at which cron, running in `tz`, fires this line.
        A wall time skipped by a DST jump fires just after the jump (Debian cron does so for jumps
        under three hours); a repeated wall time fires once."""
        out: list[datetime] = []
        local = after.astimezone(tz)
        day = local.date()
        for _ in range(horizon_days):
            if self.day_matches(day):
                for h in sorted(self.hours):
                    for m in sorted(self.minutes):
                        wall = datetime(day.year, day.month, day.day, h, m)
                        inst = wall.replace(tzinfo=tz)  # fold=0: the first of a repeated hour
                        if inst.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != wall:
                            inst = _after_gap(wall, tz)
                        if inst > after and (not out or inst > out[-1]):
                            out.append(inst)
                            if len(out) == count:
                                return out
            day += timedelta(days=1)
        return out


def _after_gap(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clock jumps over a nonexistent wall time."""
    probe = wall.replace(tzinfo=tz).astimezone(timezone.utc)
    step = timedelta(minutes=1)
    t = probe - timedelta(hours=3)
    while t < probe + timedelta(hours=3):
        if t.astimezone(tz).replace(tzinfo=None) > wall:
            return t.astimezone(tz)
        t += step
    return probe.astimezone(tz)


# ---------------------------------------------------------------------------- the host's zone


def detect_host_zone() -> str:
    """The zone cron runs in: $TZ, else /etc/timezone, else the /etc/localtime link, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and not tz.startswith("/"):
        return tz
    try:
        text = open("/etc/timezone", encoding="utf-8").read().strip()
        if text:
            return text
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


def zone(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise OpsError(f"{what}: unknown time zone {name!r}", USAGE)


def zone_mismatch(host: ZoneInfo, exchange: ZoneInfo, start: datetime, days: int = 366) -> list[tuple[datetime, timedelta]]:
    """Start of each run of hours in the coming `days` where host wall time != exchange wall time,
    with the difference (host minus exchange offset)."""
    out = []
    t = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    end = t + timedelta(days=days)
    prev = None
    while t < end:
        diff = t.astimezone(host).utcoffset() - t.astimezone(exchange).utcoffset()
        if diff and diff != prev:
            out.append((t, diff))
        prev = diff
        t += timedelta(hours=1)
    return out


def _fmt_diff(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h}h" + (f"{m:02d}" if m else "")


def check_zone(host_name: str, cfg, now: datetime) -> list[str]:
    exchange_name = cfg.market.exchange_timezone
    host = zone(host_name, "host timezone")
    exchange = zone(exchange_name, "market.exchange_timezone")
    warnings = []
    runs = zone_mismatch(host, exchange, now)
    if runs:
        first, diff = runs[0]
        open_job = next(j for j in JOBS if j.name == "market-open")
        fire = CronSpec.parse(open_job.cron).fires(first, host)[0]
        drift = ""
        if len(runs) > 1:
            t2, d2 = runs[1]
            drift = (f"; the gap changes to {_fmt_diff(d2)} on {t2.astimezone(exchange):%Y-%m-%d} (DST), so hand-"
                     "converted times are an hour off for part of the year")
        warnings.append(
            f"host timezone {host_name} is not {exchange_name}: cron reads the crontab in host time, which is "
            f"{_fmt_diff(diff)} from exchange time on {first.astimezone(exchange):%Y-%m-%d}{drift}. market-open "
            f"(09:30 in the crontab) would fire at {fire.astimezone(exchange):%H:%M %Z} and the market jobs would "
            f"skip. Fix: timedatectl set-timezone {exchange_name}")
    if cfg.host_timezone != host_name and zone_mismatch(host, zone(cfg.host_timezone, "host_timezone"), now):
        warnings.append(f"host_timezone in {cfg.source} is {cfg.host_timezone} but the host runs {host_name}")
    return warnings


# ---------------------------------------------------------------------------- an installed crontab


def read_crontab(path: str) -> list[tuple[str, str]]:
    """(time fields, command) of each job line of a system crontab (/etc/cron.d format: a user field)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
                continue
            parts = line.split(None, 6)
            if len(parts) < 7:
                raise OpsError(f"{path}:{n}: expected five time fields, a user and a command", USAGE)
            out.append((" ".join(parts[:5]), parts[6]))
    return out


def job_for_command(command: str) -> Job | None:
    """Which of the nine a crontab command runs (by its catalyst-ops subcommand and slot)."""
    try:
        words = shlex.split(command.split(">>")[0])
    except ValueError:
        return None
    for job in JOBS:
        n = len(job.args)
        if any(tuple(words[i:i + n]) == job.args for i in range(len(words))):
            return job
    return None
