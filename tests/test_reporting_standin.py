"""The stand-in reporting service answers the daily report as the real one does against the real
schema (services/reporting/reporting-service.py at 63de899: `cycle_id: int` read by FastAPI with
pydantic 2; `WHERE cycle_id = $1` through asyncpg against VARCHAR(20) `YYYYMMDD-NNN` ids)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

TUE = "2026-11-24"


def reporting_requests(standin) -> list[dict]:
    path = standin.rundir / "reporting-requests.json"
    return json.loads(path.read_text()) if path.exists() else []


def _get(standin, query: str, method: str = "GET"):
    url = f"http://127.0.0.1:{standin.port('reporting')}/api/v1/reports/daily" + (f"?{query}" if query else "")
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_standin_reporting_answers_as_the_real_service(standin):
    """services/reporting/reporting-service.py at 63de899 (`cycle_id: int`, FastAPI + pydantic 2,
    asyncpg against VARCHAR(20) cycle ids). Bodies as that route sends them."""
    for cid in ("20261124-001", "cycle_20261124_143000", ""):
        assert _get(standin, urllib.parse.urlencode({"cycle_id": cid, "report_date": TUE})) == (422, {"detail": [{
            "type": "int_parsing", "loc": ["query", "cycle_id"],
            "msg": "Input should be a valid integer, unable to parse string as an integer", "input": cid}]})
    assert _get(standin, f"report_date={TUE}") == (422, {"detail": [
        {"type": "missing", "loc": ["query", "cycle_id"], "msg": "Field required", "input": None}]})
    assert _get(standin, f"cycle_id=0&report_date={TUE}") == (
        400, {"detail": {"error": "Invalid parameters", "message": "Invalid cycle_id: 0"}})
    # an integer passes validation, then asyncpg refuses it for the VARCHAR column with a PostgresError
    # (asyncpg.exceptions.DataError), which the route maps to 503, not 400
    for cid in ("7", " 7 ", "1_000"):
        assert _get(standin, urllib.parse.urlencode({"cycle_id": cid, "report_date": TUE})) == (
            503, {"detail": {"error": "Database unavailable", "retry_after": 30}})
    assert _get(standin, "cycle_id=7", method="POST") == (405, {"detail": "Method Not Allowed"})
    assert [r["status"] for r in reporting_requests(standin)] == [422, 422, 422, 422, 400, 503, 503, 503, 405]
