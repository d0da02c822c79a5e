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
MARK = "# disabled by catalyst-ops "
BACKUPS = "/var/backups/catalyst-cron"
# production-cron.txt's market-open line, pasted into root's crontab again by hand
REPASTED = ("""30 9 * * 1-5 curl -X POST http://localhost:5006/api/v1/workflow/start -H "Content-Type: application/json" """
            """-d '{"mode":"autonomous","max_positions":5,"execute_top_n":3}' >> /var/log/catalyst/trading.log 2>&1""")


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


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_check_mode_on_the_converged_droplet_changes_nothing(host):
    tab = host.check_output("crontab -u root -l")
    assert tab.count(MARK) == 10  # converge commented out upstream's ten lines that drive the stack
    backups = host.check_output(f"ls -1 {BACKUPS}")
    recap, out = playbook("--check")
    assert recap["changed"] == 0, out[-4000:]
    assert SECRET not in out
    assert "[would-disable]" not in out
    assert host.check_output("crontab -u root -l") == tab
    assert host.check_output(f"ls -1 {BACKUPS}") == backups


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
    # and upstream's market-open line pasted into root's crontab once more
    host.check_output(f"(crontab -u root -l; printf '%s\\n' {_q(REPASTED)}) | crontab -u root -")
    tab_before = host.check_output("crontab -u root -l")
    backups_before = host.check_output(f"ls -1 {BACKUPS}").split()

    recap, out = playbook("--check")
    assert recap["changed"] >= 6, out[-4000:]
    assert SECRET not in out
    assert "/var/spool/cron/crontabs/root:" in out and "[would-disable] " + REPASTED[:60] in out
    # check mode touched nothing
    assert "echo drift" in host.file("/etc/cron.d/catalyst").content_string
    assert not host.service("catalyst-monitor").is_running
    assert host.check_output("crontab -u root -l") == tab_before
    assert host.check_output(f"ls -1 {BACKUPS}").split() == backups_before

    recap, out = playbook()
    assert recap["changed"] >= 6, out[-4000:]
    assert SECRET not in out
    assert "[disabled] " + REPASTED[:60] in out
    # the pasted line is commented out; the lines converge disabled are as they were, markers not doubled
    tab = host.check_output("crontab -u root -l")
    changed_lines = [(old, new) for old, new in zip(tab_before.splitlines(), tab.splitlines()) if old != new]
    assert len(tab.splitlines()) == len(tab_before.splitlines())
    assert len(changed_lines) == 1 and changed_lines[0][0] == REPASTED, changed_lines
    assert re.fullmatch(r"# disabled by catalyst-ops \d{4}-\d{2}-\d{2}: " + re.escape(REPASTED), changed_lines[0][1])
    assert tab.count(MARK) == 11 and all(ln.count(MARK) <= 1 for ln in tab.splitlines())
    new_backups = sorted(set(host.check_output(f"ls -1 {BACKUPS}").split()) - set(backups_before))
    assert len(new_backups) == 1 and new_backups[0].startswith("var_spool_cron_crontabs_root."), new_backups
    assert host.file(f"{BACKUPS}/{new_backups[0]}").content_string.rstrip("\n").endswith(tab_before)
    assert host.file("/etc/cron.d/catalyst").content_string == cron_before
    assert host.file("/etc/catalyst/ops.yml").content_string == ops_before
    assert host.service("catalyst-monitor").is_running
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/America/New_York"
    env = host.file("/opt/catalyst/.env")
    assert env.mode == 0o600
    # the managed block is back as it was; the operator's own line survived
    assert env.content_string == env_before + "OPERATOR_NOTE=keep-me\n"

    # the re-run leaves the old crontab so: nothing found, nothing reinstalled (crontab(1)'s header
    # carries the install time), no backup, no marker doubled or re-dated
    spool = host.file("/var/spool/cron/crontabs/root").content_string
    backups = host.check_output(f"ls -1 {BACKUPS}")
    recap, out = playbook()
    assert recap["changed"] == 0, out[-4000:]
    assert "[disabled]" not in out and "[would-disable]" not in out
    assert host.check_output("crontab -u root -l") == tab
    assert host.file("/var/spool/cron/crontabs/root").content_string == spool
    assert host.check_output(f"ls -1 {BACKUPS}") == backups
