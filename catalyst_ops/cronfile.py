"""Check a system crontab (`/etc/cron.d/*` format, with a user field) the way Debian's cron reads it.

Debian's cron has no `crontab -n` and silently skips what it cannot parse, so a bad line is a
job that never runs and nobody is told. This checker is what the cron role runs as the
`validate:` of /etc/cron.d/catalyst before the file is installed. It rejects:
- a job line with a bad time field (range, step, name) or without a user or a command;
- a user that does not exist on this host (cron would skip the line);
- an unescaped `%` in a command (cron turns it into a newline: `date +%F` silently breaks);
- a last line without its newline (cron ignores that line);
- an environment line with an empty unquoted value (`MAILTO=`): Debian's cron reads it as a
  job line, fails on it, and ignores the WHOLE file ("bad minute"); `MAILTO=""` is the form.
These rules were checked against Debian 12's cron on the Molecule droplet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (name, low, high, names accepted in place of numbers)
_FIELDS = [
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    ("day of week", 0, 7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
]
_SPECIALS = {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# cron's own test: a name up to "=" or a blank, then "=" (a job line never has "=" there)
_ENV = re.compile(r"^\s*([^\s=#]+)\s*=(.*)$")


@dataclass
class Job:
    lineno: int
    schedule: str
    user: str
    command: str


class CronFileError(ValueError):
    def __init__(self, lineno: int, message: str):
        super().__init__(f"line {lineno}: {message}" if lineno else message)
        self.lineno = lineno


def _value(token: str, low: int, names: list[str] | None, field: str, lineno: int) -> int:
    if token.isdigit():
        return int(token)
    if names and token.lower() in names:
        # month names are 1-based, weekday names 0-based: the offset is the field's low bound
        return names.index(token.lower()) + (1 if field == "month" else 0)
    raise CronFileError(lineno, f"{field}: {token!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))


def _check_field(text: str, field: str, low: int, high: int, names: list[str] | None, lineno: int) -> None:
    for part in text.split(","):
        if not part:
            raise CronFileError(lineno, f"{field}: empty item in {text!r}")
        rng, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise CronFileError(lineno, f"{field}: step {step!r} must be a positive number")
        if rng == "*":
            continue
        a, dash, b = rng.partition("-")
        first = _value(a, low, names, field, lineno)
        last = _value(b, low, names, field, lineno) if dash else first
        for v in (first, last):
            if not low <= v <= high:
                raise CronFileError(lineno, f"{field}: {v} is outside {low}-{high}")
        if first > last:
            raise CronFileError(lineno, f"{field}: range {rng!r} runs backwards")
        if step and not dash:
            raise CronFileError(lineno, f"{field}: a step needs a range or * (got {part!r})")


def _unescaped_percent(command: str) -> bool:
    i = 0
    while i < len(command):
        if command[i] == "\\":
            i += 2
            continue
        if command[i] == "%":
            return True
        i += 1
    return False


def parse(text: str, user_exists=None) -> list[Job]:
    """Parse a cron.d file; raise CronFileError naming the first bad line. `user_exists(name)` -> bool."""
    if text and not text.endswith("\n"):
        raise CronFileError(text.count("\n") + 1, "the last line has no newline; cron ignores it")
    jobs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        env = _ENV.match(line)
        if env:
            if not env.group(2).strip():
                raise CronFileError(lineno, f"{env.group(1)}= has an empty value: cron ignores the whole file; "
                                    f'write {env.group(1)}=""')
            continue
        fields = stripped.split(None, 6 if not stripped.startswith("@") else 2)
        if stripped.startswith("@"):
            if fields[0] not in _SPECIALS:
                raise CronFileError(lineno, f"unknown schedule {fields[0]!r}; expected one of {', '.join(sorted(_SPECIALS))}")
            if len(fields) < 3:
                raise CronFileError(lineno, "expected '@schedule user command'")
            schedule, user, command = fields
        else:
            if len(fields) < 7:
                raise CronFileError(lineno, "expected 5 time fields, a user and a command (a cron.d line needs the user)")
            for (name, low, high, names), text_field in zip(_FIELDS, fields[:5]):
                _check_field(text_field, name, low, high, names, lineno)
            schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        if user_exists is not None and not user_exists(user):
            raise CronFileError(lineno, f"user {user!r} does not exist on this host (cron would skip the line)")
        if _unescaped_percent(command):
            raise CronFileError(lineno, "unescaped % in the command: cron turns it into a newline (write \\%)")
        jobs.append(Job(lineno, schedule, user, command))
    return jobs


def local_user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
