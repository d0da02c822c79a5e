"""`catalyst-ops config foreign-cron`: upstream's cron lines found in real files, read as Debian's
cron reads them, commented out with a backup, idempotently; our own files never touched. User
crontabs are installed with the real crontab(1), inside a mount namespace whose spool is a temp
directory, so the host's own crontabs are never touched."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from catalyst_ops import cronfile, foreigncron
from tests.conftest import REPO, run_cli

UPSTREAM = (REPO / "tests" / "fixtures" / "upstream-root.crontab").read_text()
NOW = "2026-03-09T12:00:00-04:00"
MARK = "# disabled by catalyst-ops 2026-03-09: "
# Debian 12's /etc/crontab: run-parts lines that must stay as they are
ETC_CRONTAB = """SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
"""
# our own files: they call the stack's ports too, and must never be read or touched
OWN = """MAILTO=""
*/5 * * * * root /opt/catalyst-ops/venv/bin/catalyst-ops health >> /var/log/catalyst/health.log 2>&1
0 9 * * 1-5 root curl -s http://localhost:5006/api/v1/workflow/start
"""
# production-cron.txt's lines in a cron.d file (user column added), plus one of its own lines that stays
CRON_D_UPSTREAM = """# config/production-cron.txt as a cron.d file
CATALYST_HOME=/root/catalyst-trading-system
0 17 * * 1-5 root cd /root/catalyst-trading-system && docker-compose stop >> /var/log/catalyst/shutdown.log 2>&1
*/15 9-16 * * 1-5 root curl -s http://localhost:5004/health >> /var/log/catalyst/health.log 2>&1
0 18 * * 1-5 root docker exec catalyst-postgres pg_dump -U catalyst catalyst_trading > /root/catalyst-trading-system/backups/db_$(date +\\%Y\\%m\\%d).sql 2>> /var/log/catalyst/backup.log
0 2 * * * root find /var/log/catalyst -name "*.log" -mtime +7 -delete >> /var/log/catalyst/cleanup.log 2>&1
# 0,30 10-15 * * 1-5 root curl -X POST http://localhost:5006/api/v1/workflow/start -d '{"mode":"autonomous"}'
"""


def tree(root: Path, spool: dict[str, str] | None = None, cron_d: dict[str, str] | None = None) -> Path:
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "var" / "spool" / "cron" / "crontabs").mkdir(parents=True)
    (root / "etc" / "crontab").write_text(ETC_CRONTAB)
    for name, text in {"catalyst": OWN, "catalyst-validation": OWN, **(cron_d or {})}.items():
        (root / "etc" / "cron.d" / name).write_text(text)
        os.chmod(root / "etc" / "cron.d" / name, 0o644)
    for user, text in (spool or {}).items():
        (root / "var" / "spool" / "cron" / "crontabs" / user).write_text(text)
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


def driving_lines(text: str) -> set[int]:
    """The job lines of the upstream crontab that drive the stack: all but the find and df ones."""
    return {n for n, ln in enumerate(text.splitlines(), 1)
            if ln and not ln.startswith("#") and "=" not in ln.split()[0] and "find " not in ln and "df -h" not in ln}


def foreign(root: Path, *args: str, backups: Path | None = None):
    res = run_cli("--now", NOW, "config", "foreign-cron", "--json", "--cron-root", root,
                  "--backup-dir", backups or root.parent / "backups", *args)
    return res, (json.loads(res.out) if res.out.strip() else None)


# ---------------------------------------------------------------- what counts as driving the stack

@pytest.mark.parametrize("command,driving", [
    # config/production-cron.txt
    ("cd /root/catalyst-trading-system && docker-compose up -d >> /var/log/catalyst/startup.log 2>&1", True),
    ("cd /root/catalyst-trading-system && docker-compose stop >> /var/log/catalyst/shutdown.log 2>&1", True),
    ("""curl -X POST http://localhost:5006/api/v1/workflow/start -H "Content-Type: application/json" -d '{"mode":"autonomous","max_positions":5,"execute_top_n":3}' >> /var/log/catalyst/trading.log 2>&1""", True),
    ("curl -s http://localhost:5004/health >> /var/log/catalyst/health.log 2>&1", True),
    ("docker exec catalyst-postgres pg_dump -U catalyst catalyst_trading > /root/x.sql", True),
    ('find /var/log/catalyst -name "*.log" -mtime +7 -delete >> /var/log/catalyst/cleanup.log 2>&1', False),
    # scripts/catalyst-cron-setup.txt
    ("/root/catalyst-trading-mcp/scripts/health-check.sh >> /var/log/catalyst/health.log 2>&1", True),
    ("curl -X POST http://localhost:5006/api/v1/workflow/stop >> /var/log/catalyst/trading.log 2>&1", True),
    ("/root/catalyst-trading-mcp/scripts/backup.sh >> /var/log/catalyst/backup.log 2>&1", True),
    # scripts/catalyst.crontab
    ("/workspaces/catalyst-trading-system/catalyst-trading-system/scripts/cron-health-check.sh", True),
    ("/workspaces/catalyst-trading-system/catalyst-trading-system/scripts/cron-scan.sh", True),
    # scripts/production-manager.sh's own commands and its compose call
    ("/usr/local/bin/production-manager.sh health", True),
    ("docker-compose -f /root/catalyst-trading-mcp/docker-compose.yml restart", True),
    ("docker compose -f /opt/catalyst/docker-compose.yml --project-name catalyst down", True),
    ("docker restart catalyst-trading", True),
    ("curl -sf http://127.0.0.1:5000/health", True),
    ("curl -s http://droplet.example.com:5009/api/v1/reports/daily", True),
    # not the stack
    ("curl -s http://localhost:50060/x", False),
    ("curl -s http://localhost:8080/health", False),
    ("docker-compose ps", False),
    ("docker compose logs --tail 100", False),
    ("cd / && run-parts --report /etc/cron.hourly", False),
    ("/opt/catalyst-ops/venv/bin/catalyst-ops backup >> /var/log/catalyst/backup.log 2>&1", False),
])
def test_default_patterns(command, driving):
    compiled = foreigncron.compile_patterns(foreigncron.DEFAULT_PATTERNS)
    assert any(p.search(command) for p in compiled) == driving


def test_the_roles_default_patterns_are_the_commands(tmp_path):
    defaults = yaml.safe_load((REPO / "ansible" / "roles" / "catalyst_cron" / "defaults" / "main.yml").read_text())
    assert defaults["catalyst_cron_foreign_patterns"] == list(foreigncron.DEFAULT_PATTERNS)


# ---------------------------------------------------------------- system files (/etc/crontab, /etc/cron.d)

def test_report_only_finds_upstream_lines_and_changes_nothing(tmp_path):
    root = tree(tmp_path / "root", spool={"root": UPSTREAM}, cron_d={"upstream": CRON_D_UPSTREAM})
    before = snapshot(root)
    res, data = foreign(root)
    assert res.code == 1, res.text
    found = {(f["file"], f["line"]) for f in data["findings"]}
    # every job line of the upstream crontab that drives the stack; not the find/df lines, not comments
    want = driving_lines(UPSTREAM)
    assert {n for f, n in found if f == "/var/spool/cron/crontabs/root"} == want and len(want) == 10
    assert {n for f, n in found if f == "/etc/cron.d/upstream"} == {3, 4, 5}
    assert not any(f.startswith("/etc/cron.d/catalyst") or f == "/etc/crontab" for f, _ in found)
    assert data["changed"] == 0 and data["remaining"] == 13
    assert {s["file"] for s in data["skipped"]} == {"/etc/cron.d/catalyst", "/etc/cron.d/catalyst-validation"}
    assert snapshot(root) == before
    assert not (tmp_path / "backups").exists()


def test_disable_comments_out_with_a_dated_marker_and_a_backup(tmp_path):
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM})
    f = root / "etc" / "cron.d" / "upstream"
    os.chmod(f, 0o640)
    own_before = {p: (root / p).read_bytes() for p in ("etc/cron.d/catalyst", "etc/cron.d/catalyst-validation", "etc/crontab")}
    own_mtime = (root / "etc/cron.d/catalyst").stat().st_mtime_ns
    res, data = foreign(root, "--disable")
    assert res.code == 0, res.text
    assert data["changed"] == 3 and data["remaining"] == 0
    lines = f.read_text().splitlines()
    orig = CRON_D_UPSTREAM.splitlines()
    for n in (3, 4, 5):
        assert lines[n - 1] == MARK + orig[n - 1]
    assert [ln for i, ln in enumerate(lines, 1) if i not in (3, 4, 5)] == [ln for i, ln in enumerate(orig, 1) if i not in (3, 4, 5)]
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    # what cron reads now: the find line alone
    assert [j.command.split()[0] for j in cronfile.parse(f.read_text())] == ["find"]
    (edit,) = data["edits"]
    backup = Path(edit["backup"])
    assert backup.parent == tmp_path / "backups" and backup.name == "etc_cron.d_upstream.20260309T160000Z"
    assert backup.read_text() == CRON_D_UPSTREAM and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert {p: (root / p).read_bytes() for p in own_before} == own_before
    assert (root / "etc/cron.d/catalyst").stat().st_mtime_ns == own_mtime
    # no half-written temp file left where cron could see it
    assert sorted(p.name for p in (root / "etc" / "cron.d").iterdir()) == ["catalyst", "catalyst-validation", "upstream"]


def test_a_second_run_finds_nothing_new_and_changes_nothing(tmp_path):
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM})
    assert foreign(root, "--disable")[0].code == 0
    before = snapshot(root)
    backups = sorted((tmp_path / "backups").iterdir())
    res, data = foreign_at(root, "2026-04-01T12:00:00-04:00", "--disable")
    assert res.code == 0, res.text
    assert data["findings"] == [] and data["changed"] == 0 and data["edits"] == []
    assert snapshot(root) == before  # not re-dated, not doubled
    assert sorted((tmp_path / "backups").iterdir()) == backups
    assert (root / "etc/cron.d/upstream").read_text().count("disabled by catalyst-ops") == 3


def foreign_at(root: Path, now: str, *args: str):
    res = run_cli("--now", now, "config", "foreign-cron", "--json", "--cron-root", root,
                  "--backup-dir", root.parent / "backups", *args)
    return res, json.loads(res.out)


def test_dry_run_shows_what_it_would_do_and_writes_nothing(tmp_path):
    root = tree(tmp_path / "root", spool={"root": UPSTREAM}, cron_d={"upstream": CRON_D_UPSTREAM})
    before = snapshot(root)
    res, data = foreign(root, "--disable", "--dry-run")
    assert res.code == 1, res.text
    assert data["dry_run"] and data["changed"] == 13 and data["remaining"] == 13
    assert {f["action"] for f in data["findings"]} == {"would-disable"}
    assert {e["file"] for e in data["edits"]} == {"/etc/cron.d/upstream", "/var/spool/cron/crontabs/root"}
    assert all(e["backup"] is None for e in data["edits"])
    assert snapshot(root) == before
    assert not (tmp_path / "backups").exists()
    text = run_cli("--now", NOW, "config", "foreign-cron", "--cron-root", root, "--disable", "--dry-run")
    assert "/etc/cron.d/upstream:3: [would-disable] 0 17 * * 1-5 root cd /root/catalyst-trading-system && " \
           "docker-compose stop" in text.out
    assert "13 would comment out" in text.out


def test_a_file_cron_ignores_is_reported_and_left_alone(tmp_path):
    # upstream's file pasted as it is: the backslash continuations are syntax errors, so Debian's
    # cron ignores the whole file; commenting some lines out could bring the rest to life
    raw = """30 22 * * 1-5 root curl -X POST http://localhost:5006/api/v1/workflow/start \\
  -H "Content-Type: application/json" \\
  -d '{"mode": "autonomous"}' \\
  >> /var/log/catalyst/autonomous-trading.log 2>&1
0 * * * * root df -h >> /var/log/catalyst/disk-check.log 2>&1
"""
    root = tree(tmp_path / "root", cron_d={"pasted": raw})
    before = snapshot(root)
    res, data = foreign(root, "--disable")
    assert res.code == 0, res.text
    (f,) = data["findings"]
    assert (f["file"], f["line"], f["end_line"], f["live"], f["action"]) == ("/etc/cron.d/pasted", 1, 4, False, "left")
    assert "cron ignores this file (line 2: " in f["note"]
    assert data["ignored_by_cron"] == {"/etc/cron.d/pasted": f["note"].split("(", 1)[1].split("):")[0]}
    assert data["changed"] == 0 and snapshot(root) == before


def test_names_cron_does_not_read_are_skipped(tmp_path):
    root = tree(tmp_path / "root", cron_d={"upstream.dpkg-old": CRON_D_UPSTREAM},
                spool={"no-such-user-x9": UPSTREAM})
    res, data = foreign(root)
    assert res.code == 0 and data["findings"] == []
    reasons = {s["file"]: s["reason"] for s in data["skipped"]}
    assert "cron does not read" in reasons["/etc/cron.d/upstream.dpkg-old"]
    assert "ORPHAN" in reasons["/var/spool/cron/crontabs/no-such-user-x9"]


def test_own_files_given_by_the_role_are_never_read(tmp_path):
    root = tree(tmp_path / "root", cron_d={"catalyst-ops": OWN})
    res, data = foreign(root, "--own", "/etc/cron.d/catalyst-ops")
    # the default own files are scanned now (the role names its own): they match; catalyst-ops does not
    assert {f["file"] for f in data["findings"]} == {"/etc/cron.d/catalyst", "/etc/cron.d/catalyst-validation"}
    assert "/etc/cron.d/catalyst-ops" not in data["files"]


def test_patterns_can_be_extended_or_replaced(tmp_path):
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM})
    _, data = foreign(root, "--pattern", r"find /var/log/catalyst")
    assert {f["line"] for f in data["findings"]} == {3, 4, 5, 6}
    _, data = foreign(root, "--no-default-patterns", "--pattern", r"pg_dump")
    assert [f["line"] for f in data["findings"]] == [5]


def test_a_bad_pattern_is_a_usage_error_in_one_line(tmp_path):
    root = tree(tmp_path / "root")
    res = run_cli("config", "foreign-cron", "--cron-root", root, "--pattern", "docker(")
    assert res.code == 2 and res.err.count("\n") == 1 and "--pattern 'docker('" in res.err
    assert "Traceback" not in res.err


def test_user_crontabs_under_a_cron_root_are_never_edited(tmp_path):
    root = tree(tmp_path / "root", spool={"root": UPSTREAM}, cron_d={"upstream": CRON_D_UPSTREAM})
    before = snapshot(root)
    res, _ = foreign(root, "--disable")
    assert res.code == 2 and "crontab(1) writes only /var/spool/cron/crontabs" in res.err
    assert snapshot(root) == before  # refused before any file was edited


# ---------------------------------------------------------------- user crontabs with the real crontab(1)

def _namespace_ok() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("crontab"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_ns = pytest.mark.skipif(not _namespace_ok(), reason="needs root, unshare -m and crontab (Debian's cron package)")


def in_namespace(root: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run `command` with /etc/crontab, /etc/cron.d and the crontab spool bind-mounted from `root`
    in a private mount namespace: crontab(1) and catalyst-ops see only the test tree."""
    import shlex

    binds = [(root / "etc" / "crontab", "/etc/crontab"), (root / "etc" / "cron.d", "/etc/cron.d"),
             (root / "var" / "spool" / "cron" / "crontabs", "/var/spool/cron/crontabs")]
    script = " && ".join([f"mount --bind {shlex.quote(str(a))} {b}" for a, b in binds] + [shlex.join(command)])
    env = dict(os.environ)
    env.pop("CATALYST_OPS_CONFIG", None)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)


def spool_tree(tmp_path: Path, text: str, cron_d: dict[str, str] | None = None) -> Path:
    root = tree(tmp_path / "root", cron_d=cron_d)
    spool = root / "var" / "spool" / "cron" / "crontabs"
    shutil.chown(spool, group="crontab")
    os.chmod(spool, 0o1730)
    src = tmp_path / "install.txt"
    src.write_text(text)
    res = in_namespace(root, ["crontab", "-u", "root", str(src)])
    assert res.returncode == 0, res.stderr
    return root


@needs_ns
def test_root_crontab_edited_with_crontab_so_cron_notices(tmp_path):
    root = spool_tree(tmp_path, UPSTREAM, {"upstream": CRON_D_UPSTREAM})
    spool = root / "var" / "spool" / "cron" / "crontabs"
    original = (spool / "root").read_text()
    assert original.startswith("# DO NOT EDIT THIS FILE")
    os.utime(spool, ns=(0, 0))
    cli = [sys.executable, "-m", "catalyst_ops", "--now", NOW, "config", "foreign-cron", "--json", "--disable",
           "--backup-dir", str(tmp_path / "backups")]
    res = in_namespace(root, cli)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["changed"] == 13 and data["remaining"] == 0
    # crontab(1) installed it: the spool directory's mtime moved (cron's signal), owner/mode/header as cron wants
    assert spool.stat().st_mtime_ns > 0
    f = spool / "root"
    st = f.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0 and st.st_gid == spool.stat().st_gid
    text = f.read_text()
    assert text.startswith("# DO NOT EDIT THIS FILE") and text.count("# DO NOT EDIT THIS FILE") == 1
    listed = in_namespace(root, ["crontab", "-u", "root", "-l"]).stdout
    want = driving_lines(UPSTREAM)
    assert listed.splitlines() == [MARK + ln if n in want else ln for n, ln in enumerate(UPSTREAM.splitlines(), 1)]
    # what cron runs for root now: the two find lines and the disk check, nothing else
    jobs = cronfile.parse(listed, user_field=False, user="root")
    assert [j.command.split()[0] for j in jobs] == ["find", "find", "df"]
    backups = {p.name.split(".2026")[0]: p.read_text() for p in (tmp_path / "backups").iterdir()}
    assert backups["var_spool_cron_crontabs_root"] == original
    assert backups["etc_cron.d_upstream"] == CRON_D_UPSTREAM

    # the second run: nothing found, nothing reinstalled (same bytes, same header timestamp)
    before = snapshot(root)
    res = in_namespace(root, cli)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["changed"] == 0
    assert snapshot(root) == before
    assert listed.count("disabled by catalyst-ops") == 10


@needs_ns
def test_a_user_crontab_cron_ignores_is_left_alone(tmp_path):
    root = spool_tree(tmp_path, "0 21 * * 1-5 docker-compose up -d\n")
    f = root / "var" / "spool" / "cron" / "crontabs" / "root"
    # a hand-written line cron cannot parse: cron ignores the whole crontab (and crontab(1) would
    # refuse it), so it runs nothing and is left as it is
    f.write_text(f.read_text() + "61 * * * * docker-compose stop\n")
    before = snapshot(root)
    res = in_namespace(root, [sys.executable, "-m", "catalyst_ops", "config", "foreign-cron", "--json", "--disable",
                              "--backup-dir", str(tmp_path / "backups")])
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [(x["line"], x["live"], x["action"]) for x in data["findings"]] == [(4, False, "left")]
    assert data["ignored_by_cron"] == {"/var/spool/cron/crontabs/root": "line 5: minute: 61 is outside 0-59"}
    assert snapshot(root) == before


# What Debian's crontab(1) accepts, next to cronfile's reading of the same user crontab: the scan
# must call a file ignored exactly when cron would ignore it.
USER_CASES = {
    "0 9 * * 1-5 true\n": True,
    "@daily true\n": True,
    "*/15 9-16 * * 1-5 curl -s http://localhost:5004/health\n": True,
    "0,30 0-4 * * 2-6 true\n": True,
    "0 9 * jan-mar mon-fri true\n": True,
    "FOO=bar\n0 1 * * * date +\\%F\n": True,
    "0 9 * * 1-5 root true\n": True,  # "root" is the command here
    "MAILTO=\n0 9 * * * true\n": False,
    "61 * * * * true\n": False,
    "0 9 * * *\n": True,  # no command, yet crontab(1) installs it: cron does not ignore the file for it
    "@daily\n": True,
    "0 9 * *\n": False,
    "-*/5 * * * * true\n": False,
    '  -H "Content-Type: application/json" \\\n': False,
    "@fortnightly true\n": False,
}


@needs_ns
def test_the_user_crontab_reading_agrees_with_debian_crontab(tmp_path):
    root = tree(tmp_path / "root")
    for n, (text, valid) in enumerate(USER_CASES.items()):
        src = tmp_path / f"case{n}"
        src.write_text(text)
        said = in_namespace(root, ["crontab", "-u", "root", str(src)]).returncode == 0
        ours = not any(ln.kind == "error" for ln in cronfile.lines(text, user_field=False))
        assert said == valid, f"crontab(1) on {text!r}"
        assert ours == valid, f"cronfile on {text!r}"


# ---------------------------------------------------------------- the cron role's task file

ANSIBLE_BIN = Path(sys.executable).parent / "ansible-playbook"


@pytest.mark.skipif(not ANSIBLE_BIN.exists(), reason="ansible-core not installed")
def test_the_cron_role_reports_check_mode_changes_nothing_and_a_rerun_is_unchanged(tmp_path):
    """ansible/roles/catalyst_cron/tasks/foreign.yml run for real on localhost, with catalyst_ops_bin
    a wrapper that points this checkout's catalyst-ops at a test tree (--cron-root)."""
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM, "mine": "0 4 * * * root /usr/local/bin/restart-stack\n"})
    wrapper = tmp_path / "catalyst-ops"
    wrapper.write_text(f'#!/bin/sh\nexec {Path(sys.executable).parent}/catalyst-ops --now {NOW} "$@" --cron-root {root}\n')
    wrapper.chmod(0o755)
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable, "catalyst_ops_bin": str(wrapper), "catalyst_cron_foreign_backup_dir": str(tmp_path / "backups"),
                 "catalyst_cron_foreign_extra_patterns": [r"\brestart-stack\b"]},
        "tasks": [{"ansible.builtin.include_role": {"name": "catalyst_cron", "tasks_from": "foreign"}}]}]))

    def run(*args):
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
                   PATH=f"{ANSIBLE_BIN.parent}:{os.environ.get('PATH', '')}")
        p = subprocess.run([str(ANSIBLE_BIN), "-i", "localhost,", str(play), *args], capture_output=True, text=True,
                           env=env, timeout=180, cwd=tmp_path)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        import re

        return int(re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", p.stdout).group(1)), p.stdout

    before = snapshot(root)
    changed, out = run("--check")
    assert changed == 1, out
    assert "/etc/cron.d/upstream:3: [would-disable] 0 17 * * 1-5 root cd /root/catalyst-trading-system" in out
    assert "/etc/cron.d/mine:1: [would-disable]" in out  # the operator's extra pattern
    assert snapshot(root) == before and not (tmp_path / "backups").exists()

    changed, out = run()
    assert changed == 1, out
    assert "/etc/cron.d/upstream:4: [disabled] */15 9-16 * * 1-5 root curl -s http://localhost:5004/health" in out
    assert "/etc/cron.d/upstream: backup " + str(tmp_path / "backups") in out
    assert (root / "etc/cron.d/mine").read_text() == MARK + "0 4 * * * root /usr/local/bin/restart-stack\n"
    assert (root / "etc/cron.d/catalyst").read_text() == OWN

    after = snapshot(root)
    for args in (("--check",), ()):
        changed, out = run(*args)
        assert changed == 0, out
    assert snapshot(root) == after


# ---------------------------------------------------------------- catalyst-ops schedule warns too

@pytest.fixture
def cfg(tmp_path) -> Path:
    p = tmp_path / "ops.yml"
    p.write_text(f"state_path: {tmp_path / 'state.db'}\nlog_dir: {tmp_path / 'log'}\n")
    return p


def schedule(cfg, root, *args):
    res = run_cli("--now", "2026-03-07T12:00:00-05:00", "schedule", "--json", "--host-tz", "America/New_York",
                  "--cron-root", root, *args, config=cfg)
    return res, json.loads(res.out) if res.out.strip() else None


def test_schedule_warns_about_upstreams_root_crontab(cfg, tmp_path):
    root = tree(tmp_path / "root", spool={"root": UPSTREAM})
    res, data = schedule(cfg, root)
    assert res.code == 1, res.text
    warned = [w for w in data["warnings"] if "outside catalyst-ops' files drives the stack" in w]
    assert len(warned) == 10 and len(data["foreign_cron"]) == 10
    n = next(i for i, ln in enumerate(UPSTREAM.splitlines(), 1) if ln.startswith("30 22 "))
    assert any(w.startswith(f"/var/spool/cron/crontabs/root:{n}: a cron line outside catalyst-ops' files drives the "
                            "stack: 30 22 * * 1-5 curl -X POST http://localhost:5006/api/v1/workflow/start") for w in warned)
    assert all("catalyst-ops config foreign-cron --disable" in w for w in warned)
    # our own files call the stack too (OWN): never warned about
    assert not any("/etc/cron.d/catalyst" in w for w in data["warnings"])
    text = run_cli("--now", "2026-03-07T12:00:00-05:00", "schedule", "--host-tz", "America/New_York", "--cron-root",
                   root, config=cfg)
    assert text.code == 1 and f"catalyst-ops schedule: warning: /var/spool/cron/crontabs/root:{n}: " in text.err


def test_schedule_is_quiet_once_the_lines_are_disabled(cfg, tmp_path):
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM})
    assert schedule(cfg, root)[0].code == 1
    assert foreign(root, "--disable")[0].code == 0
    res, data = schedule(cfg, root)
    assert res.code == 0, res.text
    assert data["warnings"] == [] and data["foreign_cron"] == []


def test_schedule_notes_a_dormant_line_without_failing(cfg, tmp_path):
    root = tree(tmp_path / "root", cron_d={"pasted": "30 22 * * 1-5 root curl -X POST http://localhost:5006/api/v1/workflow/start \\\n"
                                                     "  -d '{\"mode\": \"autonomous\"}'\n"})
    res, data = schedule(cfg, root)
    assert res.code == 0, res.text
    (note,) = data["notes"]
    assert note.startswith("/etc/cron.d/pasted:1: drives the stack but cron ignores this file (line 2: ")
    assert data["warnings"] == []


def test_schedule_with_a_missing_cron_root_is_a_usage_error(cfg, tmp_path):
    res, _ = schedule(cfg, tmp_path / "nope")
    assert res.code == 2 and "--cron-root" in res.err and "Traceback" not in res.err


def test_a_symlinked_cron_d_file_is_edited_where_it_points(tmp_path):
    root = tree(tmp_path / "root")
    target = tmp_path / "elsewhere" / "upstream.cron"
    target.parent.mkdir()
    target.write_text(CRON_D_UPSTREAM)
    (root / "etc" / "cron.d" / "upstream").symlink_to(target)
    res, data = foreign(root, "--disable")
    assert res.code == 0 and data["changed"] == 3, res.text
    assert (root / "etc" / "cron.d" / "upstream").is_symlink()
    assert target.read_text().count(MARK) == 3


def test_a_file_without_its_final_newline_is_ignored_by_cron_and_left(tmp_path):
    # Debian 12's cron on the droplet: "Missing newline before EOF, this crontab file will be ignored"
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM.rstrip("\n")})
    before = snapshot(root)
    res, data = foreign(root, "--disable")
    assert res.code == 0, res.text
    assert {f["action"] for f in data["findings"]} == {"left"} and len(data["findings"]) == 3
    assert data["ignored_by_cron"] == {"/etc/cron.d/upstream": "line 7: no newline at the end"}
    assert snapshot(root) == before


def test_a_file_edited_between_scan_and_write_is_not_overwritten(tmp_path):
    root = tree(tmp_path / "root", cron_d={"upstream": CRON_D_UPSTREAM})
    f = root / "etc" / "cron.d" / "upstream"
    result = foreigncron.scan(str(root))
    f.write_text(CRON_D_UPSTREAM + "0 5 * * * root echo operator\n")  # the operator's edit, after the scan
    with pytest.raises(foreigncron.CannotRun, match="changed while catalyst-ops was reading it"):
        foreigncron.disable(result, str(tmp_path / "backups"), datetime.now(timezone.utc), False, str(root))
    assert f.read_text().endswith("echo operator\n") and MARK not in f.read_text()
