"""The roles against the community's checks: ansible-lint (production profile) and yamllint on
ansible/, molecule/ (and the Prometheus rules), and the role READMEs generated from
meta/argument_specs.yml and defaults/main.yml (scripts/role_readmes.py), so the two cannot differ."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "NO_COLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}

spec = importlib.util.spec_from_file_location("role_readmes", REPO / "scripts" / "role_readmes.py")
role_readmes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(role_readmes)


def _run(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd, env=ENV)


@pytest.mark.slow
def test_ansible_lint_production_profile_passes():
    p = _run(BIN / "ansible-lint", "--profile", "production", "ansible", "molecule")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "Passed: 0 failure(s)" in out and "Profile 'production' was required, and it passed" in out, out


def test_ansible_lint_ignores_only_the_shared_variable_names():
    # the one exception (.ansible-lint-ignore explains it): the public catalyst_* names in the
    # defaults of the roles that predate the rule; nothing else may be waved through
    entries = [line.split() for line in (REPO / ".ansible-lint-ignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert entries and all(rule == "var-naming[no-role-prefix]" for _, rule in entries)
    assert {path for path, _ in entries} == {f"ansible/roles/{r}/defaults/main.yml" for r in
                                            ("catalyst_common", "catalyst_cron", "catalyst_email", "catalyst_infrastructure")}


@pytest.mark.slow
def test_ansible_lint_finds_a_bad_task(tmp_path):
    play = tmp_path / "bad.yml"
    play.write_text("---\n- hosts: all\n  tasks:\n    - shell: cat /etc/passwd | grep root\n")
    p = _run(BIN / "ansible-lint", "--profile", "production", "-c", REPO / ".ansible-lint", play, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "name[missing]" in out and "risky-shell-pipe" in out, out


def test_yamllint_passes_strict():
    p = _run(BIN / "yamllint", "--strict", "ansible", "molecule", "prometheus")
    assert p.returncode == 0, p.stdout + p.stderr


def test_yamllint_finds_a_bad_file(tmp_path):
    (tmp_path / "bad.yml").write_text("key: yes\nmode: 0644\n")  # no ---, a truthy and an octal
    p = _run(BIN / "yamllint", "--strict", "-c", REPO / ".yamllint", tmp_path / "bad.yml")
    assert p.returncode != 0 and "truthy" in p.stdout and "document-start" in p.stdout, p.stdout


def test_role_readmes_match_argument_specs_and_defaults():
    p = _run(sys.executable, REPO / "scripts" / "role_readmes.py", "--check")
    assert p.returncode == 0, p.stderr
    roles = sorted(d.name for d in (REPO / "ansible" / "roles").iterdir() if d.is_dir())
    assert roles and all((REPO / "ansible" / "roles" / r / "README.md").is_file() for r in roles)
    text = (REPO / "ansible" / "roles" / "catalyst_validation" / "README.md").read_text()
    assert "catalyst_validation_node_exporter: true" in text and "- role: catalyst_validation" in text


def test_role_readme_check_catches_drift(tmp_path):
    role = tmp_path / "catalyst_validation"
    shutil.copytree(REPO / "ansible" / "roles" / "catalyst_validation", role)
    assert role_readmes.render(role) == (role / "README.md").read_text()
    # a changed default shows in the README
    defaults = role / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace('listen_address: ":9100"', 'listen_address: ":9101"'))
    assert role_readmes.render(role) != (role / "README.md").read_text()
    # a default the argument spec does not know is refused
    defaults.write_text(defaults.read_text() + "catalyst_validation_undocumented: 1\n")
    with pytest.raises(role_readmes.SpecError, match="catalyst_validation_undocumented"):
        role_readmes.render(role)
