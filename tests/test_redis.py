"""Redis in the health sweep, against a real redis-server (tests/redisserver.py), in its own protocol."""

from __future__ import annotations

import json
import sqlite3

import yaml

from conftest import run_cli
from redisserver import PASSWORD

NINE = ["orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news", "reporting"]


def _config(tmp_path, redis, env_text: str, runtime: dict | None = None, redis_cfg: dict | None = None):
    env = tmp_path / ".env"
    env.write_text(env_text)
    services = {name: {"enabled": False} for name in NINE}
    services["redis"] = redis_cfg if redis_cfg is not None else {"enabled": True, "port": redis.port}
    data = {"env_file": str(env), "state_path": str(tmp_path / "state.db"), "log_dir": str(tmp_path / "log"),
            "services": services, "health": {"timeout": 2, "restart_wait": 10, "restart_poll": 0.2},
            "runtime": runtime or {"kind": "command", "commands": {"start": "true", "stop": "true",
                                                                  "restart_service": redis.start_command}}}
    path = tmp_path / "ops.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _redis_state(res) -> dict:
    [svc] = [s for s in json.loads(res.out)["services"] if s["service"] == "redis"]
    return svc


def test_redis_healthy_with_the_env_password_and_the_password_never_shown(tmp_path, redis_server):
    cfg = _config(tmp_path, redis_server, f"REDIS_PASSWORD='{PASSWORD}'\n")
    res = run_cli("status", "--json", config=cfg)
    assert res.code == 0, res.text
    svc = _redis_state(res)
    assert (svc["state"], svc["detail"]) == ("healthy", "PONG")
    table = run_cli("status", config=cfg)
    assert "redis" in table.out and "PONG" in table.out
    for out in (res.text, table.text, run_cli("-v", "health", "--no-restart", config=cfg).text):
        assert PASSWORD not in out


def test_wrong_password_is_degraded_alerted_and_not_restarted(tmp_path, redis_server):
    """Redis answers, our password is wrong: a restart cannot fix that, so warn instead of restarting."""
    cfg = _config(tmp_path, redis_server, "REDIS_PASSWORD='not-the-password'\n")
    pid = redis_server.pid()
    res = run_cli("health", "--json", config=cfg)
    assert res.code == 0, res.text
    svc = _redis_state(res)
    assert svc["state"] == "degraded" and "REDIS_PASSWORD" in svc["detail"]
    assert json.loads(res.out)["restarts"] == []
    assert redis_server.pid() == pid
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT severity FROM alerts WHERE subject LIKE '%redis%'").fetchall() == [("warning",)]
    # no password at all: NOAUTH, the same verdict
    (tmp_path / ".env").write_text("TRADING_MODE=paper\n")
    svc = _redis_state(run_cli("status", "--json", config=cfg))
    assert svc["state"] == "degraded" and "wants a password" in svc["detail"]


def test_redis_down_is_restarted_through_the_runtime_and_alerted(tmp_path, redis_server):
    cfg = _config(tmp_path, redis_server, f"REDIS_PASSWORD='{PASSWORD}'\n")
    redis_server.stop()
    res = run_cli("health", "--json", config=cfg)
    assert res.code == 1, res.text
    data = json.loads(res.out)
    assert _redis_state(res)["state"] == "down"
    assert data["restarts"] == [{"service": "redis", "outcome": "recovered", "detail": "PONG",
                                 "seconds": data["restarts"][0]["seconds"]}]
    assert redis_server.pid() is not None  # the runtime's restart command brought it back
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT service, outcome, planned FROM restarts").fetchall() == [("redis", "recovered", 0)]
    assert db.execute("SELECT severity FROM alerts WHERE subject LIKE '%redis%' ORDER BY id").fetchall()[0] == ("critical",)
    assert run_cli("status", "--json", config=cfg).code == 0


def _compose(tmp_path, text: str):
    path = tmp_path / "docker-compose.yml"
    path.write_text(text)
    return path


UPSTREAM_REDIS = """
services:
  redis:
    image: redis:7-alpine
    container_name: catalyst-redis
    command: redis-server --appendonly yes --requirepass ${{REDIS_PASSWORD:-{default}}} --maxmemory 256mb
    ports:
      - "{port}:6379"
  scanner:
    image: catalyst/scanner
    ports: ["5001:5001"]
"""


def test_compose_stack_with_redis_is_checked_with_composes_default_password(tmp_path, tmp_path_factory):
    """Upstream's compose runs `redis` with --requirepass ${REDIS_PASSWORD:-...}: without the key in the
    .env the server runs with that default, and so does the check; the compose service is what restarts."""
    from redisserver import RedisServer

    default = "Compose-Default:pw"
    server = RedisServer(tmp_path_factory.mktemp("redis"), password=default)
    server.start()
    try:
        compose = _compose(tmp_path, UPSTREAM_REDIS.format(default=default, port=server.port))
        env = tmp_path / ".env"
        env.write_text("TRADING_MODE=paper\n")
        cfg = tmp_path / "ops.yml"
        cfg.write_text(yaml.safe_dump({
            "env_file": str(env), "state_path": str(tmp_path / "state.db"), "log_dir": str(tmp_path / "log"),
            "runtime": {"kind": "compose", "compose_file": str(compose)},
            "services": {name: {"enabled": False} for name in NINE}}))
        checked = json.loads(run_cli("config", "check", "--json", config=cfg).out)
        assert checked["services"] == ["redis"]
        res = run_cli("status", "--json", config=cfg)
        assert res.code == 0, res.text
        assert _redis_state(res)["state"] == "healthy"
        # the restart goes to the compose service `redis`
        dry = run_cli("health", "--dry-run", "--json", config=cfg)
        assert dry.code == 0
        server.stop()
        dry = run_cli("-v", "health", "--dry-run", "--json", config=cfg)
        assert dry.code == 1
        assert f"{compose} restart redis" in dry.err, dry.err
        # REDIS_PASSWORD in the .env wins, as it does for compose
        env.write_text("REDIS_PASSWORD=another\n")
        server.start()
        assert _redis_state(run_cli("status", "--json", config=cfg))["state"] == "degraded"
    finally:
        server.stop()


def test_redis_not_checked_where_the_stack_has_none(tmp_path):
    compose = _compose(tmp_path, "services:\n  scanner:\n    image: catalyst/scanner\n    ports: ['5001:5001']\n")
    cfg = tmp_path / "ops.yml"
    cfg.write_text(yaml.safe_dump({"runtime": {"kind": "compose", "compose_file": str(compose)},
                                   "state_path": str(tmp_path / "state.db")}))
    services = json.loads(run_cli("config", "check", "--json", config=cfg).out)["services"]
    assert "redis" not in services and len(services) == 9
    # nor under systemd or operator commands unless the operator says so
    cfg.write_text(yaml.safe_dump({"runtime": {"kind": "systemd"}, "state_path": str(tmp_path / "state.db")}))
    assert "redis" not in json.loads(run_cli("config", "check", "--json", config=cfg).out)["services"]
    cfg.write_text(yaml.safe_dump({"runtime": {"kind": "systemd"}, "state_path": str(tmp_path / "state.db"),
                                   "services": {"redis": {"enabled": True}}}))
    assert "redis" in json.loads(run_cli("config", "check", "--json", config=cfg).out)["services"]
