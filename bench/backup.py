"""Backup benchmark: our verified custom-format backup against the seed's `pg_dump | gzip`.

Starts its own throw-away cluster, generates TRADES closed positions (+ one order each) with
generate_series, then times, in one run:
  - catalyst-ops backup                  (pg_dump -Fc, pg_restore --list, SHA-256, sidecar)
  - catalyst-ops backup --verify-restore (plus a restore into a scratch DB and row counts)
  - the seed's plain `pg_dump | gzip > file.sql.gz`
and prints wall time and file size of each. Not part of the test suite.

    PYTHONPATH=. python bench/backup.py [--trades 1000000] [--skip-restore]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

import _common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--skip-restore", action="store_true", help="skip the --verify-restore run")
    args = ap.parse_args()
    cluster, work, config = _common.start(args.trades)
    try:
        rows = []
        runs = [("ours: custom format, pg_restore --list, sha256", ["backup", "--json"])]
        if not args.skip_restore:
            runs.append(("ours: custom format + --verify-restore", ["backup", "--verify-restore", "--json"]))
        for label, cmd in runs:
            code, wall, rss, out = _common.cli(config, *cmd)
            if code != 0:
                raise SystemExit(f"bench: {label} failed ({code}): {out[-500:]}")
            data = json.loads(out[out.index("{"):out.rindex("}") + 1])
            rows.append((label, wall, data["size_bytes"], rss))
        # the seed's way: plain SQL through gzip (default level 6), same server, same data
        pg_dump = shutil.which("pg_dump") or os.path.join(cluster.bin_dir, "pg_dump")
        seed_file = work / "seed.sql.gz"
        env = dict(os.environ, PGPASSWORD=_common.PASSWORD)
        t = time.monotonic()
        with open(seed_file, "wb") as fh:
            dump = subprocess.Popen([pg_dump, "-h", cluster.host, "-p", str(cluster.port), "-U", _common.USER,
                                     _common.DBNAME], stdout=subprocess.PIPE, env=env)
            gz = subprocess.run(["gzip"], stdin=dump.stdout, stdout=fh)
            dump.stdout.close()
            if dump.wait() != 0 or gz.returncode != 0:
                raise SystemExit("bench: seed pg_dump | gzip failed")
        rows.append(("seed: pg_dump | gzip (plain SQL, unverified)", time.monotonic() - t, seed_file.stat().st_size, None))

        print(f"\nbackup of {args.trades:,} trades ({args.trades * 2:,} rows in positions + orders), one run each:")
        print(f"{'method':48} {'seconds':>8} {'size MiB':>9} {'peak RSS MiB':>13}")
        for label, wall, size, rss in rows:
            print(f"{label:48} {wall:8.2f} {size / 1048576:9.1f} {(f'{rss / 1024:.0f}' if rss else '-'):>13}")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
