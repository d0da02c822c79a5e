"""Shared fixtures: the stand-in stack over real HTTP, and the CLI run as a real process."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_base_port(span: int = 11) -> int:
    """A base port B such that B..B+span-1 are all free on 127.0.0.1."""
    for _ in range(200):
        # below the kernel's ephemeral range (32768+), where client sockets would collide
        base = random.randrange(20000, 32000 - span)
        socks = []
        try:
            for p in range(base, base + span):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@dataclass
class CLIResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(*args: str, config: str | os.PathLike | None = None, env: dict | None = None, timeout: float = 120,
            input: str | None = None) -> CLIResult:
    cmd = [sys.executable, "-m", "catalyst_ops"]
    if config:
        cmd += ["--config", str(config)]
    cmd += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.pop("CATALYST_OPS_CONFIG", None)
    full_env.pop("CATALYST_OPS_NOW", None)
    full_env.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, input=input, cwd=REPO)
    return CLIResult(p.returncode, p.stdout, p.stderr)


@dataclass
class StandIn:
    rundir: Path
    base_port: int

    @property
    def config(self) -> Path:
        return self.rundir / "ops.yml"

    @property
    def env_file(self) -> Path:
        return self.rundir / ".env"

    @property
    def state_db(self) -> Path:
        return self.rundir / "state.db"

    def port(self, service: str) -> int:
        from catalyst_ops.config import DEFAULT_PORTS

        return self.base_port + (10 if service == "broker" else DEFAULT_PORTS[service] - 5000)

    def cli(self, *args: str, **kw) -> CLIResult:
        return run_cli(*args, config=self.config, **kw)

    def sandbox(self, *args: str) -> CLIResult:
        res = run_cli("sandbox", args[0], "--rundir", self.rundir, *args[1:])
        assert res.code == 0, res.text
        return res

    def fault(self, service: str, kind: str, *extra: str) -> None:
        self.sandbox("fault", service, kind, *extra)

    def append_config(self, text: str) -> None:
        """Append YAML to the generated ops.yml (top-level keys not already present)."""
        with open(self.config, "a") as fh:
            fh.write("\n" + text.strip() + "\n")


def _start_standin(tmp_path: Path, profile: str = "real", stage_seconds: float = 0.3, extra: tuple = ()) -> StandIn:
    rundir = tmp_path / "standin"
    for attempt in range(3):
        base = free_base_port()
        res = run_cli("sandbox", "up", "--rundir", rundir, "--base-port", str(base), "--profile", profile,
                      "--stage-seconds", str(stage_seconds), *extra)
        if res.code == 0:
            return StandIn(rundir, base)
        # another process took one of the ports between the check and the bind: start afresh elsewhere
        run_cli("sandbox", "down", "--rundir", rundir)
        import shutil

        shutil.rmtree(rundir, ignore_errors=True)
    raise AssertionError(res.text)


@pytest.fixture
def standin(tmp_path):
    """A fresh stand-in stack (nine services + broker, real profile) on free ports."""
    s = _start_standin(tmp_path)
    yield s
    run_cli("sandbox", "down", "--rundir", s.rundir)


@pytest.fixture
def standin_factory(tmp_path):
    """Start a stand-in with options: standin_factory(profile="plan", stage_seconds=0.2)."""
    started = []

    def make(profile: str = "real", stage_seconds: float = 0.3, sub: str = "standin") -> StandIn:
        s = _start_standin(tmp_path / sub, profile, stage_seconds)
        started.append(s)
        return s

    yield make
    for s in started:
        run_cli("sandbox", "down", "--rundir", s.rundir)


# the throw-away PostgreSQL cluster fixtures (pg, pgdb) live in tests/pgcluster.py, Redis in tests/redisserver.py
pytest_plugins = ["pgcluster", "redisserver"]
