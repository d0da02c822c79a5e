"""What the stack's docker compose file says: read, never run.

Two questions are asked of it. Which Redis the stack runs beside the nine services (upstream's
compose has a `redis` service, `redis:7-alpine`, published on 6379, started with
`--requirepass ${REDIS_PASSWORD:-...}`), so the health sweep checks it where the stack has it
and with the password compose itself gives it. And what it gives each container as its
environment:

A `.env` change reaches a container only if the compose file passes the key to that service
(an `environment:` entry interpolated from the project's `.env`, or an `env_file:` that holds
it) and only when the container is recreated. Upstream's shipped compose file passes
TRADING_MODE to no container, so before a mode switch we compute, from the file itself, the
environment each service would get and refuse when the key would not arrive.

Follows compose's rules for the parts the stack uses: `environment` as a mapping or a list
(`KEY=value`, or a bare `KEY` taken from the project environment), `env_file` as a string or a
list of strings or `{path, required}` items relative to the project directory, `environment`
winning over `env_file`, and interpolation of `$VAR`, `${VAR}`, `${VAR:-default}`,
`${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}` and `$$`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalyst_ops.errors import ConfigError

log = logging.getLogger(__name__)

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: dict[str, str], where: str = "") -> str:
    """Compose's variable substitution against `env` (the project's .env and environment)."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        present = name in env
        val = env.get(name, "")
        if op in (":-", "-"):
            use_default = (not val) if op == ":-" else not present
            return interpolate(arg, env, where) if use_default else val
        if op in (":?", "?"):
            missing = (not val) if op == ":?" else not present
            if missing:
                raise ConfigError(where or "compose file", name, f"required variable is missing: {arg or 'no message'}")
            return val
        if op in (":+", "+"):
            use_alt = bool(val) if op == ":+" else present
            return interpolate(arg, env, where) if use_alt else ""
        return val

    return _VAR.sub(sub, value)


@dataclass
class ComposeService:
    name: str
    container_name: str | None
    environment: list[tuple[str, str | None]] = field(default_factory=list)  # (key, raw value or None)
    env_files: list[tuple[str, bool]] = field(default_factory=list)  # (path as written, required)


@dataclass
class ComposeFile:
    path: Path
    services: dict[str, ComposeService]

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    @property
    def dotenv_path(self) -> Path:
        """The `.env` compose reads for interpolation: the project directory's."""
        return self.project_dir / ".env"

    def find(self, name: str) -> ComposeService | None:
        """A service by its compose name or its container_name."""
        if name in self.services:
            return self.services[name]
        for svc in self.services.values():
            if svc.container_name == name:
                return svc
        return None

    def service_env(self, name: str, project_env: dict[str, str],
                    files: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
        """The environment a container of `name` gets when created with `project_env` as the project's
        .env; `files` gives the content of env files by real path (a .env about to be written)."""
        from catalyst_ops import envfile

        svc = self.find(name)
        if svc is None:
            raise ConfigError(str(self.path), f"services.{name}", "no such service in the compose file")
        out: dict[str, str] = {}
        for raw_path, required in svc.env_files:
            p = Path(interpolate(raw_path, project_env, str(self.path)))
            if not p.is_absolute():
                p = self.project_dir / p
            real = os.path.realpath(p)
            if files and real in files:
                out.update(files[real])
                continue
            try:
                out.update(envfile.load(p))
            except ConfigError:
                if required:
                    raise
        for key, raw in svc.environment:
            if raw is None:
                if key in project_env:
                    out[key] = project_env[key]
                continue
            out[key] = interpolate(raw, project_env, f"{self.path}: services.{svc.name}.environment.{key}")
        return out


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def load_data(path: str) -> dict | None:
    """The parsed compose file, or None when it cannot be read (no file, no access, bad YAML): for
    looking things up where a missing file is not an error (the Redis check)."""
    import yaml

    from catalyst_ops import yamlio

    try:
        with open(path, encoding="utf-8") as fh:
            data = yamlio.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.debug("compose file %s not read: %s", path, exc.__class__.__name__)
        return None
    return data if isinstance(data, dict) else None


def load(path: str | Path) -> ComposeFile:
    import yaml

    from catalyst_ops import yamlio

    path = Path(path)
    try:
        data = yamlio.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), None, "compose file not found")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot read the compose file: {exc.__class__.__name__}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(where, None, "not valid YAML")
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ConfigError(str(path), "services", "expected a mapping of services")
    services = {}
    for name, spec in data["services"].items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(str(path), f"services.{name}", "expected a mapping")
        env_items: list[tuple[str, str | None]] = []
        env = spec.get("environment") or {}
        if isinstance(env, dict):
            env_items = [(str(k), None if v is None else _scalar(v)) for k, v in env.items()]
        elif isinstance(env, list):
            for item in env:
                key, eq, value = str(item).partition("=")
                env_items.append((key.strip(), value if eq else None))
        else:
            raise ConfigError(str(path), f"services.{name}.environment", "expected a mapping or a list")
        files: list[tuple[str, bool]] = []
        ef = spec.get("env_file")
        for item in ([ef] if isinstance(ef, (str, dict)) else (ef or [])):
            if isinstance(item, dict):
                files.append((str(item.get("path", "")), bool(item.get("required", True))))
            else:
                files.append((str(item), True))
        services[str(name)] = ComposeService(str(name), spec.get("container_name"), env_items, files)
    return ComposeFile(path, services)


# ---------------------------------------------------------------------- Redis


@dataclass
class RedisService:
    name: str  # the compose service name: what `docker compose restart NAME` takes
    port: int  # the host port it is published on
    requirepass: str | None  # the --requirepass argument as written (may hold ${...})


def _published_port(ports: Any, container_port: int = 6379) -> int | None:
    for item in ports or []:
        if isinstance(item, dict):  # long syntax
            if int(item.get("target", 0) or 0) == container_port and item.get("published"):
                try:
                    return int(str(item["published"]).split("-")[0])
                except ValueError:
                    continue
            continue
        parts = str(item).split("/")[0].split(":")
        if len(parts) >= 2 and parts[-1].isdigit() and int(parts[-1]) == container_port and parts[-2].isdigit():
            return int(parts[-2])
    return None


def _requirepass(command: Any) -> str | None:
    words = command if isinstance(command, list) else str(command or "").split()
    words = [str(w) for w in words]
    for i, w in enumerate(words):
        if w == "--requirepass" and i + 1 < len(words):
            return words[i + 1].strip("'\"")
        if w.startswith("--requirepass="):
            return w.split("=", 1)[1].strip("'\"")
    return None


def redis_service(data: dict | None) -> RedisService | None:
    """The compose service that runs Redis (named `redis`, or with a redis image) and is published
    on a host port; None when the stack has none we could reach from the host."""
    services = (data or {}).get("services")
    if not isinstance(services, dict):
        return None
    candidates = [n for n in services if n == "redis"] + [
        n for n, s in services.items() if n != "redis" and isinstance(s, dict)
        and str(s.get("image", "")).split("/")[-1].startswith("redis")]
    for name in candidates:
        svc = services.get(name)
        if not isinstance(svc, dict):
            continue
        port = _published_port(svc.get("ports"))
        if port is None:
            log.debug("compose service %s publishes no port for 6379: not checked from the host", name)
            continue
        return RedisService(str(name), port, _requirepass(svc.get("command")))
    return None
