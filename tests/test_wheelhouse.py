"""The controller-side wheelhouse build of the infrastructure role: cached by a hash of the
sources and the target (what keeps the playbook's second run at changed=0), rebuilt when a
source file changes, and byte-for-byte reproducible."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "ansible" / "roles" / "catalyst_infrastructure" / "files" / "build_wheelhouse.py"


def build(source, cache) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--source", str(source), "--cache", str(cache),
                           "--python-version", "311", "--platform", "manylinux2014_x86_64"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "catalyst_ops", src / "catalyst_ops", ignore=shutil.ignore_patterns("__pycache__"))
    return src


@pytest.mark.slow
def test_cached_rebuilt_on_change_and_reproducible(source, tmp_path):
    first = build(source, tmp_path / "cache")
    assert first["rebuilt"] and first["wheel"].startswith("catalyst_ops-")
    with tarfile.open(first["tar"]) as tar:
        assert tar.getnames() == [first["wheel"]]  # no --with-deps: the wheel alone
    again = build(source, tmp_path / "cache")
    assert again == {**first, "rebuilt": False}
    # same sources, another cache: the same bytes (fixed timestamps, sorted tar)
    assert build(source, tmp_path / "other")["sha256"] == first["sha256"]
    (source / "catalyst_ops" / "fmt.py").write_text((source / "catalyst_ops" / "fmt.py").read_text() + "\n# changed\n")
    changed = build(source, tmp_path / "cache")
    assert changed["rebuilt"] and changed["sha256"] != first["sha256"]


def test_not_a_repository_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--source", str(tmp_path), "--cache", str(tmp_path / "c"),
                           "--python-version", "311"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("no pyproject.toml (catalyst_source_dir must be the repository)")
