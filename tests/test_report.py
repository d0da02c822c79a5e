"""`catalyst-ops report daily` from a synthetic state DB: text, JSON, and HTML rendered in
headless Chromium (Debian's chromium) to a PNG whose pixels are checked."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import zlib
from datetime import datetime

import pytest
from conftest import run_cli
from synth_state import ET, fill, ops_yaml

END = datetime(2026, 3, 11, 12, 0, tzinfo=ET)
NOW = END.isoformat()
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def day_db(tmp_path):
    """A day (2026-03-10) with a scanner outage and restart, a degraded hour, a hung news
    service and a 40-minute hole in the health checks; a job log with one error."""
    D = lambda h, m: datetime(2026, 3, 10, h, m, tzinfo=ET)  # noqa: E731
    fill(tmp_path / "state.db", END,
         failures=[("scanner", D(14, 0), D(14, 20), "down"), ("technical", D(9, 0), D(10, 30), "degraded"),
                   ("news", D(19, 40), D(19, 50), "timeout")],
         restarts=[("scanner", D(14, 5), 0), ("news", D(19, 45), 0)],
         health_gap=(D(3, 5), D(3, 45))).close()
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "market-close.log"
    log.write_text("2026-03-10T21:00:05Z catalyst-ops[market-close] error: reporting: HTTP 500 from /api/v1/reports/daily\n"
                   "2026-03-10T21:00:06Z catalyst-ops[market-close] info: stored\n"
                   "2026-03-09T21:00:05Z catalyst-ops[market-close] error: the day before, not counted\n")
    os.utime(log, (D(17, 0).timestamp(), D(17, 0).timestamp()))
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "catalyst-2026-03-10.dump").write_bytes(b"x" * 20000)
    return tmp_path, ops_yaml(tmp_path, tmp_path / "state.db")


def test_daily_json_has_every_section(day_db):
    tmp_path, cfg = day_db
    res = run_cli("--now", NOW, "report", "daily", "--date", "2026-03-10", "--json", config=cfg)
    assert res.code == 0, res.text
    d = json.loads(res.out)
    assert d["date"] == "2026-03-10" and d["window"]["complete"] is True
    svc = {s["service"]: s for s in d["services"]}
    assert svc["scanner"]["failed_checks"] == 4 and svc["scanner"]["uptime_percent"] == pytest.approx(100 * (281 - 4) / 281, abs=0.01)
    assert svc["technical"]["failed_checks"] == 0  # degraded is up
    assert d["health"]["sweeps"] == 288 - 7 and d["health"]["sweeps_with_failures"] == 6
    jobs = {j["job"]: j for j in d["jobs"]}
    assert jobs["scan"]["runs"] == 2 and jobs["market-open"]["first"].startswith("2026-03-10T09:30")
    assert [(r["service"], r["planned"]) for r in d["restarts"]] == [("scanner", False), ("news", False)]
    assert d["backup"]["last"]["verified"] == "list" and d["backup"]["last"]["age_hours"] == pytest.approx(13.0, abs=0.1)
    assert d["errors"]["log_error_lines"] == 1 and "HTTP 500" in d["errors"]["log_lines"][0]["message"]
    disk = {x["name"]: x for x in d["disk"]}
    assert disk["backups"]["bytes"] >= 20000 and disk["backups"]["files"] == 1
    assert d["resources"]["day"]["samples"] == 288 and d["resources"]["now"] is None  # a past day: no live sample
    line = d["timeline"]["services"]["scanner"]
    assert len(line) == 288 and line[14 * 12:14 * 12 + 4] == "FFFF" and line[3 * 12 + 2:3 * 12 + 9] == "." * 7 and line[3 * 12 + 1] == "H"


def test_daily_text_reads(day_db):
    tmp_path, cfg = day_db
    res = run_cli("--now", NOW, "report", "daily", "--date", "2026-03-10", config=cfg)
    assert res.code == 0, res.text
    assert res.out.startswith("Catalyst daily report 2026-03-10: 9/9 services up, 281 health checks (6 with failures)")
    assert "14:05 scanner unplanned recovered" in res.out
    assert "Last backup: 2026-03-10T23:01" in res.out


def test_save_and_mail(day_db):
    tmp_path, cfg = day_db
    res = run_cli("--now", NOW, "report", "daily", "--date", "yesterday", "--save", "--mail", "--dry-run", config=cfg)
    assert res.code == 0 and not (tmp_path / "log" / "reports").exists()
    res = run_cli("--now", NOW, "report", "daily", "--date", "yesterday", "--save", "--mail", config=cfg)
    assert res.code == 0, res.text
    for ext in ("txt", "json", "html"):
        assert (tmp_path / "log" / "reports" / f"ops-daily-2026-03-10.{ext}").stat().st_size > 500
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT kind, report_date FROM reports").fetchall() == [("ops-daily", "2026-03-10")]
    sev, status, body = db.execute("SELECT severity, status, body FROM alerts WHERE subject_key='report:daily:2026-03-10'").fetchone()
    assert (sev, status) == ("info", "pending") and "Restarts: 2" in body


def test_bad_date_is_one_line(day_db):
    _, cfg = day_db
    res = run_cli("--now", NOW, "report", "daily", "--date", "10/03/2026", config=cfg)
    assert res.code == 2 and "--date: expected YYYY-MM-DD" in res.err and "Traceback" not in res.err
    res = run_cli("--now", NOW, "report", "daily", "--date", "2026-04-01", config=cfg)
    assert res.code == 2 and "in the future" in res.err


def read_png(path) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB rows) of an 8-bit RGB/RGBA PNG: enough of the format to check pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i, idat = 8, b""
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        chunk = data[i + 8:i + 8 + n]
        assert zlib.crc32(kind + chunk) == struct.unpack(">I", data[i + 8 + n:i + 12 + n])[0], f"bad CRC in {kind}"
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6)
        elif kind == b"IDAT":
            idat += chunk
        i += 12 + n
    raw = zlib.decompress(idat)
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for r in range(h):
        f = raw[r * (stride + 1)]
        line = bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(b for k, b in enumerate(line) if k % 4 != 3))
        prev = line
    return w, h, rows


def render_png(html_path, png_path, tmp_path, width=1200, height=1400):
    profile = tmp_path / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
           f"--screenshot={png_path}", f"--window-size={width},{height}", html_path.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (scripts/setup.sh --test installs it)")
def test_html_renders_in_headless_chromium(day_db):
    tmp_path, cfg = day_db
    res = run_cli("--now", NOW, "report", "daily", "--date", "2026-03-10", "--html", config=cfg)
    assert res.code == 0, res.text
    assert res.out.lstrip().startswith("<!DOCTYPE html>") and "<svg" in res.out
    html = tmp_path / "report.html"
    html.write_text(res.out)
    png = tmp_path / "report.png"
    p = render_png(html, png, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    # page errors (a broken template, a script error) show as console lines in Chromium's log
    assert "Uncaught" not in p.stderr and ":CONSOLE(" not in p.stderr, p.stderr[-2000:]
    assert png.stat().st_size > 20_000
    w, h, rows = read_png(png)
    assert (w, h) == (1200, 1400)
    # the chart is there: the healthy green, the degraded amber and the failed red of its cells
    colors = {bytes.fromhex(c[1:]): name for name, c in (("healthy", "#2f9e5b"), ("degraded", "#e3a21a"), ("failed", "#d64541"))}
    seen = {name: 0 for name in colors.values()}
    for row in rows[:400]:
        for x in range(0, len(row), 3):
            name = colors.get(row[x:x + 3])
            if name:
                seen[name] += 1
    assert seen["healthy"] > 50_000 and seen["degraded"] > 500 and seen["failed"] > 200, seen
    # and red is a small share of the day: the rendering follows the data, not a fixed picture
    assert seen["failed"] < seen["degraded"] < seen["healthy"]
