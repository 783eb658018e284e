#!/usr/bin/env bash
# Install the system packages the demo and the test suite need, if missing.
# Idempotent; uses only Debian's package registry. Run as root (or with sudo).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }

have java || need+=(openjdk-17-jre-headless)
have mvn || need+=(maven)
{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || have initdb; } || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[install-system-deps] installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
