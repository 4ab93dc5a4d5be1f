#!/usr/bin/env bash
# The tools the monitoring tests need, from the Go module proxy, once:
#   prometheus-operator/<version>/*.yaml  the CRDs of PodMonitor, ServiceMonitor and
#                                         PrometheusRule (module zip, example/prometheus-operator-crd/)
#   promtool/<version>/promtool           Prometheus' promtool (go install of the pinned module)
# under ${TSP_CACHE:-~/.cache/tspipe}/; the pins are in hack/monitoring/versions.
# hack/localinfra/cache.py computes the same paths; keep the two in step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
# shellcheck source=monitoring/versions
source "$ROOT/hack/monitoring/versions"

log() { printf '[monitoring-tools] %s\n' "$*" >&2; }
command -v go >/dev/null || { log "Go is required (go1.26+): not found on PATH"; exit 1; }

total=$SECONDS
crds="$CACHE/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION"
if [[ -f "$crds/.complete" ]]; then
    log "Prometheus operator CRDs: cached in $crds"
else
    start=$SECONDS
    mod=github.com/prometheus-operator/prometheus-operator
    # go mod download checks the zip against the checksum database; outside any module.
    dir="$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod@$PROMETHEUS_OPERATOR_VERSION" \
           | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$dir/example/prometheus-operator-crd" ]] || { log "no CRDs in $mod@$PROMETHEUS_OPERATOR_VERSION ($dir)"; exit 1; }
    mkdir -p "$crds"
    for kind in podmonitors servicemonitors prometheusrules; do
        cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$crds/$kind.yaml"
        chmod 0644 "$crds/$kind.yaml"
    done
    touch "$crds/.complete"
    log "Prometheus operator CRDs $PROMETHEUS_OPERATOR_VERSION: in $crds ($((SECONDS - start)) s)"
fi

promtool="$CACHE/promtool/$PROMETHEUS_VERSION/promtool"
if [[ -x "$promtool" ]]; then
    log "promtool: cached at $promtool"
else
    start=$SECONDS
    log "promtool: building github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION with $(go env GOVERSION) (first time: about N minutes on 2 cores)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tsp-promtool.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # -trimpath: reproducible paths; -s -w: no symbol/DWARF tables, faster link, smaller file.
    (cd "$tmp" && GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$tmp" \
        go install -trimpath -ldflags="-s -w" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION")
    mkdir -p "$(dirname "$promtool")"
    mv -f "$tmp/promtool" "$promtool"
    rm -rf "$tmp"
    trap - EXIT
    log "promtool $PROMETHEUS_VERSION: built in $((SECONDS - start)) s"
fi
log "ready in $((SECONDS - total)) s"
