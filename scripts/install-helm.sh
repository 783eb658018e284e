#!/usr/bin/env bash
# Install a pinned Helm 3 from source with the Go toolchain (Go module proxy only;
# no release tarballs are downloaded). Idempotent: the binary is cached and reused.
#
#   scripts/install-helm.sh          # prints the path of the helm binary on stdout
#   HELM_VERSION=v3.22.0 SRE_AGENT_CACHE=~/.cache/sre-agent scripts/install-helm.sh
#
# Progress goes to stderr; the only line on stdout is the binary's path, so callers
# can do: HELM="$(scripts/install-helm.sh)".
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# Helm's Makefile stamps the Kubernetes version its client libraries target (k8s.io/client-go
# v0.37 in Helm v3.22.0 -> 1.37); `helm template` reports it as .Capabilities.KubeVersion.
# Without it a `go install` build claims Kubernetes 1.20.
HELM_K8S_MINOR="${HELM_K8S_MINOR:-37}"
CACHE="${SRE_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-agent}"
DEST="$CACHE/helm/$HELM_VERSION-k8s1.$HELM_K8S_MINOR"
BIN="$DEST/helm"

if [[ -x "$BIN" ]] && "$BIN" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for d in /usr/local/go/bin /usr/lib/go/bin; do
    [[ -x "$d/go" ]] && PATH="$d:$PATH"
  done
fi
command -v go >/dev/null 2>&1 || { echo "install-helm: Go toolchain not found (needed to build Helm)" >&2; exit 1; }

mkdir -p "$DEST"
echo "install-helm: building helm $HELM_VERSION with $(go version) (first run takes a few minutes)" >&2
# -trimpath for a reproducible binary; versions are stamped like Helm's own Makefile does
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in pkg/lint/rules pkg/chartutil; do
  LDFLAGS+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${HELM_K8S_MINOR}"
done
GOBIN="$DEST" CGO_ENABLED=0 go install -trimpath -ldflags "$LDFLAGS" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
"$BIN" version --short >&2
echo "$BIN"
