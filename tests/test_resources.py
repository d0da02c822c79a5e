"""CPU/memory samples: /proc of the stand-in's processes, docker and systemd output parsing."""

from __future__ import annotations

import json
import sqlite3

from catalyst_ops import resources


def test_sample_resources_reads_the_standin_processes(standin):
    res = standin.cli("sample-resources", "--json")
    assert res.code == 0, res.text
    s = json.loads(res.out)["sample"]
    assert s["available"] and s["source"] == "proc"
    names = sorted(u["name"] for u in s["units"])
    assert names == sorted(["orchestration", "scanner", "pattern", "technical", "risk-manager", "trading", "workflow", "news",
                            "reporting"])
    assert all(u["mem_bytes"] > 5_000_000 for u in s["units"])  # a Python HTTP server is several MB
    assert 0 <= s["cpu_percent"] < 100 and 0 < s["mem_percent"] < 100
    row = sqlite3.connect(standin.state_db).execute("SELECT source, cpu_percent, mem_bytes FROM resource_samples").fetchone()
    assert row[0] == "proc" and row[2] == s["mem_bytes"]
    # a stopped service is simply not there to measure
    standin.fault("news", "down")
    s2 = json.loads(standin.cli("sample-resources", "--json", "--dry-run").out)["sample"]
    assert "news" not in [u["name"] for u in s2["units"]] and len(s2["units"]) == 8
    assert sqlite3.connect(standin.state_db).execute("SELECT COUNT(*) FROM resource_samples").fetchone()[0] == 1


def test_compose_without_a_docker_engine_is_unavailable_not_invented(tmp_path):
    cfg_path = tmp_path / "ops.yml"
    cfg_path.write_text(f"state_path: {tmp_path / 's.db'}\nruntime: {{kind: compose, compose_file: {tmp_path / 'nope.yml'}}}\n")
    from catalyst_ops import config

    s = resources.sample(config.load(str(cfg_path)))
    assert not s.available and s.cpu_percent is None and s.reason


def test_docker_stats_parsing():
    # `docker stats --no-stream --format json` as Docker 24+ prints it, one object per line
    text = "\n".join(json.dumps(r) for r in [
        {"BlockIO": "0B / 0B", "CPUPerc": "150.00%", "Container": "ab12", "ID": "ab12", "MemPerc": "5.00%",
         "MemUsage": "512MiB / 3.8GiB", "Name": "catalyst-scanner", "NetIO": "1kB / 0B", "PIDs": "7"},
        {"BlockIO": "0B / 0B", "CPUPerc": "10.00%", "Container": "cd34", "ID": "cd34", "MemPerc": "1.00%",
         "MemUsage": "1.5GB / 3.8GiB", "Name": "catalyst-news", "NetIO": "1kB / 0B", "PIDs": "3"}])
    s = resources.parse_docker_stats(text, cpus=2, total=4 * 1024**3)
    assert s.source == "docker" and s.cpu_percent == 80.0  # 160 % of one core on a two-core host
    assert s.mem_bytes == 512 * 1024**2 + 1_500_000_000
    assert s.mem_percent == round(100 * s.mem_bytes / (4 * 1024**3), 2)


def test_systemctl_show_parsing():
    text = "CPUUsageNSec=1500000000\nMemoryCurrent=104857600\n\nCPUUsageNSec=[not set]\nMemoryCurrent=18446744073709551615\n"
    got = resources.parse_systemctl_show(text, ["catalyst-scanner.service", "catalyst-news.service"])
    assert resources._num(got["catalyst-scanner.service"]["CPUUsageNSec"]) == 1_500_000_000
    assert resources._num(got["catalyst-news.service"]["CPUUsageNSec"]) is None
    assert resources._num(got["catalyst-news.service"]["MemoryCurrent"]) is None
