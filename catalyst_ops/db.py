"""The trading database (PostgreSQL), reached through DATABASE_URL in the stack's `.env`.

The URL is parsed here once into libpq parameters so that every consumer (psycopg2 for
checks and metrics, pg_dump/pg_restore for backups) gets the same host, port, user,
database and connection options (`sslmode=require` on managed servers, `sslrootcert`, ...)
while the password travels separately: it is registered with the log redactor, and the
command-line tools receive it only through a 0600 passfile (see `passfile()`), never argv.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

from catalyst_ops import log
from catalyst_ops.errors import CannotRun, ConfigError

# URL query keys that are not libpq connection options
_SCHEMES = ("postgresql", "postgres")
# libpq conninfo keys pg_dump would otherwise not know we want; anything else is passed as is
_NAMED = ("host", "port", "user", "dbname")


@dataclass
class Target:
    """One PostgreSQL database: libpq parameters without the password, plus the password."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    dbname: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, str] = field(default_factory=dict)  # sslmode, sslrootcert, connect_timeout, ...

    def with_db(self, dbname: str) -> "Target":
        return Target(self.host, self.port, self.user, dbname, self.password, dict(self.options))

    def params(self, with_password: bool = False) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in _NAMED:
            value = getattr(self, key)
            if value not in (None, ""):
                out[key] = str(value)
        out.update(self.options)
        if with_password and self.password is not None:
            out["password"] = self.password
        return out

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq conninfo string WITHOUT the password (safe for argv and logs)."""
        params = self.params()
        if dbname is not None:
            params["dbname"] = dbname
        return " ".join(f"{k}={_quote(v)}" for k, v in params.items())

    def describe(self) -> str:
        """host:port/dbname (user), for messages; never the password."""
        where = self.host or "local socket"
        if self.port:
            where += f":{self.port}"
        return f"{where}/{self.dbname or '?'} as {self.user or '?'}"


def _quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_url(url: str, source: str = "DATABASE_URL", key: str | None = None) -> Target:
    """postgresql://user:pass@host:port/dbname?sslmode=require -> Target. Never echoes the URL."""
    url = (url or "").strip()
    if not url:
        raise ConfigError(source, key, "expected a postgresql:// URL, got an empty value")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError:
        raise ConfigError(source, key, "expected a postgresql://user:password@host:port/dbname URL (the port is not a number)")
    if parts.scheme not in _SCHEMES:
        raise ConfigError(source, key, f"expected a URL starting with postgresql:// or postgres://, got {parts.scheme or 'no'} scheme")
    if parts.password:
        log.add_secret(unquote(parts.password))
        log.add_secret(parts.password)
    target = Target(
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        dbname=unquote(parts.path.lstrip("/")) or None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k == "password":  # libpq accepts it in the query too
            log.add_secret(v)
            target.password = v
        elif k in ("host", "port", "user", "dbname"):
            setattr(target, k, int(v) if k == "port" and v.isdigit() else v)
        elif k:
            target.options[k] = v
    return target


def target_from_config(cfg) -> Target:
    """The live database: cfg.database.url_env in the stack's .env."""
    env = cfg.env(required=True)
    key = cfg.database.url_env
    url = env.get(key)
    if not url:
        raise ConfigError(cfg.env_file, key, "not set: the trading database URL (postgresql://user:password@host:port/dbname)")
    return parse_url(url, cfg.env_file, key)


def connect(target: Target, timeout: int = 10, dbname: str | None = None, autocommit: bool = False):
    """A psycopg2 connection; CannotRun (exit 3) when the server cannot be reached."""
    import psycopg2  # lazily: cold start of the CLI must not pay for it

    params = target.params(with_password=True)
    if dbname is not None:
        params["dbname"] = dbname
    params.setdefault("connect_timeout", str(timeout))
    params.setdefault("application_name", "catalyst-ops")
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        raise CannotRun(f"cannot connect to PostgreSQL at {target.describe() if dbname is None else target.with_db(dbname).describe()}: "
                        f"{_first_line(exc)}")
    conn.autocommit = autocommit
    return conn


def connect_cfg(cfg, dbname: str | None = None, autocommit: bool = False):
    return connect(target_from_config(cfg), cfg.database.connect_timeout, dbname, autocommit)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return log.redact(text[0] if text else exc.__class__.__name__)


def error_text(exc: BaseException) -> str:
    """A one-line, redacted description of a database error."""
    return _first_line(exc)


def _passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def passfile(target: Target) -> Iterator[dict[str, str]]:
    """Environment for libpq command-line tools: PGPASSFILE pointing at a private 0600 file.

    The file matches any host/port/database/user so the same one serves pg_dump, a restore
    into a scratch database and createdb; it is removed when the block ends. PGPASSWORD is
    removed from the environment so a stale value cannot win over the URL's password.
    """
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    # settings the caller's shell may have exported must not redirect the tools elsewhere
    for k in ("PGSERVICE", "PGSERVICEFILE", "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGOPTIONS"):
        env.pop(k, None)
    if target.password is None:
        env["PGPASSFILE"] = os.devnull
        yield env
        return
    tmpdir = tempfile.mkdtemp(prefix="catalyst-pgpass-")  # mkdtemp: 0700, owned by us
    path = os.path.join(tmpdir, "pgpass")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:*:{_passfile_field(target.password)}\n")
        env["PGPASSFILE"] = path
        yield env
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(tmpdir)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
