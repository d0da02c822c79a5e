"""Health checks of the services: concurrent, each with its own timeout, real-contract aware.

Healthy = HTTP 200 and, where the body is JSON with the profile's status field, that field
is one of the service's healthy words. The real services answer 200 with "unhealthy" or
"degraded" bodies, and orchestration answers plain text: a 200 with a non-JSON body is healthy.
A healthy word beside a profile `degraded_fields` value ("database": "disconnected") is degraded.
Redis (a kind-redis service) is checked in its own protocol: AUTH + PING.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from catalyst_ops.errors import OpsError

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"  # answered, but not healthy (bad status word, 5xx, 4xx)
DOWN = "down"  # connection refused / reset: nothing listening
TIMEOUT = "timeout"  # no answer within the timeout (hung)
ERROR = "error"  # anything else (DNS, protocol garbage)

FAILED_STATES = (UNHEALTHY, DOWN, TIMEOUT, ERROR)


@dataclass
class HealthResult:
    service: str
    state: str
    http_status: int | None = None
    latency_ms: float | None = None
    detail: str = ""
    body: Any = None

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    def as_dict(self) -> dict:
        d = asdict(self)
        d["failed"] = self.failed
        return d


def classify(service: str, status: int, body_text: str, healthy_words: list[str], degraded_words: list[str],
             status_field: str, degraded_fields: dict[str, list[str]] | None = None) -> tuple[str, str, Any]:
    """(state, detail, parsed body) from an HTTP answer. `degraded_fields` (field -> values) turns a
    healthy word into degraded when the body also says e.g. "database": "disconnected"."""
    body: Any = body_text
    status_word = None
    try:
        parsed = json.loads(body_text) if body_text.strip()[:1] in ("{", "[") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
        status_word = parsed.get(status_field)
    if status != 200:
        detail = f"HTTP {status}"
        if status_word is not None:
            detail += f" status={status_word}"
        return UNHEALTHY, detail, body
    if status_word is None:
        return HEALTHY, "HTTP 200", body
    word = str(status_word)
    if word in healthy_words:
        bad = [f"{k}={parsed.get(k)}" for k, values in (degraded_fields or {}).items()
               if parsed.get(k) is not None and str(parsed.get(k)) in [str(v) for v in values or []]]
        if bad:
            return DEGRADED, f"HTTP 200 status={word} {' '.join(bad)}", body
        return HEALTHY, f"HTTP 200 status={word}", body
    if word in degraded_words:
        return DEGRADED, f"HTTP 200 status={word}", body
    extra = ""
    if isinstance(parsed, dict) and parsed.get("error"):
        extra = f" error={parsed.get('error')}"
    return UNHEALTHY, f"HTTP 200 status={word}{extra}", body


def check_one(service: str, host: str, port: int, path: str, timeout: float, healthy_words: list[str],
              degraded_words: list[str], status_field: str = "status",
              degraded_fields: dict[str, list[str]] | None = None) -> HealthResult:
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json", "Connection": "close"})
        resp = conn.getresponse()
        # bounded read: a health body is small
        text = resp.read(65536).decode("utf-8", errors="replace")
        latency = (time.monotonic() - started) * 1000
        state, detail, body = classify(service, resp.status, text, healthy_words, degraded_words, status_field,
                                       degraded_fields)
        return HealthResult(service, state, resp.status, round(latency, 1), detail, body)
    except ConnectionRefusedError:
        return HealthResult(service, DOWN, None, None, f"connection refused on {host}:{port}")
    except (socket.timeout, TimeoutError):
        return HealthResult(service, TIMEOUT, None, None, f"no answer within {timeout:g}s")
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as exc:
        return HealthResult(service, DOWN, None, None, f"connection closed: {exc.__class__.__name__}")
    except (OSError, http.client.HTTPException) as exc:
        return HealthResult(service, ERROR, None, None, f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()


# Redis error replies that mean "up, but not ready" rather than broken: reported, not restarted
_REDIS_BUSY = ("LOADING", "BUSY", "MASTERDOWN")


def _resp(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for w in words:
        b = w.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _redis_reply(fh) -> tuple[str, str]:
    """One reply: ('+', text) simple, ('-', text) error, or (prefix, first line) for anything else."""
    line = fh.readline(512)
    if not line:
        raise ConnectionResetError("closed")
    if not line.endswith(b"\r\n") or line[:1] not in b"+-:$*":
        raise ValueError(f"not the Redis protocol: {line[:40]!r}")
    return line[:1].decode(), line[1:-2].decode("utf-8", errors="replace")


def check_redis(service: str, host: str, port: int, password: str | None, timeout: float) -> HealthResult:
    """AUTH (when a password is known) and PING in the Redis protocol, as `redis-cli -a ... ping` would.
    PONG: healthy. Refused AUTH or NOAUTH: degraded (Redis answers; our password is what is wrong, and a
    restart would not fix it). LOADING/BUSY: degraded (starting). Other errors: unhealthy."""
    from catalyst_ops import log as opslog

    opslog.add_secret(password)
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return HealthResult(service, DOWN, None, None, f"connection refused on {host}:{port}")
    except (socket.timeout, TimeoutError):
        return HealthResult(service, TIMEOUT, None, None, f"no answer within {timeout:g}s")
    except OSError as exc:
        return HealthResult(service, ERROR, None, None, f"{exc.__class__.__name__}: {exc}")
    try:
        sock.settimeout(timeout)
        sock.sendall((_resp("AUTH", password) if password else b"") + _resp("PING"))
        fh = sock.makefile("rb")
        auth = _redis_reply(fh) if password else None
        kind, text = _redis_reply(fh)
        latency = round((time.monotonic() - started) * 1000, 1)
        note = ""
        if auth and auth[0] == "-":
            if "without any password configured" in auth[1] or "no password is set" in auth[1]:
                note = " (the server has no password; the one configured is not needed)"
            else:
                return HealthResult(service, DEGRADED, None, latency,
                                    f"answers, but refused our AUTH: {auth[1][:120]} (check REDIS_PASSWORD in the .env)")
        if kind == "+" and text == "PONG":
            return HealthResult(service, HEALTHY, None, latency, "PONG" + note)
        if kind == "-" and text.startswith("NOAUTH"):
            return HealthResult(service, DEGRADED, None, latency,
                                "answers, but wants a password (set REDIS_PASSWORD in the .env)")
        if kind == "-" and text.split(" ", 1)[0] in _REDIS_BUSY:
            return HealthResult(service, DEGRADED, None, latency, f"not ready: {text[:120]}")
        return HealthResult(service, UNHEALTHY, None, latency, f"PING answered {kind}{text[:120]}")
    except (socket.timeout, TimeoutError):
        return HealthResult(service, TIMEOUT, None, None, f"no answer within {timeout:g}s")
    except (ConnectionResetError, BrokenPipeError) as exc:
        return HealthResult(service, DOWN, None, None, f"connection closed: {exc.__class__.__name__}")
    except (OSError, ValueError) as exc:
        return HealthResult(service, ERROR, None, None, opslog.redact(f"{exc.__class__.__name__}: {exc}"))
    finally:
        sock.close()


def sweep(cfg, services: list[str] | None = None, margin: float = 0.5) -> list[HealthResult]:
    """Check the services concurrently. The whole sweep is bounded by the largest timeout + margin."""
    names = services if services is not None else cfg.enabled_services()
    h = cfg.profile_data.get("health", {})
    degraded_words = h.get("degraded_words", ["degraded"])
    degraded_fields = h.get("degraded_fields") or {}
    status_field = h.get("status_field", "status")
    results: dict[str, HealthResult] = {}
    lock = threading.Lock()

    def work(name: str) -> None:
        svc = cfg.service(name)
        if svc.kind == "redis":
            try:
                password = cfg.service_password(name)
            except OpsError as exc:  # a broken .env: say so instead of guessing a password
                res = HealthResult(name, ERROR, None, None, str(exc))
            else:
                res = check_redis(name, svc.host, svc.port, password, cfg.service_timeout(name))
            with lock:
                results[name] = res
            return
        res = check_one(name, svc.host, svc.port, cfg.health_path(name), cfg.service_timeout(name),
                        cfg.healthy_words(name), degraded_words, status_field, degraded_fields)
        with lock:
            results[name] = res

    threads = []
    for name in names:
        t = threading.Thread(target=work, args=(name,), name=f"health-{name}", daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + max((cfg.service_timeout(n) for n in names), default=0) + margin
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    out = []
    for name in names:
        with lock:
            res = results.get(name)
        out.append(res or HealthResult(name, TIMEOUT, None, None, f"no answer within {cfg.service_timeout(name):g}s"))
    return out


def record_sweep(db, results: list[HealthResult], source: str, started_at: float) -> int:
    """Store a sweep and update each service's run of consecutive failures."""
    from catalyst_ops import clock

    now = clock.timestamp()
    with db.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO health_sweeps(started_at, ended_at, source, total, healthy, degraded, failed) VALUES (?,?,?,?,?,?,?)",
            (started_at, now, source, len(results), sum(r.state == HEALTHY for r in results),
             sum(r.state == DEGRADED for r in results), sum(r.failed for r in results)),
        )
        sweep_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO health_checks(sweep_id, service, checked_at, state, http_status, latency_ms, detail) VALUES (?,?,?,?,?,?,?)",
            [(sweep_id, r.service, now, r.state, r.http_status, r.latency_ms, r.detail) for r in results],
        )
        for r in results:
            row = conn.execute("SELECT state, consecutive_failures FROM service_state WHERE service=?", (r.service,)).fetchone()
            failures = ((row["consecutive_failures"] if row else 0) + 1) if r.failed else 0
            if row is None:
                conn.execute("INSERT INTO service_state(service, state, since, last_checked, consecutive_failures) VALUES (?,?,?,?,?)",
                             (r.service, r.state, now, now, failures))
            else:
                since_sql = "since" if row["state"] == r.state else "?"
                params = (r.state, now, failures, r.service) if since_sql == "since" else (r.state, now, now, failures, r.service)
                conn.execute(f"UPDATE service_state SET state=?, since={since_sql}, last_checked=?, consecutive_failures=? WHERE service=?",
                             params)
    return sweep_id
