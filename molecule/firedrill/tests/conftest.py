"""Fixtures of the fire drill: the converged droplet, the SMTP server and PostgreSQL on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
sys.path.insert(0, str(PROJECT))  # catalyst_ops (pgcluster, schema fixture, cron parser) from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(PROJECT / "tests"))  # smtpserver.make_cert: the suite's throw-away certificate

import drill as d  # noqa: E402


@dataclass
class Drill:
    droplet: d.Droplet
    cron: d.Crontab
    smtp: d.SMTPSink
    pg: d.Postgres
    day: object
    day2: object
    workdir: Path
    started: float


@pytest.fixture(scope="session")
def drill():
    ephemeral = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp/catalyst-firedrill"))
    workdir = ephemeral / "firedrill"
    workdir.mkdir(parents=True, exist_ok=True)
    instance_config = os.environ.get("MOLECULE_INSTANCE_CONFIG") or str(ephemeral / "instance_config.yml")
    # ssh's control socket path must stay short (the ephemeral directory's is too long for it)
    control = tempfile.mkdtemp(prefix="firedrill-ssh-")
    droplet = d.Droplet(instance_config, control)
    smtp = d.SMTPSink(d.SMTP_PORT, workdir / "mail.jsonl")
    pg = d.Postgres()
    started = time.monotonic()
    try:
        # the droplet trusts the relay's certificate as an operator trusts a private relay's CA
        # (molecule.yml: alerts.ca_file); STARTTLS verifies it, AUTH only after TLS
        droplet.sh(f"install -D -m 0644 /dev/stdin {d.RELAY_CA}", input=smtp.cert.read_text())
        smtp.start()
        pg.setup()
        # The operator's stack .env carries DATABASE_URL (the stand-in role wrote a placeholder);
        # written with the product's own atomic .env update, the URL on stdin, never in argv.
        droplet.sh(f"{d.OPS_PY} -c 'import sys; from catalyst_ops import envfile; "
                   f"envfile.update(\"{d.ENV_FILE}\", {{\"DATABASE_URL\": sys.stdin.read().strip()}})'",
                   input=pg.url + "\n")
        # The drill is cron: the droplet's own cron daemon would fire the same lines at real times
        # in between (a health run racing the drill's, a real 09:30 market-open)
        droplet.sh("systemctl stop cron")
        day, day2 = d.drill_days(datetime.now(d.NY).date())
        d.REPORT.notes.append(f"trading day {day} (NYSE session), halted day {day2}; droplet {droplet.name}")
        yield Drill(droplet, d.Crontab(droplet), smtp, pg, day, day2, workdir, started)
    finally:
        smtp.stop()
        pg.destroy()
        subprocess.run(droplet.base[:-1] + ["-O", "exit", droplet.base[-1]], capture_output=True, timeout=30)
        shutil.rmtree(control, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    tr.section("fire drill: faults injected, outcome, time to recover")
    for note in d.REPORT.notes:
        tr.write_line(note)
    tr.write_line("")
    table = d.REPORT.table() if d.REPORT.rows else "(no fault was completed)"
    tr.write_line(table)
    out = os.environ.get("CATALYST_FIREDRILL_TABLE")
    if out:  # scripts/molecule.sh prints it again outside Molecule's boxed, wrapped output
        Path(out).write_text("\n".join(d.REPORT.notes + ["", table]) + "\n")


DIAGNOSTICS = (
    "date; systemctl --no-pager --all list-units 'catalyst-*' cron.service; "
    "journalctl --no-pager -o short-precise -n 120 -u 'catalyst-*'; "
    "echo '--- health.log'; tail -n 40 /var/log/catalyst/health.log; "
    "echo '--- backup.log'; tail -n 10 /var/log/catalyst/backup.log; "
    "echo '--- stand-in'; ls -l /var/lib/catalyst/standin/faults /var/lib/catalyst/standin/pids; "
    "ss -ltnp | grep -E ':164[0-9]{2}' || true"
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    dr = item.funcargs.get("drill") if hasattr(item, "funcargs") else None
    if rep.failed and dr is not None:
        # what the droplet looked like when the drill failed: CI keeps nothing else of it
        try:
            p = dr.droplet.sh(DIAGNOSTICS, check=False, timeout=60)
            text = p.stdout + p.stderr
        except Exception as exc:  # the droplet itself may be the problem
            text = f"(no diagnostics: {exc})"
        rep.sections.append(("droplet diagnostics", text))
