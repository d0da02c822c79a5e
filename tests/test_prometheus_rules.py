"""prometheus/catalyst-rules.yml: checked and unit-tested with promtool (Debian's prometheus
package; scripts/setup.sh --test installs it), and held to the series the export really writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from prometheus_client.parser import text_string_to_metric_families
from synth_state import ET, fill, ops_yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "prometheus" / "catalyst-rules.yml"
TESTS = REPO / "prometheus" / "catalyst-rules.test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: scripts/setup.sh --test installs Debian's prometheus package"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent)


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    p = _promtool("check", "rules", RULES.name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in p.stdout


def test_promtool_test_rules():
    p = _promtool("test", "rules", TESTS.name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_promtool_test_rules_can_fail(tmp_path):
    # the same tests against a rule file whose backup threshold is off by an hour must fail
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("26 * 3600", "25 * 3600"))
    (tmp_path / TESTS.name).write_text(TESTS.read_text())
    p = subprocess.run([shutil.which("promtool") or "promtool", "test", "rules", TESTS.name], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode != 0 and "CatalystBackupStale" in p.stdout + p.stderr


def test_every_rule_has_a_firing_and_a_quiet_case():
    wanted = {"CatalystServiceDown", "CatalystHealthJobMissing", "CatalystBackupStale", "CatalystOutboxGrowing",
              "CatalystHalted", "CatalystDiskNearlyFull"}
    names = [r["alert"] for r in _rules()]
    assert wanted <= set(names) and len(names) == len(set(names))
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for name in names:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no test where it fires"
        assert any(not c.get("exp_alerts") or len(c["exp_alerts"]) < 2 for c in mine), name
        assert all(r.get("labels", {}).get("severity") in ("critical", "warning") for r in _rules() if r["alert"] == name)


def test_rules_use_only_series_the_export_writes(tmp_path):
    end = datetime(2026, 3, 11, 12, 0, tzinfo=ET)
    db = fill(tmp_path / "state.db", end)
    db.set_halt("drill", "tester@host")
    db.close()
    res = run_cli("--now", end.isoformat(), "export", "prometheus", config=ops_yaml(tmp_path, tmp_path / "state.db"))
    assert res.code == 0, res.text
    exported = set()
    for fam in text_string_to_metric_families(res.out):
        exported |= {s.name for s in fam.samples}
    labels = {k for fam in text_string_to_metric_families(res.out) for s in fam.samples for k in s.labels}
    text = "\n".join(r["expr"] for r in _rules())
    used = set(re.findall(r"\bcatalyst_[a-z_]+", text))
    assert used and used <= exported, used - exported
    matchers = set(re.findall(r"\b([a-z_]+)\s*!?=~?\s*\"", text))
    assert matchers <= labels | {"fstype"}, matchers - labels  # fstype: the node exporter's own
