#!/usr/bin/env bash
# Set up this checkout on a fresh Debian 12 machine (as root, or with sudo available):
#   scripts/setup.sh          the package and what running it needs
#   scripts/setup.sh --test   plus everything the test suite needs (PostgreSQL, Redis, nsd, promtool, debootstrap,
#                             systemd-nspawn, logrotate, cron, chromium, the Python test tools)
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

pkgs=(python3 python3-venv python3-pip ca-certificates curl jq)
if [ "$want_test" = 1 ]; then
  # redis-server: the health sweep's Redis check is tested against a real one (tests/redisserver.py);
  # nsd: `alert dns` is tested against a real authoritative DNS server (tests/dnsserver.py);
  # prometheus: its promtool checks and unit-tests prometheus/catalyst-rules.yml (tests/test_prometheus_rules.py)
  pkgs+=(postgresql postgresql-client redis-server nsd prometheus logrotate cron debootstrap systemd-container iproute2
         openssh-client openssh-server util-linux chromium fonts-dejavu-core)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the Debian postgresql, redis-server and nsd packages start servers on 5432, 6379 and 53; the tests
# start their own on free ports
if [ "$want_test" = 1 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
if [ "$want_test" = 1 ] && command -v redis-server >/dev/null 2>&1; then
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
if [ "$want_test" = 1 ] && [ -x /usr/sbin/nsd ]; then
  $SUDO systemctl disable --now nsd >/dev/null 2>&1 || true
fi
# the prometheus package starts a server on 9090; the tests need only its promtool
if [ "$want_test" = 1 ] && [ -x /usr/bin/prometheus ]; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: ready (.venv/bin/catalyst-ops $(.venv/bin/catalyst-ops --version | cut -d' ' -f2))"
