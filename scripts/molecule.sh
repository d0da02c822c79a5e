#!/usr/bin/env bash
# The Molecule scenario on the systemd-nspawn droplet: `molecule test` (destroy, syntax, create,
# converge, idempotence, verify, destroy), with the time of every stage printed at the end.
# Needs root (systemd-nspawn) and scripts/setup.sh --test. Exits with molecule's status.
#   MOLECULE_SCENARIO=default   the scenario to run
#   CATALYST_MOLECULE_CACHE=DIR where the droplet's rootfs tarball is cached (~/.cache/catalyst-molecule)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/molecule ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
command -v molecule >/dev/null || { echo "molecule.sh: molecule not found (run scripts/setup.sh --test)" >&2; exit 2; }
scenario=${MOLECULE_SCENARIO:-default}
export PYTHONUNBUFFERED=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
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
if [ "$status" != 0 ]; then echo "molecule.sh: molecule test failed (exit $status)" >&2; fi
exit "$status"
