"""`catalyst-ops config check|check-crontab|check-env` (the roles' validate: commands) and the
templates the ansible helper owns (ops.yml.j2, logrotate.j2), rendered with plain Jinja2 and
checked with the real loader and the real logrotate."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from catalyst_ops import cronfile
from tests.conftest import REPO, run_cli

TEMPLATES = REPO / "templates"


def render(name: str, **variables) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True)
    return env.get_template(name).render(**variables)


# ---------------------------------------------------------------- cron.d checker

@pytest.mark.parametrize("text", [
    "SHELL=/bin/sh\nMAILTO=\"\"\n*/5 * * * * root /bin/true\n",
    "# comment\n\n30 9 * * 1-5 root catalyst-ops market-open >> /var/log/catalyst/market-open.log 2>&1\n",
    "0 9 * jan-mar mon-fri root true\n",
    "0 2 * * sun root true\n0 2 * * 7 root true\n",
    "0-59/15 0,12 1-31/2 * * root true\n",
    "@daily root true\n@reboot root true\n",
    "FOO.BAR=x\n0 1 * * * root date +\\%F\n",
])
def test_crontab_accepted(text):
    assert cronfile.parse(text, lambda u: True)


@pytest.mark.parametrize("text,line,fragment", [
    ("MAILTO=\n*/5 * * * * root true\n", 1, 'write MAILTO=""'),
    ("*/5 * * * * root true", 1, "no newline"),
    ("61 * * * * root true\n", 1, "minute: 61 is outside 0-59"),
    ("0 24 * * * root true\n", 1, "hour: 24 is outside 0-23"),
    ("0 0 0 * * root true\n", 1, "day of month: 0 is outside 1-31"),
    ("0 0 * 13 * root true\n", 1, "month: 13 is outside 1-12"),
    ("0 0 * * 8 root true\n", 1, "day of week: 8 is outside 0-7"),
    ("0 0 * * funday root true\n", 1, "day of week: 'funday' is not a number"),
    ("5-1 * * * * root true\n", 1, "runs backwards"),
    ("*/0 * * * * root true\n", 1, "step '0'"),
    ("# ok\n*/5 * * * * true\n", 2, "expected 5 time fields, a user and a command"),
    ("0 1 * * * root date +%F\n", 1, "unescaped %"),
    ("@fortnightly root true\n", 1, "unknown schedule"),
])
def test_crontab_rejected_naming_the_line(text, line, fragment):
    with pytest.raises(cronfile.CronFileError) as exc:
        cronfile.parse(text, lambda u: True)
    assert exc.value.lineno == line
    assert fragment in str(exc.value)


def test_crontab_unknown_user_rejected_only_with_the_user_check(tmp_path):
    f = tmp_path / "cron"
    f.write_text("*/5 * * * * no-such-user-xyz true\n")
    res = run_cli("config", "check-crontab", f)
    assert res.code == 2 and "user 'no-such-user-xyz' does not exist" in res.err
    assert run_cli("config", "check-crontab", "--no-user-check", f).code == 0


def test_check_crontab_cli_json_lists_the_jobs(tmp_path):
    f = tmp_path / "cron"
    f.write_text('MAILTO=""\n*/5 * * * * root catalyst-ops health\n@daily root true\n')
    res = run_cli("config", "check-crontab", "--json", f)
    assert res.code == 0, res.err
    jobs = json.loads(res.out)["jobs"]
    assert [(j["line"], j["schedule"], j["user"]) for j in jobs] == [(2, "*/5 * * * *", "root"), (3, "@daily", "root")]


def test_check_crontab_missing_file_is_one_line_exit_2(tmp_path):
    res = run_cli("config", "check-crontab", tmp_path / "nope")
    assert res.code == 2 and res.err.count("\n") == 1 and "cannot read" in res.err


def test_shared_crontab_template_renders_to_a_file_cron_accepts(tmp_path):
    """Whatever templates/crontab.j2 is (placeholder or the market helper's), rendered with its
    defaults it must pass the cron role's validate: command, or the role would refuse it."""
    f = tmp_path / "catalyst"
    f.write_text(render("crontab.j2"))
    res = run_cli("config", "check-crontab", f)
    assert res.code == 0, res.err


# ---------------------------------------------------------------- ops config

def test_config_check_valid_and_invalid(tmp_path):
    good = tmp_path / "ops.yml"
    good.write_text("runtime: {kind: systemd}\n")
    res = run_cli("config", "check", good)
    assert res.code == 0 and "runtime systemd" in res.out
    bad = tmp_path / "bad.yml"
    bad.write_text("health: {timeout: -1}\n")
    res = run_cli("config", "check", bad)
    assert res.code == 2
    assert res.err.strip() == f"catalyst-ops: error: {bad}: health.timeout: expected at least 0.1, got -1.0"


@pytest.mark.parametrize("text, key, expected", [
    ("health: {timeout: .nan}\n", "health.timeout", "expected a finite number, got nan"),
    ("health: {timeout: .inf}\n", "health.timeout", "expected a finite number, got inf"),
    ("workflow: {deadline: .nan}\n", "workflow.deadline", "expected a finite number"),
    ("services: {trading: {timeout: .inf}}\n", "services.trading.timeout", "expected a finite number"),
    ("metrics: {max_drawdown: .nan}\n", "metrics.max_drawdown", "expected a finite number"),
    ("market: {market_open: '25:99'}\n", "market.market_open", "expected a time HH:MM"),
    ("market: {market_close: '16:60'}\n", "market.market_close", "expected a time HH:MM"),
    ("market: {scans: ['11:00', 'noon']}\n", "market.scans[1]", "expected a time HH:MM"),
    ("alerts: {market_open_deadline: '9h45'}\n", "alerts.market_open_deadline", "expected a time HH:MM"),
    ("validation: {backup_time: '24:00'}\n", "validation.backup_time", "expected a time HH:MM"),
    ("validation: {maintenance_time: 'Caturday 02:00'}\n", "validation.maintenance_time", "expected 'DAY HH:MM'"),
    ("market: {calendar: XMARS}\n", "market.calendar", "expected an exchange calendar name"),
    ("host_timezone: Mars/Olympus\n", "host_timezone", "expected an IANA time zone name"),
    ("market: {exchange_timezone: 'America/Nowhere'}\n", "market.exchange_timezone", "expected an IANA time zone"),
])
def test_config_check_refuses_what_a_job_would_refuse(tmp_path, text, key, expected):
    """The roles' validate step is as strict as a job's run: NaN/inf, impossible times, unknown
    calendars and zones are refused at load, so the file is never installed."""
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    res = run_cli("config", "check", bad)
    assert res.code == 2, res.text
    assert res.err.startswith(f"catalyst-ops: error: {bad}: {key}: ") and expected in res.err, res.err
    assert "Traceback" not in res.text


def test_config_check_accepts_other_calendars_and_zones(tmp_path):
    good = tmp_path / "ops.yml"
    good.write_text("market: {calendar: XLON, exchange_timezone: Europe/London, market_open: '8:00'}\n"
                    "host_timezone: UTC\nvalidation: {maintenance_time: 'sunday 02:00'}\n")
    res = run_cli("config", "check", good)
    assert res.code == 0, res.text


def test_config_check_uses_global_config_when_no_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("nonsense: 1\n")
    res = run_cli("config", "check", config=bad)
    assert res.code == 2 and "nonsense: unknown key" in res.err


def test_ops_template_with_defaults_is_a_valid_config(tmp_path):
    f = tmp_path / "ops.yml"
    f.write_text(render("ops.yml.j2"))
    res = run_cli("config", "check", "--json", f)
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["runtime"] == "compose" and data["state_path"] == "/var/lib/catalyst/state.db"
    assert data["log_dir"] == "/var/log/catalyst"
    import yaml

    assert yaml.safe_load(f.read_text())["report_dir"] == "/var/log/catalyst/reports"


def test_ops_template_with_inventory_values(tmp_path):
    f = tmp_path / "ops.yml"
    f.write_text(render("ops.yml.j2", catalyst_runtime={"kind": "systemd"}, catalyst_state_dir="/srv/state",
                        catalyst_services={"scanner": {"port": 15401}, "news": False},
                        catalyst_ops_settings={"health": {"timeout": 2.5}, "workflow": {"mode": "conservative"}},
                        catalyst_env_file="/srv/it's here/.env", catalyst_profile="plan"))
    res = run_cli("config", "check", "--json", f)
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["runtime"] == "systemd" and data["state_path"] == "/srv/state/state.db"
    assert "news" not in data["services"]
    import yaml

    raw = yaml.safe_load(f.read_text())
    assert raw["env_file"] == "/srv/it's here/.env"  # quoting survives odd characters
    assert raw["health"] == {"timeout": 2.5} and raw["profile"] == "plan"


def test_ops_template_bad_value_is_refused_by_config_check(tmp_path):
    f = tmp_path / "ops.yml"
    f.write_text(render("ops.yml.j2", catalyst_ops_settings={"health": {"timeout": "soon"}}))
    res = run_cli("config", "check", f)
    assert res.code == 2 and "health.timeout: expected a number" in res.err


# ---------------------------------------------------------------- .env

def test_check_env_never_prints_values(tmp_path):
    f = tmp_path / ".env"
    f.write_text("SMTP_PASSWORD='s3cret value'\nOTHER=1\n")
    res = run_cli("config", "check-env", f)
    assert res.code == 0 and "2 keys" in res.out and "s3cret" not in res.text
    f.write_text("SMTP_PASSWORD='s3cret value\n")
    res = run_cli("config", "check-env", f)
    assert res.code == 2 and "SMTP_PASSWORD" in res.err and "s3cret" not in res.text


def test_env_smtp_template_parses_as_dotenv(tmp_path):
    """The .env block as the email role renders it is read back by catalyst-ops' own parser."""
    f = tmp_path / ".env"
    f.write_text(render("env-smtp.j2", catalyst_smtp_host="smtp.example.com", catalyst_smtp_password="p@ss word#1",
                        catalyst_alert_email="ops@example.com") + "\n")
    from catalyst_ops import envfile

    env = envfile.load(f)
    assert env["SMTP_HOST"] == "smtp.example.com" and env["SMTP_PASSWORD"] == "p@ss word#1"


# ---------------------------------------------------------------- logrotate

@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate not installed")
def test_logrotate_template_passes_logrotate_debug(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o750)
    (logdir / "health.log").write_text("x\n")
    conf = tmp_path / "catalyst"
    conf.write_text(render("logrotate.j2", catalyst_log_dir=str(logdir), catalyst_log_retention_days=7))
    text = conf.read_text()
    assert "create 0640 root root" in text and "\n    copytruncate" not in text and "rotate 7" in text
    res = run_cli("config", "check-logrotate", conf)
    assert res.code == 0, res.err
    proc = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0 and f"considering log {logdir}/health.log" in proc.stderr


@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate not installed")
def test_check_logrotate_fails_on_a_directive_logrotate_skips(tmp_path):
    """logrotate -d exits 0 after 'unknown option ... -- ignoring line': check-logrotate does not."""
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o750)
    (logdir / "health.log").write_text("x\n")
    conf = tmp_path / "catalyst"
    conf.write_text(render("logrotate.j2", catalyst_log_dir=str(logdir)).replace("delaycompress", "delaycompres"))
    proc = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0 and "unknown option 'delaycompres'" in proc.stderr  # why the wrapper exists
    res = run_cli("config", "check-logrotate", conf)
    assert res.code == 2
    assert "unknown option 'delaycompres'" in res.err and res.err.count("\n") == 1
