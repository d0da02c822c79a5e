"""Start, stop, fault and restart the stand-in stack's processes."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from catalyst_ops.config import DEFAULT_PORTS
from catalyst_ops.errors import USAGE, CannotRun, OpsError
from catalyst_ops.sandbox.server import read_json, write_json

BROKER_OFFSET = 10  # the broker stand-in listens on base + 10 (5010 by default)
FAULT_KINDS = ("down", "hung", "500", "slow", "unhealthy", "degraded", "db-disconnected", "cycle-failed", "cycle-hang",
               "start-supervised", "start-config-error", "close-fail")
STANDIN_KEY = "standin-key-id"
STANDIN_SECRET = "standin-secret-key-0123456789"


def default_rundir() -> Path:
    return Path(os.environ.get("CATALYST_STANDIN_DIR") or f"/tmp/catalyst-standin-{os.getuid()}")


def all_services() -> list[str]:
    return [*DEFAULT_PORTS, "broker"]


def _settings(rundir: Path) -> dict:
    s = read_json(rundir / "sandbox.json", None)
    if s is None:
        raise OpsError(f"{rundir}: no stand-in stack here (run `catalyst-ops sandbox up --rundir {rundir}` first)", USAGE)
    return s


def _pid(rundir: Path, service: str) -> int | None:
    try:
        pid = int((rundir / "pids" / f"{service}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return None
    # only ever signal our own stand-in process, never a recycled pid
    if "sandbox" not in cmdline or f"serve {service}" not in cmdline:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().split(")")[-1].split()[0] == "Z":
                return None
    except FileNotFoundError:
        return None
    return pid


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/_standin/ping", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def _spawn(rundir: Path, service: str) -> None:
    (rundir / "logs").mkdir(parents=True, exist_ok=True)
    logf = open(rundir / "logs" / f"{service}.log", "ab")
    subprocess.Popen([sys.executable, "-m", "catalyst_ops", "sandbox", "serve", service, "--rundir", str(rundir)],
                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, close_fds=True)
    logf.close()


def _wait_up(rundir: Path, services: list[str], timeout: float = 15.0) -> list[str]:
    s = _settings(rundir)
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending and time.monotonic() < deadline:
        pending = [svc for svc in pending if not _ping(s["host"], s["ports"][svc])]
        if pending:
            time.sleep(0.05)
    return pending


def ops_yaml(rundir: Path, settings: dict) -> str:
    py = shlex.quote(sys.executable)
    rd = shlex.quote(str(rundir))
    svc_lines = "\n".join(f"  {name}: {{port: {port}}}" for name, port in settings["ports"].items() if name != "broker")
    return f"""# written by `catalyst-ops sandbox up`: the ops config for the stand-in stack in {rundir}
env_file: {rundir / '.env'}
state_path: {rundir / 'state.db'}
log_dir: {rundir / 'log'}
profile: {settings['profile']}
host_timezone: America/New_York
services:
{svc_lines}
runtime:
  kind: command
  command_timeout: 30
  commands:
    start: {py} -m catalyst_ops sandbox up --rundir {rd} --base-port {settings['ports']['orchestration']} --profile {settings['profile']} --stage-seconds {settings['stage_seconds']}
    stop: {py} -m catalyst_ops sandbox down --rundir {rd}
    restart_service: {py} -m catalyst_ops sandbox restart {{service}} --rundir {rd}
    status: {py} -m catalyst_ops sandbox status --rundir {rd}
health:
  restart_wait: 15
  restart_poll: 0.2
  start_timeout: 30
backup:
  dir: {rundir / 'backups'}
workflow:
  poll_interval: 0.2
  deadline: 60
trading:
  # both modes point at the stand-in broker, so a mode switch keeps talking to it
  paper_url: {settings['broker_url']}
  live_url: {settings['broker_url']}
  close_poll: 0.2
"""


def env_text(settings: dict, database_url: str | None) -> str:
    return f"""# stand-in stack .env (written by `catalyst-ops sandbox up`)
DATABASE_URL={database_url or 'postgresql://catalyst:standin@127.0.0.1:5432/catalyst_trading?sslmode=disable'}
ALPACA_API_KEY={settings['broker_key']}
ALPACA_SECRET_KEY={settings['broker_secret']}
ALPACA_BASE_URL={settings['broker_url']}
TRADING_MODE=paper
MAX_POSITIONS=5
MAX_DAILY_LOSS=2000
"""


def up(rundir: Path, base_port: int = 5000, profile: str = "real", stage_seconds: float = 0.5,
       database_url: str | None = None, host: str = "127.0.0.1", only: list[str] | None = None) -> dict:
    rundir.mkdir(parents=True, exist_ok=True)
    existing = read_json(rundir / "sandbox.json", None)
    if existing and any(_pid(rundir, s) for s in all_services()):
        settings = existing  # already running: start only what is missing
    else:
        ports = {name: base_port + (port - 5000) for name, port in DEFAULT_PORTS.items()}
        ports["broker"] = base_port + BROKER_OFFSET
        settings = {"host": host, "ports": ports, "profile": profile, "stage_seconds": stage_seconds,
                    "env_file": str(rundir / ".env"), "broker_url": f"http://{host}:{ports['broker']}",
                    "broker_key": STANDIN_KEY, "broker_secret": STANDIN_SECRET}
        write_json(rundir / "sandbox.json", settings)
        for stale in ("workflow.json",):
            (rundir / stale).unlink(missing_ok=True)
    if not (rundir / ".env").exists():
        (rundir / ".env").write_text(env_text(settings, database_url))
        os.chmod(rundir / ".env", 0o600)
    (rundir / "ops.yml").write_text(ops_yaml(rundir, settings))
    wanted = only or all_services()
    for svc in wanted:
        if _pid(rundir, svc) is None:
            _spawn(rundir, svc)
    missing = _wait_up(rundir, [s for s in wanted if read_json(rundir / "faults" / f"{s}.json", {}).get("kind") != "down"])
    if missing:
        raise CannotRun(f"stand-in services did not come up within 15s: {', '.join(missing)} (logs in {rundir / 'logs'})")
    return settings


def _kill(rundir: Path, service: str, sig=signal.SIGTERM, wait: float = 3.0) -> bool:
    pid = _pid(rundir, service)
    if pid is None:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid(rundir, service) == pid:
        time.sleep(0.02)
    if _pid(rundir, service) == pid:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return True


def down(rundir: Path) -> list[str]:
    stopped = [svc for svc in all_services() if _kill(rundir, svc)]
    return stopped


def set_fault(rundir: Path, service: str, kind: str, sticky: bool = False, seconds: float | None = None,
              symbols: list[str] | None = None, attempts: int | None = None) -> None:
    _settings(rundir)
    if service not in all_services():
        raise OpsError(f"sandbox fault: unknown service {service!r}; expected one of {', '.join(all_services())}", USAGE)
    if kind not in FAULT_KINDS and kind != "clear":
        raise OpsError(f"sandbox fault: unknown kind {kind!r}; expected one of {', '.join(FAULT_KINDS)} or clear", USAGE)
    path = rundir / "faults" / f"{service}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "clear":
        path.unlink(missing_ok=True)
        return
    fault = {"kind": kind, "sticky": sticky}
    if seconds is not None:
        fault["seconds"] = seconds
    if symbols:
        fault["symbols"] = symbols
    if attempts is not None:
        fault["attempts"] = attempts
    write_json(path, fault)
    if kind == "down":
        _kill(rundir, service, signal.SIGKILL)  # a crash, not a clean stop


def restart(rundir: Path, service: str) -> bool:
    """Stop and start one stand-in service, as `systemctl restart` would; True if it answers again."""
    _settings(rundir)
    _kill(rundir, service)
    _spawn(rundir, service)
    return not _wait_up(rundir, [service], timeout=5.0)


def status(rundir: Path) -> list[dict]:
    s = _settings(rundir)
    out = []
    for svc in all_services():
        fault = read_json(rundir / "faults" / f"{svc}.json", {})
        out.append({"service": svc, "port": s["ports"][svc], "pid": _pid(rundir, svc),
                    "fault": fault.get("kind"), "sticky": bool(fault.get("sticky"))})
    return out


def seed_broker(rundir: Path, positions: list[dict] | None = None, orders: list[dict] | None = None,
                suspend_trade: bool | None = None) -> dict:
    s = _settings(rundir)
    body: dict = {}
    if positions is not None:
        body["positions"] = positions
    if orders is not None:
        body["orders"] = orders
    if suspend_trade is not None:
        body["suspend_trade"] = suspend_trade
    req = urllib.request.Request(f"http://{s['host']}:{s['ports']['broker']}/_standin/broker", method="POST",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def make_positions(spec: str) -> list[dict]:
    """'AAPL:10,MSFT:5' -> Alpaca-shaped position objects."""
    out = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        sym, _, qty = item.partition(":")
        qty = qty or "1"
        out.append({"symbol": sym.upper(), "qty": qty, "side": "long", "avg_entry_price": "100.00",
                    "market_value": str(float(qty) * 100), "unrealized_pl": "0.00", "asset_class": "us_equity"})
    return out


def make_orders(symbols: list[str]) -> list[dict]:
    return [{"id": f"seed-order-{i}", "symbol": sym.upper(), "qty": "1", "side": "buy", "type": "limit",
             "status": "accepted"} for i, sym in enumerate(symbols, 1)]
