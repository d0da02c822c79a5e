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


def env_value(env_file: str | None, key: str, default: str = "") -> str:
    if not env_file:
        return default
    try:
        from catalyst_ops import envfile

        return envfile.load(env_file).get(key, default)
    except Exception:
        return default


def _pydantic_int(text: str) -> int | None:
    """A query string as pydantic 2 reads an `int` (lax mode): surrounding blanks, a sign, `_` between
    digits and a zero fraction are accepted ('7', ' 7 ', '+7', '1_000', '7.0'); anything else is not."""
    m = re.fullmatch(r"\s*([+-]?[0-9]+(?:_[0-9]+)*)(?:\.0*)?\s*", text or "", re.ASCII)
    return int(m.group(1).replace("_", "")) if m else None


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
        # broker state
        self.broker_path = rundir / "broker.json"

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
        body = {"status": "healthy", "service": svc, "version": VERSIONS.get(svc, "1.0.0"),
                "timestamp": datetime.utcnow().isoformat() + "Z"}
        if svc == "trading":
            env_file = self.settings.get("env_file")
            body["trading_mode"] = self.settings.get("trading_mode") or env_value(env_file, "TRADING_MODE", "paper")
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
    def daily_report(self, method: str, params: dict, body) -> tuple:
        """The daily report route; every request is recorded in <rundir>/reporting-requests.json."""
        answer = self._daily_report(method, params, body)
        with self.lock:
            seen = read_json(self.rundir / "reporting-requests.json", [])
            seen.append({"at": time.time(), "method": method, "params": params, "body": body, "status": answer[0]})
            write_json(self.rundir / "reporting-requests.json", seen)
        return answer

    def _daily_report(self, method: str, params: dict, body) -> tuple:
        want = "GET" if self.profile == "real" else "POST"
        if method != want:
            return 405, "application/json", {"detail": "Method Not Allowed"}
        if self.profile != "real":  # the plan's POST: a hypothetical contract, answered as the plan describes
            body = body if isinstance(body, dict) else {}
            date = body.get("report_date") or datetime.now().strftime("%Y-%m-%d")
            return 200, "application/json", {"report_type": "daily", "report_date": date, "cycle_id": body.get("cycle_id"),
                                             "summary": {"trades": 3, "wins": 2, "losses": 1, "realized_pnl": 412.5},
                                             "generated_at": datetime.utcnow().isoformat() + "Z"}
        # The real service (services/reporting/reporting-service.py at 63de899): `cycle_id: int` is a FastAPI
        # query parameter (pydantic 2), checked before anything else; bodies recorded from FastAPI 0.115.12 /
        # 0.165 with pydantic 2.11 / 2.14 running that route against PostgreSQL through asyncpg 0.29 / 0.32.
        if "cycle_id" not in params:
            return 422, "application/json", {"detail": [{"type": "missing", "loc": ["query", "cycle_id"],
                                                         "msg": "Field required", "input": None}]}
        cycle_id = _pydantic_int(params["cycle_id"])
        if cycle_id is None:  # the workflow's cycle_YYYYMMDD_HHMMSS and the scanner's YYYYMMDD-NNN alike
            return 422, "application/json", {"detail": [{
                "type": "int_parsing", "loc": ["query", "cycle_id"],
                "msg": "Input should be a valid integer, unable to parse string as an integer", "input": params["cycle_id"]}]}
        if cycle_id < 1:  # the route's own ValueError, mapped to 400
            return 400, "application/json", {"detail": {"error": "Invalid parameters", "message": f"Invalid cycle_id: {cycle_id}"}}
        # `WHERE cycle_id = $1` against VARCHAR(20): asyncpg refuses the int ("invalid input for query argument $1:
        # 7 (expected str, got int)") with asyncpg.exceptions.DataError, a PostgresError, which the route maps to 503
        return 503, "application/json", {"detail": {"error": "Database unavailable", "retry_after": 30}}

    # ------------------------------------------------------------------ broker (Alpaca v2 stand-in)
    def broker_state(self) -> dict:
        return read_json(self.broker_path, {"positions": [], "orders": [], "suspend_trade": False,
                                            "equity": "100000", "cash": "100000", "order_seq": 0})

    def broker_auth_ok(self, headers) -> bool:
        key = self.settings.get("broker_key")
        secret = self.settings.get("broker_secret")
        return headers.get("APCA-API-KEY-ID") == key and headers.get("APCA-API-SECRET-KEY") == secret

    def broker(self, method: str, path: str, params: dict, body) -> tuple:
        with self.lock:
            st = self.broker_state()
            fault = self.fault()
            if path == "/v2/account" and method == "GET":
                return 200, "application/json", {"id": "standin-account", "account_number": "PA0000STANDIN",
                                                 "status": "ACTIVE", "currency": "USD", "equity": st["equity"],
                                                 "cash": st["cash"], "buying_power": st["cash"],
                                                 "trade_suspended_by_user": st["suspend_trade"],
                                                 "trading_blocked": False, "pattern_day_trader": False}
            if path == "/v2/account/configurations":
                if method == "PATCH":
                    if isinstance(body, dict) and "suspend_trade" in body:
                        st["suspend_trade"] = bool(body["suspend_trade"])
                        write_json(self.broker_path, st)
                return 200, "application/json", {"suspend_trade": st["suspend_trade"], "dtbp_check": "entry",
                                                 "no_shorting": False, "trade_confirm_email": "all"}
            if path == "/v2/positions" and method == "GET":
                return 200, "application/json", st["positions"]
            if path == "/v2/orders" and method == "GET":
                status = params.get("status", "open")
                orders = [o for o in st["orders"] if status == "all" or o["status"] in ("new", "accepted", "partially_filled")]
                return 200, "application/json", orders
            if path == "/v2/orders" and method == "POST":
                if st["suspend_trade"]:
                    return 403, "application/json", {"code": 40310000, "message": "new orders are rejected by user request"}
                st["order_seq"] += 1
                order = {"id": f"order-{st['order_seq']}", "symbol": body.get("symbol"), "qty": str(body.get("qty", 1)),
                         "side": body.get("side", "buy"), "type": body.get("type", "market"), "status": "accepted"}
                st["orders"].append(order)
                write_json(self.broker_path, st)
                return 200, "application/json", order
            if path == "/v2/orders" and method == "DELETE":
                out = []
                for o in st["orders"]:
                    if o["status"] in ("new", "accepted", "partially_filled"):
                        o["status"] = "canceled"
                        out.append({"id": o["id"], "status": 200})
                write_json(self.broker_path, st)
                return 207, "application/json", out
            one = re.fullmatch(r"/v2/positions/([A-Za-z0-9.]+)", path)
            if (path == "/v2/positions" or one) and method == "DELETE":
                failing = self._close_failing(st, fault)
                if params.get("cancel_orders") == "true":
                    for o in st["orders"]:
                        if o["status"] in ("new", "accepted", "partially_filled"):
                            o["status"] = "canceled"
                if one:
                    sym = one.group(1).upper()
                    pos = [p for p in st["positions"] if p["symbol"] == sym]
                    if not pos:
                        return 404, "application/json", {"code": 40410000, "message": "position does not exist"}
                    if sym in failing:
                        write_json(self.broker_path, st)
                        return 500, "application/json", {"code": 50010000, "message": "internal error closing position"}
                    st["positions"] = [p for p in st["positions"] if p["symbol"] != sym]
                    write_json(self.broker_path, st)
                    return 200, "application/json", {"id": f"close-{sym}", "symbol": sym, "status": "accepted"}
                out, keep = [], []
                for p in st["positions"]:
                    if p["symbol"] in failing:
                        out.append({"symbol": p["symbol"], "status": 500,
                                    "body": {"code": 50010000, "message": "internal error closing position"}})
                        keep.append(p)
                    else:
                        out.append({"symbol": p["symbol"], "status": 200,
                                    "body": {"id": f"close-{p['symbol']}", "symbol": p["symbol"], "status": "accepted"}})
                st["positions"] = keep
                write_json(self.broker_path, st)
                return 207, "application/json", out
        return 404, "application/json", {"code": 40410000, "message": "endpoint not found"}

    def _close_failing(self, st: dict, fault: dict) -> set:
        """Symbols whose close fails now. With `attempts` in the fault, each symbol fails only its
        first N close attempts (a transient broker error that a retry gets past)."""
        if fault.get("kind") != "close-fail":
            return set()
        symbols = set(fault.get("symbols", []))
        limit = fault.get("attempts")
        if limit is None:
            return symbols
        seen = st.setdefault("close_failures", {})
        failing = set()
        for p in st["positions"]:
            sym = p["symbol"]
            if sym in symbols and seen.get(sym, 0) < int(limit):
                seen[sym] = seen.get(sym, 0) + 1
                failing.add(sym)
        return failing

    def seed_broker(self, body: dict) -> tuple:
        with self.lock:
            st = self.broker_state()
            for key in ("positions", "orders", "suspend_trade", "equity", "cash"):
                if key in body:
                    st[key] = body[key]
            st["close_failures"] = {}
            write_json(self.broker_path, st)
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
                return 200, "application/json", app.broker_state()
            return 404, "application/json", {"detail": "unknown control path"}

        def _route(self, method, path, params, body):
            svc = app.service
            if svc == "broker":
                if not app.broker_auth_ok(self.headers):
                    return 403, "application/json", {"message": "forbidden."}
                return app.broker(method, path, params, body)
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
                    # Starlette keeps blank values (`cycle_id=` is "", not absent)
                    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query, keep_blank_values=True))
                    return app.daily_report(method, query, body)
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
