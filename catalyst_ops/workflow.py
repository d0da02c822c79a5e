"""Start a workflow cycle and follow it to its end, through the configured contract profile.

Real profile: POST /api/v1/workflow/start, then the global GET /api/v1/workflow/status (no
cycle id; `current_cycle` changes to the scanner's id mid-run). Plan profile: the per-cycle
GET /api/v1/workflow/status/{cycle_id} with running|completed|error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from catalyst_ops import httpjson
from catalyst_ops.errors import USAGE, OpsError

log = logging.getLogger(__name__)

STARTED = "started"
ALREADY_RUNNING = "already_running"
REFUSED = "refused"


@dataclass
class StartResult:
    outcome: str  # started already_running refused
    cycle_id: str | None = None
    detail: str = ""
    http_status: int | None = None
    body: object = None


@dataclass
class FollowResult:
    outcome: str  # completed failed timeout
    final_status: str | None = None
    stages_seen: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""


def _wf(cfg) -> dict:
    return cfg.profile_data.get("workflow", {})


def build_body(cfg, overrides: dict | None = None) -> dict:
    """The start body from `workflow:` config, under the profile's key names; refuses an unknown mode."""
    w = cfg.workflow
    values = {"mode": w.mode, "max_positions": w.max_positions, "scan_frequency": w.scan_frequency,
              "risk_level": w.risk_level, "risk_per_trade": w.risk_per_trade}
    values.update(overrides or {})
    from catalyst_ops.config import mode_refusal

    refusal = mode_refusal(cfg.profile_data, values["mode"])
    if refusal:
        raise OpsError(f"workflow mode refused: {refusal}", USAGE)
    keys = _wf(cfg).get("start", {}).get("body_keys", {})
    body = {}
    for name, value in values.items():
        wire = keys.get(name, name) if keys else name
        if wire:
            body[wire] = value
    return body


def start(cfg, body: dict, timeout: float = 10.0) -> StartResult:
    spec = _wf(cfg).get("start", {})
    url = cfg.service_url(cfg.workflow.service, spec.get("path", "/api/v1/workflow/start"))
    resp = httpjson.request(spec.get("method", "POST"), url, json_body=body, timeout=timeout, what="workflow start")
    if resp.status == int(spec.get("already_running_status", 409)):
        detail = resp.body.get("detail") if isinstance(resp.body, dict) else resp.text
        return StartResult(ALREADY_RUNNING, None, str(detail), resp.status, resp.body)
    if resp.status != 200 or not isinstance(resp.body, dict):
        return StartResult(REFUSED, None, f"HTTP {resp.status}: {resp.text[:200]}", resp.status, resp.body)
    cycle_id = resp.body.get(spec.get("cycle_id_field", "cycle_id"))
    return StartResult(STARTED, cycle_id, str(resp.body.get("status", "")), resp.status, resp.body)


def snapshot(cfg, timeout: float = 10.0) -> dict | None:
    """The global status before a start (real profile), so follow() can tell the new cycle's end from
    the previous one's: the real service runs the cycle as a background task after answering the start,
    so the first status read may still show the last cycle's `completed` or `failed`."""
    spec = _wf(cfg).get("status", {})
    path = spec.get("path", "/api/v1/workflow/status")
    if "{cycle_id}" in path:
        return None
    try:
        resp = httpjson.request("GET", cfg.service_url(cfg.workflow.service, path), timeout=timeout, what="workflow status")
    except OpsError:
        return None
    return resp.body if resp.status == 200 and isinstance(resp.body, dict) else None


def _is_ours(body: dict, cycle_id: str | None, baseline: dict | None, seen_running: bool) -> bool:
    if seen_running or baseline is None:
        return True
    if cycle_id and body.get("current_cycle") == cycle_id:
        return True
    keys = ("current_cycle", "last_run")
    return any(body.get(k) != baseline.get(k) for k in keys)


def follow(cfg, cycle_id: str | None, deadline: float | None = None, poll: float | None = None,
           baseline: dict | None = None) -> FollowResult:
    """Poll the status until a completed/failed word or the bounded deadline. `baseline` is the global
    status read before the start (see snapshot()); a terminal word that is still the previous cycle's
    does not end the wait."""
    spec = _wf(cfg).get("status", {})
    deadline = deadline if deadline is not None else cfg.workflow.deadline
    poll = poll if poll is not None else cfg.workflow.poll_interval
    path = spec.get("path", "/api/v1/workflow/status")
    if "{cycle_id}" in path:
        if not cycle_id:
            return FollowResult("failed", None, [], 0.0, "the start answer had no cycle id to follow")
        path = path.replace("{cycle_id}", cycle_id)
    url = cfg.service_url(cfg.workflow.service, path)
    field_name = spec.get("status_field", "status")
    done_words = set(spec.get("completed_words", ["completed"]))
    failed_words = set(spec.get("failed_words", ["failed"]))
    stage_words = spec.get("stage_words", [])
    running_words = set(spec.get("running_words", [])) - {"idle"}
    seen_running = False
    if "{cycle_id}" in spec.get("path", ""):
        baseline = None  # per-cycle status: always ours
    started = time.monotonic()
    seen: list[str] = []
    last = None
    errors = 0
    while True:
        try:
            resp = httpjson.request("GET", url, timeout=min(10.0, max(1.0, deadline)), what="workflow status")
            errors = 0
            status = resp.body.get(field_name) if isinstance(resp.body, dict) else None
            if resp.status == 200 and status is not None:
                last = str(status)
                if last in stage_words and last not in seen:
                    seen.append(last)
                    log.info("workflow stage: %s", last)
                terminal = last in done_words or last in failed_words
                if not terminal:
                    seen_running = seen_running or last in running_words or last in stage_words
                elif not _is_ours(resp.body, cycle_id, baseline, seen_running):
                    last = f"{last} (the previous cycle's; this one has not begun)"
                elif last in done_words:
                    return FollowResult("completed", last, seen, time.monotonic() - started)
                else:
                    return FollowResult("failed", last, seen, time.monotonic() - started,
                                        f"cycle ended {last}")
        except OpsError as exc:
            errors += 1
            last = f"unreachable ({exc})"
            log.warning("workflow status: %s", exc)
        if time.monotonic() + poll > started + deadline:
            return FollowResult("timeout", last, seen, time.monotonic() - started,
                                f"not finished within {deadline:g}s (last status {last})")
        time.sleep(poll)
