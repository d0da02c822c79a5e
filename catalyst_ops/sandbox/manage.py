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
               "start-supervised", "start-config-error", "start-slow", "close-fail", "rate-limit", "crash-start")
STANDIN_KEY = "standin-key-id"
STANDIN_SECRET = "standin-secret-key-0123456789"
# the live account's own pair: Alpaca's paper and live keys differ, each refused by the other account
STANDIN_LIVE_KEY = "standin-live-key-id"
STANDIN_LIVE_SECRET = "standin-live-secret-key-9876543210"
COMPOSE_FILE = "docker-compose.yml"
# the services that choose paper or live and read the risk overrides: given the whole .env
ENV_SERVICES = ("trading", "risk-manager", "workflow", "scanner")
# what a container gets besides its compose environment (the image's own)
_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "TMPDIR")


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


# ---------------------------------------------------------------------- containers
# Each service runs like a compose container: its environment is fixed when it is created
# (from docker-compose.yml and the .env, as compose computes it) and kept across restarts;
# only a recreate (or `up` finding the configuration changed) gives it a new one. A recreate
# starts a fresh log; a restart appends, as docker's do.


def compose_text(settings: dict) -> str:
    lines = ["# the stand-in stack's compose file (written by `catalyst-ops sandbox up`). `sandbox` reads it the",
             "# way docker compose does: each service gets its `environment:` (interpolated from .env) and the",
             "# files of `env_file:`, fixed when its process is (re)created.", "services:"]
    for name, port in settings["ports"].items():
        if name == "broker":
            continue
        lines += [f"  {name}:", f"    container_name: catalyst-{name}"]
        if name in ENV_SERVICES:
            lines += ["    env_file:", "      - .env"]
        lines += ["    environment:", f'      SERVICE_PORT: "{port}"', "      DATABASE_URL: ${DATABASE_URL}"]
    return "\n".join(lines) + "\n"


def container_env(rundir: Path, service: str) -> dict[str, str]:
    """The environment compose would give a new container of `service` now."""
    from catalyst_ops import composefile, envfile

    path = rundir / COMPOSE_FILE
    if service == "broker" or not path.exists():
        return {}
    cf = composefile.load(path)
    if cf.find(service) is None:
        return {}
    project = envfile.load(rundir / ".env") if (rundir / ".env").exists() else {}
    return cf.service_env(service, project)


def _record_path(rundir: Path, service: str) -> Path:
    return rundir / "containers" / f"{service}.json"


def _spawn(rundir: Path, service: str, env: dict[str, str] | None = None, fresh: bool = False) -> None:
    """Start the service's process; with `fresh` (a new container) the environment is computed
    anew and the log starts empty, else the recorded container environment is reused."""
    (rundir / "logs").mkdir(parents=True, exist_ok=True)
    rec = read_json(_record_path(rundir, service), None)
    if fresh or rec is None or env is not None:
        env = container_env(rundir, service) if env is None else env
        _record_path(rundir, service).parent.mkdir(exist_ok=True)
        write_json(_record_path(rundir, service), {"env": env, "created": time.time()})
        fresh = True
    else:
        env = rec["env"]
    proc_env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
    proc_env.update(env)
    logf = open(rundir / "logs" / f"{service}.log", "wb" if fresh else "ab")
    subprocess.Popen([sys.executable, "-m", "catalyst_ops", "sandbox", "serve", service, "--rundir", str(rundir)],
                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, close_fds=True,
                     env=proc_env)
    logf.close()


def recreate(rundir: Path, services: list[str]) -> list[str]:
    """`docker compose up -d --no-deps --force-recreate SERVICE...`: new environment from the .env."""
    _settings(rundir)
    unknown = [s for s in services if s not in all_services()]
    if unknown:
        raise OpsError(f"sandbox recreate: unknown service {unknown[0]!r}; expected one of {', '.join(all_services())}", USAGE)
    for svc in services:
        _kill(rundir, svc)
        _spawn(rundir, svc, fresh=True)
    return [s for s in services if s in _wait_up(rundir, services, timeout=10.0)]


def exec_env(rundir: Path, service: str) -> dict[str, str] | None:
    """`docker compose exec SERVICE printenv`: the running process's environment; None if not running."""
    pid = _pid(rundir, service)
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def logs(rundir: Path, service: str) -> str:
    try:
        return (rundir / "logs" / f"{service}.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


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
  compose_file: {rundir / COMPOSE_FILE}
  commands:
    start: {py} -m catalyst_ops sandbox up --rundir {rd} --base-port {settings['ports']['orchestration']} --profile {settings['profile']} --stage-seconds {settings['stage_seconds']}
    stop: {py} -m catalyst_ops sandbox down --rundir {rd}
    restart_service: {py} -m catalyst_ops sandbox restart {{service}} --rundir {rd}
    recreate_service: {py} -m catalyst_ops sandbox recreate {{services}} --rundir {rd}
    env: {py} -m catalyst_ops sandbox exec {{service}} printenv --rundir {rd}
    logs: {py} -m catalyst_ops sandbox logs {{service}} --rundir {rd}
    running: {py} -m catalyst_ops sandbox running {{service}} --rundir {rd}
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
  # the stand-in broker's two accounts, each with its own key pair (.env ALPACA_PAPER_* / ALPACA_LIVE_*)
  paper_url: {settings['broker_url']}
  live_url: {settings.get('broker_live_url') or settings['broker_url'] + '/live'}
  close_poll: 0.2
  broker_retry_max_wait: 0.5
  open_flat_wait: 5
"""


def env_text(settings: dict, database_url: str | None) -> str:
    return f"""# stand-in stack .env (written by `catalyst-ops sandbox up`)
DATABASE_URL={database_url or 'postgresql://catalyst:standin@127.0.0.1:5432/catalyst_trading?sslmode=disable'}
ALPACA_API_KEY={settings['broker_key']}
ALPACA_SECRET_KEY={settings['broker_secret']}
ALPACA_PAPER_API_KEY={settings['broker_key']}
ALPACA_PAPER_SECRET_KEY={settings['broker_secret']}
ALPACA_LIVE_API_KEY={settings.get('broker_live_key', STANDIN_LIVE_KEY)}
ALPACA_LIVE_SECRET_KEY={settings.get('broker_live_secret', STANDIN_LIVE_SECRET)}
ALPACA_BASE_URL={settings['broker_url']}
TRADING_MODE=paper
MAX_POSITIONS=5
MAX_DAILY_LOSS_USD=2000
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
        broker_url = f"http://{host}:{ports['broker']}"
        settings = {"host": host, "ports": ports, "profile": profile, "stage_seconds": stage_seconds,
                    "env_file": str(rundir / ".env"), "broker_url": broker_url, "broker_live_url": broker_url + "/live",
                    "broker_key": STANDIN_KEY, "broker_secret": STANDIN_SECRET,
                    "broker_live_key": STANDIN_LIVE_KEY, "broker_live_secret": STANDIN_LIVE_SECRET}
        write_json(rundir / "sandbox.json", settings)
        for stale in ("workflow.json",):
            (rundir / stale).unlink(missing_ok=True)
    if not (rundir / ".env").exists():
        (rundir / ".env").write_text(env_text(settings, database_url))
        os.chmod(rundir / ".env", 0o600)
    if not (rundir / COMPOSE_FILE).exists():
        (rundir / COMPOSE_FILE).write_text(compose_text(settings))
    (rundir / "ops.yml").write_text(ops_yaml(rundir, settings))
    wanted = only or all_services()
    for svc in wanted:
        # `docker compose up -d`: start what is stopped, recreate what runs with an outdated environment
        rec = read_json(_record_path(rundir, svc), None)
        changed = rec is not None and rec.get("env") != container_env(rundir, svc)
        if _pid(rundir, svc) is None:
            _spawn(rundir, svc, fresh=changed)
        elif changed:
            _kill(rundir, svc)
            _spawn(rundir, svc, fresh=True)
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
    """`docker compose down`: stop and remove the containers (their environments with them)."""
    stopped = [svc for svc in all_services() if _kill(rundir, svc)]
    for svc in all_services():
        _record_path(rundir, svc).unlink(missing_ok=True)
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
    (rundir / "broker-429.json").unlink(missing_ok=True)
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
    """Stop and start one stand-in service, as `docker compose restart` would: the same environment,
    whatever the .env says now; True if it answers again."""
    _settings(rundir)
    _kill(rundir, service)
    _spawn(rundir, service)
    return not _wait_up(rundir, [service], timeout=5.0)


def exited(rundir: Path, service: str) -> str | None:
    """Why the service's process is not running (None while it runs): what `docker compose ps`
    shows of an exited container, with the last line it printed."""
    _settings(rundir)
    if service not in all_services():
        raise OpsError(f"sandbox running: unknown service {service!r}; expected one of {', '.join(all_services())}", USAGE)
    if _pid(rundir, service) is not None:
        return None
    try:
        lines = (rundir / "logs" / f"{service}.log").read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        lines = []
    return "exited" + (f" (last output: {lines[-1][-200:]})" if lines else "")


def status(rundir: Path) -> list[dict]:
    s = _settings(rundir)
    out = []
    for svc in all_services():
        fault = read_json(rundir / "faults" / f"{svc}.json", {})
        out.append({"service": svc, "port": s["ports"][svc], "pid": _pid(rundir, svc),
                    "fault": fault.get("kind"), "sticky": bool(fault.get("sticky"))})
    return out


def seed_broker(rundir: Path, positions: list[dict] | None = None, orders: list[dict] | None = None,
                suspend_trade: bool | None = None, account: str = "paper", market_open: bool | None = None) -> dict:
    s = _settings(rundir)
    body: dict = {"account": account}
    if market_open is not None:
        body["market_open"] = market_open
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
