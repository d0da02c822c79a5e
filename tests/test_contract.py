"""The contract as data: every call the ops layer makes, with the real answer, held against BOTH sides.

`tests/contract/*.yaml` records, per entry, one request the ops layer makes and what the real party
(the nine services at upstream commit 63de899, or Alpaca's v2 API) answers. Each entry is checked twice:

(a) the stand-in, put in the state the entry describes, answers as recorded (status, media type, and
    the body's shape and values the entry pins) -- a stand-in that drifts from the real service fails;
(b) our client, given the recorded answer over real HTTP by a replay server, interprets it as the
    entry says (a health state, a workflow outcome, a broker result) and sends the recorded request
    (method, path, query and body keys) -- a client change the contract does not share fails.

Entry schema (one file per party; `entries:` a list):
  id, what                  unique name; one line on the quirk
  source                    {file, function|route} read at upstream 63de899, or {url} of a public page
  request                   {service, method, path, query?, json?}
  standin                   (a) state: fault (KIND, or {service, kind, ...}), broker {positions "SYM:QTY,...",
                            orders [symbols | order objects], suspend_trade}, before [requests],
                            poll (repeat the request until a terminal workflow word), wrong_keys, skip: reason
  answer | answers          {status, content_type, headers?, body | text}; `answers` is a sequence
                            (the replay server serves them in order, the last one repeated)
  pins                      what (a) holds the stand-in to: text (regex), type, keys, absent,
                            values {dotted.path: value}, match {dotted.path: regex}, one_of,
                            items {count, keys, values, match} for list bodies, headers {name: regex}
  client                    (b): health STATE | workflow_start {outcome, cycle_id} + sent_json |
                            workflow_follow {outcome, stages_seen, baseline, cycle_id, deadline, min_requests} |
                            market_close {exit, outcome, http_status, config} |
                            broker {call, args, keys|count|results|result|returns|raises};
                            request: loose (the answer only; our client never sends that request)
A file's `not_called` lists profile paths no command calls, with the reason; every other path of the
real profile must be the request of some entry.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import _start_standin, run_cli

CONTRACT_DIR = Path(__file__).resolve().parent / "contract"
TERMINAL = {"completed", "failed"}
CLIENT_KINDS = {"health", "workflow_start", "workflow_follow", "market_close", "broker"}


# ------------------------------------------------------------------ loading


def _files() -> dict[str, dict]:
    out = {}
    for path in sorted(CONTRACT_DIR.glob("*.yaml")):
        out[path.name] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return out


FILES = _files()
ENTRIES = [(name, e) for name, data in FILES.items() for e in data["entries"]]
IDS = [e["id"] for _, e in ENTRIES]


def _answers(entry: dict) -> list[dict]:
    return entry["answers"] if "answers" in entry else [entry["answer"]]


def test_contract_files_are_well_formed():
    assert set(FILES) >= {"health.yaml", "workflow.yaml", "reporting.yaml", "broker.yaml"}
    assert len(IDS) == len(set(IDS)), "duplicate entry ids"
    for name, e in ENTRIES:
        where = f"{name}: {e.get('id')}"
        assert e.get("what"), where
        src = e.get("source") or {}
        assert src.get("url") or (src.get("file") and (src.get("function") or src.get("route"))), where
        if src.get("file"):
            assert FILES[name]["upstream"]["commit"] == "63de899", where
        req = e["request"]
        assert req["method"] in ("GET", "POST", "PATCH", "DELETE") and req["path"].startswith("/"), where
        assert ("answer" in e) != ("answers" in e), where
        for a in _answers(e):
            assert isinstance(a["status"], int) and a["content_type"], where
            assert ("text" in a) != ("body" in a), where
        client = e["client"]
        assert set(client) & CLIENT_KINDS, f"{where}: no client interpretation"


def test_upstream_files_named_exist_at_the_pinned_commit():
    """The `file` of every entry is a path of the upstream tree at 63de899 (when the mirror is here)."""
    import subprocess

    mirror = Path("/work/.mirror/Elimelech70+catalyst-trading-system/repo")
    if not mirror.exists():
        pytest.skip("upstream mirror not on this machine")
    tree = set(subprocess.run(["git", "-C", str(mirror), "ls-tree", "-r", "--name-only", "63de899"],
                              capture_output=True, text=True, check=True).stdout.split())
    for name, e in ENTRIES:
        f = (e.get("source") or {}).get("file")
        if f:
            assert f in tree, f"{name}: {e['id']}: {f} not in upstream 63de899"


def _profile_paths(node, out: set) -> None:
    if isinstance(node, dict):
        for v in node.values():
            _profile_paths(v, out)
    elif isinstance(node, str) and node.startswith("/"):
        out.add(node.split("?")[0])


def test_every_call_of_the_real_profile_has_an_entry():
    """No call is missing: each path of the real profile is the request of an entry, or is listed in
    a file's `not_called` with the reason."""
    from catalyst_ops.config import load_profile

    paths: set[str] = set()
    _profile_paths(load_profile("real", "test"), paths)
    covered = {e["request"]["path"] for _, e in ENTRIES}
    covered |= {p.split(" ")[0] for data in FILES.values() for p in (data.get("not_called") or {})}
    # DELETE /v2/positions/SYMBOL is built from the positions path
    covered |= {re.sub(r"/[A-Z.]+$", "", p) for p in covered if p.startswith("/v2/positions/")}
    missing = sorted(p for p in paths if p not in covered and p.replace("{cycle_id}", "") not in covered)
    assert missing == [], f"profile paths without a contract entry: {missing}"


# ------------------------------------------------------------------ pins


def _get(body, dotted: str):
    cur = body
    for part in str(dotted).split("."):
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            if part not in cur:
                raise KeyError(dotted)
            cur = cur[part]
        else:
            raise KeyError(dotted)
    return cur


def _as_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _check_obj(obj, pins: dict, where: str) -> list[str]:
    errs = []
    if pins.get("keys") or pins.get("absent"):
        if not isinstance(obj, dict):
            return [f"{where}: expected an object, got {type(obj).__name__}"]
        missing = [k for k in pins.get("keys", []) if k not in obj]
        if missing:
            errs.append(f"{where}: missing keys {missing} (has {sorted(obj)})")
        extra = [k for k in pins.get("absent", []) if k in obj]
        if extra:
            errs.append(f"{where}: keys the real answer does not have: {extra}")
    for path, want in (pins.get("values") or {}).items():
        try:
            got = _get(obj, path)
        except (KeyError, IndexError, ValueError):
            errs.append(f"{where}: no {path}")
            continue
        if got != want:
            errs.append(f"{where}: {path} = {got!r}, recorded {want!r}")
    for path, regex in (pins.get("match") or {}).items():
        try:
            got = _get(obj, path)
        except (KeyError, IndexError, ValueError):
            errs.append(f"{where}: no {path}")
            continue
        if not re.fullmatch(regex, _as_text(got)):
            errs.append(f"{where}: {path} = {got!r} does not match {regex}")
    for path, options in (pins.get("one_of") or {}).items():
        try:
            got = _get(obj, path)
        except (KeyError, IndexError, ValueError):
            errs.append(f"{where}: no {path}")
            continue
        if got not in options:
            errs.append(f"{where}: {path} = {got!r}, recorded one of {options}")
    return errs


def check_pins(pins: dict | None, answer: dict, status: int, ctype: str, headers, text: str) -> list[str]:
    """What (a) holds the stand-in's answer to. Empty list: it answers as recorded."""
    errs = []
    if status != answer["status"]:
        errs.append(f"HTTP {status}, recorded {answer['status']}")
    media = ctype.split(";")[0].strip().lower()
    if media != answer["content_type"].split(";")[0].strip().lower():
        errs.append(f"content type {ctype!r}, recorded {answer['content_type']!r}")
    pins = pins or {}
    for name, regex in (pins.get("headers") or {}).items():
        value = headers.get(name)
        if value is None or not re.fullmatch(regex, value):
            errs.append(f"header {name} = {value!r}, recorded to match {regex}")
    if "text" in answer:
        if pins.get("text") and not re.fullmatch(pins["text"], text):
            errs.append(f"body {text[:120]!r} does not match {pins['text']}")
        return errs
    try:
        body = json.loads(text)
    except ValueError:
        return errs + [f"body is not JSON: {text[:120]!r}"]
    want_type = pins.get("type") or ("list" if isinstance(answer["body"], list) else "object")
    if (want_type == "list") != isinstance(body, list):
        return errs + [f"body is a {type(body).__name__}, recorded a {want_type}"]
    errs += _check_obj(body, pins, "body")
    items = pins.get("items")
    if items:
        if "count" in items and len(body) != items["count"]:
            errs.append(f"body has {len(body)} items, recorded {items['count']}")
        for i, item in enumerate(body):
            errs += _check_obj(item, items, f"body[{i}]")
    return errs


# ------------------------------------------------------------------ (a) the stand-in


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    s = _start_standin(tmp_path_factory.mktemp("contract"), "real", 0.3)
    yield s
    run_cli("sandbox", "down", "--rundir", s.rundir)


def _standin_request(s, req: dict, wrong_keys: bool = False) -> tuple[int, str, dict, str]:
    from catalyst_ops.sandbox import manage

    headers = {"Connection": "close"}
    if req["service"] == "broker":
        headers["APCA-API-KEY-ID"] = "not-a-key" if wrong_keys else manage.STANDIN_KEY
        headers["APCA-API-SECRET-KEY"] = manage.STANDIN_SECRET
    data = None
    if "json" in req:
        data = json.dumps(req["json"]).encode()
        headers["Content-Type"] = "application/json"
    path = req["path"]
    if req.get("query"):
        path += "?" + urllib.parse.urlencode(req["query"])
    conn = http.client.HTTPConnection("127.0.0.1", s.port(req["service"]), timeout=10)
    try:
        conn.request(req["method"], path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", errors="replace")
        return resp.status, resp.getheader("Content-Type") or "", dict(resp.getheaders()), text
    finally:
        conn.close()


def _reset_standin(s) -> None:
    """Every entry starts from the same state: no faults, no cycle, an empty broker account."""
    from catalyst_ops.sandbox import manage

    for svc in manage.all_services():
        manage.set_fault(s.rundir, svc, "clear")
    conn = http.client.HTTPConnection("127.0.0.1", s.port("workflow"), timeout=5)
    try:
        conn.request("POST", "/_standin/workflow", body=b"{}", headers={"Content-Type": "application/json"})
        conn.getresponse().read()
    finally:
        conn.close()
    manage.seed_broker(s.rundir, positions=[], orders=[], suspend_trade=False)


def _put_in_state(s, entry: dict) -> dict:
    from catalyst_ops.sandbox import manage

    spec = entry.get("standin") or {}
    _reset_standin(s)
    fault = spec.get("fault")
    if fault:
        f = {"kind": fault} if isinstance(fault, str) else dict(fault)
        manage.set_fault(s.rundir, f.pop("service", entry["request"]["service"]), f.pop("kind"), **f)
    b = spec.get("broker")
    if b:
        orders = b.get("orders")
        if orders and isinstance(orders[0], str):
            orders = manage.make_orders(orders)
        manage.seed_broker(s.rundir, positions=manage.make_positions(b["positions"]) if b.get("positions") else None,
                           orders=orders, suspend_trade=b.get("suspend_trade"))
    for before in spec.get("before") or []:
        _standin_request(s, {"service": entry["request"]["service"], **before})
    return spec


def _walk(s, entry: dict) -> list[str]:
    """(a) for a sequence: poll the stand-in like market-open does and compare the walk."""
    seen: list[tuple[str, int, str, dict, str]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, ctype, headers, text = _standin_request(s, entry["request"])
        try:
            word = json.loads(text).get("status")
        except (ValueError, AttributeError):
            word = None
        if not seen or (seen[-1][0], seen[-1][4]) != (word, text):
            seen.append((word, status, ctype, headers, text))
        if word in TERMINAL:
            break
        time.sleep(0.03)
    recorded = _answers(entry)

    def dedup(words):
        return [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]

    errs = []
    want = dedup([a["body"]["status"] for a in recorded])
    got = dedup([w for w, *_ in seen])
    if got != want:
        errs.append(f"status walk {got}, recorded {want}")
    for word, status, ctype, headers, text in seen:
        options = [a for a in recorded if a["body"]["status"] == word]
        if not options:
            continue
        tries = [check_pins(a.get("pins"), a, status, ctype, headers, text) for a in options]
        if all(tries):
            errs.append(f"{word}: " + "; ".join(tries[0]))
    return errs


@pytest.mark.parametrize("entry", [e for _, e in ENTRIES], ids=IDS)
def test_standin_answers_as_recorded(standin, entry):
    spec = entry.get("standin") or {}
    if spec.get("skip"):
        pytest.skip(f"not reproducible by the stand-in: {spec['skip']}")
    _put_in_state(standin, entry)
    if spec.get("poll"):
        errs = _walk(standin, entry)
    else:
        answer = entry["answer"]
        status, ctype, headers, text = _standin_request(standin, entry["request"], spec.get("wrong_keys", False))
        errs = check_pins(entry.get("pins"), answer, status, ctype, headers, text)
    assert not errs, f"{entry['id']}: the stand-in does not answer as recorded: " + "; ".join(errs)


# ------------------------------------------------------------------ (b) our clients


class Replay:
    """Serves an entry's recorded answers over HTTP, in order (the last repeated), and records what it got."""

    def __init__(self, answers: list[dict]):
        self.answers = answers
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                return

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                url = urllib.parse.urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                with replay._lock:
                    replay.requests.append({"method": self.command, "path": url.path,
                                            "query": dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
                                            "json": body, "content_type": self.headers.get("Content-Type", "")})
                    a = replay.answers[min(len(replay.requests), len(replay.answers)) - 1]
                data = (a["text"] if "text" in a else json.dumps(a["body"])).encode()
                self.send_response(a["status"])
                self.send_header("Content-Type", a["content_type"])
                for k, v in (a.get("headers") or {}).items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _config(tmp_path: Path, service: str, port: int, extra: dict | None = None):
    from catalyst_ops import config

    env = tmp_path / ".env"
    env.write_text("TRADING_MODE=paper\n")
    data = {"env_file": str(env), "state_path": str(tmp_path / "state.db"), "log_dir": str(tmp_path / "log"),
            "report_dir": str(tmp_path / "reports"),
            "workflow": {"poll_interval": 0.05, "deadline": 5}, "health": {"timeout": 3}}
    if service != "broker":
        data["services"] = {service: {"port": port}}
    for k, v in (extra or {}).items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    path = tmp_path / "ops.yml"
    path.write_text(yaml.safe_dump(data))
    return path, config.load(str(path))


def _check_requests(entry: dict, got: list[dict]) -> None:
    req = entry["request"]
    assert got, "our client sent nothing"
    for r in got:
        assert (r["method"], r["path"]) == (req["method"], req["path"]), \
            f"our client sent {r['method']} {r['path']}, the contract records {req['method']} {req['path']}"
        if entry["client"].get("request") == "loose":
            continue
        missing = set(req.get("query") or {}) - set(r["query"])
        assert not missing, f"query without {sorted(missing)}: {r['query']}"
        if isinstance(req.get("json"), dict):
            assert isinstance(r["json"], dict) and set(r["json"]) == set(req["json"]), \
                f"body keys {sorted(r['json'] or {})}, recorded {sorted(req['json'])}"
            assert r["content_type"].startswith("application/json")


def _client_broker(tmp_path, entry, replay) -> None:
    from catalyst_ops import broker

    spec = entry["client"]["broker"]
    # the account follows TRADING_MODE (paper here), as the services choose it: trading.paper_url
    _, cfg = _config(tmp_path, "broker", replay.port, {"trading": {"paper_url": f"http://127.0.0.1:{replay.port}"}})
    b = broker.from_config(cfg, {"ALPACA_API_KEY": "contract-key-id", "ALPACA_SECRET_KEY": "contract-secret-key",
                                 "TRADING_MODE": "paper"})
    call = getattr(b, spec["call"])
    if "raises" in spec:
        with pytest.raises(broker.BrokerError) as exc:
            call(*spec.get("args", []))
        assert exc.value.status == spec["raises"]["status"], str(exc.value)
        if spec["raises"].get("message_contains"):
            assert spec["raises"]["message_contains"] in str(exc.value), str(exc.value)
        return
    got = call(*spec.get("args", []))
    if "keys" in spec:
        assert isinstance(got, dict) and set(spec["keys"]) <= set(got)
    if "count" in spec:
        assert len(got) == spec["count"], got
    if "results" in spec:
        assert [{"symbol": r.symbol, "ok": r.ok, "status": r.status} for r in got] == spec["results"]
    if "result" in spec:
        assert {"ok": got.ok, "status": got.status} == spec["result"], got
    if "returns" in spec:
        assert got == spec["returns"]


def _client_market_close(tmp_path, entry, replay, database_url: str) -> None:
    """market-close with the reporting call switched on (it is off in the real profile), against a real
    trading database (the report itself comes from there): the service's answer decides the outcome."""
    spec = entry["client"]["market_close"]
    extra = {"market": {"reporting_service": True}}
    for k, v in (spec.get("config") or {}).items():
        extra[k] = {**extra.get(k, {}), **v} if isinstance(v, dict) else v
    tmp_path = tmp_path / "client"
    tmp_path.mkdir()
    path, _ = _config(tmp_path, "reporting", replay.port, extra)
    with open(tmp_path / ".env", "a") as fh:
        fh.write(f"DATABASE_URL={database_url}\n")
    # Monday 2025-11-24, a regular session: the close job acts at 16:00 ET
    res = run_cli("--now", "2025-11-24T16:00:30-05:00", "market-close", "--json", config=path)
    assert res.code == spec["exit"], res.text
    out = json.loads(res.out)
    assert out["outcome"] == spec["outcome"], out
    if "http_status" in spec:
        assert out["reporting_service"]["http_status"] == spec["http_status"], out


@pytest.mark.parametrize("entry", [e for _, e in ENTRIES], ids=IDS)
def test_client_interprets_recorded_answer(tmp_path, entry, request):
    from catalyst_ops import health, workflow

    client = entry["client"]
    service = entry["request"]["service"]
    with Replay(_answers(entry)) as replay:
        if "health" in client:
            _, cfg = _config(tmp_path, service, replay.port)
            [res] = health.sweep(cfg, [service])
            assert res.state == client["health"], f"{res.state} ({res.detail}), the contract says {client['health']}"
        elif "workflow_start" in client:
            spec = client["workflow_start"]
            _, cfg = _config(tmp_path, service, replay.port)
            body = workflow.build_body(cfg)
            if "sent_json" in client:
                assert body == client["sent_json"]
            res = workflow.start(cfg, body)
            assert res.outcome == spec["outcome"], res
            if "cycle_id" in spec:
                assert res.cycle_id == spec["cycle_id"]
        elif "workflow_follow" in client:
            spec = client["workflow_follow"]
            _, cfg = _config(tmp_path, service, replay.port)
            res = workflow.follow(cfg, spec.get("cycle_id"), deadline=spec.get("deadline", 5), poll=0.02,
                                  baseline=spec.get("baseline"))
            assert res.outcome == spec["outcome"], res
            if "stages_seen" in spec:
                assert res.stages_seen == spec["stages_seen"]
            assert len(replay.requests) >= spec.get("min_requests", 1)
        elif "market_close" in client:
            _client_market_close(tmp_path, entry, replay, request.getfixturevalue("pgdb").url)
        elif "broker" in client:
            _client_broker(tmp_path, entry, replay)
        _check_requests(entry, replay.requests)
