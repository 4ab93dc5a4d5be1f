#!/usr/bin/env bash
# Helm's command line from its Go module (helm.sh/helm/v4, pinned in hack/helm/versions),
# built once into ${TSP_CACHE:-~/.cache/tspipe}/helm/<version>/helm. The chart tests
# (tests/install/test_chart*.py) render, lint and install charts/tspipe with it.
# hack/localinfra/cache.py computes the same path; keep the two in step.
#   usage: hack/helm.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
# shellcheck source=helm/versions
source "$ROOT/hack/helm/versions"

log() { printf '[helm] %s\n' "$*" >&2; }
command -v go >/dev/null || { log "Go is required (go1.26+): not found on PATH"; exit 1; }

out="$CACHE/helm/$HELM_VERSION/helm"
pkg="helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
if [[ -x "$out" ]]; then
    log "helm: cached at $out"
    exit 0
fi
start=$SECONDS
log "helm: building $pkg with $(go env GOVERSION)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tsp-helm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# CGO_ENABLED=0: a static binary, no C toolchain. -trimpath: reproducible paths.
# -s -w: no symbol/DWARF tables (smaller file, faster link). The version is stamped
# into `helm version` as Helm's own Makefile does. -p (TSP_GO_BUILD_P, default: every
# core, since make builds it before any test runs; 1 leaves room on a shared machine).
(cd "$tmp" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$tmp" \
    go install -p "${TSP_GO_BUILD_P:-$(nproc)}" -trimpath \
        -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "$pkg")
mkdir -p "$(dirname "$out")"
mv -f "$tmp/helm" "$out"
log "helm $HELM_VERSION: built in $((SECONDS - start)) s"
