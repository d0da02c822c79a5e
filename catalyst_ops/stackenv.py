"""The stack's .env as the running services see it: the one place that edits it and applies it.

`mode`, `ramp` and the emergency stop call this module; it calls neither.

A value in the .env reaches a service only when (a) the runtime passes the key to that
service at all (upstream's compose file passes TRADING_MODE to no container) and (b) the
service is recreated (`docker compose restart` keeps the old environment). So an edit is:

  check_passthrough  refuse, before writing, when a key would not reach a service, naming the
                     compose file (or units), the services, and the lines to add
  write              under the .env lock: back up, write atomically, every other line kept
  apply              recreate trading.env_services through the runtime, wait for health, then
                     read what each running service actually has (its environment; for
                     trading also its `AlpacaTrader ... (PAPER|LIVE mode)` log line).
                     Anything not read back is "not confirmed", which is never a success.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from catalyst_ops import clock, envfile
from catalyst_ops.errors import PROBLEM, USAGE, OpsError

log = logging.getLogger(__name__)

MODE_KEY = "TRADING_MODE"
SECRET_HINTS = ("SECRET", "PASSWORD", "API_KEY", "TOKEN")


def trading_mode(env: dict) -> str:
    """The mode the services run in: upstream's AlpacaTrader is paper only when
    TRADING_MODE (default paper), lower-cased, is exactly "paper"; any other word trades live."""
    return "paper" if str(env.get(MODE_KEY, "paper")).lower() == "paper" else "live"


# ---------------------------------------------------------------------- the file


def matches(key: str, got: str | None, want: str) -> bool:
    """Whether a service that has `got` for `key` runs with `want` (an absent TRADING_MODE is paper)."""
    if key == MODE_KEY:
        return trading_mode({MODE_KEY: got} if got is not None else {}) == trading_mode({MODE_KEY: want})
    return got == want


def changes(env: dict, updates: dict) -> dict[str, tuple[str | None, str]]:
    return {k: (env.get(k), v) for k, v in updates.items() if env.get(k) != v}


def is_secret(key: str) -> bool:
    return any(h in key for h in SECRET_HINTS)


def describe_changes(ch: dict) -> list[str]:
    lines = []
    for k, (old, new) in ch.items():
        if is_secret(k):
            lines.append(f"{k}: (secret) replaced")
        else:
            lines.append(f"{k}: {old if old is not None else '(unset)'} -> {new}")
    return lines


_BACKUP = re.compile(r"\.bak-(\d{8}T\d{6}(?:\.\d{6})?)(?:-(\d+))?$")


def _backup_suffix(path: Path) -> str:
    """`.bak-YYYYMMDDTHHMMSS.ffffff` in real UTC time (not --now: the names order the files on disk),
    unique to the microsecond, with -N when even that is taken."""
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
    suffix = f".bak-{stamp}"
    n = 1
    while path.with_name(path.name + suffix).exists():
        n += 1
        suffix = f".bak-{stamp}-{n}"
    return suffix


def backup(cfg, path: str | Path) -> Path:
    """Copy `path` beside itself (mode 0600) under a name no other backup has, then keep only the
    newest retention.env_backups of its backups. Created exclusively: two edits never share one."""
    import os
    import shutil

    path = Path(path)
    while True:
        target = path.with_name(path.name + _backup_suffix(path))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out)
        shutil.copystat(path, target)
        os.chmod(target, 0o600)
        break
    prune_backups(path, cfg.retention.env_backups)
    return target


def backups_of(path: str | Path) -> list[Path]:
    """The backups of `path`, oldest first."""
    path = Path(path)
    found = []
    for p in path.parent.glob(path.name + ".bak-*"):
        m = _BACKUP.search(p.name[len(path.name):])
        if m and p.name[len(path.name):] == m.group(0):
            stamp = m.group(1) if "." in m.group(1) else m.group(1) + ".000000"
            found.append((stamp, int(m.group(2) or 1), p))
    return [p for _, _, p in sorted(found)]


def prune_backups(path: str | Path, keep: int) -> list[Path]:
    removed = []
    for old in backups_of(path)[:-keep] if keep > 0 else []:
        try:
            old.unlink()
            removed.append(old)
        except FileNotFoundError:
            pass
    if removed:
        log.info("%s: removed %d old backup(s), kept the newest %d", path, len(removed), keep)
    return removed


@contextmanager
def env_lock(cfg, wait: float = 15.0):
    """One writer of the .env at a time (mode, ramp advance, emergency stop); waits a bounded time."""
    from catalyst_ops.lock import JobLock, LockHeld

    lock = JobLock(cfg.state_dir, "env-file")
    deadline = time.monotonic() + wait
    while True:
        try:
            lock.acquire()
            break
        except LockHeld as exc:
            if time.monotonic() > deadline:
                raise OpsError(f"{cfg.env_file}: {exc}; try again", PROBLEM)
            time.sleep(0.1)
    try:
        yield lock
    finally:
        lock.release()


def write(cfg, updates: dict) -> tuple[dict, Path | None]:
    """Apply updates to the .env with a backup; returns (changes, backup path). No change: no write.
    The caller holds env_lock."""
    path = Path(cfg.env_file)
    env = envfile.load(path)
    ch = changes(env, updates)
    if not ch:
        return ch, None
    saved = backup(cfg, path)
    envfile.update(path, {k: v for k, (_, v) in ch.items()})
    cfg._env = None  # re-read on next use
    return ch, saved


# ---------------------------------------------------------------------- reaching the services


def services(cfg) -> list[str]:
    return [s for s in cfg.trading.env_services if s in cfg.services]


def check_passthrough(cfg, env_after: dict, expected: dict[str, str]) -> str:
    """Raise (exit 2) when the runtime would not hand `expected` to every env service; else a note."""
    from catalyst_ops.runtime import get_runtime

    svcs = services(cfg)
    if not expected or not svcs:
        return ""
    pt = get_runtime(cfg).passthrough(svcs, env_after, list(expected))
    if not pt.checked:
        return f"not checked which keys reach the services ({pt.note})"
    missing = {svc: {k: v for k, v in got.items() if not matches(k, v, expected[k])} for svc, got in pt.seen.items()}
    missing = {svc: m for svc, m in missing.items() if m}
    if not missing:
        return f"{pt.source} passes {', '.join(sorted(expected))} to {', '.join(svcs)}"
    keys = sorted({k for m in missing.values() for k in m})
    got = "; ".join(f"{svc} would get " + ", ".join(f"{k}={v if v is not None else '(absent)'}" for k, v in m.items())
                    for svc, m in missing.items())
    if cfg.runtime.kind == "systemd":
        fix = f"add `EnvironmentFile={cfg.env_file}` to the [Service] section of each unit"
    else:
        key = MODE_KEY if MODE_KEY in keys else keys[0]
        fix = ("add to each of those services in the compose file the two lines `env_file:` and `  - .env`"
               f" (or `{key}: ${{{key}}}` under `environment:`)")
    extra = f"; {pt.note}" if pt.note else ""
    raise OpsError(f"{pt.source}: {', '.join(keys)} would not reach {', '.join(missing)} ({got}): {fix}; "
                   f"nothing was changed{extra}", USAGE)


@dataclass
class Applied:
    ok: bool
    detail: str
    seen: dict[str, dict] = field(default_factory=dict)  # service -> what was read back
    mode_line: str | None = None


def mode_from_logs(cfg, text: str | None) -> tuple[str | None, str | None]:
    """The last `AlpacaTrader ... (PAPER|LIVE mode)` line of trading's log: (mode, line)."""
    if not text:
        return None, None
    pattern = cfg.profile_data.get("trading", {}).get("mode_log_pattern") or r"AlpacaTrader .*initialized \((PAPER|LIVE) mode\)"
    found = None
    for m in re.finditer(pattern, text):
        found = m
    if found is None:
        return None, None
    return found.group(1).lower(), found.group(0)


def read_back(cfg, expected: dict[str, str], mode: str | None = None, runtime=None) -> Applied:
    """What the running env services have, compared with `expected` (and trading's mode line with `mode`)."""
    from catalyst_ops.runtime import get_runtime

    runtime = runtime or get_runtime(cfg)
    problems, seen = [], {}
    for svc in services(cfg):
        env = runtime.service_env(svc)
        if env is None:
            seen[svc] = {"env": None}
            if not (mode and svc == cfg.trading.service):
                problems.append(f"{svc}: not confirmed (its environment cannot be read)")
            continue
        got = {k: env.get(k) for k in expected}
        seen[svc] = {"env": got}
        wrong = {k: v for k, v in got.items() if not matches(k, v, expected[k])}
        if wrong:
            problems.append(f"{svc} runs with " + ", ".join(f"{k}={v if v is not None else '(absent)'}" for k, v in wrong.items()))
    line = None
    if mode:
        svc = cfg.trading.service
        logged, line = mode_from_logs(cfg, runtime.service_logs(svc))
        seen.setdefault(svc, {})["mode_line"] = line
        if logged is not None and logged != mode:
            problems.append(f"{svc} logged {line!r}, expected {mode.upper()}")
        elif logged is None and (seen.get(svc) or {}).get("env") is None:
            problems.append(f"{svc}: mode not confirmed (neither its environment nor an AlpacaTrader line in its log)")
        elif logged is None:
            log.warning("%s has no AlpacaTrader line in its log: confirmed by its environment only", svc)
    if problems:
        return Applied(False, "; ".join(problems), seen, line)
    what = ", ".join(f"{k}={v}" for k, v in expected.items())
    how = f"; {cfg.trading.service} logged {line!r}" if line else ""
    return Applied(True, f"{', '.join(seen)} run with {what}{how}", seen, line)


def apply(cfg, db, expected: dict[str, str], mode: str | None = None, dry_run: bool = False,
          reason: str = "env change") -> Applied:
    """Recreate the env services so they pick up the .env, wait for them, and read back `expected`."""
    from catalyst_ops import control
    from catalyst_ops.runtime import get_runtime

    svcs = services(cfg)
    if not cfg.trading.restart_trading:
        return Applied(False, f"not applied (trading.restart_trading: false): recreate {', '.join(svcs)} yourself; "
                       "not confirmed")
    runtime = get_runtime(cfg, dry_run=dry_run)
    res = runtime.recreate_services(svcs)
    if dry_run:
        return Applied(True, f"would recreate {', '.join(svcs)} through the {cfg.runtime.kind} runtime and read back "
                       + ", ".join(f"{k}={v}" for k, v in expected.items()))
    if db is not None:
        try:
            with db.transaction() as conn:
                for svc in svcs:
                    conn.execute("INSERT INTO restarts(service, at, reason, outcome, planned, detail) VALUES (?,?,?,?,1,?)",
                                 (svc, clock.timestamp(), reason, "recreated" if res.ok else "error", res.output[-500:]))
        except Exception as exc:  # the record must not hide the outcome
            log.warning("could not record the recreate: %s", exc)
    if not res.ok:
        return Applied(False, f"recreate failed: {res.output}")
    waited = control.wait_healthy(cfg, svcs, cfg.health.restart_wait, cfg.health.restart_poll)
    if not waited.ok:
        bad = ", ".join(f"{r.service} {r.state}" for r in waited.results if r.state not in ("healthy", "degraded"))
        return Applied(False, f"not healthy {cfg.health.restart_wait:g}s after the recreate: {bad}; not confirmed")
    return read_back(cfg, expected, mode, runtime)
