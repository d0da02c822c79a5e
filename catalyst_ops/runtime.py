"""How the stack is run: docker compose, systemd units, or operator-given commands.

One small interface; the rest of the program never knows which runtime it talks to:
start, stop, restart, restart_service, status, and for .env changes recreate_services
(a restart does not give a container a new environment: compose's
`up -d --no-deps --force-recreate` does; a systemd unit re-reads its EnvironmentFile on
restart), service_env (what the running service was started with), service_logs, and
passthrough (which .env keys a service would receive at all).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

from catalyst_ops.errors import CannotRun, ConfigError

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    ok: bool
    command: list[str]
    output: str


@dataclass
class Passthrough:
    """What each service would get for the asked keys once it is (re)created."""
    checked: bool  # False: this runtime cannot tell (note says why)
    source: str = ""  # the compose file or the units that were read
    seen: dict[str, dict[str, str | None]] = field(default_factory=dict)  # service -> {key: value (None: absent)}
    note: str = ""


def parse_env_lines(text: str) -> dict[str, str]:
    """`printenv` / `env` output (KEY=value per line) as a dict."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key and " " not in key:
            out[key] = value
    return out


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
    def recreate_cmd(self, services: list[str]) -> list[list[str]]: raise NotImplementedError
    def status_cmd(self) -> list[list[str]]: return []

    def _run(self, commands: list[list[str]], quiet: bool = False) -> RunResult:
        output = []
        for cmd in commands:
            shown = " ".join(shlex.quote(c) for c in cmd)
            if self.dry_run:
                log.info("dry run: would run %s", shown)
                output.append(f"(dry run) {shown}")
                continue
            (log.debug if quiet else log.info)("running %s", shown)
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

    def _read(self, commands: list[list[str]]) -> str | None:
        """Run read-only commands even in a dry run; None when they fail."""
        if not commands:
            return None
        saved, self.dry_run = self.dry_run, False
        try:
            res = self._run(commands, quiet=True)
        except CannotRun as exc:
            log.debug("%s", exc)
            return None
        finally:
            self.dry_run = saved
        if not res.ok:
            log.debug("%s", res.output)
            return None
        return res.output

    def start(self) -> RunResult: return self._run(self.start_cmd())
    def stop(self) -> RunResult: return self._run(self.stop_cmd())
    def restart(self) -> RunResult: return self._run(self.restart_cmd())
    def restart_service(self, service: str) -> RunResult: return self._run(self.restart_service_cmd(service))

    def recreate_services(self, services: list[str]) -> RunResult:
        """Give these services a fresh environment from the .env (compose: recreate; systemd: restart)."""
        return self._run(self.recreate_cmd(services))

    def status(self) -> RunResult:
        cmds = self.status_cmd()
        return self._run(cmds) if cmds else RunResult(True, [], "")

    def service_env(self, service: str) -> dict[str, str] | None:
        """The environment the running service has; None when it cannot be read."""
        return None

    def service_logs(self, service: str) -> str | None:
        """The running service's output since it was (re)created; None when it cannot be read."""
        return None

    def exited(self, service: str) -> str | None:
        """Why the service's process is not running (it died as it started, say); None while it runs
        or when this runtime cannot tell. Read-only, also in a dry run."""
        return None

    def passthrough(self, services: list[str], env_after: dict[str, str], keys: list[str]) -> Passthrough:
        return Passthrough(False, note=f"runtime {self.rc.kind} cannot tell which .env keys reach a service")

    # the compose file's view, shared by compose and command runtimes that name one
    def _compose_passthrough(self, compose_path: str, services: list[str], env_after: dict[str, str],
                             keys: list[str]) -> Passthrough:
        from catalyst_ops import composefile, envfile

        cf = composefile.load(compose_path)
        env_path = os.path.realpath(self.cfg.env_file)
        project_env_path = cf.dotenv_path
        if os.path.realpath(project_env_path) == env_path:
            project_env = env_after
        else:
            try:
                project_env = envfile.load(project_env_path)
            except ConfigError:
                project_env = {}
        seen: dict[str, dict[str, str | None]] = {}
        for svc in services:
            name = self.compose_name(svc)
            if cf.find(name) is None:
                seen[svc] = {k: None for k in keys}
                continue
            # an env_file that is our .env (by path) is read as it will be after the change
            env = cf.service_env(name, project_env, {env_path: env_after})
            seen[svc] = {k: env.get(k) for k in keys}
        note = ""
        if os.path.realpath(project_env_path) != env_path:
            note = (f"compose reads {project_env_path} for ${{...}} values, but catalyst-ops edits {self.cfg.env_file} "
                    "(env_file)")
        return Passthrough(True, str(compose_path), seen, note)

    def compose_name(self, service: str) -> str:
        try:
            return self.cfg.service(service).container or service
        except ConfigError:
            return service


def detect_compose_command() -> list[str]:
    """`docker compose` (v2) when the docker CLI has the plugin, else `docker-compose` (v1)."""
    if shutil.which("docker"):
        try:
            ok = subprocess.run(["docker", "compose", "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise CannotRun("runtime compose: neither `docker compose` (v2) nor `docker-compose` (v1) is installed "
                    "(set runtime.compose_command)")


class ComposeRuntime(Runtime):
    def __init__(self, cfg, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        self._command: list[str] | None = list(self.rc.compose_command) or None

    def compose_file(self) -> str:
        from catalyst_ops.config import COMPOSE_CANDIDATES, detect_compose_file

        path = detect_compose_file(self.cfg)
        if not path:
            raise ConfigError(self.cfg.source, "runtime.compose_file",
                              f"no compose file found at {', '.join(COMPOSE_CANDIDATES)}; set it")
        return path

    def base_command(self) -> list[str]:
        if self._command is None:
            try:
                self._command = detect_compose_command()
            except CannotRun:
                if not self.dry_run:
                    raise
                self._command = ["docker", "compose"]  # what a dry run shows where neither is installed
        return [*self._command, "-f", self.compose_file()]

    def _container(self, service: str) -> str:
        return self.compose_name(service)

    def start_cmd(self): return [[*self.base_command(), "up", "-d"]]
    def stop_cmd(self): return [[*self.base_command(), "down"]]
    def restart_cmd(self): return [[*self.base_command(), "restart"]]
    def restart_service_cmd(self, service): return [[*self.base_command(), "restart", self._container(service)]]
    def status_cmd(self): return [[*self.base_command(), "ps"]]

    def recreate_cmd(self, services):
        return [[*self.base_command(), "up", "-d", "--no-deps", "--force-recreate", *(self._container(s) for s in services)]]

    def service_env(self, service):
        out = self._read([[*self.base_command(), "exec", "-T", self._container(service), "printenv"]])
        return parse_env_lines(out) if out is not None else None

    def service_logs(self, service):
        # a recreated container starts with an empty log, so the tail holds only this run's lines
        return self._read([[*self.base_command(), "logs", "--no-color", "--tail", "5000", self._container(service)]])

    def passthrough(self, services, env_after, keys):
        return self._compose_passthrough(self.compose_file(), services, env_after, keys)

    def exited(self, service):
        # one JSON object per line (compose v2.21+) or one array (older v2); v1 has no --format
        out = self._read([[*self.base_command(), "ps", "-a", "--format", "json", self._container(service)]])
        if not out:
            return None
        try:
            rows = json.loads(out) if out.lstrip().startswith("[") else [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        except ValueError:
            return None
        for row in rows if isinstance(rows, list) else []:
            state = str(row.get("State", "")).lower()
            if state and state not in ("running", "restarting", "created"):
                return f"container {row.get('Name') or service} {state} ({row.get('Status', '')}, exit code {row.get('ExitCode', '?')})"
        return None


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
    # a unit re-reads Environment= and EnvironmentFile= when it starts
    def recreate_cmd(self, services): return [["systemctl", "restart", *(self.unit(s) for s in services)]]

    def _show(self, service: str, *props: str) -> dict[str, str]:
        out = self._read([["systemctl", "show", self.unit(service), *(f"--property={p}" for p in props)]])
        return parse_env_lines(out or "")

    def service_env(self, service):
        pid = self._show(service, "MainPID").get("MainPID", "0")
        if not pid.isdigit() or pid == "0":
            return None
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        return parse_env_lines(raw.replace(b"\0", b"\n").decode(errors="replace"))

    def exited(self, service):
        p = self._show(service, "ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus")
        state = p.get("ActiveState")
        # failed/inactive: its process is gone; activating/auto-restart: gone, systemd will try again
        if state in ("failed", "inactive") or (state == "activating" and p.get("SubState") == "auto-restart"):
            return (f"unit {self.unit(service)} {state} ({p.get('SubState')}, result {p.get('Result')}, "
                    f"exit status {p.get('ExecMainStatus')})")
        return None

    def service_logs(self, service):
        # this run of the unit only: its invocation id changes at every (re)start
        invocation = self._show(service, "InvocationID").get("InvocationID")
        if not invocation:
            return None
        return self._read([["journalctl", "--no-pager", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={invocation}"]])

    def passthrough(self, services, env_after, keys):
        from catalyst_ops import envfile

        env_path = os.path.realpath(self.cfg.env_file)
        seen = {}
        for svc in services:
            props = self._show(svc, "Environment", "EnvironmentFiles")
            if not props:
                return Passthrough(False, note=f"systemctl show {self.unit(svc)} gave nothing")
            env: dict[str, str] = {}
            for item in shlex.split(props.get("Environment", "")):
                k, eq, v = item.partition("=")
                if eq:
                    env[k] = v
            # EnvironmentFiles=/opt/catalyst/.env (ignore_errors=no); files override Environment=
            for line in props.get("EnvironmentFiles", "").split("\n"):
                path = line.split(" (", 1)[0].strip()
                if not path:
                    continue
                if os.path.realpath(path) == env_path:
                    env.update(env_after)
                else:
                    try:
                        env.update(envfile.load(path))
                    except ConfigError:
                        pass
            seen[svc] = {k: env.get(k) for k in keys}
        return Passthrough(True, ", ".join(self.unit(s) for s in services), seen)


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

    def recreate_cmd(self, services):
        if not self.rc.commands.recreate_service:
            raise ConfigError(self.cfg.source, "runtime.commands.recreate_service",
                              "expected a command that recreates {service} with the current .env (a restart keeps "
                              "the old environment)")
        line = self.rc.commands.recreate_service
        if "{services}" in line:  # one command for all of them, as compose takes a list
            return [shlex.split(line.replace("{services}", " ".join(shlex.quote(s) for s in services)))]
        return [c for s in services for c in self._split(line, service=s)]

    def service_env(self, service):
        out = self._read(self._split(self.rc.commands.env, service=service))
        return parse_env_lines(out) if out is not None else None

    def service_logs(self, service):
        return self._read(self._split(self.rc.commands.logs, service=service))

    def exited(self, service):
        cmds = self._split(self.rc.commands.running, service=service)
        if not cmds or self.dry_run:
            return None
        try:
            proc = subprocess.run(cmds[0], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=self.rc.command_timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.debug("runtime command running: %s", exc)
            return None
        if proc.returncode == 0:
            return None
        return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else f"{service} is not running"

    def passthrough(self, services, env_after, keys):
        if not self.rc.compose_file:
            return super().passthrough(services, env_after, keys)
        return self._compose_passthrough(self.rc.compose_file, services, env_after, keys)


def get_runtime(cfg, dry_run: bool = False) -> Runtime:
    kind = cfg.runtime.kind
    cls = {"compose": ComposeRuntime, "systemd": SystemdRuntime, "command": CommandRuntime}[kind]
    return cls(cfg, dry_run=dry_run)
