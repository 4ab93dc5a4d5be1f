#!/usr/bin/env bash
# The tools the monitoring tests need, from the Go module proxy, once:
#   crds      prometheus-operator/<version>/*.yaml: the CRDs of PodMonitor, ServiceMonitor
#             and PrometheusRule (the module zip's example/prometheus-operator-crd/; seconds)
#   promtool  promtool/<version>/promtool: Prometheus' promtool (go install of the pinned
#             module; a long cold build on 2 cores, so `make test` does not ask for it)
#   prometheus  prometheus/<version>/prometheus: the Prometheus server of the same module, with
#             only the Kubernetes service discovery (the monitoring tests' real Prometheus)
# under ${TSP_CACHE:-~/.cache/tspipe}/; the pins are in hack/monitoring/versions.
# hack/localinfra/cache.py computes the same paths; keep the two in step.
#   usage: hack/monitoring-tools.sh crds|promtool...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
# shellcheck source=monitoring/versions
source "$ROOT/hack/monitoring/versions"

log() { printf '[monitoring-tools] %s\n' "$*" >&2; }

# Prometheus' release version from its module's (v0.316.0 is 3.16.0: the minor is major*100
# + minor), and the ldflags its own build (promu) stamps it with: without them
# `prometheus --version` and `promtool --version` print an empty version, and the server's
# /api/v1/status/buildinfo and prometheus_build_info say nothing.
release_version() {
    local v="${PROMETHEUS_VERSION#v0.}"
    local minor="${v%%.*}"
    printf '%d.%d.%s' "$((10#$minor / 100))" "$((10#$minor % 100))" "${v#*.}"
}
VERSION_LDFLAGS="-X github.com/prometheus/common/version.Version=$(release_version) -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Branch=module -X github.com/prometheus/common/version.BuildUser=hack/monitoring-tools.sh"

# Whether a built binary says the pinned version (one built before the stamp is rebuilt:
# with Go's build cache warm that is a link: 12 s here).
stamped() { [[ -x "$1" ]] && "$1" --version 2>&1 | grep -q "version $(release_version) "; }
usage() { echo "usage: $0 crds|promtool|prometheus..." >&2; exit 2; }
[[ $# -gt 0 ]] || usage
command -v go >/dev/null || { log "Go is required (go1.26+): not found on PATH"; exit 1; }

crds() {
    local out="$CACHE/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION" start=$SECONDS dir kind
    local mod=github.com/prometheus-operator/prometheus-operator
    if [[ -f "$out/.complete" ]]; then
        log "Prometheus operator CRDs: cached in $out"
        return
    fi
    # go mod download checks the zip against the checksum database; run outside any module.
    dir="$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod@$PROMETHEUS_OPERATOR_VERSION" \
           | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$dir/example/prometheus-operator-crd" ]] || { log "no CRDs in $mod@$PROMETHEUS_OPERATOR_VERSION ($dir)"; exit 1; }
    mkdir -p "$out"
    for kind in podmonitors servicemonitors prometheusrules; do
        cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out/$kind.yaml"
        chmod 0644 "$out/$kind.yaml"
    done
    touch "$out/.complete"
    log "Prometheus operator CRDs $PROMETHEUS_OPERATOR_VERSION: in $out ($((SECONDS - start)) s)"
}

promtool() {
    local out="$CACHE/promtool/$PROMETHEUS_VERSION/promtool" start=$SECONDS tmp
    local pkg="github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
    if stamped "$out"; then
        log "promtool: cached at $out"
        return
    fi
    log "promtool: building $pkg with $(go env GOVERSION) (first time: about 6 minutes on 2 cores)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tsp-promtool.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # -trimpath: reproducible paths; -s -w: no symbol/DWARF tables, faster link, smaller file.
    # remove_all_sd: Prometheus' own build tag that leaves out every service-discovery
    # plugin (cloud SDKs: half of the source); `check rules` and `test rules` need none.
    # CGO_ENABLED=0 as the server below (and as Prometheus' own release builds): with cgo,
    # net is compiled differently and so is every package that imports it, and the server's
    # build reused none of promtool's 1,116 packages from Go's build cache (1,107 of its
    # 1,274 are the same; with both cgo-free, promtool built in 53 s after the server).
    (cd "$tmp" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$tmp" \
        go install -trimpath -tags=remove_all_sd -ldflags="-s -w $VERSION_LDFLAGS" "$pkg")
    stamped "$tmp/promtool" || { log "promtool: built, but --version does not say $(release_version)"; exit 1; }
    mkdir -p "$(dirname "$out")"
    mv -f "$tmp/promtool" "$out"
    rm -rf "$tmp"
    trap - EXIT
    log "promtool $PROMETHEUS_VERSION: built in $((SECONDS - start)) s"
}

prometheus() {
    local out="$CACHE/prometheus/$PROMETHEUS_VERSION/prometheus" start=$SECONDS tmp
    local pkg="github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
    if stamped "$out"; then
        log "prometheus: cached at $out"
        return
    fi
    log "prometheus: building $pkg with $(go env GOVERSION)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tsp-prometheus.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # remove_all_sd + enable_kubernetes_sd: of the service-discovery plugins only the
    # Kubernetes one (the tests discover the pipeline's pods through the API server), so
    # none of the cloud SDKs. Without the builtinassets tag there is no web UI, only the
    # HTTP API the tests query. -p (TSP_GO_BUILD_P, default: every core, since make builds
    # it before any test runs); most packages are promtool's, already in Go's build cache.
    (cd "$tmp" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$tmp" \
        go install -p "${TSP_GO_BUILD_P:-$(nproc)}" -trimpath -tags=remove_all_sd,enable_kubernetes_sd \
            -ldflags="-s -w $VERSION_LDFLAGS" "$pkg")
    stamped "$tmp/prometheus" || { log "prometheus: built, but --version does not say $(release_version)"; exit 1; }
    mkdir -p "$(dirname "$out")"
    mv -f "$tmp/prometheus" "$out"
    rm -rf "$tmp"
    trap - EXIT
    log "prometheus $PROMETHEUS_VERSION: built in $((SECONDS - start)) s"
}

for what in "$@"; do
    case "$what" in
        crds) crds ;;
        promtool) promtool ;;
        prometheus) prometheus ;;
        *) usage ;;
    esac
done
