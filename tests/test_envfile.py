"""The .env parser and writer: dotenv semantics, and untouched lines kept byte for byte."""

from __future__ import annotations

import os
import stat

import pytest

from catalyst_ops import envfile
from catalyst_ops.errors import ConfigError

SAMPLE = """# Catalyst stack
DATABASE_URL="postgresql://catalyst:p#ss w0rd@db.example.com:25060/catalyst?sslmode=require"
export ALPACA_API_KEY=PKTEST123   # paper key
ALPACA_SECRET_KEY='s3cr3t $HOME `id`'
TRADING_MODE=paper

UNRELATED=keep me
MULTI="line1\\nline2"
EMPTY=
"""


def test_parse_quotes_comments_export(tmp_path):
    p = tmp_path / ".env"
    p.write_text(SAMPLE)
    env = envfile.load(p)
    assert env["DATABASE_URL"] == "postgresql://catalyst:p#ss w0rd@db.example.com:25060/catalyst?sslmode=require"
    assert env["ALPACA_API_KEY"] == "PKTEST123"
    assert env["ALPACA_SECRET_KEY"] == "s3cr3t $HOME `id`"  # literal: never expanded or executed
    assert env["MULTI"] == "line1\nline2"
    assert env["EMPTY"] == "" and env["UNRELATED"] == "keep me"


def test_update_keeps_other_lines_byte_for_byte(tmp_path):
    p = tmp_path / ".env"
    p.write_text(SAMPLE)
    os.chmod(p, 0o644)
    backup = envfile.update(p, {"TRADING_MODE": "live", "NEW_KEY": "a b"}, backup_suffix=".bak")
    new = p.read_text()
    old_lines = SAMPLE.splitlines()
    new_lines = new.splitlines()
    assert new_lines[:4] == old_lines[:4] and new_lines[5:9] == old_lines[5:9]
    assert new_lines[4] == "TRADING_MODE=live"
    assert new_lines[9] == 'NEW_KEY="a b"'
    assert backup.read_text() == SAMPLE
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert envfile.load(p)["NEW_KEY"] == "a b"


@pytest.mark.parametrize("line, expect", [
    ("NOEQUALS", "malformed line"),
    ("KEY='unterminated", "unterminated"),
    ('KEY="x" trailing', "after the closing quote"),
    ("1BAD=x", "malformed line"),
])
def test_malformed_lines(tmp_path, line, expect):
    p = tmp_path / ".env"
    p.write_text(f"OK=1\n{line}\n")
    with pytest.raises(ConfigError) as exc:
        envfile.load(p)
    assert f"{p}:2" in str(exc.value) and expect in str(exc.value)


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / ".env"
    p.write_text("A=1\n")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        envfile.atomic_write(p, "A=2\n")
    assert p.read_text() == "A=1\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == [".env"]


SECRET = "Zq7xK9pLm2vW-hX4tRb"


def _fragments(secret: str, n: int = 4) -> set[str]:
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


@pytest.mark.parametrize("line, key", [
    (f"SMTP_PASSWORD {SECRET}", "SMTP_PASSWORD"),  # the = forgotten
    (f"SMTP_PASSWORD: {SECRET}", "SMTP_PASSWORD"),  # YAML's spelling
    (f'SMTP_PASSWORD="{SECRET[:6]}" {SECRET[6:]}', "SMTP_PASSWORD"),  # text after the closing quote
    (f"SMTP_PASSWORD='{SECRET}", "SMTP_PASSWORD"),  # unterminated quote
    (f"{SECRET}", None),  # a value on a line of its own (a broken multi-line value)
    (f"export SMTP_PASSWORD {SECRET} x", "SMTP_PASSWORD"),
    (f"1SMTP_PASSWORD={SECRET}", None),  # a key that is not one
])
def test_malformed_line_names_file_line_and_key_never_the_value(tmp_path, line, key):
    """Every command loads the .env and its errors land in cron logs: file, line number and key,
    no fragment of the value."""
    from tests.conftest import run_cli

    env = tmp_path / ".env"
    env.write_text(f"# comment\nTRADING_MODE=paper\n{line}\n")
    with pytest.raises(ConfigError) as exc:
        envfile.load(env)
    assert str(exc.value).startswith(f"{env}:3: ")
    if key:
        assert str(exc.value).startswith(f"{env}:3: {key}: ")
    assert not {f for f in _fragments(SECRET) if f in str(exc.value)}, str(exc.value)
    cfg = tmp_path / "ops.yml"
    cfg.write_text(f"env_file: {env}\nalerts: {{enabled: false}}\n")
    for args in (["config", "check-env", str(env)], ["alert", "test"]):
        res = run_cli(*args, config=cfg)
        assert res.code == 2 and f"{env}:3" in res.err, res.text
        assert "Traceback" not in res.text
        leaked = {f for f in _fragments(SECRET) if f in res.out + res.err}
        assert not leaked, (leaked, res.text)


def test_env_backups_are_unique_and_pruned(tmp_path):
    """Edits in the same second each keep their own backup (none overwritten), and only the newest
    retention.env_backups are kept."""
    from catalyst_ops import config, stackenv

    env = tmp_path / ".env"
    env.write_text("TRADING_MODE=paper\nMAX_POSITIONS=0\n")
    cfg_file = tmp_path / "ops.yml"
    cfg_file.write_text(f"env_file: {env}\nstate_path: {tmp_path / 'state.db'}\nretention: {{env_backups: 3}}\n")
    cfg = config.load(str(cfg_file))
    for n in range(1, 6):  # five edits well inside one second
        ch, saved = stackenv.write(cfg, {"MAX_POSITIONS": str(n)})
        assert ch and saved.exists()
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    kept = stackenv.backups_of(env)
    assert len(kept) == 3 and len(list(tmp_path.glob(".env.bak-*"))) == 3
    # each backup is the state before its edit: 2, 3, 4 (0 and 1 pruned), none overwritten by another
    assert [envfile.load(p)["MAX_POSITIONS"] for p in kept] == ["2", "3", "4"]
    assert envfile.load(env)["MAX_POSITIONS"] == "5"


def test_env_backups_default_keeps_ten(tmp_path):
    from catalyst_ops import config, stackenv

    env = tmp_path / ".env"
    env.write_text("MAX_POSITIONS=0\n")
    cfg_file = tmp_path / "ops.yml"
    cfg_file.write_text(f"env_file: {env}\nstate_path: {tmp_path / 'state.db'}\n")
    cfg = config.load(str(cfg_file))
    assert cfg.retention.env_backups == 10
    for n in range(1, 13):
        stackenv.write(cfg, {"MAX_POSITIONS": str(n)})
    assert [envfile.load(p)["MAX_POSITIONS"] for p in stackenv.backups_of(env)] == [str(n) for n in range(2, 12)]
