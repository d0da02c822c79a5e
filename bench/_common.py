"""Shared by the benchmarks: a throw-away cluster with the schema fixture and N generated trades."""

from __future__ import annotations

import _bytecode  # noqa: F401  (first: the children run from bytecode, as on a droplet)
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalyst_ops.sandbox import pgfixture  # noqa: E402
from catalyst_ops.sandbox.pgcluster import Cluster  # noqa: E402

USER, PASSWORD, DBNAME = "catalyst", "bench-Pw:1@x", "catalyst_bench"


def start(trades: int, orders: bool = True):
    """(cluster, workdir, config path); the caller destroys the cluster."""
    cluster = Cluster(ssl=False)
    if not cluster.available:
        sys.exit("bench: PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package")
    cluster.setup()
    cluster.create_role(USER, PASSWORD)
    cluster.create_db(DBNAME, owner=USER)
    import psycopg2

    url = cluster.url(DBNAME, USER, PASSWORD, sslmode="disable")
    conn = psycopg2.connect(url)
    t = time.monotonic()
    pgfixture.load_schema(conn)
    pgfixture.generate(conn, trades, orders=orders)
    with conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    print(f"generated {trades:,} closed positions{' + one order each' if orders else ''} "
          f"in {time.monotonic() - t:.1f}s (generate_series)")
    conn.close()
    work = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    (work / ".env").write_text(f"DATABASE_URL={url}\n")
    config = work / "ops.yml"
    config.write_text(f"env_file: {work / '.env'}\nstate_path: {work / 'state.db'}\nlog_dir: {work / 'log'}\n"
                      f"backup:\n  dir: {work / 'backups'}\n")
    return cluster, work, config


last_cpu = 0.0  # CPU seconds (user + system) of the last cli() child


def cli(config: Path, *args: str, env: dict | None = None) -> tuple[int, float, int, str]:
    """Run catalyst-ops as a child: (exit code, wall seconds, peak RSS KiB of that child, output);
    `env`: variables added to this process's environment for the child."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    with tempfile.TemporaryFile() as out:
        t = time.monotonic()
        p = subprocess.Popen([sys.executable, "-m", "catalyst_ops", "--config", str(config), *args],
                             stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own accounting (ru_maxrss in KiB)
        global last_cpu
        last_cpu = usage.ru_utime + usage.ru_stime
        wall = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return p.returncode, wall, usage.ru_maxrss, out.read().decode(errors="replace")
