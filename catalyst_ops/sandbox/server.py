"""One stand-in service process. Faults are read from <rundir>/faults/<service>.json on every
request, so `sandbox fault` takes effect at once; a restart clears every fault that is not sticky."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STAGES = ["scanning", "filtering_news", "analyzing_patterns", "technical_analysis", "risk_validation", "executing_trades"]
VERSIONS = {"orchestration": "6.0.3", "scanner": "6.0.1", "pattern": "5.2.0", "technical": "5.1.0",
            "risk-manager": "7.0.0", "trading": "8.0.0", "workflow": "3.1.0", "news": "5.3.0", "reporting": "5.0.0"}


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return default


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def announce(service: str) -> None:
    """What the real services print at start-up that an operator reads: trading's AlpacaTrader line
    (upstream common/alpaca_trader.py), decided by the process's own environment like theirs."""
    if service not in ("trading", "risk-manager", "workflow"):
        return
    if not os.environ.get("ALPACA_API_KEY") or not os.environ.get("ALPACA_SECRET_KEY"):
        line = "Alpaca credentials not configured. Trading disabled."
    else:
        paper = os.environ.get("TRADING_MODE", "paper").lower() == "paper"
        line = f"AlpacaTrader v2.0.0 initialized ({'PAPER' if paper else 'LIVE'} mode)"
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    print(f"{stamp} - common.alpaca_trader - INFO - {line}", flush=True)


class StandIn:
    def __init__(self, service: str, rundir: Path, settings: dict):
        self.service = service
        self.rundir = rundir
        self.settings = settings
        self.profile = settings.get("profile", "real")
        self.fault_path = rundir / "faults" / f"{service}.json"
        self.lock = threading.Lock()
        self.started = time.time()
        # workflow state
        self.cycle: dict | None = read_json(rundir / "workflow.json", None) if service == "workflow" else None
        self.cycle_seq = 0

    def fault(self) -> dict:
        return read_json(self.fault_path, {})

    # ------------------------------------------------------------------ health
    def health(self):
        f = self.fault().get("kind")
        svc = self.service
        if svc == "orchestration":
            if f == "unhealthy":
                return 503, "text/plain", "Service Unavailable - database ping failed"
            return 200, "text/plain", f"OK - Orchestration v{VERSIONS['orchestration']}"
        # no health body reports the trading mode (upstream): the mode is read from the process's
        # environment or its AlpacaTrader log line, as on the droplet
        body = {"status": "healthy", "service": svc, "version": VERSIONS.get(svc, "1.0.0"),
                "timestamp": datetime.utcnow().isoformat() + "Z"}
        if f == "unhealthy":
            if svc == "pattern":
                return 503, "application/json", {"status": "unhealthy", "service": svc, "database": "disconnected"}
            body.update({"status": "unhealthy", "error": "database_unavailable"})
        elif f == "degraded":
            body.update({"status": "degraded", "warnings": ["redis unavailable"]})
        return 200, "application/json", body

    # ------------------------------------------------------------------ workflow
    def _cycle_view(self) -> dict | None:
        c = self.cycle
        if not c:
            return None
        elapsed = time.time() - c["started"]
        stage_s = float(self.settings.get("stage_seconds", 0.5))
        idx = int(elapsed / stage_s)
        fate = c.get("fate", "complete")
        if fate == "hang":
            idx = min(idx, 2)
        if fate == "fail" and idx >= 3:
            status = "failed"
        elif idx >= len(STAGES):
            status = "completed"
        else:
            status = STAGES[idx]
        view = dict(c)
        view["status"] = status
        # mid-run the real service's current_cycle becomes the scanner's YYYYMMDD-NNN id
        view["current_cycle"] = c["cycle_id"] if idx == 0 else c["scan_id"]
        return view

    def workflow_start(self, body: dict | None, headers) -> tuple:
        ctype = headers.get("Content-Type", "")
        if "json" not in ctype or body is None:
            return 422, "application/json", {"detail": [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]}
        with self.lock:
            view = self._cycle_view()
            if view and view["status"] not in ("completed", "failed"):
                return 409, "application/json", {"detail": f"Workflow already running: {view['status']}"}
            fault = self.fault().get("kind")
            now = datetime.now()
            self.cycle_seq += 1
            cycle = {
                "cycle_id": now.strftime("cycle_%Y%m%d_%H%M%S") + (f"_{self.cycle_seq}" if self.cycle_seq > 1 else ""),
                "scan_id": now.strftime("%Y%m%d-") + f"{self.cycle_seq:03d}",
                "started": time.time(),
                "mode": body.get("mode", "normal"),
                "request": body,
                "fate": {"cycle-failed": "fail", "cycle-hang": "hang"}.get(fault, "complete"),
            }
            self.cycle = cycle
            write_json(self.rundir / "workflow.json", cycle)
            starts = read_json(self.rundir / "workflow-starts.json", [])
            starts.append({"cycle_id": cycle["cycle_id"], "at": cycle["started"], "body": body})
            write_json(self.rundir / "workflow-starts.json", starts)
        return 200, "application/json", {"success": True, "cycle_id": cycle["cycle_id"], "status": "started",
                                         "mode": cycle["mode"], "message": "Workflow started"}

    def workflow_status(self, cycle_id: str | None) -> tuple:
        with self.lock:
            view = self._cycle_view()
        if cycle_id is not None:  # the plan's per-cycle path
            if not view or view["cycle_id"] != cycle_id:
                return 404, "application/json", {"detail": f"Cycle {cycle_id} not found"}
            word = {"completed": "completed", "failed": "error"}.get(view["status"], "running")
            return 200, "application/json", {"cycle_id": cycle_id, "status": word, "stage": view["status"]}
        if not view:
            return 200, "application/json", {"status": "idle", "current_cycle": None, "current_mode": None,
                                             "last_run": None, "active_positions": 0}
        return 200, "application/json", {"status": view["status"], "current_cycle": view["current_cycle"],
                                         "current_mode": view["mode"],
                                         "last_run": datetime.fromtimestamp(view["started"]).isoformat(),
                                         "active_positions": 0}

    # ------------------------------------------------------------------ reporting
    def daily_report(self, params: dict) -> tuple:
        date = params.get("report_date") or datetime.now().strftime("%Y-%m-%d")
        return 200, "application/json", {"report_type": "daily", "report_date": date, "cycle_id": params.get("cycle_id"),
                                         "summary": {"trades": 3, "wins": 2, "losses": 1, "realized_pnl": 412.5},
                                         "generated_at": datetime.utcnow().isoformat() + "Z"}

    # ------------------------------------------------------------------ broker (Alpaca v2 stand-in: sandbox/broker.py)
    def broker_path_for(self, account: str) -> Path:
        from catalyst_ops.sandbox.broker import ACCOUNTS

        return self.rundir / ACCOUNTS[account]["state"]

    def broker_state(self, account: str = "paper") -> dict:
        from catalyst_ops.sandbox.broker import default_state

        return read_json(self.broker_path_for(account), default_state())

    def broker_auth_ok(self, headers, account: str = "paper") -> bool:
        prefix = "broker_live_" if account == "live" else "broker_"
        key = self.settings.get(prefix + "key")
        secret = self.settings.get(prefix + "secret")
        return bool(key) and headers.get("APCA-API-KEY-ID") == key and headers.get("APCA-API-SECRET-KEY") == secret

    def broker_rate_limited(self) -> bool:
        """The rate-limit fault: the next N requests (fault `attempts`) answer 429."""
        fault = self.fault()
        if fault.get("kind") != "rate-limit":
            return False
        counter = self.rundir / "broker-429.json"
        seen = read_json(counter, {"n": 0})
        if seen["n"] >= int(fault.get("attempts") or 1):
            return False
        seen["n"] += 1
        write_json(counter, seen)
        return True

    def broker(self, method: str, path: str, params: dict, body, account: str = "paper") -> tuple:
        from catalyst_ops.sandbox.broker import Account

        with self.lock:
            st = self.broker_state(account)
            acct = Account(account, st)
            fault = self.fault()
            status, out = acct.handle(method, path, params, body, lambda sym: self._close_fails(st, fault, sym))
            write_json(self.broker_path_for(account), st)
        return status, "application/json", out

    def _close_fails(self, st: dict, fault: dict, sym: str) -> bool:
        """Whether closing `sym` fails now. With `attempts` in the fault, each symbol fails only its first N
        close attempts (a transient broker error that a retry gets past)."""
        if fault.get("kind") != "close-fail" or sym not in set(fault.get("symbols", [])):
            return False
        limit = fault.get("attempts")
        if limit is None:
            return True
        seen = st.setdefault("close_failures", {})
        if seen.get(sym, 0) >= int(limit):
            return False
        seen[sym] = seen.get(sym, 0) + 1
        return True

    def seed_broker(self, body: dict) -> tuple:
        from catalyst_ops.sandbox.broker import Account

        account = body.get("account", "paper")
        with self.lock:
            st = self.broker_state(account)
            for key in ("positions", "orders", "suspend_trade", "equity", "cash", "market_open", "cancel_delay"):
                if key in body:
                    st[key] = body[key]
            st["close_failures"] = {}
            Account(account, st)  # opening the market fills what was queued
            write_json(self.broker_path_for(account), st)
        return 200, "application/json", st

    # ------------------------------------------------------------------ plan profile's trading routes
    def plan_broker_proxy(self, method: str, path: str) -> tuple:
        base = self.settings.get("broker_url")
        mapping = {("GET", "/api/v1/account"): ("GET", "/v2/account"),
                   ("GET", "/api/v1/positions"): ("GET", "/v2/positions"),
                   ("POST", "/api/v1/positions/close-all"): ("DELETE", "/v2/positions?cancel_orders=true")}
        target = mapping.get((method, path))
        if not target or not base:
            return 404, "application/json", {"detail": "Not Found"}
        req = urllib.request.Request(base + target[1], method=target[0], headers={
            "APCA-API-KEY-ID": self.settings.get("broker_key", ""), "APCA-API-SECRET-KEY": self.settings.get("broker_secret", "")})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, "application/json", json.loads(resp.read() or b"null")
        except Exception as exc:
            return 502, "application/json", {"detail": f"broker unreachable: {exc}"}


def make_handler(app: StandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"catalyst-standin-{app.service}"

        def log_message(self, fmt, *args):  # quiet: the tests read state, not access logs
            return

        def _send(self, status: int, ctype: str, body) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n <= 0:
                return None
            raw = self.rfile.read(n)
            try:
                return json.loads(raw)
            except ValueError:
                return None

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = url.path
            params = dict(urllib.parse.parse_qsl(url.query))
            body = self._body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
            if path.startswith("/_standin/"):
                return self._send(*self._control(method, path, body))
            fault = app.fault()
            kind = fault.get("kind")
            if kind == "hung":
                deadline = time.time() + 3600
                while time.time() < deadline and app.fault().get("kind") == "hung":
                    time.sleep(0.1)
            elif kind == "slow":
                time.sleep(float(fault.get("seconds", 2)))
            elif kind == "500":
                return self._send(500, "application/json", {"detail": "Internal Server Error"})
            try:
                self._send(*self._route(method, path, params, body))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _control(self, method, path, body):
            if path == "/_standin/ping":
                return 200, "application/json", {"service": app.service, "pid": os.getpid()}
            if path == "/_standin/broker" and app.service == "broker":
                if method == "POST":
                    return app.seed_broker(body or {})
                from catalyst_ops.sandbox.broker import Account

                with app.lock:
                    st = app.broker_state()
                    Account("paper", st)
                return 200, "application/json", st
            return 404, "application/json", {"detail": "unknown control path"}

        def _route(self, method, path, params, body):
            svc = app.service
            if svc == "broker":
                from catalyst_ops.sandbox.broker import split_account

                account, sub = split_account(path)
                if not app.broker_auth_ok(self.headers, account):
                    return 403, "application/json", {"message": "forbidden."}
                if app.broker_rate_limited():
                    return 429, "application/json", {"code": 42910000, "message": "rate limit exceeded"}
                return app.broker(method, sub, params, body, account)
            if path == "/health" and method == "GET":
                return app.health()
            if svc == "workflow":
                if path == "/api/v1/workflow/start":
                    if method != "POST":
                        return 405, "application/json", {"detail": "Method Not Allowed"}
                    return app.workflow_start(body, self.headers)
                if path == "/api/v1/workflow/status" and method == "GET":
                    return app.workflow_status(None)
                m = re.fullmatch(r"/api/v1/workflow/status/([^/]+)", path)
                if m and method == "GET":
                    return app.workflow_status(urllib.parse.unquote(m.group(1)))
            if svc == "reporting":
                if path == "/api/v1/reports/daily":
                    want = "GET" if app.profile == "real" else "POST"
                    if method != want:
                        return 405, "application/json", {"detail": "Method Not Allowed"}
                    return app.daily_report(params if method == "GET" else (body or {}))
                if path == "/api/v1/reports/performance" and method == "GET":
                    return 200, "application/json", {"report_type": "performance", "total_trades": 0}
            if svc == "trading":
                if path == "/api/v1/positions/active" and method == "GET":
                    return 200, "application/json", {"positions": [], "count": 0}
                if app.profile == "plan" and path.startswith("/api/v1/"):
                    return app.plan_broker_proxy(method, path)
            return 404, "application/json", {"detail": "Not Found"}

        def do_GET(self): self._handle("GET")
        def do_POST(self): self._handle("POST")
        def do_PATCH(self): self._handle("PATCH")
        def do_DELETE(self): self._handle("DELETE")
        def do_PUT(self): self._handle("PUT")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(service: str, rundir: str | Path) -> None:
    rundir = Path(rundir)
    settings = read_json(rundir / "sandbox.json", {})
    ports = settings.get("ports", {})
    if service not in ports:
        raise SystemExit(f"catalyst-ops sandbox: no port for {service!r} in {rundir / 'sandbox.json'}")
    (rundir / "faults").mkdir(parents=True, exist_ok=True)
    app = StandIn(service, rundir, settings)
    fault = app.fault()
    if fault and not fault.get("sticky"):
        app.fault_path.unlink(missing_ok=True)  # a restart clears a fault, as it would a real crash
    elif fault.get("kind") == "down":
        raise SystemExit(f"catalyst-ops sandbox: {service} is held down by a sticky fault")
    server = _Server((settings.get("host", "127.0.0.1"), int(ports[service])), make_handler(app))
    announce(service)
    (rundir / "pids").mkdir(exist_ok=True)
    (rundir / "pids" / f"{service}.pid").write_text(str(os.getpid()))

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
