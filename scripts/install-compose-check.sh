#!/usr/bin/env bash
# Build scripts/compose-check (the Compose Specification's loader, compose-go, pinned in its
# go.mod) with the Go toolchain; modules come from the Go module proxy. Idempotent: the
# binary is cached per source hash. Docker is not needed (nor used).
#
#   scripts/install-compose-check.sh     # prints the path of the binary on stdout
#
# Progress goes to stderr; the only line on stdout is the binary's path.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/compose-check" && pwd)"
CACHE="${SRE_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-agent}"
HASH="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
BIN="$CACHE/compose-check/$HASH/compose-check"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for d in /usr/local/go/bin /usr/lib/go/bin; do
    [[ -x "$d/go" ]] && PATH="$d:$PATH"
  done
fi
command -v go >/dev/null 2>&1 || { echo "install-compose-check: Go toolchain not found" >&2; exit 1; }

mkdir -p "$(dirname "$BIN")"
echo "install-compose-check: building with $(go version)" >&2
(cd "$SRC" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" .) >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
