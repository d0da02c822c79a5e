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
    assert s[("catalyst_job_last_success_timestamp_seconds", (("job_name", "market-open"),))] > datetime(2026, 3, 11, 9, 30, tzinfo=ET).timestamp()
    assert s[("catalyst_job_last_exit_code", (("job_name", "health"),))] == 1  # news was timing out at the last sweep
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


# Prometheus' naming conventions (https://prometheus.io/docs/practices/naming/): base units named
# at the end, _total on counters and only there, no units of other scales
_TIME_UNITS = ("_milliseconds", "_ms", "_minutes", "_hours", "_days")
_SIZE_UNITS = ("_kilobytes", "_megabytes", "_kb", "_mb", "_gb")


def test_names_follow_prometheus_conventions(tmp_path):
    db = fill(tmp_path / "state.db", END, restarts=[("news", END.replace(hour=11, minute=55), 0),
                                                     ("news", END.replace(hour=11, minute=58), 0),
                                                     ("news", END.replace(hour=2), 1)])
    db.set_halt("drill", "tester@host")
    db.close()
    cfg = ops_yaml(tmp_path, tmp_path / "state.db")
    res = run_cli("--now", END.isoformat(), "export", "prometheus", config=cfg)
    assert res.code == 0, res.text
    text = res.out
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert len(helps) == len(set(helps)), "a HELP line repeated"
    assert sorted(helps) == sorted(types), "every metric has one HELP and one TYPE"
    assert len(types) == sum(1 for line in text.splitlines() if line.startswith("# TYPE "))
    families = list(text_string_to_metric_families(text))
    assert len(families) == len(types)
    for fam in families:
        exposed = fam.name + "_total" if fam.type == "counter" else fam.name
        assert exposed in types, (fam.name, fam.type)
        assert exposed.startswith("catalyst_") and exposed == exposed.lower()
        if fam.type == "counter":
            assert types[exposed] == "counter" and exposed.endswith("_total")
            assert all(s.name == exposed and s.value >= 0 for s in fam.samples)
        else:
            assert not exposed.endswith("_total"), f"{exposed}: _total is for counters"
        assert not exposed.endswith(_TIME_UNITS + _SIZE_UNITS), f"{exposed}: use base units (seconds, bytes)"
        if "timestamp" in exposed:
            assert exposed.endswith("_timestamp_seconds"), exposed
        if "size" in exposed:
            assert exposed.endswith("_bytes"), exposed
        for s in fam.samples:
            assert all(k == k.lower() and not k.startswith("__") for k in s.labels)
            # the target labels Prometheus adds at scrape time would rename these to exported_*
            assert not {"job", "instance"} & set(s.labels), (s.name, s.labels)
    s = _samples(text)
    assert s[("catalyst_service_restarts_total", (("service", "news"),))] == 2  # the planned one is not counted
    assert s[("catalyst_service_restarts_total", (("service", "scanner"),))] == 0
