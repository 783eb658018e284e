#!/usr/bin/env bash
# Install the system packages the demo and the test suite need, only those missing.
# Idempotent; uses only Debian's package registry. Run as root (or with sudo).
#
#   openjdk-17-jre-headless, maven, postgresql   the devstack (Kafka broker from Maven, PostgreSQL)
#   prometheus   real Prometheus server for the collector integration tests
#                (the poller reads it; it remote-writes into the agent)
#   chromium     headless browser for the web console test
#
# Other engineers may append packages to PACKAGES (checked with dpkg) or to the
# command checks below.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }

have java || need+=(openjdk-17-jre-headless)
have mvn || need+=(maven)
{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || have initdb; } || need+=(postgresql)

PACKAGES=(prometheus)
PACKAGES+=(chromium)  # headless browser for the web console test (tests/integration/test_console*.py)

for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need+=("$pkg")
  fi
done

if [[ ${#need[@]} -eq 0 ]]; then
  echo "[install-system-deps] all present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[install-system-deps] need root or sudo to install: ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "[install-system-deps] installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# no init system in containers/CI: keep package scripts from starting daemons (prometheus, postgresql)
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap 'if [[ $created_policy -eq 1 ]]; then $SUDO rm -f "$policy"; fi' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
echo "[install-system-deps] done"
