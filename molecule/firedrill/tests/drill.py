"""The fire drill's host side: the droplet over ssh, its installed crontab run as cron would,
a real SMTP server (aiosmtpd) and a throw-away PostgreSQL cluster, and the table of faults.

Nothing here calls catalyst-ops functions to make things happen on the droplet: jobs run from
the lines of the installed /etc/cron.d/catalyst, faults are injected with systemctl, the stand-in's
own fault switch, a stopped SMTP server, a stopped PostgreSQL and a small tmpfs.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shlex
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

NY = ZoneInfo("America/New_York")
CRON_FILE = "/etc/cron.d/catalyst"
OPS = "/opt/catalyst-ops/venv/bin/catalyst-ops"
OPS_PY = "/opt/catalyst-ops/venv/bin/python"
STATE_DB = "/var/lib/catalyst/state.db"
STANDIN_DIR = "/var/lib/catalyst/standin"
ENV_FILE = "/opt/catalyst/.env"
BACKUP_DIR = "/backups/catalyst"
SMTP_PORT = 2626
RELAY_CA = "/etc/catalyst/drill-relay-ca.pem"  # molecule.yml: catalyst_ops_settings.alerts.ca_file
BROKER_URL = "http://127.0.0.1:16410"
WORKFLOW_URL = "http://127.0.0.1:16406"
# generous bounds: the machine is shared; every wait polls and returns as soon as it holds
WAIT = 90.0
POLL = 0.3


class DrillError(AssertionError):
    pass


def wait_until(what: str, fn, timeout: float = WAIT, poll: float = POLL):
    """Poll fn() until it returns something truthy; fail naming `what` (and the last value) after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(poll)


# ------------------------------------------------------------------ the droplet


class Droplet:
    def __init__(self, instance_config: str, control_dir: str):
        inst = yaml.safe_load(Path(instance_config).read_text())[0]
        self.name = inst["instance"]
        self.base = ["ssh", "-p", str(inst["port"]), "-i", inst["identity_file"], "-o", "BatchMode=yes",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                     "-o", "ConnectTimeout=10", "-o", "ControlMaster=auto",
                     "-o", f"ControlPath={control_dir}/%C", "-o", "ControlPersist=300",
                     f"{inst['user']}@{inst['address']}"]

    def sh(self, script: str, input: str | None = None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.base + [script], input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise DrillError(f"on the droplet: {script[:200]!r} exited {p.returncode}: {p.stderr.strip()[-600:] or p.stdout.strip()[-600:]}")
        return p

    def py(self, code: str, timeout: float = 60):
        """Run Python on the droplet (catalyst-ops's venv), code on stdin; returns its JSON output."""
        p = self.sh(f"{OPS_PY} -", input=code, timeout=timeout)
        return json.loads(p.stdout) if p.stdout.strip() else None

    def q(self, sql: str, params: tuple = ()) -> list[dict]:
        """Read the droplet's state DB (SQLite, WAL: a reader never blocks the jobs)."""
        code = ("import json, sqlite3\n"
                f"c = sqlite3.connect({STATE_DB!r}, timeout=30)\n"
                "c.row_factory = sqlite3.Row\n"
                f"print(json.dumps([dict(r) for r in c.execute({sql!r}, {tuple(params)!r})]))\n")
        return self.py(code)

    def unit_pid(self, unit: str) -> int:
        out = self.sh(f"systemctl show -p MainPID --value {shlex.quote(unit)}").stdout.strip()
        return int(out or 0)

    def kill_main(self, unit: str) -> int:
        """SIGKILL the unit's main process, a crash. (`systemctl kill` cannot signal through the
        droplet's cgroup set-up.)"""
        pid = self.unit_pid(unit)
        if pid <= 0:
            raise DrillError(f"{unit} has no main process to kill")
        self.sh(f"kill -KILL {pid}")
        return pid

    def unit_active(self, unit: str) -> bool:
        return self.sh(f"systemctl is-active --quiet {shlex.quote(unit)}", check=False).returncode == 0


# ------------------------------------------------------------------ cron


_FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _field_values(text: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            a, b = (int(x) for x in rng.split("-"))
        else:
            a = b = int(rng)
        out.update(range(a, b + 1, int(step) if step else 1))
    return out


def fires(schedule: str, at: datetime) -> bool:
    """Does a five-field cron schedule fire at the (host-local) minute `at`? Vixie cron's rule: when
    both day fields are restricted, either may match."""
    f = schedule.split()
    minute, hour, dom, mon, dow = (_field_values(t, lo, hi) for t, (lo, hi) in zip(f, _FIELD_RANGES))
    if 7 in dow:
        dow.add(0)
    wd = (at.weekday() + 1) % 7  # cron: 0 = Sunday
    dom_ok, dow_ok = at.day in dom, wd in dow
    day_ok = (dom_ok or dow_ok) if (f[2] != "*" and f[4] != "*") else (dom_ok and dow_ok)
    return at.minute in minute and at.hour in hour and at.month in mon and day_ok


@dataclass
class CronLine:
    schedule: str
    user: str
    command: str

    @property
    def job(self) -> str:
        m = re.search(r"catalyst-ops\s+(?:--config\s+\S+\s+)?(\S+)", self.command)
        return m.group(1) if m else "?"


@dataclass
class SlotRun:
    at: datetime
    results: dict  # job -> exit code
    seconds: float


class Crontab:
    """The installed /etc/cron.d/catalyst, run line by line the way cron runs it: every line whose
    schedule matches the minute, started together, each in `env -i` with the file's variables and
    cron's own (HOME, LOGNAME, SHELL), through /bin/sh -c, as the line's user."""

    def __init__(self, droplet: Droplet):
        from catalyst_ops import cronfile  # the product's parser: the same rules the role validated with

        self.droplet = droplet
        self.text = droplet.sh(f"cat {CRON_FILE}").stdout
        self.env: dict[str, str] = {}
        for line in self.text.splitlines():
            m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", line)
            if m:
                v = m.group(2).strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                    v = v[1:-1]
                self.env[m.group(1)] = v
        self.lines = [CronLine(j.schedule, j.user, j.command) for j in cronfile.parse(self.text)]
        if not self.lines:
            raise DrillError(f"{CRON_FILE} has no job lines")

    def line(self, job: str) -> CronLine:
        found = [ln for ln in self.lines if ln.job == job]
        if len(found) != 1:
            raise DrillError(f"{CRON_FILE}: expected one {job} line, found {len(found)}")
        return found[0]

    def due(self, at: datetime) -> list[CronLine]:
        return [ln for ln in self.lines if fires(ln.schedule, at)]

    def _env_words(self, line: CronLine, now: datetime | None) -> list[str]:
        home = "/root" if line.user == "root" else f"/home/{line.user}"
        env = {"SHELL": "/bin/sh", "HOME": home, "LOGNAME": line.user, "USER": line.user}
        env.update(self.env)  # the file's own NAME=value lines win, as in cron
        if now is not None:
            env["CATALYST_OPS_NOW"] = now.isoformat()
        return [f"{k}={v}" for k, v in env.items()]

    def run(self, lines: list[CronLine], at: datetime | None, timeout: float = 300) -> SlotRun:
        """Run the lines together and wait for all. `at`: the clock override (None: the real clock)."""
        parts = []
        for i, ln in enumerate(lines):
            # health runs on the real clock: it shares its timeline (cooldowns, the dead-man's
            # "health job ran" check) with the monitor, which runs under systemd on the real clock
            now = None if ln.job == "health" else at
            argv = ["env", "-i", *self._env_words(ln, now), "/bin/sh", "-c", ln.command]
            cmd = " ".join(shlex.quote(a) for a in argv)
            if ln.user != "root":
                cmd = f"runuser -u {shlex.quote(ln.user)} -- {cmd}"
            parts.append(f"( {cmd}; echo \"rc {i} $?\" ) &")
        script = "cd /\n" + "\n".join(parts) + "\nwait\n"
        t0 = time.monotonic()
        p = self.droplet.sh(script, timeout=timeout)
        results = {}
        for m in re.finditer(r"^rc (\d+) (\d+)$", p.stdout, re.M):
            results[lines[int(m.group(1))].job] = int(m.group(2))
        if len(results) != len(lines):
            raise DrillError(f"cron lines did not all report an exit code: {p.stdout!r}")
        return SlotRun(at or datetime.now(NY), results, time.monotonic() - t0)

    def run_slot(self, at: datetime, only: set[str] | None = None) -> SlotRun:
        lines = [ln for ln in self.due(at) if only is None or ln.job in only]
        if not lines:
            raise DrillError(f"no line of {CRON_FILE} fires at {at:%a %H:%M}")
        return self.run(lines, at)


# ------------------------------------------------------------------ SMTP


@dataclass
class Mail:
    at: float
    subject: str
    ids: list[int]
    text: str
    rcpt: list[str]
    tls: bool = False  # the session had switched to TLS (STARTTLS) before the message
    login: str = ""  # the user the session authenticated as


class SMTPSink:
    """aiosmtpd on 127.0.0.1:PORT as a real provider's submission port: STARTTLS required (a
    throw-away certificate for localhost/127.0.0.1, which the droplet trusts through
    alerts.ca_file), AUTH required and only after TLS, one user. Keeps every message with how it
    came (TLS, login) and appends it to a JSONL log. Stop/start keeps the same port and certificate."""

    USER = "drill-relay@example.com"
    PASSWORD = "drill-Relay-Pw-4471"

    def __init__(self, port: int, log_path: Path):
        import ssl

        from smtpserver import make_cert  # tests/smtpserver.py: the suite's own throw-away certificate

        self.port = port
        self.log_path = log_path
        self.mails: list[Mail] = []
        self.bad_logins = 0
        self._lock = threading.Lock()
        self._controller = None
        self.cert, key = make_cert(log_path.parent / "relay-tls")
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(self.cert, key)

    def _auth(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.USER
              and auth_data.password.decode() == self.PASSWORD)
        if not ok:
            with self._lock:
                self.bad_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        ids = [int(x) for x in str(msg.get("X-Catalyst-Alert-Ids", "")).split(",") if x.strip().isdigit()]
        body = msg.get_body(("plain",))
        login = session.auth_data.login.decode() if session.authenticated and session.auth_data is not None else ""
        m = Mail(time.time(), str(msg["Subject"]), ids, body.get_content() if body else "", list(envelope.rcpt_tos),
                 tls=session.ssl is not None, login=login)
        with self._lock:
            self.mails.append(m)
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(m.__dict__) + "\n")
        return "250 Message accepted for delivery"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        deadline = time.monotonic() + 30
        while True:  # the port may linger for a moment after a stop
            try:
                self._controller = Controller(self, hostname="127.0.0.1", port=self.port, server_hostname="localhost",
                                              tls_context=self._tls, require_starttls=True, authenticator=self._auth,
                                              auth_required=True, auth_require_tls=True, ready_timeout=10)
                self._controller.start()
                return
            except Exception:
                self._controller = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def snapshot(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)

    def deliveries(self) -> dict[int, int]:
        """alert id -> number of messages that carried it."""
        out: dict[int, int] = {}
        for m in self.snapshot():
            for i in m.ids:
                out[i] = out.get(i, 0) + 1
        return out


# ------------------------------------------------------------------ PostgreSQL


class Postgres:
    """A throw-away cluster on the host (catalyst_ops.sandbox.pgcluster: initdb/pg_ctl as the
    postgres user, scram passwords, SSL), with the schema fixture and generated trades."""

    USER = "catalyst"
    PASSWORD = "drill-Pw-5519x"
    DB = "catalyst_trading"

    def __init__(self):
        from catalyst_ops.sandbox.pgcluster import Cluster

        self.cluster = Cluster()
        if not self.cluster.available:
            raise DrillError("PostgreSQL server binaries (initdb, pg_ctl) not found: scripts/setup.sh --test installs postgresql")

    def setup(self) -> None:
        import psycopg2

        from catalyst_ops.sandbox import pgfixture

        self.cluster.setup()
        self.cluster.create_role(self.USER, self.PASSWORD)
        self.cluster.create_db(self.DB, owner=self.USER)
        conn = psycopg2.connect(self.cluster.url(self.DB, self.USER, self.PASSWORD, sslmode="disable"))
        try:
            pgfixture.load_schema(conn)
            pgfixture.generate(conn, trades=3000)
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return self.cluster.url(self.DB, self.USER, self.PASSWORD, sslmode="require" if self.cluster.ssl else "disable")

    def stop(self) -> None:
        self.cluster.stop("fast")

    def kill(self) -> list[int]:
        """SIGKILL the postmaster and every backend at once, as the OOM killer would: no shutdown, no
        checkpoint; the next start recovers from the WAL. Returns the pids killed."""
        import signal as _signal

        pid = int((self.cluster.datadir / "postmaster.pid").read_text().split()[0])
        kids = [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
        for p in [pid, *kids]:
            try:
                os.kill(p, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        return [pid, *kids]

    def start(self) -> None:
        self.cluster.start()
        self.cluster.wait_ready(30)

    def destroy(self) -> None:
        self.cluster.destroy()


# ------------------------------------------------------------------ the drill's calendar


def drill_days(today: date) -> tuple[date, date]:
    """(D, D2): D a full NYSE session at least three days back, so D+1 and D+2 (the backup-fault
    nights) are in the past too; D2 the next session after D+2 (the day after the emergency stop).
    Past days keep the jobs' timestamps behind the monitor's real clock (cooldowns compare them)."""
    import exchange_calendars as xc

    cal = xc.get_calendar("XNYS")
    d = today - timedelta(days=3)
    for _ in range(30):
        if cal.is_session(d.isoformat()):
            close = cal.session_close(d.isoformat()).tz_convert(NY)
            if close.hour == 16:
                break
        d -= timedelta(days=1)
    else:
        raise DrillError(f"no full NYSE session in the 30 days before {today}")
    d2 = d + timedelta(days=3)
    while not cal.is_session(d2.isoformat()):
        d2 += timedelta(days=1)
    return d, d2


def at(day: date, hhmm: str) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=NY)


def http_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


# ------------------------------------------------------------------ the table


@dataclass
class Row:
    fault: str
    injected: str
    outcome: str
    alerts: str
    recover: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        head = ["FAULT INJECTED", "DRILL CLOCK", "OUTCOME", "ALERTS (each delivered once)", "TIME TO RECOVER"]
        body = [[r.fault, r.injected, r.outcome, r.alerts, r.recover] for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)] if body else [len(h) for h in head]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


REPORT = Report()
