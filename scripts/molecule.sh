#!/usr/bin/env bash
# The Molecule scenarios on systemd-nspawn droplets: `molecule test` per scenario, in order, with
# the time of every stage printed at the end of each. Needs root (systemd-nspawn) and
# scripts/setup.sh --test. Exits non-zero if any scenario failed (each one's destroy still runs).
#   scripts/molecule.sh [SCENARIO...]  the scenarios to run (default: default firedrill)
#   MOLECULE_SCENARIO="default"        the same, from the environment
#   CATALYST_MOLECULE_CACHE=DIR        where the droplet's rootfs tarball is cached (~/.cache/catalyst-molecule)
# default converges site.yml, checks idempotence and the host; firedrill runs a compressed trading
# day with faults on a second droplet and prints a table of the faults (again after the scenario).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/molecule ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
command -v molecule >/dev/null || { echo "molecule.sh: molecule not found (run scripts/setup.sh --test)" >&2; exit 2; }
if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  read -r -a scenarios <<< "${MOLECULE_SCENARIO:-default firedrill}"
fi
for s in "${scenarios[@]}"; do
  [ -f "molecule/$s/molecule.yml" ] || { echo "molecule.sh: no scenario molecule/$s" >&2; exit 2; }
done
export PYTHONUNBUFFERED=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
# Molecule wraps its output at the terminal width (80 in CI): room for the fire drill's table
export COLUMNS="${COLUMNS:-220}"
table=$(mktemp /tmp/catalyst-firedrill-table.XXXXXX)
trap 'rm -f "$table"' EXIT
export CATALYST_FIREDRILL_TABLE="$table"
overall=0
for scenario in "${scenarios[@]}"; do
  echo "== molecule test -s $scenario ($(date -u +%H:%M:%SZ))"
  set +e
  molecule test -s "$scenario" 2>&1 | python3 -u -c '
import re, sys, time
t0 = time.monotonic()
start, rows = {}, []
# "default \u279c create: Executing" (colour) or "[default > create] Executing" (NO_COLOR)
pat = re.compile(r"(?:\u279c |> )(\w+)(?::|\]) (Executing|Executed)")
for line in sys.stdin:
    sys.stdout.write(line)
    m = pat.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
    if not m:
        continue
    stage, what = m.groups()
    now = time.monotonic()
    if what == "Executing":
        start[stage] = now
    elif stage in start:
        seen = sum(1 for r in rows if r[0].startswith(stage))
        rows.append((stage + (" (again)" if seen else ""), now - start.pop(stage)))
print("\nmolecule stage timings (seconds):")
for stage, secs in rows:
    print(f"  {stage:<20} {secs:7.1f}")
print("  %-20s %7.1f" % ("total", time.monotonic() - t0))
'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$scenario" = firedrill ] && [ -s "$table" ]; then
    echo "== fire drill: faults injected, outcome, time to recover"; cat "$table"; : > "$table"
  fi
  if [ "$status" != 0 ]; then
    echo "molecule.sh: molecule test -s $scenario failed (exit $status)" >&2
    overall=$status
  fi
done
exit "$overall"
