"""What the stack's docker-compose file says about one service: read, never run.

Used to find the Redis the stack runs beside the nine services (upstream's compose has a
`redis` service, `redis:7-alpine`, published on 6379, started with
`--requirepass ${REDIS_PASSWORD:-...}`), so the health sweep checks it where the stack has it
and with the password compose itself gives it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR (compose's interpolation; $$ is a literal $)
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class RedisService:
    name: str  # the compose service name: what `docker compose restart NAME` takes
    port: int  # the host port it is published on
    requirepass: str | None  # the --requirepass argument as written (may hold ${...})


def load(path: str) -> dict | None:
    """The parsed compose file, or None when it cannot be read (no file, no access, bad YAML)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.debug("compose file %s not read: %s", path, exc.__class__.__name__)
        return None
    return data if isinstance(data, dict) else None


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute variables the way compose does with the project's .env."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        value = env.get(name)
        op = m.group(2)
        if op == ":-":
            return value if value else (m.group(3) or "")
        if op == "-":
            return value if value is not None else (m.group(3) or "")
        return value or ""

    return _VAR.sub(sub, text)


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
