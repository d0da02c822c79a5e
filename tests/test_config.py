"""Bad configuration exits 2 with one line naming the file, the key and what was expected."""

from __future__ import annotations

import pytest

from conftest import run_cli


def _one_line_error(res) -> str:
    assert res.code == 2, res.text
    assert "Traceback" not in res.text
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    return lines[0]


@pytest.mark.parametrize("yaml_text, must_contain", [
    ("health:\n  timeout: fast\n", ["health.timeout", "expected a number", "'fast'"]),
    ("health:\n  max_restarts_per_hour: -1\n", ["health.max_restarts_per_hour", "at least 0"]),
    ("services:\n  scanr: {port: 5001}\n", ["services.scanr", "unknown service"]),
    ("services:\n  trading: {port: 'abc'}\n", ["services.trading.port", "expected an integer"]),
    ("services:\n  trading: {prot: 5005}\n", ["services.trading.prot", "unknown key"]),
    ("runtime:\n  kind: kubernetes\n", ["runtime.kind", "compose, systemd, command"]),
    ("runtime:\n  kind: command\n", ["runtime.commands.start", "expected a command line"]),
    ("healthh:\n  timeout: 3\n", ["healthh", "unknown key"]),
    ("workflow:\n  mode: aggressive\n", ["workflow.mode", "aggressive", "doubles the size"]),
    ("workflow:\n  mode: yolo\n", ["workflow.mode", "treats any other word as aggressive"]),
    ("alerts:\n  verify_tls: 'yes'\n", ["alerts.verify_tls", "true or false"]),
    ("health: [1, 2]\n", ["health", "expected a mapping"]),
    ("- just\n- a list\n", ["top level"]),
    ("health:\n  timeout: [\n", ["invalid YAML"]),
    ("profile: nosuch.yml\n", ["profile", "not found"]),
    # PyYAML keeps the last of two silently: refused, naming both lines
    ("health:\n  timeout: 3\n  restart_wait: 5\n  timeout: 30\n", ["health.timeout", "lines 2 and 4"]),
    ("health:\n  timeout: 3\nmarket: {}\nhealth:\n  timeout: 30\n", ["health:", "lines 1 and 4"]),
    ("services:\n  trading: {port: 5005, port: 5006}\n", ["services.trading.port", "lines 2 and 2"]),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, yaml_text, must_contain):
    cfg = tmp_path / "ops.yml"
    cfg.write_text(yaml_text)
    line = _one_line_error(run_cli("status", config=cfg))
    assert str(cfg) in line
    for part in must_contain:
        assert part in line, line


def test_missing_config_file_named(tmp_path):
    missing = tmp_path / "nope.yml"
    line = _one_line_error(run_cli("status", config=missing))
    assert str(missing) in line and "not found" in line


def test_config_from_environment_variable(tmp_path):
    cfg = tmp_path / "ops.yml"
    cfg.write_text("health:\n  timeout: zero\n")
    line = _one_line_error(run_cli("status", env={"CATALYST_OPS_CONFIG": str(cfg)}))
    assert str(cfg) in line and "health.timeout" in line


def test_malformed_env_line_exits_2_without_echoing_value(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nDATABASE_URL=postgresql://u:pw@h/db\nthis line is broken SECRETVALUE\n")
    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"env_file: {env}\n")
    from catalyst_ops import config, envfile
    from catalyst_ops.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        envfile.load(env)
    assert f"{env}:3" in str(exc.value) and "malformed line" in str(exc.value)
    c = config.load(str(cfg))
    with pytest.raises(ConfigError):
        c.env()


def test_unknown_service_on_command_line(standin):
    res = standin.cli("status", "nosuch")
    line = _one_line_error(res)
    assert "services.nosuch" in line and "unknown service" in line


def test_bad_now_is_a_usage_error(standin):
    line = _one_line_error(standin.cli("--now", "tuesday", "status"))
    assert "--now" in line
    line = _one_line_error(standin.cli("--now", "2026-11-27T12:59:00", "status"))
    assert "no UTC offset" in line
    # year 1 in +05:00 is before datetime's minimum in UTC: a usage error, not an internal one (exit 3)
    line = _one_line_error(standin.cli("--now", "0001-01-01T00:00:00+05:00", "status"))
    assert "--now" in line and "internal error" not in line
    line = _one_line_error(standin.cli("--now", "", "status"))  # not silently "no override"
    assert "--now" in line


@pytest.mark.parametrize("args, fragment", [
    (["market-open", "--deadline", "-1"], "more than 0"),
    (["market-open", "--deadline", "0"], "more than 0"),
    (["market-open", "--deadline", "nan"], "finite"),
    (["market-open", "--deadline", "inf"], "finite"),
    (["scan", "--deadline", "NaN"], "finite"),
    (["validate", "--hours", "nan"], "finite"),
    (["validate", "--hours", "inf"], "finite"),
    (["validate", "--hours", "0"], "more than 0"),
    (["alert", "list", "--limit", "-1"], "at least 1"),
    (["alert", "list", "--limit", "0"], "at least 1"),
    (["metrics", "--days", "-3"], "at least 1"),
])
def test_numbers_on_the_command_line_are_finite_and_in_range(tmp_path, args, fragment):
    cfg = tmp_path / "ops.yml"
    cfg.write_text("")
    line = _one_line_error(run_cli(*args, config=cfg))
    assert f"argument {args[-2]}" in line and fragment in line, line


def test_defaults_without_a_file(monkeypatch, tmp_path):
    from catalyst_ops import config

    monkeypatch.delenv("CATALYST_OPS_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.yml"))
    c = config.load(None)
    assert c.source == "<defaults>"
    assert c.enabled_services() == ["orchestration", "scanner", "pattern", "technical", "risk-manager", "trading",
                                    "workflow", "news", "reporting"]
    # no compose file with a Redis at the default path: Redis is known but not checked
    assert c.services["redis"].kind == "redis" and not c.services["redis"].enabled
    assert c.services["news"].port == 5008 and c.health.timeout == 5.0
    assert c.health_path("orchestration") == "/health"


def test_autonomous_mode_refused_with_the_coordinators_reason(tmp_path):
    """Upstream's crontab sends "mode": "autonomous"; the coordinator then skips the pattern and
    technical filters and places a 5% stop after risk-manager approved a 2% one. Refused, saying so,
    unless the operator knowingly adds it to the profile's modes."""
    cfg = tmp_path / "ops.yml"
    cfg.write_text("workflow:\n  mode: autonomous\n")
    line = _one_line_error(run_cli("config", "check", str(cfg)))
    for part in ("workflow.mode", "'autonomous'", "2% stop", "5% stop / 10% target", "2.5 times"):
        assert part in line, line
    cfg.write_text("workflow:\n  mode: autonomous\nprofile_overrides:\n  workflow:\n"
                   "    modes: [normal, conservative, autonomous]\n")
    assert run_cli("config", "check", str(cfg)).code == 0
    from catalyst_ops import config, workflow

    assert workflow.build_body(config.load(str(cfg)))["mode"] == "autonomous"


def test_state_db_is_created_private(tmp_path):
    """The state DB holds alert bodies, job output tails and the halt flag: 0600 (0640 in a directory
    open to its group, as the role's 0750), never the umask's 0644; its WAL files the same."""
    import os
    import stat

    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"state_path: {tmp_path / 'new' / 'state.db'}\n")
    old = os.umask(0o022)
    try:
        res = run_cli("alert", "list", config=cfg)
        assert res.code == 0, res.text
        assert stat.S_IMODE((tmp_path / "new" / "state.db").stat().st_mode) == 0o600
        for extra in ("state.db-wal", "state.db-shm"):
            if (tmp_path / "new" / extra).exists():
                assert stat.S_IMODE((tmp_path / "new" / extra).stat().st_mode) & 0o077 == 0
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o750)
        os.chmod(shared, 0o750)
        cfg.write_text(f"state_path: {shared / 'state.db'}\n")
        assert run_cli("alert", "list", config=cfg).code == 0
        assert stat.S_IMODE((shared / "state.db").stat().st_mode) == 0o640
    finally:
        os.umask(old)
