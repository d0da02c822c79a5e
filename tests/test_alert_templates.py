"""The host artifacts of the email role: the monitor's systemd unit and the .env SMTP block."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parent.parent


def render(name: str, **vars) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "templates"), keep_trailing_newline=True)
    return env.get_template(name).render(**vars)


def _directives(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_monitor_unit_is_hardened_and_runs_the_monitor():
    d = _directives(render("catalyst-monitor.service.j2"))
    assert d["ExecStart"] == ["/opt/catalyst-ops/venv/bin/catalyst-ops --config /etc/catalyst/ops.yml monitor"]
    for key, value in {"Restart": "always", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "KillSignal": "SIGTERM"}.items():
        assert d[key] == [value], key
    assert d["ReadWritePaths"] == ["/var/lib/catalyst /var/log/catalyst"]
    # a hung loop is restarted too: the loop notifies systemd, which restarts it when the beat stops
    assert (d["Type"], d["NotifyAccess"], d["WatchdogSec"]) == (["notify"], ["main"], ["120"])
    # journalctl -t finds it by the job's name, whatever the unit is called
    assert d["SyslogIdentifier"] == ["catalyst-ops-monitor"] and d["StandardError"] == ["journal"]
    d = _directives(render("catalyst-monitor.service.j2", catalyst_state_dir="/srv/state", catalyst_log_dir="/srv/log",
                           catalyst_monitor_watchdog_sec=45))
    assert d["ReadWritePaths"] == ["/srv/state /srv/log"]
    assert d["WatchdogSec"] == ["45"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed on this machine")
def test_monitor_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart's binary exists: point it at a real one
    binary = tmp_path / "catalyst-ops"
    binary.write_text(f"#!/bin/sh\nexec {sys.executable} -m catalyst_ops \"$@\"\n")
    binary.chmod(0o755)
    unit = tmp_path / "catalyst-monitor.service"
    unit.write_text(render("catalyst-monitor.service.j2", catalyst_ops_bin=str(binary),
                           catalyst_state_dir=str(tmp_path / "state"), catalyst_log_dir=str(tmp_path / "log")))
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    problems = [l for l in (p.stdout + p.stderr).splitlines() if "catalyst-monitor" in l]
    assert p.returncode == 0 and not problems, p.stdout + p.stderr
    # and it does catch a broken unit (the check can fail)
    bad = tmp_path / "catalyst-bad.service"
    bad.write_text(unit.read_text().replace("Restart=always", "Restart=sometimes"))
    p = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    flagged = [l for l in (p.stdout + p.stderr).splitlines() if bad.name in l]
    assert any("restart specifier" in l for l in flagged), p.stdout + p.stderr


def test_env_smtp_block_round_trips_both_spellings(tmp_path):
    from catalyst_ops import envfile
    from catalyst_ops.alerts import email

    password = "p@ss'w\"ord #1 \\ end"
    text = render("env-smtp.j2", catalyst_smtp_host="smtp.example.com", catalyst_smtp_username="bot@example.com",
                  catalyst_smtp_password=password, catalyst_smtp_from="Catalyst <bot@example.com>",
                  catalyst_alert_email="ops@example.com", catalyst_alert_email_critical="pager@example.com")
    path = tmp_path / ".env"
    path.write_text("DATABASE_URL=postgresql://x\n" + text)
    env = envfile.load(str(path))
    assert env["SMTP_PASSWORD"] == password
    assert env["SMTP_TLS"] == env["SMTP_USE_TLS"] == "true"
    assert env["SMTP_PORT"] == "587"
    assert env["ALERT_EMAIL"] == "ops@example.com"
    assert env["ALERT_EMAIL_CRITICAL"] == "pager@example.com"
    assert env["ALERT_EMAIL_WARNING"] == env["ALERT_EMAIL_INFO"] == "ops@example.com"
    s = email.settings_from_env(env, str(path))
    assert (s.host, s.port, s.tls, s.sender) == ("smtp.example.com", 587, "starttls", "Catalyst <bot@example.com>")
    assert s.route("critical") == ["pager@example.com"] and s.route("info") == ["ops@example.com"]


def test_env_smtp_block_tls_off_and_defaults():
    from catalyst_ops.envfile import parse_lines

    lines = {l.key: l.value for l in parse_lines(render("env-smtp.j2", catalyst_smtp_tls=False), "<t>") if l.key}
    assert lines["SMTP_TLS"] == lines["SMTP_USE_TLS"] == "false"
    assert lines["SMTP_HOST"] == "" and lines["ALERT_EMAIL_CRITICAL"] == ""
