"""Bad inventory variables fail at argument validation, naming the variable, before Ansible
connects to any host. Real ansible-playbook runs against an inventory whose only host is
unreachable: reaching a connection would show up as UNREACHABLE instead of the message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
GOOD = {"catalyst_smtp_host": "smtp.example.com", "catalyst_alert_email": "ops@example.com"}

pytestmark = pytest.mark.skipif(not (BIN / "ansible-playbook").exists(), reason="ansible-core not installed")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    inv = tmp_path_factory.mktemp("inv") / "hosts.ini"
    # port 9 (discard) on localhost: nothing answers ssh there
    inv.write_text("[catalyst]\ndroplet ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh\n")
    return inv


def playbook(inventory, name: str, extra: dict, *args: str) -> subprocess.CompletedProcess:
    import json

    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_ARGS="-o ConnectTimeout=2", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE / "playbooks" / name),
                           "-e", json.dumps(extra), *args], capture_output=True, text=True, env=env, timeout=180)


def test_good_variables_pass_the_check(inventory):
    res = playbook(inventory, "00-validate.yml", GOOD)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert "UNREACHABLE" not in res.stdout


@pytest.mark.parametrize("extra,named", [
    ({"catalyst_alert_email": 42}, "catalyst_alert_email: expected an email address"),
    ({"catalyst_smtp_host": None}, "catalyst_smtp_host: expected an SMTP host name (required when catalyst_email_enabled"),
    ({"catalyst_smtp_host": ""}, "catalyst_smtp_host: expected an SMTP host name"),
    ({"catalyst_smtp_port": "abc"}, "argument 'catalyst_smtp_port' is of type str and we were unable to convert to int"),
    ({"catalyst_email_enabled": "maybe"}, "argument 'catalyst_email_enabled' is of type str and we were unable to convert to bool"),
    ({"catalyst_timezone": "Mars Base"}, 'catalyst_timezone: expected an IANA zone name'),
    ({"catalyst_services": ["scanner"]}, "argument 'catalyst_services' is of type list and we were unable to convert to dict"),
    ({"catalyst_ops_settings": {"runtime": {"kind": "systemd"}}}, "catalyst_ops_settings: expected no key among"),
    ({"catalyst_runtime": {"kind": "docker"}}, "catalyst_runtime: expected a mapping whose kind is compose, systemd or command"),
    ({"catalyst_cron_file": "/etc/cron.d/catalyst.cron"}, "catalyst_cron_file: expected /etc/cron.d/NAME"),
    ({"catalyst_cron_foreign_backup_dir": "/etc/cron.d/old"}, "catalyst_cron_foreign_backup_dir: expected an absolute path outside /etc/cron.d"),
    ({"catalyst_cron_foreign_extra_patterns": ["docker("]}, "item=catalyst_cron_foreign_extra_patterns: docker("),
    ({"catalyst_cron_foreign_patterns": [], "catalyst_cron_foreign_extra_patterns": []}, "catalyst_cron_foreign_patterns: expected at least one pattern"),
    ({"catalyst_cron_foreign_own_files": ["catalyst"]}, "catalyst_cron_foreign_own_files: expected absolute paths"),
    ({"catalyst_cron_foreign_disable": "maybe"}, "argument 'catalyst_cron_foreign_disable' is of type str"),
    ({"catalyst_backup_dir_mode": 700}, "catalyst_backup_dir_mode: expected an octal mode in quotes"),
    ({"catalyst_validation_report_schedule": "every day"}, "catalyst_validation_report_schedule: expected five cron time fields"),
    ({"catalyst_validation_textfile_dir": ""}, "catalyst_validation_node_exporter: expected catalyst_validation_textfile_dir set"),
    ({"catalyst_validation_node_exporter_listen_address": "9100"}, "catalyst_validation_node_exporter_listen_address: expected HOST:PORT"),
    ({"catalyst_validation_node_exporter_extra_args": ["collector.systemd"]}, "catalyst_validation_node_exporter_extra_args: expected a list of --flag"),
    ({"catalyst_validation_node_exporter": "sometimes"}, "argument 'catalyst_validation_node_exporter' is of type str"),
    ({"catalyst_mail_dns_resolver": "dns.example.com"}, "catalyst_mail_dns_resolver: expected the resolver's IP address"),
    ({"catalyst_mail_spf_include": "not a host"}, "catalyst_mail_spf_include: expected the provider's SPF include host"),
    ({"catalyst_mail_dmarc_policy": "none"}, "catalyst_mail_dmarc_policy must be one of: quarantine, reject, got: none"),
])
def test_bad_variable_fails_site_yml_naming_it_before_any_connection(inventory, extra, named):
    res = playbook(inventory, "site.yml", {**GOOD, **extra})
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert named in out, out[-3000:]
    assert "UNREACHABLE" not in out


def test_email_enabled_without_smtp_host_fails_even_with_email_unset_elsewhere(inventory):
    res = playbook(inventory, "site.yml", {"catalyst_alert_email": "ops@example.com"})
    assert res.returncode != 0
    assert "catalyst_smtp_host: expected an SMTP host name (required when catalyst_email_enabled is true)" in res.stdout


def test_email_disabled_needs_no_smtp_host(inventory):
    res = playbook(inventory, "00-validate.yml", {"catalyst_email_enabled": False})
    assert res.returncode == 0, res.stdout[-3000:]


def test_phase_playbook_alone_also_fails_before_connecting(inventory):
    res = playbook(inventory, "03-email.yml", {**GOOD, "catalyst_alert_email": 42})
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "catalyst_alert_email: expected an email address" in out
    assert "UNREACHABLE" not in out


def test_per_severity_recipients_replace_the_single_one(inventory):
    sev = {"catalyst_smtp_host": "smtp.example.com", "catalyst_alert_email_critical": "a@example.com",
           "catalyst_alert_email_warning": "b@example.com", "catalyst_alert_email_info": "c@example.com"}
    assert playbook(inventory, "00-validate.yml", sev).returncode == 0
    res = playbook(inventory, "00-validate.yml", {**sev, "catalyst_alert_email_info": "not-an-address"})
    assert res.returncode != 0 and "catalyst_alert_email_info: expected an email address" in res.stdout


@pytest.mark.parametrize("name", ["site.yml", "00-validate.yml", "01-infrastructure.yml", "02-cron.yml",
                                  "03-email.yml", "04-validation.yml"])
def test_playbooks_pass_syntax_check(inventory, name):
    res = playbook(inventory, name, GOOD, "--syntax-check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_example_inventory_parses_and_puts_the_droplet_in_the_catalyst_group():
    import json

    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"))
    res = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(ANSIBLE / "inventory" / "production.example.yml"),
                          "--list"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["catalyst"]["hosts"] == ["droplet"]


def test_default_paths_follow_the_stack_dir(tmp_path):
    """The .env the email role edits and the compose file ops.yml names are upstream's checkout by
    default, and follow catalyst_stack_dir: a .env that compose does not read would make every
    SMTP and mode change a no-op on a real droplet."""
    import json

    book = tmp_path / "paths.yml"
    roles = ANSIBLE / "roles"
    book.write_text(f"""- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_vars: {roles}/catalyst_common/defaults/main.yml
    - ansible.builtin.include_vars: {roles}/catalyst_cron/defaults/main.yml
    - ansible.builtin.debug:
        msg: "PATHS={{{{ catalyst_env_file }}}}|{{{{ catalyst_runtime.compose_file }}}}"
""")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ.get('PATH', '')}")

    def paths(extra: dict) -> str:
        res = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(book), "-e", json.dumps(extra)],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr
        return res.stdout.split("PATHS=", 1)[1].split('"', 1)[0]

    assert paths({}) == ("/root/catalyst-trading-system/.env|"
                         "/root/catalyst-trading-system/docker-compose.yml")
    assert paths({"catalyst_stack_dir": "/root/catalyst-trading-mcp"}) == (
        "/root/catalyst-trading-mcp/.env|/root/catalyst-trading-mcp/docker-compose.yml")
