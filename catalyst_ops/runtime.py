"""How the stack is run: docker compose, systemd units, or operator-given commands.

One small interface (start, stop, restart, restart_service, status); the rest of the
program never knows which runtime it talks to.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from dataclasses import dataclass

from catalyst_ops.errors import CannotRun

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    ok: bool
    command: list[str]
    output: str


class Runtime:
    def __init__(self, cfg, dry_run: bool = False):
        self.cfg = cfg
        self.rc = cfg.runtime
        self.dry_run = dry_run

    # subclasses fill these in
    def start_cmd(self) -> list[list[str]]: raise NotImplementedError
    def stop_cmd(self) -> list[list[str]]: raise NotImplementedError
    def restart_cmd(self) -> list[list[str]]: raise NotImplementedError
    def restart_service_cmd(self, service: str) -> list[list[str]]: raise NotImplementedError
    def status_cmd(self) -> list[list[str]]: return []

    def _run(self, commands: list[list[str]]) -> RunResult:
        output = []
        for cmd in commands:
            shown = " ".join(shlex.quote(c) for c in cmd)
            if self.dry_run:
                log.info("dry run: would run %s", shown)
                output.append(f"(dry run) {shown}")
                continue
            log.info("running %s", shown)
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      timeout=self.rc.command_timeout, stdin=subprocess.DEVNULL)
            except FileNotFoundError:
                raise CannotRun(f"runtime {self.rc.kind}: command not found: {cmd[0]}")
            except subprocess.TimeoutExpired:
                return RunResult(False, cmd, f"{shown}: timed out after {self.rc.command_timeout:g}s")
            output.append(proc.stdout.strip())
            if proc.returncode != 0:
                tail = proc.stdout.strip().splitlines()[-3:]
                return RunResult(False, cmd, f"{shown}: exit {proc.returncode}: {' | '.join(tail)}")
        return RunResult(True, commands[-1] if commands else [], "\n".join(o for o in output if o))

    def start(self) -> RunResult: return self._run(self.start_cmd())
    def stop(self) -> RunResult: return self._run(self.stop_cmd())
    def restart(self) -> RunResult: return self._run(self.restart_cmd())
    def restart_service(self, service: str) -> RunResult: return self._run(self.restart_service_cmd(service))

    def status(self) -> RunResult:
        cmds = self.status_cmd()
        return self._run(cmds) if cmds else RunResult(True, [], "")


class ComposeRuntime(Runtime):
    def _base(self) -> list[str]:
        return [*self.rc.compose_command, "-f", self.rc.compose_file]

    def _container(self, service: str) -> str:
        return self.cfg.service(service).container or service

    def start_cmd(self): return [[*self._base(), "up", "-d"]]
    def stop_cmd(self): return [[*self._base(), "down"]]
    def restart_cmd(self): return [[*self._base(), "restart"]]
    def restart_service_cmd(self, service): return [[*self._base(), "restart", self._container(service)]]
    def status_cmd(self): return [[*self._base(), "ps"]]


class SystemdRuntime(Runtime):
    def unit(self, service: str) -> str:
        return self.cfg.service(service).unit or self.rc.systemd_unit.format(service=service)

    def _units(self) -> list[str]:
        return [self.unit(s) for s in self.cfg.enabled_services()]

    def start_cmd(self): return [["systemctl", "start", *self._units()]]
    def stop_cmd(self): return [["systemctl", "stop", *self._units()]]
    def restart_cmd(self): return [["systemctl", "restart", *self._units()]]
    def restart_service_cmd(self, service): return [["systemctl", "restart", self.unit(service)]]
    def status_cmd(self): return [["systemctl", "is-active", *self._units()]]


class CommandRuntime(Runtime):
    def _split(self, line: str, **fmt) -> list[list[str]]:
        return [shlex.split(line.format(**fmt))] if line else []

    def start_cmd(self): return self._split(self.rc.commands.start)
    def stop_cmd(self): return self._split(self.rc.commands.stop)

    def restart_cmd(self):
        if self.rc.commands.restart:
            return self._split(self.rc.commands.restart)
        return self.stop_cmd() + self.start_cmd()

    def restart_service_cmd(self, service): return self._split(self.rc.commands.restart_service, service=service)
    def status_cmd(self): return self._split(self.rc.commands.status)


def get_runtime(cfg, dry_run: bool = False) -> Runtime:
    kind = cfg.runtime.kind
    cls = {"compose": ComposeRuntime, "systemd": SystemdRuntime, "command": CommandRuntime}[kind]
    return cls(cfg, dry_run=dry_run)
