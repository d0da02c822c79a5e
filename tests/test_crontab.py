"""templates/crontab.j2 rendered with Jinja2 and parsed with python-crontab; `catalyst-ops schedule`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jinja2
import pytest
from crontab import CronTab

from catalyst_ops.schedule import JOBS
from tests.conftest import REPO, run_cli

TEMPLATE = REPO / "templates" / "crontab.j2"


def render(**vars) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(**vars)


def jobs(text: str) -> list:
    return list(CronTab(tab=text, user=False))  # user=False: the system format, with a user field


def test_defaults_render_nine_jobs_with_the_right_fields():
    text = render()
    ct = CronTab(tab=text, user=False)
    assert ct.env["SHELL"] == "/bin/sh"
    assert "/usr/bin" in ct.env["PATH"].split(":") and "/usr/sbin" in ct.env["PATH"].split(":")
    assert "MAILTO" in ct.env and 'MAILTO=""' in text
    parsed = list(ct)
    assert len(parsed) == 9
    logs = set()
    for job, want in zip(parsed, JOBS):
        assert job.is_valid()
        assert " ".join(str(s) for s in job.slices) == want.cron, want.name
        assert job.user == "root"
        words = shlex.split(job.command)
        assert words[:3] == ["/opt/catalyst-ops/venv/bin/catalyst-ops", "--config", "/etc/catalyst/ops.yml"]
        assert tuple(words[3:3 + len(want.args)]) == want.args
        assert words[-3:] == [">>", f"/var/log/catalyst/{want.log}", "2>&1"]
        logs.add(words[-2])
    assert len(logs) == 9  # each job its own log file
    assert text.endswith("\n")  # cron ignores a last line without a newline


def test_times_and_days():
    by_name = {w.name: j for j, w in zip(jobs(render()), JOBS)}
    assert str(by_name["market-open"].slices) == "30 9 * * 1-5"
    assert str(by_name["market-close"].slices) == "0 13,16 * * 1-5"
    assert str(by_name["weekly-maintenance"].slices) == "0 2 * * 0"
    assert str(by_name["health"].slices) == "*/5 * * * *"
    assert str(by_name["backup"].slices) == "0 23 * * *"
    assert str(by_name["rotate-logs"].slices) == "2 3 * * *"
    assert "--logrotate-config /etc/logrotate.d/catalyst" in by_name["rotate-logs"].command
    # the weekly review: Sunday, after weekly maintenance (02:00) and log rotation (03:00)
    assert str(by_name["report-weekly"].slices) == "0 6 * * 0"
    assert " report weekly --save --mail >> " in by_name["report-weekly"].command


def test_variables_are_honoured():
    text = render(catalyst_ops_bin="/usr/local/bin/catalyst-ops", catalyst_ops_config="/srv/ops.yml",
                  catalyst_log_dir="/srv/log", catalyst_cron_user="catalyst", catalyst_cron_mailto="ops@example.com",
                  catalyst_logrotate_config="/etc/catalyst/logrotate.conf")
    ct = CronTab(tab=text, user=False)
    assert ct.env["MAILTO"].strip('"') == "ops@example.com"
    for job in ct:
        assert job.user == "catalyst"
        assert job.command.startswith("/usr/local/bin/catalyst-ops --config /srv/ops.yml ")
        assert " >> /srv/log/" in job.command
    assert "--logrotate-config /etc/catalyst/logrotate.conf" in text


def test_every_crontab_command_parses_in_the_cli():
    from catalyst_ops.cli import build_parser

    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)
    for job in JOBS:
        if job.args[0] == "backup" and "backup" not in known:
            continue  # built by the backup work; weekly-maintenance reports "not configured" until then
        args = parser.parse_args(list(job.args))
        assert args.func


@pytest.fixture
def cfg(tmp_path) -> Path:
    p = tmp_path / "ops.yml"
    p.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {tmp_path / 'log'}\n")
    return p


def schedule(cfg, *args, now="2026-03-07T12:00:00-05:00", cron_root=None):
    # cfg's directory has no etc/ or var/: the host's own crontabs never change these results
    return run_cli("--now", now, "schedule", "--json", "--cron-root", cron_root or Path(cfg).parent, *args, config=cfg)


def test_schedule_right_zone_across_dst(cfg, tmp_path):
    tab = tmp_path / "catalyst"
    tab.write_text(render())
    res = schedule(cfg, "--crontab", tab, "--host-tz", "America/New_York")
    assert res.code == 0, res.text
    data = json.loads(res.out)
    assert data["warnings"] == []
    nxt = {j["job"]: j for j in data["jobs"]}
    assert len(nxt) == 9
    assert nxt["report-weekly"]["next_exchange"] == "2026-03-08T06:00:00-04:00"
    # Saturday before DST starts: Monday's open is 09:30 EDT (13:30 UTC), not 14:30 UTC
    assert nxt["market-open"]["next_exchange"] == "2026-03-09T09:30:00-04:00"
    assert nxt["market-open"]["next_run_will"] == "acts"
    # Sunday 02:00 does not exist on 8 March; cron runs it as the clock jumps
    assert nxt["weekly-maintenance"]["next_exchange"] == "2026-03-08T03:00:00-04:00"
    assert nxt["market-close"]["next_exchange"] == "2026-03-09T13:00:00-04:00"
    assert nxt["market-close"]["next_run_will"].startswith("skips")
    assert nxt["market-close"]["next_action_exchange"] == "2026-03-09T16:00:00-04:00"


def test_schedule_shows_thanksgiving_and_the_early_close(cfg):
    data = json.loads(schedule(cfg, "--host-tz", "US/Eastern", now="2026-11-25T17:00:00-05:00").out)
    nxt = {j["job"]: j for j in data["jobs"]}
    assert "Thanksgiving" in nxt["market-open"]["next_run_will"]
    assert nxt["market-open"]["next_action_exchange"] == "2026-11-27T09:30:00-05:00"
    assert nxt["market-close"]["next_action_exchange"] == "2026-11-27T13:00:00-05:00"
    assert nxt["scan-lunch"]["next_action_exchange"] == "2026-11-30T13:00:00-05:00"


@pytest.mark.parametrize("zone", ["Australia/Perth", "UTC", "Europe/London"])
def test_schedule_warns_on_a_wrong_host_zone(cfg, zone):
    res = schedule(cfg, "--host-tz", zone)
    assert res.code == 1
    data = json.loads(res.out)
    assert any(f"host timezone {zone} is not America/New_York" in w for w in data["warnings"])
    if zone == "Australia/Perth":
        assert any("an hour off for part of the year" in w for w in data["warnings"])


def test_schedule_warns_on_a_drifted_crontab(cfg, tmp_path):
    tab = tmp_path / "catalyst"
    tab.write_text(render().replace("30 9 * * 1-5", "30 22 * * 1-5"))
    res = schedule(cfg, "--crontab", tab, "--host-tz", "America/New_York")
    assert res.code == 1
    assert any("market-open runs at '30 22 * * 1-5'" in w for w in json.loads(res.out)["warnings"])


def test_schedule_bad_zone_is_usage_error(cfg):
    res = schedule(cfg, "--host-tz", "Mars/Olympus")
    assert res.code == 2 and "Mars/Olympus" in res.err and "Traceback" not in res.err
