"""The converged droplet, checked over ssh: files, owners and modes, daemons, timezone, and
catalyst-ops itself running against the stand-in stack that runs there as systemd units."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("catalyst")

BIN = "/opt/catalyst-ops/venv/bin/catalyst-ops"
STANDIN = "/var/lib/catalyst/standin"
SERVICES = ["orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news",
            "reporting"]


@pytest.mark.parametrize("path,mode", [
    ("/etc/catalyst", 0o750),
    ("/var/lib/catalyst", 0o750),
    ("/var/log/catalyst", 0o750),
    ("/backups/catalyst", 0o700),
    ("/var/log/catalyst/reports", 0o750),
])
def test_directories(host, path, mode):
    d = host.file(path)
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("root", "root", mode)


@pytest.mark.parametrize("path,mode", [
    ("/etc/catalyst/ops.yml", 0o640),
    ("/etc/cron.d/catalyst", 0o644),
    ("/etc/cron.d/catalyst-validation", 0o644),
    ("/etc/logrotate.d/catalyst", 0o644),
    ("/etc/systemd/system/catalyst-monitor.service", 0o644),
    ("/opt/catalyst/.env", 0o600),
    ("/var/log/catalyst/health.log", 0o640),
    ("/var/log/catalyst/validation.log", 0o640),
])
def test_managed_files(host, path, mode):
    f = host.file(path)
    assert f.is_file
    assert (f.user, f.mode) == ("root", mode)


def test_catalyst_ops_installed_from_the_wheelhouse_without_the_repo(host):
    out = host.check_output(f"{BIN} --version")
    assert out.startswith("catalyst-ops ")
    assert host.file("/opt/catalyst-ops/venv/.catalyst-wheelhouse").content_string.strip()
    # the droplet got wheels, not a checkout
    assert not host.file("/opt/catalyst-ops/wheelhouse/pyproject.toml").exists
    assert host.run("ls /opt/catalyst-ops/wheelhouse/catalyst_ops-*.whl").rc == 0


def test_ops_yml_is_valid_and_points_at_the_standin(host):
    res = host.run(f"{BIN} config check --json /etc/catalyst/ops.yml")
    assert res.rc == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["runtime"] == "systemd"
    assert data["services"] == SERVICES


def test_timezone(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/America/New_York"
    assert host.file("/etc/timezone").content_string == "America/New_York\n"
    assert host.check_output("date +%Z") in ("EST", "EDT")


def test_cron_running_and_the_files_accepted_by_cron(host):
    cron = host.service("cron")
    assert cron.is_running and cron.is_enabled
    for f in ("/etc/cron.d/catalyst", "/etc/cron.d/catalyst-validation"):
        assert host.run(f"{BIN} config check-crontab {f}").rc == 0
    cron_lines = [ln.split() for ln in host.file("/etc/cron.d/catalyst").content_string.splitlines()
                  if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    commands = [ln[6:] for ln in cron_lines]
    assert [c[0] for c in commands] == [BIN] * 9, commands  # every job runs the installed catalyst-ops
    assert [next(w for w in c[1:] if not w.startswith("-") and not w.startswith("/")) for c in commands] == [
        "health", "market-open", "scan", "scan", "market-close", "backup", "weekly-maintenance", "rotate-logs", "report"]
    validation = host.file("/etc/cron.d/catalyst-validation").content_string
    assert f"{BIN} sample-resources" in validation and f"{BIN} report daily --save --mail" in validation
    # Debian's cron reports a file it rejects only in its log: restart it and read what it said
    cursor = host.check_output("journalctl -u cron -n 1 -o json --no-pager | python3 -c "
                               "'import json,sys; print(json.loads(sys.stdin.read())[\"__CURSOR\"])'")
    host.check_output("systemctl restart cron")
    time.sleep(1.5)
    said = host.check_output(f"journalctl -u cron -o cat --no-pager --after-cursor='{cursor}'")
    assert "INFO (pidfile" in said, said
    rejected = [ln for ln in said.splitlines() if "*system*catalyst" in ln or "/etc/cron.d/catalyst" in ln]
    assert not rejected, said


# What Debian's cron accepts or ignores, next to what `config check-crontab` says about the same
# file: the validate: of the cron role must refuse exactly what cron would ignore.
CRON_CASES = {
    "ok-plain": ("SHELL=/bin/sh\n*/5 * * * * root true\n", True),
    "ok-quoted-empty": ('MAILTO=""\n0 9 * * 1-5 root true\n', True),
    "ok-names": ("0 9 * jan-mar mon-fri root true\n", True),
    "ok-special": ("@daily root true\n", True),
    "bad-empty-mailto": ("MAILTO=\n*/5 * * * * root true\n", False),
    "bad-no-newline": ("*/5 * * * * root true", False),
    "bad-minute": ("61 * * * * root true\n", False),
    "bad-hour": ("0 24 * * * root true\n", False),
    "bad-missing-field": ("*/5 * * * root\n", False),
}


def test_cron_checker_agrees_with_debian_cron(host):
    try:
        for name, (text, _) in CRON_CASES.items():
            host.check_output(f"printf %s {_q(text)} > /etc/cron.d/zz-case-{name}")
        cursor = host.check_output("journalctl -u cron -n 1 -o json --no-pager | python3 -c "
                                   "'import json,sys; print(json.loads(sys.stdin.read())[\"__CURSOR\"])'")
        host.check_output("systemctl restart cron")
        time.sleep(1.5)
        said = host.check_output(f"journalctl -u cron -o cat --no-pager --after-cursor='{cursor}'")
        for name, (_, valid) in CRON_CASES.items():
            cron_ok = f"zz-case-{name})" not in said
            checker_ok = host.run(f"{BIN} config check-crontab /etc/cron.d/zz-case-{name}").rc == 0
            assert cron_ok == valid, f"{name}: cron said {said!r}"
            assert checker_ok == valid, f"{name}: check-crontab disagrees with cron"
    finally:
        host.run("rm -f /etc/cron.d/zz-case-*")


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_monitor_unit_enabled_and_active(host):
    mon = host.service("catalyst-monitor")
    assert mon.is_enabled and mon.is_running


def test_env_keeps_the_operators_lines_and_has_one_smtp_block(host):
    text = host.file("/opt/catalyst/.env").content_string
    # the stand-in's .env plays the operator's: its lines are still there, in order
    for key in ("DATABASE_URL=", "ALPACA_API_KEY=", "ALPACA_BASE_URL=", "TRADING_MODE=paper"):
        assert key in text
    assert text.count("# BEGIN catalyst-ops SMTP settings") == 1
    assert text.count("# END catalyst-ops SMTP settings") == 1
    assert "SMTP_HOST='127.0.0.1'" in text or "SMTP_HOST=127.0.0.1" in text
    assert host.run(f"{BIN} config check-env /opt/catalyst/.env").rc == 0


def test_mail_dns_check_with_no_resolver_answering_is_exit_3(host):
    """What the email role ran at converge (and turned into a warning): the sender domain (from the .env's
    SMTP_FROM) looked up at a resolver where nothing answers."""
    res = host.run(f"{BIN} alert dns --spf-include spf.example.com --dkim-selector s1 --resolver 127.0.0.1 "
                   "--resolver-port 15411 --json")
    assert res.rc == 3, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["domain"] == "example.com" and data["unanswered"]


def test_logrotate_config_passes_logrotate_debug(host):
    text = host.file("/etc/logrotate.d/catalyst").content_string
    assert "/var/log/catalyst/*.log" in text and "copytruncate" in text
    res = host.run("logrotate -d /etc/logrotate.d/catalyst")
    assert res.rc == 0, res.stderr
    assert "considering log /var/log/catalyst/health.log" in res.stderr + res.stdout
    assert "error:" not in res.stderr + res.stdout
    assert host.run(f"{BIN} config check-logrotate /etc/logrotate.d/catalyst").rc == 0


def test_status_against_the_standin_stack_on_the_droplet(host):
    for svc in SERVICES + ["broker"]:
        assert host.service(f"catalyst-{svc}").is_running, svc
    res = host.run(f"{BIN} status --json")
    assert res.rc == 0, res.stdout + res.stderr
    states = {s["service"]: s["state"] for s in json.loads(res.stdout)["services"]}
    assert states == {s: "healthy" for s in SERVICES}


def _health_run(host):
    for _ in range(5):  # cron's own */5 health run may hold the lock for a moment
        res = host.run(f"{BIN} health --json")
        if "skipped" not in res.stdout + res.stderr:
            return res
        time.sleep(2)
    return res


@pytest.fixture
def cron_paused(host):
    """cron stopped for the test: its own */5 health run, started between the test's kill and the test's
    health run, would restart the service first and leave the test's run nothing to report. (Debian's
    cron unit has KillMode=process: a job already running finishes; the test's run waits out its lock.)"""
    host.check_output("systemctl stop cron")
    try:
        yield
    finally:
        host.check_output("systemctl start cron")


def test_health_job_restarts_a_killed_service_through_systemd(host, cron_paused):
    host.check_output(f"{BIN} sandbox fault scanner down --rundir {STANDIN}")
    assert host.run(f"{BIN} status scanner").rc == 1
    assert not host.service("catalyst-scanner").is_running
    res = _health_run(host)
    assert res.rc == 1, res.stdout + res.stderr  # it found a problem (and fixed it)
    restarts = {r["service"]: r["outcome"] for r in json.loads(res.stdout)["restarts"]}
    assert restarts == {"scanner": "recovered"}
    assert host.service("catalyst-scanner").is_running
    assert host.run(f"{BIN} status").rc == 0


def test_a_unit_that_dies_as_it_starts_is_seen_through_systemd_and_started_once_more(host, cron_paused):
    # systemctl restart of a Type=simple unit succeeds even when its process exits a moment later: the
    # health job reads the unit's state (ActiveState failed) instead of waiting for a dead process
    host.check_output(f"{BIN} sandbox fault news crash-start --attempts 1 --rundir {STANDIN}")
    host.check_output("kill -KILL $(systemctl show -p MainPID --value catalyst-news.service)")
    res = _health_run(host)
    assert res.rc == 1, res.stdout + res.stderr
    r = {x["service"]: x for x in json.loads(res.stdout)["restarts"]}["news"]
    assert r["outcome"] == "recovered" and "second start" in r["detail"], r
    assert "unit catalyst-news.service failed" in r["detail"], r
    assert host.service("catalyst-news").is_running
    # every start crashes: reported with the unit's state and the process's own last words
    host.check_output(f"{BIN} sandbox fault news crash-start --attempts 3 --rundir {STANDIN}")
    host.check_output("kill -KILL $(systemctl show -p MainPID --value catalyst-news.service)")
    res = _health_run(host)
    r = {x["service"]: x for x in json.loads(res.stdout)["restarts"]}["news"]
    assert r["outcome"] == "still_down" and "exited as it started, twice" in r["detail"], r
    assert "crashed at start" in r["detail"], r  # its output, from the journal
    # leave it running for the tests after this one (six starts in seconds: systemd's start limit)
    host.check_output(f"{BIN} sandbox fault news clear --rundir {STANDIN}")
    host.check_output("systemctl reset-failed catalyst-news.service; systemctl start catalyst-news.service")
    # systemctl start returns as the process is forked, before it listens: give it the time a start takes
    for _ in range(30):
        res = host.run(f"{BIN} status news")
        if res.rc == 0:
            break
        time.sleep(1)
    assert res.rc == 0, res.stdout + res.stderr


def test_validation_jobs_scheduled(host):
    text = host.file("/etc/cron.d/catalyst-validation").content_string
    assert " report daily" in text
    assert "export prometheus --textfile /var/lib/prometheus/node-exporter" in text
    assert host.file("/var/lib/prometheus/node-exporter").is_directory


def test_node_exporter_serves_the_catalyst_series(host):
    """Debian's node exporter, pointed by the role at the export directory, serves what the cron
    job wrote; the page is read back with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    assert host.service("prometheus-node-exporter").is_enabled
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in \
        host.file("/etc/default/prometheus-node-exporter").content_string
    deadline = time.monotonic() + 90  # the export runs every minute from cron
    while not host.file("/var/lib/prometheus/node-exporter/catalyst.prom").exists and time.monotonic() < deadline:
        time.sleep(2)
    page = host.check_output("curl -fsS http://127.0.0.1:9100/metrics")
    families = {f.name: f for f in text_string_to_metric_families(page)}
    ups = {s.labels["service"]: s.value for s in families["catalyst_service_up"].samples}
    assert set(SERVICES) <= set(ups), ups
    assert "catalyst_halted" in families and "catalyst_export_timestamp_seconds" in families
    # the textfile collector read the file without error (1 would mean a parse failure)
    assert [s.value for s in families["node_textfile_scrape_error"].samples] == [0]


LEVELS = {"debug": "7", "info": "6", "warning": "4", "error": "3", "critical": "2"}


def test_monitor_logs_to_the_journal_under_its_name_with_priorities(host):
    out = host.check_output("journalctl -t catalyst-ops-monitor -o json --no-pager")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    messages = [e["MESSAGE"] for e in entries if isinstance(e.get("MESSAGE"), str)]
    assert any("monitor started" in m for m in messages), messages[-5:]
    for e in entries:
        m = re.search(r"^\S+ catalyst-ops\[monitor\] (\w+): ", e.get("MESSAGE") or "")
        if m:  # the sd-daemon prefix became the entry's priority and left the message
            assert e["PRIORITY"] == LEVELS[m.group(1)], e
    assert not any(m.startswith("<") for m in messages)


# upstream's root crontab, as prepare.yml installed it with crontab(1)
UPSTREAM_TAB = open(os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "tests", "fixtures",
                                 "upstream-root.crontab"), encoding="utf-8").read()
MARKER = re.compile(r"^# disabled by catalyst-ops \d{4}-\d{2}-\d{2}: ")


def upstream_driving_lines() -> list[str]:
    """Its job lines that drive the stack: all but the log clean-up (find) and the disk check (df)."""
    return [ln for ln in UPSTREAM_TAB.splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0]
            and "find " not in ln and "df -h" not in ln]


def test_upstream_root_crontab_commented_out_with_a_backup(host):
    listed = host.check_output("crontab -u root -l").splitlines()
    driving = upstream_driving_lines()
    assert len(driving) == 10
    for line in driving:
        disabled = [ln for ln in listed if MARKER.sub("", ln) == line]
        assert len(disabled) == 1 and MARKER.match(disabled[0]), line  # commented out once, never twice
        assert not MARKER.match(MARKER.sub("", disabled[0]))
    # the rest of upstream's crontab is as it was: comments, variables, the find and df lines
    rest = [ln for ln in UPSTREAM_TAB.splitlines() if ln not in driving]
    assert [ln for ln in listed if ln in rest] == rest
    # crontab(1) wrote it (cron reads only what it installs that way): one header, root:crontab, 0600
    spool = host.file("/var/spool/cron/crontabs/root")
    assert (spool.user, spool.group, spool.mode) == ("root", "crontab", 0o600)
    assert spool.content_string.count("# DO NOT EDIT THIS FILE") == 1
    # the backup is the crontab as prepare.yml installed it
    backups = host.check_output("ls -1 /var/backups/catalyst-cron").split()
    first = host.file("/var/backups/catalyst-cron/" + sorted(b for b in backups if b.startswith("var_spool_cron_crontabs_root."))[0])
    assert first.mode == 0o600 and first.user == "root"
    assert first.content_string.endswith(UPSTREAM_TAB) and first.content_string.startswith("# DO NOT EDIT THIS FILE")
    assert host.file("/var/backups/catalyst-cron").mode == 0o700


def test_cron_reloaded_roots_edited_crontab_and_runs_none_of_the_disabled_lines(host):
    # cron notices a changed user crontab by the spool directory's mtime, once a minute, and logs
    # "(root) RELOAD (crontabs/root)": the proof that it dropped the old lines. Wait for it if the
    # edit was less than a minute ago.
    backups = host.check_output("ls -1 /var/backups/catalyst-cron").split()
    first = sorted(b for b in backups if b.startswith("var_spool_cron_crontabs_root."))[0]
    edited = int(host.check_output(f"stat -c %Y /var/backups/catalyst-cron/{first}"))
    for _ in range(14):
        said = host.check_output(f"journalctl -u cron -o cat --no-pager --since @{edited}")
        if re.search(r"\(root\) RELOAD \((crontabs/)?root\)", said):
            break
        time.sleep(5)
    else:
        raise AssertionError(f"cron never reloaded root's crontab after the edit: {said}")
    after_reload = said[re.search(r"\(root\) RELOAD \((crontabs/)?root\)", said).end():]
    # whatever cron ran for root since then, none of it is an upstream line that drives the stack
    ran = re.findall(r"\(root\) CMD \((.*)\)$", after_reload, re.M)
    assert not [c for c in ran if any(c in ln for ln in upstream_driving_lines())], ran
    # and it read root's crontab without complaint (a user crontab it rejects is logged "(root) ERROR ...")
    assert not re.search(r"^\(root\) ERROR", after_reload, re.M), after_reload


def test_schedule_on_the_droplet_sees_no_live_foreign_line(host):
    res = host.run(f"{BIN} schedule --json")
    data = json.loads(res.stdout)
    assert [f for f in data["foreign_cron"] if f["live"]] == [], data["foreign_cron"]
    assert not [w for w in data["warnings"] if "drives the stack" in w]
    # and the role's own scan agrees: nothing left that drives the stack
    res = host.run(f"{BIN} config foreign-cron --json")
    assert res.rc == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["remaining"] == 0
