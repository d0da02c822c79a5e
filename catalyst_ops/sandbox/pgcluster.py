"""A throw-away PostgreSQL cluster (initdb + pg_ctl in a temp dir, on a free port) for tests,
benchmarks and drills.

Password authentication (scram-sha-256) everywhere, so the password path of the tools is
exercised as on a managed server; optional SSL with a self-signed certificate so that
`sslmode=require` is exercised too (a role named `sslonly` is refused without SSL).
PostgreSQL refuses to run as root: under euid 0 the server commands run as the `postgres`
system user (runuser), in a temp dir handed to that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "pgadmin"


def find_server_bin(name: str, bin_dir: str | None = None) -> str | None:
    if bin_dir:
        path = os.path.join(bin_dir, name)
        return path if os.access(path, os.X_OK) else None
    # Debian keeps the server tools out of PATH; prefer the newest installed major version
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for d in reversed(versions):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClusterError(RuntimeError):
    pass


class Cluster:
    def __init__(self, password: str = "admin-pw", ssl: bool = True, bin_dir: str | None = None):
        self.password = password
        self.want_ssl = ssl
        self.ssl = False
        self.initdb = find_server_bin("initdb", bin_dir)
        self.pg_ctl = find_server_bin("pg_ctl", bin_dir)
        self.bin_dir = os.path.dirname(self.initdb) if self.initdb else None
        self.base: Path | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.running = False
        self._as_postgres = hasattr(os, "geteuid") and os.geteuid() == 0

    @property
    def available(self) -> bool:
        return bool(self.initdb and self.pg_ctl)

    @property
    def datadir(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    def _run(self, cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if p.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
        return p

    def _chown(self, path: Path) -> None:
        if self._as_postgres:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def setup(self) -> "Cluster":
        if not self.available:
            raise ClusterError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.base = Path(tempfile.mkdtemp(prefix="catalyst-pg-"))
        self._chown(self.base)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run([self.initdb, "-D", str(self.datadir), "-U", SUPERUSER, "--pwfile", str(pwfile), "-E", "UTF8",
                   "--no-locale", "--auth=scram-sha-256", "--no-sync"], timeout=120)
        pwfile.unlink()
        self.port = free_port()
        conf = [f"listen_addresses = '{self.host}'", f"port = {self.port}", f"unix_socket_directories = '{self.base}'",
                "fsync = off", "synchronous_commit = off", "full_page_writes = off", "max_connections = 40",
                "log_min_messages = warning", "password_encryption = 'scram-sha-256'"]
        if self.want_ssl and shutil.which("openssl"):
            crt, key = self.datadir / "server.crt", self.datadir / "server.key"
            subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=localhost",
                            "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(crt)],
                           capture_output=True, check=True, timeout=60)
            os.chmod(key, 0o600)
            self._chown(crt)
            self._chown(key)
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            self.ssl = True
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write("\n" + "\n".join(conf) + "\n")
        hba = ["local all all scram-sha-256",
               "hostnossl all sslonly 127.0.0.1/32 reject",
               "host all all 127.0.0.1/32 scram-sha-256"]
        (self.datadir / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        self.start()
        return self

    def start(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.datadir), "-l", str(self.base / "server.log"), "-w", "-t", "60", "start"],
                  timeout=90)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if self.base is None or not self.running:
            return
        self._run([self.pg_ctl, "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop"], timeout=90)
        self.running = False

    def destroy(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None

    # ------------------------------------------------------------------ clients

    def url(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None, **params: str) -> str:
        pw = self.password if password is None and user == SUPERUSER else password
        auth = quote(user, safe="") + (":" + quote(pw, safe="") if pw is not None else "")
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=SUPERUSER, password=self.password, dbname=dbname,
                                sslmode="disable", connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def sql(self, statement: str, params=None, dbname: str = "postgres"):
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def create_role(self, name: str, password: str, createdb: bool = True) -> None:
        from psycopg2 import sql

        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (name,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s" + (" CREATEDB" if createdb else "")).format(
                    sql.Identifier(name)), (password,))
        finally:
            conn.close()

    def create_db(self, name: str, owner: str = SUPERUSER) -> None:
        from psycopg2 import sql

        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        finally:
            conn.close()

    def drop_db(self, name: str) -> None:
        from psycopg2 import sql

        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
