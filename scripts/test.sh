#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): sets up, then runs the unit and
# integration tests (real PostgreSQL, SMTP, HTTP, logrotate, cron parsing, systemd-analyze) and
# the Molecule scenario on a systemd-nspawn droplet. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PATH="$PWD/.venv/bin:$PATH"
status=0
.venv/bin/python -m pytest -q -ra "$@" || status=$?
if [ "$status" = 5 ]; then echo "test.sh: pytest ran no tests" >&2; exit 1; fi
if [ "$status" != 0 ]; then exit "$status"; fi
if [ -d molecule/default ] && [ -z "${SKIP_MOLECULE:-}" ]; then
  scripts/molecule.sh
fi
