"""One stand-in service process. Faults are read from <rundir>/faults/<service>.json on every
request, so `sandbox fault` takes effect at once; a restart clears every fault that is not sticky."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from pathlib import Path

STAGES = ["scanning", "filtering_news", "analyzing_patterns", "technical_analysis", "risk_validation", "executing_trades"]
# what each real service (63de899) says about itself in its health body: name and version
IDENTITY = {"orchestration": ("orchestration", "6.0.3"), "scanner": ("scanner", "6.1.0"),
            "pattern": ("pattern-service", "5.2.0"), "technical": ("Technical Analysis Service", "6.0.0"),
            "risk-manager": ("risk-manager", "7.1.0"), "trading": ("trading", "8.5.0"),
            "workflow": ("workflow-coordinator", "2.0.0"), "news": ("news", "6.0.0"), "reporting": ("reporting", "5.1.0")}
VERSIONS = {svc: version for svc, (_, version) in IDENTITY.items()}
SCHEMA = "v6.0 3NF normalized"

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


def _utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None).isoformat()


def _start_body_errors(body) -> list[dict]:
    """The 422 items pydantic 2 (the coordinator's WorkflowStartRequest) gives a start body."""
    if not isinstance(body, dict):
        return [{"type": "model_attributes_type", "loc": ["body"],
                 "msg": "Input should be a valid dictionary or object to extract fields from", "input": body}]
    errors = []
    if "mode" in body and not isinstance(body["mode"], str):
        errors.append({"type": "string_type", "loc": ["body", "mode"], "msg": "Input should be a valid string",
                       "input": body["mode"]})
    for key, kind in (("max_positions", "int"), ("scan_frequency", "int"), ("risk_level", "float")):
        v = body.get(key)
        if v is None or isinstance(v, bool):
            continue
        if kind == "int" and isinstance(v, float) and not v.is_integer():
            errors.append({"type": "int_from_float", "loc": ["body", key],
                           "msg": "Input should be a valid integer, got a number with a fractional part", "input": v})
        elif isinstance(v, str):
            try:
                int(v) if kind == "int" else float(v)
            except ValueError:
                what = "integer, unable to parse string as an integer" if kind == "int" else \
                    "number, unable to parse string as a number"
                errors.append({"type": f"{kind}_parsing", "loc": ["body", key], "msg": f"Input should be a valid {what}",
                               "input": v})
        elif not isinstance(v, (int, float)):
            errors.append({"type": f"{kind}_type", "loc": ["body", key],
                           "msg": "Input should be a valid " + ("integer" if kind == "int" else "number"), "input": v})
    return errors


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

    def fault(self) -> dict:
        return read_json(self.fault_path, {})

    # ------------------------------------------------------------------ health
    def health(self):
        """Each service's own /health answer at 63de899, and what it says without its database
        (fault db-disconnected) or with it failing (unhealthy, degraded)."""
        f = self.fault().get("kind")
        svc = self.service
        if svc == "orchestration":  # checks only its HTTP session, never the database
            if f == "unhealthy":
                return 503, "text/plain", "Service Initializing"
            return 200, "text/plain", f"OK - Orchestration v{VERSIONS['orchestration']}"
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
        name, version = IDENTITY.get(svc, (svc, "1.0.0"))
        no_db = f == "db-disconnected"
        db_word = "disconnected" if no_db else "connected"
        if svc == "scanner":
            body = {"status": "healthy", "service": name, "version": version, "schema": "actual deployed schema",
                    "timestamp": now, "database": db_word, "redis": "connected"}
        elif svc == "pattern":
            if f == "unhealthy":  # its SELECT 1 or Redis PING raised: 503, two keys
                return 503, "application/json", {"status": "unhealthy", "error": "Connect call failed ('10.0.0.5', 25060)"}
            body = {"status": "healthy", "service": name, "version": version, "timestamp": now, "database": db_word,
                    "redis": "connected", "normalized_schema": True, "uses_security_id": True, "uses_time_id": True}
        elif svc == "technical":
            down = no_db or f == "degraded"
            body = {"status": "degraded" if down else "healthy", "service": name, "version": version, "timestamp": now,
                    "database": "disconnected" if down else "healthy", "redis": "healthy"}
        elif svc == "risk-manager":
            body = {"status": "healthy", "service": name, "version": version, "schema": SCHEMA,
                    "uses_security_id_fk": True, "uses_sector_joins": True}
        elif svc == "trading":
            if no_db:
                return 200, "application/json", {"status": "unhealthy", "error": "unknown",
                                                 "message": "Database pool not initialized"}
            if f == "unhealthy":
                return 200, "application/json", {"status": "unhealthy", "error": "database_unavailable",
                                                 "message": "connection was closed in the middle of operation"}
            body = {"status": "healthy", "service": name, "version": version, "schema": SCHEMA, "database": "connected",
                    "uses_security_id_fk": True, "error_handling": "rigorous", "timestamp": now}
            # no health body reports the trading mode (upstream): it is read from the process's
            # environment or its AlpacaTrader log line, as on the droplet
        elif svc == "workflow":
            with self.lock:
                view = self._cycle_view()
            body = {"status": "healthy", "service": name, "version": version,
                    "current_status": view["status"] if view else "idle",
                    "last_run": view["last_run"] if view else None,
                    "active_cycle": view["current_cycle"] if view else None}
        elif svc == "news":
            body = {"status": "healthy", "service": name, "version": version, "schema": SCHEMA, "timestamp": now,
                    "database": db_word}
        elif svc == "reporting":
            # its database pool failed at start: "unhealthy" with 200
            bad = no_db or f == "unhealthy"
            body = {"status": "unhealthy" if bad else "healthy", "service": name, "version": version,
                    "database": "disconnected" if bad else "connected"}
            return 200, "application/json", body
        else:
            body = {"status": "healthy", "service": name, "version": version, "timestamp": now}
        # drills: a service with no unhealthy/degraded answer of its own still gets the fault's word
        if f == "unhealthy":
            body.update({"status": "unhealthy", "error": "database_unavailable"})
        elif f == "degraded" and body.get("status") == "healthy":
            body.update({"status": "degraded"})
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
        end = None
        if fate == "hang":
            idx = min(idx, 2)
        if fate == "fail" and idx >= 1:
            # the real coordinator fails when its scanner call fails (the later stages catch their own
            # errors): before the scan made its DB row, so current_cycle is still the cycle_ id
            status, current, end = "failed", c["cycle_id"], c["started"] + stage_s
        elif idx >= len(STAGES):
            status, current, end = "completed", c["scan_id"], c["started"] + stage_s * len(STAGES)
        else:
            # mid-run the real service's current_cycle becomes the scanner's YYYYMMDD-NNN id
            status, current = STAGES[idx], (c["cycle_id"] if idx == 0 else c["scan_id"])
        view = dict(c)
        view["status"] = status
        view["current_cycle"] = current
        # the coordinator sets last_run when a run ends (its finally:), so until then it is the last run's end
        view["last_run"] = _utc_iso(end) if end else c.get("previous_last_run")
        return view

    def workflow_start(self, body, headers) -> tuple:
        # FastAPI validates the body before the route runs: 422 comes before 409, 400 and 500
        ctype = headers.get("Content-Type", "")
        if "json" not in ctype or body is None:
            return 422, "application/json", {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required",
                                                         "input": None}]}
        errors = _start_body_errors(body)
        if errors:
            return 422, "application/json", {"detail": errors}
        with self.lock:
            view = self._cycle_view()
            if view and view["status"] not in ("completed", "failed"):
                return 409, "application/json", {"detail": f"Workflow already running: {view['status']}"}
            fault = self.fault().get("kind")
            if fault == "start-supervised":  # config/trading_config.yaml trading_session.mode is not autonomous
                return 400, "application/json", {"detail": {
                    "error": "Supervised mode not supported via API",
                    "message": "Current mode: 'supervised'. Change to 'autonomous' in config/trading_config.yaml",
                    "config_file": "config/trading_config.yaml", "required_mode": "autonomous",
                    "current_mode": "supervised"}}
            if fault == "start-config-error":  # the YAML config could not be loaded
                return 500, "application/json", {
                    "detail": "Configuration error: Config file not found: /app/config/trading_config.yaml"}
            now = datetime.now(timezone.utc)
            self.cycle_seq += 1
            mode = body.get("mode", "normal")
            # the request's values, else config/workflow_config.yaml's (execute_top_n 3, 30 minutes)
            max_positions = body.get("max_positions", 5) or 3
            scan_frequency = body.get("scan_frequency", 300) or 1800
            risk_level = body.get("risk_level", 0.5)
            params = {"mode": mode, "max_positions": max_positions, "scan_frequency": scan_frequency,
                      "risk_level": risk_level, "session_mode": "autonomous"}
            cycle = {
                "cycle_id": now.strftime("cycle_%Y%m%d_%H%M%S"),
                "scan_id": now.strftime("%Y%m%d-") + f"{self.cycle_seq:03d}",
                "started": time.time(),
                "mode": mode,
                "params": params,
                "previous_last_run": view["last_run"] if view else None,
                "request": body,
                "fate": {"cycle-failed": "fail", "cycle-hang": "hang"}.get(fault, "complete"),
            }
            self.cycle = cycle
            write_json(self.rundir / "workflow.json", cycle)
            starts = read_json(self.rundir / "workflow-starts.json", [])
            starts.append({"cycle_id": cycle["cycle_id"], "at": cycle["started"], "body": body})
            write_json(self.rundir / "workflow-starts.json", starts)
        return 200, "application/json", {
            "success": True, "cycle_id": cycle["cycle_id"], "status": "started", "mode": mode,
            "session_mode": "autonomous", "max_positions": max_positions, "risk_level": risk_level,
            "scan_frequency": scan_frequency,
            "message": "Autonomous workflow started - trades will execute automatically after risk validation"}

    def workflow_status(self, cycle_id: str | None) -> tuple:
        with self.lock:
            view = self._cycle_view()
        if cycle_id is not None:  # the plan's per-cycle path
            if not view or view["cycle_id"] != cycle_id:
                return 404, "application/json", {"detail": f"Cycle {cycle_id} not found"}
            word = {"completed": "completed", "failed": "error"}.get(view["status"], "running")
            return 200, "application/json", {"cycle_id": cycle_id, "status": word, "stage": view["status"]}
        if not view:
            return 200, "application/json", {"status": "idle", "current_cycle": None, "current_mode": "normal",
                                             "current_params": {}, "last_run": None, "active_positions": 0}
        return 200, "application/json", {"status": view["status"], "current_cycle": view["current_cycle"],
                                         "current_mode": view["mode"], "current_params": view.get("params") or {},
                                         "last_run": view["last_run"], "active_positions": 0}

    def workflow_reset(self) -> tuple:
        """Forget the cycle, as a restart of the real coordinator (state in memory) would."""
        with self.lock:
            self.cycle = None
            (self.rundir / "workflow.json").unlink(missing_ok=True)
        return 200, "application/json", {"status": "idle"}

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

        def _send(self, status: int, ctype: str, body, headers: dict | None = None) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
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
                if app.service == "broker":
                    return self._send(500, "application/json", {"detail": "Internal Server Error"})
                # an unhandled exception in a FastAPI service: starlette's ServerErrorMiddleware, plain text
                return self._send(500, "text/plain; charset=utf-8", "Internal Server Error")
            try:
                answer = self._route(method, path, params, body)
                if kind == "start-slow" and path == "/api/v1/workflow/start":
                    # the cycle is started; the answer comes after the client gave up
                    time.sleep(float(fault.get("seconds", 2)))
                self._send(*answer)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _control(self, method, path, body):
            if path == "/_standin/ping":
                return 200, "application/json", {"service": app.service, "pid": os.getpid()}
            if path == "/_standin/workflow" and app.service == "workflow" and method == "POST":
                return app.workflow_reset()
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
                    # Alpaca: 200 requests a minute per account; the reset is the next minute's start
                    reset = int(time.time()) + 1
                    return 429, "application/json", {"message": "rate limit exceeded"}, {
                        "X-Ratelimit-Limit": "200", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(reset)}
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

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the bind address's host name (socket.getfqdn, a reverse DNS
        # query) after bind() and before listen(): for as long as a slow resolver takes, a restarted
        # service refuses every connection. Uvicorn does no such lookup; neither does the stand-in.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


def serve(service: str, rundir: str | Path) -> None:
    rundir = Path(rundir)
    settings = read_json(rundir / "sandbox.json", {})
    ports = settings.get("ports", {})
    if service not in ports:
        raise SystemExit(f"catalyst-ops sandbox: no port for {service!r} in {rundir / 'sandbox.json'}")
    (rundir / "faults").mkdir(parents=True, exist_ok=True)
    app = StandIn(service, rundir, settings)
    fault = app.fault()
    if fault.get("kind") == "crash-start":
        # a service that dies as it starts (a bad migration, a missing secret): the next N starts
        # exit at once, before listening; then the fault is spent
        left = int(fault.get("attempts") or 1) - 1
        if left > 0:
            write_json(app.fault_path, {**fault, "attempts": left})
        else:
            app.fault_path.unlink(missing_ok=True)
        print(f"catalyst-ops sandbox: {service} crashed at start (fault crash-start, {left} more)", file=sys.stderr,
              flush=True)
        raise SystemExit(1)
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
