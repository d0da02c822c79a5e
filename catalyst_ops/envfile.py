"""The stack's `.env`: parsed as dotenv text, never sourced or evaluated.

Rules (those of docker compose's env files, which the stack uses):
- blank lines and lines starting with `#` are ignored;
- `KEY=value`, optionally prefixed by `export `; KEY is [A-Za-z_][A-Za-z0-9_.-]*;
- a value in single quotes is taken literally; in double quotes, \\n \\t \\" \\\\ are unescaped;
- an unquoted value ends at ` #` (an inline comment) and is stripped.

Updates rewrite only the lines of the keys that change (appending new keys),
keep every other byte, back the old file up first and replace it atomically.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from catalyst_ops.errors import ConfigError
from catalyst_ops.fsutil import atomic_write  # noqa: F401  (re-exported: envfile.atomic_write)

_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=(.*)$")
# a malformed line's key: an upper-case name followed by a separator (a lone word may be a value)
_CANDIDATE = re.compile(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)(?=\s*:|\s+\S)")


@dataclass
class EnvLine:
    raw: str  # the line as it was, without its newline
    key: str | None = None
    value: str | None = None


def _unquote(rest: str, source: str, lineno: int, key: str) -> str:
    rest = rest.strip()
    if not rest:
        return ""
    if rest[0] in "'\"":
        quote = rest[0]
        out = []
        i = 1
        while i < len(rest):
            ch = rest[i]
            if quote == '"' and ch == "\\" and i + 1 < len(rest):
                nxt = rest[i + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                i += 2
                continue
            if ch == quote:
                tail = rest[i + 1 :].strip()
                if tail and not tail.startswith("#"):
                    # the text may be the rest of a secret: say where it is, never what
                    raise ConfigError(f"{source}:{lineno}", key, f"unexpected text after the closing quote "
                                      f"({len(tail)} characters; the value is not shown)")
                return "".join(out)
            out.append(ch)
            i += 1
        raise ConfigError(f"{source}:{lineno}", key, "unterminated quoted value")
    # unquoted: strip an inline comment introduced by whitespace + '#'
    m = re.search(r"\s#", rest)
    if m:
        rest = rest[: m.start()]
    return rest.strip()


def parse_lines(text: str, source: str) -> list[EnvLine]:
    lines: list[EnvLine] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            lines.append(EnvLine(raw))
            continue
        m = _KEY.match(raw)
        if not m:
            # a malformed line is often a value (`SMTP_PASSWORD hunter2`, the second line of a broken
            # quoted value): name the key when the line starts with one, never echo the rest
            key = _CANDIDATE.match(raw)
            raise ConfigError(f"{source}:{lineno}", key.group(1) if key else None,
                              "malformed line (expected KEY=value; the line is not shown)")
        key, rest = m.group(1), m.group(2)
        lines.append(EnvLine(raw, key, _unquote(rest, source, lineno, key)))
    return lines


def load(path: str | Path) -> dict[str, str]:
    """Parse a .env file into a dict; later keys win, as in docker compose."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "env file not found")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot read env file: {exc.__class__.__name__}")
    return {ln.key: ln.value for ln in parse_lines(text, str(path)) if ln.key is not None}


def _format_value(value: str) -> str:
    if value == "" or re.fullmatch(r"[A-Za-z0-9_./:@%+,\-=?&]*", value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_updates(text: str, updates: dict[str, str], source: str) -> str:
    """Return `text` with the given keys set; untouched lines are kept byte for byte."""
    lines = parse_lines(text, source)
    remaining = dict(updates)
    # keep the original line ending style
    newline = "\r\n" if "\r\n" in text else "\n"
    out = []
    for ln in lines:
        if ln.key is not None and ln.key in updates:
            if ln.key not in remaining:
                continue  # a later duplicate of a key we already rewrote: drop it so one value wins
            prefix = "export " if ln.raw.lstrip().startswith("export ") else ""
            out.append(f"{prefix}{ln.key}={_format_value(remaining.pop(ln.key))}")
        else:
            out.append(ln.raw)
    for key, value in remaining.items():
        out.append(f"{key}={_format_value(value)}")
    result = newline.join(out)
    if text.endswith(("\n", "\r\n")) or remaining or not text:
        result += newline
    return result


def update(path: str | Path, updates: dict[str, str], backup_suffix: str | None = None) -> Path | None:
    """Set keys in an env file. Backs the old file up (mode 0600) when `backup_suffix` is given."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new_text = render_updates(text, updates, str(path))
    backup = None
    if backup_suffix:
        backup = path.with_name(path.name + backup_suffix)
        shutil.copy2(path, backup)
        os.chmod(backup, 0o600)
    atomic_write(path, new_text, 0o600)
    return backup
