"""`catalyst-ops export prometheus`: parsed back with prometheus_client's own text parser."""

from __future__ import annotations

import os
from datetime import datetime

from conftest import run_cli
from prometheus_client.parser import text_string_to_metric_families
from synth_state import ET, fill, ops_yaml

END = datetime(2026, 3, 11, 12, 0, tzinfo=ET)


def _samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_textfile_parses_and_carries_the_state(tmp_path):
    db = fill(tmp_path / "state.db", END, failures=[("news", END.replace(hour=11, minute=50), END.replace(hour=12, minute=5), "timeout")])
    db.set_halt("drill", "tester@host")
    db.execute("INSERT INTO alerts(created_at, severity, subject_key, subject, body, status) VALUES (?,?,?,?,?,?)",
               (END.timestamp(), "critical", "k", "s", "b", "pending"))
    db.close()
    (tmp_path / ".env").write_text('TRADING_MODE=live\nALPACA_SECRET_KEY="s3cr3t-value"\n')
    cfg = ops_yaml(tmp_path, tmp_path / "state.db")
    out = tmp_path / "textfile"
    out.mkdir()
    res = run_cli("--now", END.isoformat(), "export", "prometheus", "--textfile", out, config=cfg)
    assert res.code == 0, res.text
    assert sorted(os.listdir(out)) == ["catalyst.prom"]  # no temp file left behind
    text = (out / "catalyst.prom").read_text()
    assert "s3cr3t" not in text
    s = _samples(text)
    assert s[("catalyst_service_up", (("service", "scanner"),))] == 1
    assert s[("catalyst_service_up", (("service", "news"),))] == 0
    assert s[("catalyst_halted", ())] == 1
    assert s[("catalyst_alerts_pending", ())] == 1
    assert s[("catalyst_trading_mode", (("mode", "live"),))] == 1 and s[("catalyst_trading_mode", (("mode", "paper"),))] == 0
    backup_at = datetime(2026, 3, 10, 23, 0, 2, tzinfo=ET).timestamp() + 95
    assert abs(s[("catalyst_backup_last_success_timestamp_seconds", ())] - backup_at) < 1
    assert s[("catalyst_backup_last_size_bytes", ())] > 700_000_000 and s[("catalyst_backup_last_verified", ())] == 1
    assert s[("catalyst_job_last_success_timestamp_seconds", (("job", "market-open"),))] > datetime(2026, 3, 11, 9, 30, tzinfo=ET).timestamp()
    assert s[("catalyst_job_last_exit_code", (("job", "health"),))] == 1  # news was timing out at the last sweep
    assert abs(s[("catalyst_export_timestamp_seconds", ())] - END.timestamp()) < 30


def test_stdout_dry_run_and_bad_dir(tmp_path):
    fill(tmp_path / "state.db", END, hours=2).close()
    cfg = ops_yaml(tmp_path, tmp_path / "state.db")
    res = run_cli("export", "prometheus", config=cfg)
    assert res.code == 0 and _samples(res.out)[("catalyst_halted", ())] == 0
    assert _samples(res.out)[("catalyst_trading_mode", (("mode", "unknown"),))] == 1  # no .env
    out = tmp_path / "tf"
    out.mkdir()
    res = run_cli("export", "prometheus", "--textfile", out, "--dry-run", config=cfg)
    assert res.code == 0 and os.listdir(out) == [] and "catalyst_service_up" in res.out
    res = run_cli("export", "prometheus", "--textfile", tmp_path / "missing", config=cfg)
    assert res.code == 2 and "not a directory" in res.err and "Traceback" not in res.err
