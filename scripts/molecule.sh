#!/usr/bin/env bash
# The Molecule scenarios on systemd-nspawn droplets (as root; scripts/setup.sh --test first):
#   scripts/molecule.sh                  default, then firedrill
#   scripts/molecule.sh firedrill        the named scenarios, in order
#   CATALYST_MOLECULE_SCENARIOS="default" scripts/molecule.sh
# default converges site.yml and checks idempotence and the host with Testinfra; firedrill runs a
# compressed trading day with faults on a second droplet and prints the table of faults.
# Each scenario's own destroy runs even when it fails. Exits non-zero if any scenario failed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/molecule ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
command -v molecule >/dev/null || { echo "molecule.sh: molecule not found (scripts/setup.sh --test installs it)" >&2; exit 2; }
if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  read -r -a scenarios <<< "${CATALYST_MOLECULE_SCENARIOS:-default firedrill}"
fi
# Molecule wraps its output at the terminal width (80 in CI): room for the fire drill's table
export COLUMNS="${COLUMNS:-220}"
table=$(mktemp /tmp/catalyst-firedrill-table.XXXXXX)
trap 'rm -f "$table"' EXIT
export CATALYST_FIREDRILL_TABLE="$table"
status=0
for s in "${scenarios[@]}"; do
  [ -f "molecule/$s/molecule.yml" ] || { echo "molecule.sh: no scenario molecule/$s" >&2; exit 2; }
  echo "== molecule test -s $s ($(date -u +%H:%M:%SZ))"
  t0=$(date +%s)
  if molecule test -s "$s"; then
    echo "== $s: passed in $(( $(date +%s) - t0 )) s"
  else
    rc=$?
    echo "== $s: FAILED (exit $rc) after $(( $(date +%s) - t0 )) s" >&2
    status=1
  fi
  if [ "$s" = firedrill ] && [ -s "$table" ]; then
    echo "== fire drill table"; cat "$table"; : > "$table"
  fi
done
exit "$status"
