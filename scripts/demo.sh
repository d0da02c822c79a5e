#!/usr/bin/env bash
# The main job on its embedded defaults: SQLite state and the stand-in stack on localhost.
# Sets up, starts the stand-in stack, runs the cron health job, breaks two services,
# runs the health job again (which restarts exactly those two), and shows the state.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
RD=${CATALYST_STANDIN_DIR:-/tmp/catalyst-demo}
export CATALYST_OPS_CONFIG="$RD/ops.yml"
catalyst-ops sandbox up --rundir "$RD"
trap 'catalyst-ops sandbox down --rundir "$RD" >/dev/null' EXIT
echo; echo "== catalyst-ops health (all healthy)"
catalyst-ops health
echo; echo "== break two services: scanner crashes, trading answers 200 with status unhealthy"
catalyst-ops sandbox fault scanner down --rundir "$RD"
catalyst-ops sandbox fault trading unhealthy --rundir "$RD"
echo; echo "== catalyst-ops health (restarts exactly those two; exit 1 because it found a problem)"
catalyst-ops health || echo "(exit $?)"
echo; echo "== catalyst-ops status"
catalyst-ops status
echo; echo "state database: $RD/state.db"
