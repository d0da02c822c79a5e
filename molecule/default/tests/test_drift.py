"""Drift: break what the roles manage on the droplet, then see check mode report it without
fixing it, a re-run of site.yml correct it with the changes reported, and the run after that
report changed=0. Runs ansible-playbook for real, with Molecule's inventory."""

from __future__ import annotations

import os
import re
import subprocess
import time

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("catalyst")

SITE = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "ansible", "playbooks", "site.yml")
SECRET = "molecule-secret-7f3a9c"  # the SMTP password of molecule.yml: must never be printed


def playbook(*extra: str) -> tuple[dict, str]:
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], SITE, "--diff", *extra],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    out = proc.stdout + proc.stderr
    print(f"ansible-playbook site.yml {' '.join(extra)}: exit {proc.returncode} in {time.monotonic() - started:.0f}s")
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"catalyst-droplet\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert m, out[-2000:]
    ok, changed, unreachable, failed = map(int, m.groups())
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}, out


def test_check_mode_on_the_converged_droplet_changes_nothing():
    recap, out = playbook("--check")
    assert recap["changed"] == 0, out[-4000:]
    assert SECRET not in out


def test_drift_is_reported_by_check_mode_and_corrected_by_a_rerun(host):
    cron_before = host.file("/etc/cron.d/catalyst").content_string
    env_before = host.file("/opt/catalyst/.env").content_string
    ops_before = host.file("/etc/catalyst/ops.yml").content_string

    # the drift: a hand-edited crontab, a stopped monitor, a loosened .env with an edited SMTP
    # line plus an operator's own new line, a changed ops.yml, the wrong timezone
    host.check_output("echo '* * * * * root echo drift' >> /etc/cron.d/catalyst")
    host.check_output("systemctl stop catalyst-monitor")
    host.check_output("sed -i 's/^SMTP_HOST=.*/SMTP_HOST=evil.example.com/' /opt/catalyst/.env && chmod 0644 /opt/catalyst/.env")
    host.check_output("echo 'OPERATOR_NOTE=keep-me' >> /opt/catalyst/.env")
    host.check_output("sed -i 's/^profile: .*/profile: \"plan\"/' /etc/catalyst/ops.yml")
    host.check_output("ln -sfn /usr/share/zoneinfo/Australia/Perth /etc/localtime")

    recap, out = playbook("--check")
    assert recap["changed"] >= 5, out[-4000:]
    assert SECRET not in out
    # check mode touched nothing
    assert "echo drift" in host.file("/etc/cron.d/catalyst").content_string
    assert not host.service("catalyst-monitor").is_running

    recap, out = playbook()
    assert recap["changed"] >= 5, out[-4000:]
    assert SECRET not in out
    assert host.file("/etc/cron.d/catalyst").content_string == cron_before
    assert host.file("/etc/catalyst/ops.yml").content_string == ops_before
    assert host.service("catalyst-monitor").is_running
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/America/New_York"
    env = host.file("/opt/catalyst/.env")
    assert env.mode == 0o600
    # the managed block is back as it was; the operator's own line survived
    assert env.content_string == env_before + "OPERATOR_NOTE=keep-me\n"

    recap, out = playbook()
    assert recap["changed"] == 0, out[-4000:]
