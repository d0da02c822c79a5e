#!/usr/bin/env python3
"""Build the wheelhouse the droplet installs catalyst-ops from (runs on the Ansible controller).

The droplet needs no copy of the repository and, offline mode, no package index: this builds the
catalyst-ops wheel from the source tree and downloads every dependency as a binary wheel for the
droplet's Python and platform (not the controller's: the controller may be a Mac), then packs
them into one deterministic tar. The result is cached under --cache, keyed by a hash of the
sources and the target, so a re-run with nothing changed does no work and returns the same tar
(same sha256), which is what keeps the playbook's second run at changed=0.

Prints one JSON object: {"tar", "sha256", "wheel", "rebuilt"}. Exit 1 with one line on failure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SOURCES = ("pyproject.toml", "README.md", "catalyst_ops")
KEEP_BUILDS = 3


def source_files(root: Path) -> list[Path]:
    files = []
    for name in SOURCES:
        p = root / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
    return sorted(files)


def digest(root: Path, target: dict) -> str:
    h = hashlib.sha256(json.dumps(target, sort_keys=True).encode())
    for f in source_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def run(cmd: list[str], env: dict | None = None) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-5:])
        raise SystemExit(f"build_wheelhouse: {' '.join(cmd[:4])} ... failed (exit {proc.returncode}): {tail}")


def pack(wheel_dir: Path, out: Path) -> None:
    """A tar whose bytes depend only on the wheels' names and contents."""
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for f in sorted(wheel_dir.iterdir()):
            info = tarfile.TarInfo(f.name)
            data = f.read_bytes()
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, type=Path, help="the repository (pyproject.toml, catalyst_ops/)")
    ap.add_argument("--cache", required=True, type=Path, help="controller cache directory for built wheelhouses")
    ap.add_argument("--python-version", required=True, help="the droplet's Python, e.g. 311")
    ap.add_argument("--platform", action="append", default=[], help="wheel platform tags the droplet accepts")
    ap.add_argument("--with-deps", action="store_true", help="also download every dependency (offline install)")
    ap.add_argument("--index-url", default="", help="package index for the dependencies (default: pip's)")
    args = ap.parse_args()

    root = args.source.resolve()
    if not (root / "pyproject.toml").is_file():
        raise SystemExit(f"build_wheelhouse: {root}: no pyproject.toml (catalyst_source_dir must be the repository)")
    target = {"python": args.python_version, "platforms": sorted(args.platform), "deps": args.with_deps,
              "index": args.index_url}
    key = digest(root, target)
    build_dir = args.cache / key
    out = build_dir / "wheelhouse.tar"
    rebuilt = False
    if not out.is_file():
        rebuilt = True
        build_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="catalyst-wheel-") as tmp:
            src, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
            # build from a clean copy: an in-tree build leaves build/ behind, whose stale
            # modules would end up in the next wheel
            src.mkdir()
            for name in SOURCES:
                p = root / name
                if p.is_dir():
                    shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                elif p.is_file():
                    shutil.copy2(p, src / name)
            env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_DISABLE_PIP_VERSION_CHECK="1")
            run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)], env)
            built = sorted(wheels.glob("catalyst_ops-*.whl"))
            if len(built) != 1:
                raise SystemExit(f"build_wheelhouse: expected one catalyst_ops wheel, found {[b.name for b in built]}")
            if args.with_deps:
                py = args.python_version
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(wheels),
                       "--python-version", py, "--implementation", "cp", "--abi", f"cp{py}"]
                for plat in args.platform:
                    cmd += ["--platform", plat]
                if args.index_url:
                    cmd += ["--index-url", args.index_url]
                run(cmd + [str(built[0])], env)
            pack(wheels, out)
        for old in sorted((d for d in args.cache.iterdir() if d.is_dir() and d != build_dir),
                          key=lambda d: d.stat().st_mtime)[:-KEEP_BUILDS or None]:
            shutil.rmtree(old, ignore_errors=True)
    os.utime(build_dir)
    with tarfile.open(out) as tar:
        wheel = next(n for n in tar.getnames() if n.startswith("catalyst_ops-"))
    print(json.dumps({"tar": str(out), "sha256": sha256(out), "wheel": wheel, "rebuilt": rebuilt}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
