"""Backups against a real PostgreSQL cluster started by the test session (tests/pgcluster.py)."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest

from catalyst_ops import backup as backup_mod
from catalyst_ops.sandbox import pgfixture
from conftest import run_cli
from pgcluster import APP_PASSWORD

pytestmark = pytest.mark.postgres


def _fill(pgdb, trades: int = 400) -> None:
    conn = psycopg2.connect(pgdb.url)
    try:
        pgfixture.generate(conn, trades)
    finally:
        conn.close()


def _snapshot(pgdb, dbname=None) -> tuple[dict, dict]:
    conn = pgdb.connect(dbname)
    try:
        return backup_mod.count_rows(conn), backup_mod.table_checksums(conn)
    finally:
        conn.close()


def _dumps(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.endswith(".dump")) if d.exists() else []


def _no_secret(*texts: str) -> None:
    for t in texts:
        assert APP_PASSWORD not in (t or "")
        assert quote(APP_PASSWORD, safe="") not in (t or "")


def test_backup_verify_restore_then_restore_gives_identical_tables(pgdb):
    _fill(pgdb)
    res = run_cli("backup", "--verify-restore", "--json", config=pgdb.config)
    assert res.code == 0, res.text
    out = json.loads(res.out)
    dump = Path(out["file"])
    assert out["verified"] == "restore" and out["tables"] == 11 and out["rows"] > 800
    # complete file, private, checksum in the sidecar and the state DB, nothing partial left
    assert sorted(p.name for p in pgdb.backup_dir.iterdir()) == sorted([dump.name, dump.name + ".sha256"])
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert stat.S_IMODE((pgdb.backup_dir / (dump.name + ".sha256")).stat().st_mode) == 0o600
    digest = hashlib.sha256(dump.read_bytes()).hexdigest()
    assert (pgdb.backup_dir / (dump.name + ".sha256")).read_text() == f"{digest}  {dump.name}\n"
    assert dump.read_bytes()[:5] == b"PGDMP"  # custom format
    row = pgdb.state().execute("SELECT status, verified, sha256, size_bytes FROM backups").fetchone()
    assert tuple(row) == ("ok", "restore", digest, dump.stat().st_size)
    # the scratch database of verify-restore is gone
    assert pgdb.sql("SELECT datname FROM pg_database WHERE datname LIKE 'catalyst_verify_%'") == []

    res = run_cli("backup", "restore", str(dump), "--target-db", f"{pgdb.name}_copy", "--json", config=pgdb.config)
    assert res.code == 0, res.text
    restored = json.loads(res.out)
    assert restored["checksum"] == "verified"
    try:
        src_counts, src_sums = _snapshot(pgdb)
        dst_counts, dst_sums = _snapshot(pgdb, f"{pgdb.name}_copy")
        assert dst_counts == src_counts == restored["row_counts"]
        assert dst_sums == src_sums
        assert src_counts["public.positions"] == 400
    finally:
        pgdb.cluster.drop_db(f"{pgdb.name}_copy")

    listed = json.loads(run_cli("backup", "list", "--json", config=pgdb.config).out)["backups"]
    assert [(b["file"], b["status"], b["verified"], b["exists"]) for b in listed] == [(str(dump), "ok", "restore", True)]


def test_restore_refuses_live_and_nonempty_targets_without_force(pgdb):
    _fill(pgdb, 50)
    assert run_cli("backup", config=pgdb.config).code == 0
    dump = _dumps(pgdb.backup_dir)[0]
    before = _snapshot(pgdb)

    res = run_cli("backup", "restore", dump.name, "--target-db", pgdb.name, config=pgdb.config)
    assert res.code == 2 and "live database" in res.err and "--force" in res.err

    pgdb.cluster.create_db(f"{pgdb.name}_busy", owner="catalyst")
    try:
        pgdb.sql("CREATE TABLE keep_me(id int)", dbname=f"{pgdb.name}_busy")
        res = run_cli("backup", "restore", dump.name, "--target-db", f"{pgdb.name}_busy", config=pgdb.config)
        assert res.code == 2 and "exists and has 1 tables" in res.err
    finally:
        pgdb.cluster.drop_db(f"{pgdb.name}_busy")

    # the operator damages the live data, then restores over it with --force
    pgdb.sql("DELETE FROM orders; DELETE FROM positions WHERE position_id > 10")
    assert _snapshot(pgdb) != before
    res = run_cli("backup", "restore", dump.name, "--target-db", pgdb.name, "--force", config=pgdb.config)
    assert res.code == 0, res.text
    assert _snapshot(pgdb) == before
    event = pgdb.state().execute("SELECT kind, detail FROM events WHERE kind='backup_restore'").fetchone()
    assert json.loads(event["detail"])["replaced_existing"] is True


def test_restore_refuses_a_damaged_file(pgdb):
    assert run_cli("backup", config=pgdb.config).code == 0
    dump = _dumps(pgdb.backup_dir)[0]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    res = run_cli("backup", "restore", str(dump), "--target-db", f"{pgdb.name}_bad", config=pgdb.config)
    assert res.code == 1 and "does not match" in res.err
    assert pgdb.sql("SELECT 1 FROM pg_database WHERE datname=%s", (f"{pgdb.name}_bad",)) == []


def _recording_bin_dir(tmp: Path, real_dir: str, logdir: Path, fail_after: bool = False) -> Path:
    """pg_dump/pg_restore wrappers that record the argv and environment they are executed with."""
    bindir = tmp / "pgbin"
    bindir.mkdir()
    logdir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        tail = ('echo "pg_dump: error: could not write to output file: No space left on device" >&2; exit 1'
                if fail_after and tool == "pg_dump" else "exit $?")
        script = f"""#!/bin/sh
log="{logdir}/{tool}.$$"
printf '%s\\n' "$0" "$@" > "$log.argv"
env > "$log.env"
if [ -n "$PGPASSFILE" ]; then echo "$PGPASSFILE" > "$log.passfile"; stat -c %a "$PGPASSFILE" > "$log.mode"; fi
"{real_dir}/{tool}" "$@"
{tail}
"""
        (bindir / tool).write_text(script)
        (bindir / tool).chmod(0o755)
    return bindir


def test_password_never_in_argv_env_logs_or_state(pgdb, tmp_path):
    _fill(pgdb, 30)
    logdir = tmp_path / "exec-log"
    bindir = _recording_bin_dir(tmp_path, pgdb.cluster.bin_dir, logdir)
    pgdb.config.write_text(pgdb.config.read_text().replace("  timeout: 120\n", f"  timeout: 120\n  pg_bin_dir: {bindir}\n"))
    res = run_cli("-v", "backup", "--verify-restore", config=pgdb.config)
    assert res.code == 0, res.text
    argvs = sorted(logdir.glob("*.argv"))
    # `pg_dump --version` (checked against the server's version first) passes nothing else
    versions = [p for p in argvs if p.read_text().splitlines()[1:] == ["--version"]]
    assert len(versions) == 1 and versions[0].name.startswith("pg_dump")
    argvs = [p for p in argvs if p not in versions]
    tools = {p.name.split(".")[0] for p in argvs}
    assert tools == {"pg_dump", "pg_restore"}  # pg_dump, pg_restore --list, pg_restore into the scratch DB
    assert len(argvs) == 3
    for p in argvs:
        argv = p.read_text()
        _no_secret(argv)
        assert "password=" not in argv.lower()  # no conninfo password key either
    dump_argv = next(p for p in argvs if p.name.startswith("pg_dump")).read_text().splitlines()
    assert "--format=custom" in dump_argv and any(a.startswith("--snapshot=") for a in dump_argv)
    assert any("host=127.0.0.1" in a and f"port={pgdb.cluster.port}" in a and "sslmode=disable" in a for a in dump_argv)
    for p in logdir.glob("*.env"):
        env = p.read_text()
        _no_secret(env)
        assert "PGPASSWORD=" not in env
    # the password went through a private passfile that no longer exists
    passfiles = [Path(p.read_text().strip()) for p in logdir.glob("pg_dump*.passfile")]
    assert passfiles and all(not f.exists() for f in passfiles)
    assert {p.read_text().strip() for p in logdir.glob("pg_dump*.mode")} == {"600"}
    # nor in what the run printed, logged or recorded
    _no_secret(res.out, res.err)
    st = pgdb.state()
    for row in st.execute("SELECT summary, output_tail FROM job_runs"):
        _no_secret(row["summary"], row["output_tail"])
    for row in st.execute("SELECT detail FROM backups"):
        _no_secret(row["detail"])


def test_server_stopped_fails_cleanly_records_and_alerts(pgdb):
    pgdb.backup_dir.mkdir()
    old = pgdb.backup_dir / "catalyst-20200101T230000Z.dump"
    old.write_bytes(b"PGDMP old")  # a failed run must not trigger retention
    pgdb.cluster.stop()
    try:
        res = run_cli("backup", config=pgdb.config)
    finally:
        pgdb.cluster.start()
    assert res.code == 3, res.text
    assert "cannot connect" in res.err and len(res.err.strip().splitlines()) <= 2
    assert "Traceback" not in res.err
    _no_secret(res.out, res.err)
    assert [p.name for p in pgdb.backup_dir.iterdir()] == [old.name]
    st = pgdb.state()
    assert tuple(st.execute("SELECT status, verified FROM backups").fetchone()) == ("failed", "none")
    alert = st.execute("SELECT severity, subject_key, status, body FROM alerts").fetchone()
    assert (alert["severity"], alert["subject_key"], alert["status"]) == ("critical", "backup", "pending")
    assert "could not be reached" in alert["body"]
    assert tuple(st.execute("SELECT job, exit_code, status FROM job_runs").fetchone()) == ("backup", 3, "failed")


def test_dump_that_fails_midway_leaves_no_partial_file(pgdb, tmp_path):
    _fill(pgdb, 200)
    bindir = _recording_bin_dir(tmp_path, pgdb.cluster.bin_dir, tmp_path / "exec-log", fail_after=True)
    text = pgdb.config.read_text().replace("  timeout: 120\n", f"  timeout: 120\n  pg_bin_dir: {bindir}\n")
    pgdb.config.write_text(text)
    res = run_cli("backup", config=pgdb.config)
    assert res.code == 1, res.text
    assert "No space left on device" in res.err
    assert list(pgdb.backup_dir.iterdir()) == []
    st = pgdb.state()
    assert st.execute("SELECT status FROM backups").fetchone()[0] == "failed"
    assert st.execute("SELECT severity FROM alerts").fetchone()[0] == "critical"


def _versioned_pg_dump(tmp: Path, real_dir: str, version: str) -> tuple[Path, Path]:
    """A pg_dump that reports `version` for --version and is the real one otherwise (only one PostgreSQL
    is installed here), beside the real pg_restore; and the file its real runs are logged to."""
    bindir = tmp / f"pgbin-{version}"
    bindir.mkdir()
    calls = tmp / f"calls-{version}"
    (bindir / "pg_dump").write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) {version} (Debian {version}-1.pgdg120+1)"; exit 0; fi
echo run >> "{calls}"
exec "{real_dir}/pg_dump" "$@"
""")
    (bindir / "pg_dump").chmod(0o755)
    (bindir / "pg_restore").symlink_to(Path(real_dir) / "pg_restore")
    return bindir, calls


def test_pg_dump_older_than_the_server_is_refused_before_the_backup(pgdb, tmp_path):
    _fill(pgdb, 10)
    server = int(pgdb.sql("SHOW server_version_num")[0][0]) // 10000
    old_bin, calls = _versioned_pg_dump(tmp_path, pgdb.cluster.bin_dir, f"{server - 1}.9")
    pgdb.config.write_text(pgdb.config.read_text().replace("  timeout: 120\n", f"  timeout: 120\n  pg_bin_dir: {old_bin}\n"))
    res = run_cli("backup", config=pgdb.config)
    assert res.code == 2, res.text
    [line] = [ln for ln in res.err.splitlines() if ln.strip()]
    assert f"is PostgreSQL {server - 1}.9, older than the server's {server}" in line and "backup.pg_bin_dir" in line
    assert "Traceback" not in res.err
    assert not calls.exists()  # pg_dump never ran
    assert not pgdb.backup_dir.exists() or list(pgdb.backup_dir.iterdir()) == []
    st = pgdb.state()
    assert st.execute("SELECT status FROM backups").fetchone()[0] == "failed"
    assert tuple(st.execute("SELECT severity, subject_key FROM alerts").fetchone()) == ("critical", "backup")
    # the same major, or a newer client, dumps as before
    for version in (f"{server}.1", f"{server + 2}.0"):
        new_bin, calls = _versioned_pg_dump(tmp_path, pgdb.cluster.bin_dir, version)
        text = pgdb.config.read_text().replace(f"pg_bin_dir: {old_bin}", f"pg_bin_dir: {new_bin}")
        pgdb.config.write_text(text)
        old_bin = new_bin
        res = run_cli("backup", config=pgdb.config)
        assert res.code == 0, res.text
        assert calls.read_text() == "run\n"


@pytest.mark.parametrize("num, server", [(150004, (15,)), (170002, (17,)), (90624, (9, 6)), (100023, (10,))])
def test_server_major_from_version_num(num, server):
    assert backup_mod.server_major(num) == server
    assert backup_mod.major((9, 6, 24)) == (9, 6) and backup_mod.major((16, 2)) == (16,)


def test_retention_by_age_and_count(pgdb):
    pgdb.config.write_text(pgdb.config.read_text().replace("  timeout: 120\n", "  timeout: 120\n  retention_days: 3\n  keep_min: 4\n"))
    pgdb.backup_dir.mkdir()
    (pgdb.backup_dir / "notes.txt").write_text("operator notes")
    (pgdb.backup_dir / "catalyst-manual.dump").write_text("not ours by name")
    days = [40, 10, 5, 2, 1, 0]
    files = {}
    for d in days:
        now = f"2026-03-{31 - d:02d}T23:00:00+00:00" if d < 31 else "2026-02-19T23:00:00+00:00"
        res = run_cli("--now", now, "backup", "--json", config=pgdb.config)
        assert res.code == 0, res.text
        files[d] = Path(json.loads(res.out)["file"])
    names = sorted(p.name for p in pgdb.backup_dir.iterdir())
    kept = [files[d] for d in (5, 2, 1, 0)]
    expected = sorted([p.name for p in kept] + [p.name + ".sha256" for p in kept] + ["notes.txt", "catalyst-manual.dump"])
    assert names == expected  # 40 and 10 days old removed; 5 days old kept because keep_min is 4
    st = pgdb.state()
    status = {r["path"]: r["status"] for r in st.execute("SELECT path, status FROM backups")}
    assert status == {**{str(files[d]): "pruned" for d in (40, 10)}, **{str(p): "ok" for p in kept}}


def test_dry_run_changes_nothing_and_shows_no_password(pgdb):
    res = run_cli("backup", "--dry-run", config=pgdb.config)
    assert res.code == 0, res.text
    assert "would dump" in res.out and "--format=custom" in res.out
    _no_secret(res.out, res.err)
    assert not pgdb.backup_dir.exists()
    st = pgdb.state()
    assert st.execute("SELECT count(*) FROM backups").fetchone()[0] == 0
    assert st.execute("SELECT count(*) FROM job_runs").fetchone()[0] == 0


def test_sslmode_require_is_passed_through(pg, tmp_path):
    if not pg.ssl:
        pytest.skip("openssl not available: the cluster runs without SSL")
    from pgcluster import PgDB

    pg.create_role("sslonly", "ssl-only-pw-7781")
    pg.create_db("catalyst_ssl", owner="sslonly")
    try:
        d = PgDB(pg, "catalyst_ssl", tmp_path, pg.url("catalyst_ssl", "sslonly", "ssl-only-pw-7781", sslmode="require"))
        conn = psycopg2.connect(d.url)
        pgfixture.load_schema(conn)
        pgfixture.generate(conn, 20)
        conn.close()
        d.write_config()
        res = run_cli("backup", "--verify-restore", config=d.config)
        assert res.code == 0, res.text
        check = run_cli("db", "check", "--json", config=d.config)
        assert check.code == 0, check.text
        conn_check = json.loads(check.out)["checks"][0]
        assert conn_check["status"] == "ok" and "ssl on" in conn_check["detail"]
        # the same role without SSL is refused by the server: proof that sslmode reached pg_dump
        d.write_config(url=pg.url("catalyst_ssl", "sslonly", "ssl-only-pw-7781", sslmode="disable"))
        res = run_cli("backup", config=d.config)
        assert res.code == 3 and "no encryption" in res.err
        assert len(_dumps(d.backup_dir)) == 1
    finally:
        pg.drop_db("catalyst_ssl")


def test_configuration_errors_are_one_line_exit_2(pgdb, tmp_path):
    pgdb.env_file.write_text("TRADING_MODE=paper\n")
    res = run_cli("backup", config=pgdb.config)
    assert res.code == 2 and "DATABASE_URL" in res.err and str(pgdb.env_file) in res.err
    pgdb.env_file.write_text("DATABASE_URL=mysql://u:Very-Secret-99@h/db\n")
    res = run_cli("backup", config=pgdb.config)
    assert res.code == 2 and "postgresql://" in res.err and "Very-Secret-99" not in res.text
    pgdb.write_config()
    pgdb.config.write_text(pgdb.config.read_text().replace("  timeout: 120\n", f"  timeout: 120\n  pg_bin_dir: {tmp_path}/nope\n"))
    res = run_cli("backup", config=pgdb.config)
    assert res.code == 2 and "backup.pg_bin_dir" in res.err
    assert "Traceback" not in res.err
    res = run_cli("backup", "restore", "no-such.dump", "--target-db", "x", config=pgdb.config)
    assert res.code == 2 and "no such backup file" in res.err


def test_a_server_that_dies_mid_dump_is_unreachable_not_a_bad_dump():
    """What pg_dump prints when PostgreSQL is killed while it copies a table (the fire drill's
    SIGKILL row, over SSL and without): exit 3 (could not run), as for a server that is down."""
    from catalyst_ops.backup import _is_unreachable

    for stderr in (
        'pg_dump: error: Dumping the contents of table "drill_ballast" failed: PQgetCopyData() failed.\n'
        "pg_dump: detail: Error message from server: SSL SYSCALL error: EOF detected\n",
        "pg_dump: error: Dumping the contents of table \"t\" failed: PQgetCopyData() failed.\n"
        "pg_dump: detail: Error message from server: server closed the connection unexpectedly\n",
        "pg_dump: error: query failed: SSL connection has been closed unexpectedly\n",
        "pg_dump: error: connection to server was lost\n",
    ):
        assert _is_unreachable(stderr), stderr
    assert not _is_unreachable("pg_dump: error: could not write to output file: No space left on device\n")
    assert not _is_unreachable('pg_dump: error: permission denied for table "secrets"\n')
