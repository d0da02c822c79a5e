"""`catalyst-ops selftest` against the stand-in stack over real HTTP, as a real process."""

from __future__ import annotations

import json


def _checks(res) -> dict:
    return {c["name"]: c for c in json.loads(res.out)["checks"]}


def test_passes_against_the_standin(standin_factory):
    # stages long against the poll: on a loaded two-core machine a 0.2 s poll can stretch
    s = standin_factory(stage_seconds=1.0)
    s.config.write_text(s.config.read_text().replace("poll_interval: 0.2", "poll_interval: 0.1"))
    res = s.cli("selftest", "--skip", "database", "--json", timeout=120)
    assert res.code == 0, res.text
    data = json.loads(res.out)
    assert data["passed"] is True and data["failed"] == [] and data["skipped"] == ["database"]
    c = _checks(res)
    assert {k: v["result"] for k, v in c.items()} == {"services": "PASS", "database": "SKIP", "workflow": "PASS", "report": "PASS"}, res.out
    assert c["workflow"]["data"]["stages_seen"] == ["scanning", "filtering_news", "analyzing_patterns", "technical_analysis",
                                                    "risk_validation", "executing_trades"]
    assert c["workflow"]["data"]["final_status"] == "completed"
    # the cycle really went through the stand-in
    starts = json.loads((s.rundir / "workflow-starts.json").read_text())
    assert len(starts) == 1 and starts[0]["cycle_id"] == c["workflow"]["data"]["cycle_id"]
    text = s.cli("selftest", "--skip", "database", "--skip", "workflow", timeout=120)
    assert text.code == 0, text.text
    lines = text.out.splitlines()
    assert lines[0].startswith("PASS  services") and lines[1].startswith("SKIP  database"), text.out
    assert lines[2].startswith("SKIP  workflow") and lines[3].startswith("PASS  report"), text.out
    assert lines[-1] == "selftest: PASS; skipped: database, workflow"


def test_failed_cycle_fails_that_check_only(standin):
    standin.fault("workflow", "cycle-failed")
    res = standin.cli("selftest", "--skip", "database", "--json", timeout=120)
    assert res.code == 1, res.text
    data = json.loads(res.out)
    assert data["failed"] == ["workflow"]
    c = _checks(res)
    assert c["services"]["result"] == "PASS" and c["report"]["result"] == "PASS"
    assert c["workflow"]["result"] == "FAIL" and c["workflow"]["data"]["final_status"] == "failed"
    assert "ended failed" in c["workflow"]["detail"]


def test_database_check_is_never_silently_passed(standin):
    """Without --skip the database check runs `db check` with the same config. The stand-in
    has no PostgreSQL: whether `db check` exists yet or not, that check fails, with a reason."""
    res = standin.cli("selftest", "--json", timeout=120)
    assert res.code == 1, res.text
    c = _checks(res)
    assert json.loads(res.out)["failed"] == ["database"]
    assert c["database"]["detail"].startswith(("not available", "database unreachable", "db check"))


def test_unhealthy_service_and_plan_profile(standin_factory):
    s = standin_factory(profile="plan", stage_seconds=0.2)
    s.fault("news", "500")
    res = s.cli("selftest", "--skip", "database", "--json", timeout=120)
    assert res.code == 1
    c = _checks(res)
    assert json.loads(res.out)["failed"] == ["services"]
    assert "news unhealthy" in c["services"]["detail"]
    # the plan profile has no stage words: completion is the test
    assert c["workflow"]["result"] == "PASS" and c["workflow"]["data"]["stages_seen"] == []


def test_live_mode_and_halt_refuse_the_cycle(standin):
    env = standin.env_file.read_text().replace("TRADING_MODE=paper", "TRADING_MODE=live")
    standin.env_file.write_text(env)
    res = standin.cli("selftest", "--skip", "database", "--skip", "report", "--json", timeout=60)
    c = _checks(res)
    assert res.code == 1 and c["workflow"]["result"] == "FAIL" and "TRADING_MODE is live" in c["workflow"]["detail"]
    assert not (standin.rundir / "workflow-starts.json").exists()
    # back to paper, but halted: still no cycle
    standin.env_file.write_text(env.replace("TRADING_MODE=live", "TRADING_MODE=paper"))
    from catalyst_ops.state import StateDB

    db = StateDB(standin.state_db)
    db.set_halt("drill", "tester@host")
    db.close()
    res = standin.cli("selftest", "--skip", "database", "--skip", "report", "--json", timeout=60)
    c = _checks(res)
    assert res.code == 1 and "trading is halted (drill)" in c["workflow"]["detail"]
    assert not (standin.rundir / "workflow-starts.json").exists()
