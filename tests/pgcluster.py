"""pytest plugin: a throw-away PostgreSQL cluster per test session, and per-test databases.

Loaded from tests/conftest.py (`pytest_plugins`). `pg` is the session's cluster (initdb/pg_ctl
in a temp dir, free port, scram passwords, SSL); `pgdb` is a fresh database shaped like the
real schema, owned by a non-superuser role whose password has URL-hostile characters, plus an
ops.yml/.env pointing catalyst-ops at it.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from catalyst_ops.sandbox.pgcluster import Cluster

APP_USER = "catalyst"
# ':' '@' '/' '%' and '\' exercise URL decoding and passfile escaping
APP_PASSWORD = "Pw:s3cr3t@x/y%z\\q-9431"
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg():
    cluster = Cluster()
    if not cluster.available:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package")
    cluster.setup()
    try:
        cluster.create_role(APP_USER, APP_PASSWORD)
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class PgDB:
    cluster: Cluster
    name: str
    dir: Path
    url: str

    @property
    def config(self) -> Path:
        return self.dir / "ops.yml"

    @property
    def env_file(self) -> Path:
        return self.dir / ".env"

    @property
    def state_db(self) -> Path:
        return self.dir / "state.db"

    @property
    def backup_dir(self) -> Path:
        return self.dir / "backups"

    def connect(self, dbname: str | None = None, autocommit: bool = True):
        return self.cluster.connect(dbname or self.name, autocommit)

    def sql(self, statement: str, params=None, dbname: str | None = None):
        return self.cluster.sql(statement, params, dbname or self.name)

    def write_config(self, extra: str = "", url: str | None = None) -> None:
        self.env_file.write_text(f"DATABASE_URL={url or self.url}\nTRADING_MODE=paper\n")
        self.config.write_text(f"env_file: {self.env_file}\nstate_path: {self.state_db}\nlog_dir: {self.dir / 'log'}\n"
                               f"backup:\n  dir: {self.backup_dir}\n  timeout: 120\ndatabase:\n  connect_timeout: 3\n"
                               + extra)

    def state(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.state_db)
        conn.row_factory = sqlite3.Row
        return conn


@pytest.fixture
def pgdb(pg, tmp_path):
    """A fresh database with the schema fixture (no rows) and a config pointing at it."""
    from catalyst_ops.sandbox import pgfixture

    name = f"catalyst_t{next(_counter)}"
    pg.create_db(name, owner=APP_USER)
    d = PgDB(pg, name, tmp_path, pg.url(name, APP_USER, APP_PASSWORD, sslmode="disable"))
    import psycopg2

    conn = psycopg2.connect(d.url)
    try:
        pgfixture.load_schema(conn)
    finally:
        conn.close()
    d.write_config()
    yield d
    pg.drop_db(name)
