"""Check a system crontab (`/etc/cron.d/*` format, with a user field) the way Debian's cron reads it.

Debian's cron has no `crontab -n` and silently skips what it cannot parse, so a bad line is a
job that never runs and nobody is told. This checker is what the cron role runs as the
`validate:` of /etc/cron.d/catalyst before the file is installed. It rejects:
- a job line with a bad time field (range, step, name) or without a user or a command;
- a user that does not exist on this host (cron would skip the line);
- an unescaped `%` in a command (cron turns it into a newline: `date +%F` silently breaks);
- a last line without its newline (Debian 12's cron: "Missing newline before EOF, this crontab
  file will be ignored": the whole file);
- an environment line with an empty unquoted value (`MAILTO=`): Debian's cron reads it as a
  job line, fails on it, and ignores the WHOLE file ("bad minute"); `MAILTO=""` is the form.
These rules were checked against Debian 12's cron on the Molecule droplet.

`lines()` classifies every line without stopping at the first error (the scan of other crontabs
in foreigncron.py needs all of them), and both read user crontabs too (`user_field=False`: no
user column, as `crontab` installs them; tests/test_foreigncron.py holds the parser to Debian's
own `crontab`).
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
        self.message = message


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


@dataclass
class Line:
    """One line of a crontab as cron sees it: blank, comment, env (NAME=value), job, or error
    (a line cron cannot parse; Debian's cron then ignores the whole file)."""

    lineno: int
    text: str
    kind: str
    job: Job | None = None
    error: str | None = None


def lines(text: str, user_field: bool = True, user: str = "") -> list[Line]:
    """Every line classified, without stopping at the first error. `user_field=False` reads a user
    crontab (/var/spool/cron/crontabs/NAME, installed by `crontab`): no user column; each job's
    user is `user`, the crontab's owner."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            out.append(Line(lineno, line, "blank"))
            continue
        if stripped.startswith("#"):
            out.append(Line(lineno, line, "comment"))
            continue
        env = _ENV.match(line)
        if env:
            if not env.group(2).strip():
                out.append(Line(lineno, line, "error", error=f"{env.group(1)}= has an empty value: cron ignores the "
                                f'whole file; write {env.group(1)}=""'))
            else:
                out.append(Line(lineno, line, "env"))
            continue
        try:
            out.append(Line(lineno, line, "job", job=_job(stripped, lineno, user_field, user)))
        except CronFileError as exc:
            out.append(Line(lineno, line, "error", error=exc.message))
    return out


def _job(stripped: str, lineno: int, user_field: bool, owner: str) -> Job:
    """A job line; its user and command may be empty. Debian's crontab(1) installs `0 9 * * *` (a
    job without a command), so cron does not ignore a file for it; parse() still refuses it."""
    special = stripped.startswith("@")
    fields = stripped.split(None, (1 if special else 5) + (1 if user_field else 0))
    if special:
        if fields[0] not in _SPECIALS:
            raise CronFileError(lineno, f"unknown schedule {fields[0]!r}; expected one of {', '.join(sorted(_SPECIALS))}")
        schedule, rest = fields[0], fields[1:]
    else:
        if len(fields) < 5:
            raise CronFileError(lineno, "expected 5 time fields" + (", a user and a command (a cron.d line needs the "
                                                                    "user)" if user_field else " and a command"))
        for (name, low, high, names), text_field in zip(_FIELDS, fields[:5]):
            _check_field(text_field, name, low, high, names, lineno)
        schedule, rest = " ".join(fields[:5]), fields[5:]
    if user_field:
        return Job(lineno, schedule, rest[0] if rest else "", rest[1] if len(rest) > 1 else "")
    return Job(lineno, schedule, owner, rest[0] if rest else "")


def parse(text: str, user_exists=None, user_field: bool = True, user: str = "") -> list[Job]:
    """Parse a cron.d file (or, with `user_field=False`, a user crontab); raise CronFileError naming
    the first bad line. `user_exists(name)` -> bool."""
    if text and not text.endswith("\n"):
        raise CronFileError(text.count("\n") + 1, "the last line has no newline; cron ignores the whole file")
    jobs = []
    for ln in lines(text, user_field, user):
        if ln.kind == "error":
            raise CronFileError(ln.lineno, ln.error)
        if ln.kind != "job":
            continue
        job = ln.job
        if not job.command:
            raise CronFileError(ln.lineno, ("expected '@schedule user command'" if job.schedule.startswith("@") else
                                            "expected 5 time fields, a user and a command (a cron.d line needs the user)")
                                if user_field else "the job has no command")
        if user_field and user_exists is not None and not user_exists(job.user):
            raise CronFileError(ln.lineno, f"user {job.user!r} does not exist on this host (cron would skip the line)")
        if _unescaped_percent(job.command):
            raise CronFileError(ln.lineno, "unescaped % in the command: cron turns it into a newline (write \\%)")
        jobs.append(job)
    return jobs


def local_user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
