#!/usr/bin/env bash
# Builds the local Kubernetes control plane from Go modules, once:
#   tspkube  etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kubectl,
#            and the kubelet for the real node (hack/k8s)
#   kwok     fake nodes, pods marked Ready without a kubelet (hack/kwok)
# into ${TSP_CACHE:-~/.cache/tspipe}/k8s/<k8s version>-<hash of the module files>/,
# reuses them when present, and links kubectl into .venv/bin.
# hack/localinfra/cache.py computes the same folder name; keep the two in step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
K8S_MOD="$ROOT/hack/k8s"
KWOK_MOD="$ROOT/hack/kwok"

# required_version MODULE GO_MOD: the version GO_MOD requires (block or one-line form).
required_version() {
    awk -v m="$1" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m { print $2; exit }' "$2"
}
k8s_version="$(required_version k8s.io/kubernetes "$K8S_MOD/go.mod")"
kwok_version="$(required_version sigs.k8s.io/kwok "$KWOK_MOD/go.mod")"
# Anything that changes what is built (this script holds the flags) changes the key.
key="$(cat "$K8S_MOD/go.mod" "$K8S_MOD/go.sum" "$K8S_MOD/main.go" \
           "$KWOK_MOD/go.mod" "$KWOK_MOD/go.sum" "$ROOT/hack/build-k8s.sh" | sha256sum | cut -c1-16)"
out="$CACHE/k8s/$k8s_version-$key"
mkdir -p "$out"

log() { printf '[build-k8s] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "Go is required (go1.26+): not found on PATH"; exit 1; }

# build NAME DIR PKG LDFLAGS: go build PKG inside module DIR to $out/NAME, atomically.
build() {
    local name="$1" dir="$2" pkg="$3" ldflags="$4" start
    if [[ -x "$out/$name" ]]; then
        log "$name: cached at $out/$name"
        return
    fi
    log "$name: building $pkg in ${dir#"$ROOT"/} with $(go env GOVERSION) (first time: many minutes on 2 cores)"
    start=$SECONDS
    # -trimpath: reproducible paths; -s -w: no symbol/DWARF tables, faster link, smaller file.
    # -buildvcs=false: the binaries do not depend on this repository's git state.
    (cd "$dir" && go build -trimpath -buildvcs=false -ldflags="-s -w $ldflags" -o "$out/$name.tmp" "$pkg")
    mv -f "$out/$name.tmp" "$out/$name"
    log "$name: built in $((SECONDS - start)) s"
}

total=$SECONDS
# Release builds stamp the version with -X; without it the API server and
# kubectl report v0.0.0-master, which breaks clients that check versions.
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
build tspkube "$K8S_MOD" . "-X main.version=$k8s_version$stamp"
build kwok "$KWOK_MOD" sigs.k8s.io/kwok/cmd/kwok ""

# kwok alone has no behaviour: it acts through Stages. Take the ones kwokctl
# uses by default, from the pinned kwok module: nodes become Ready and keep
# their lease; pods become Ready, complete and get deleted.
# A temporary file of its own: two set-ups running at once (two clones' `make test`)
# raced on one fixed name.
stages="$(cd "$KWOK_MOD" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
tmp="$(mktemp "$out/kwok-stages.yaml.XXXXXX")"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n'
    cat "$stages/$f"
done > "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$out/kwok-stages.yaml"

# kubectl for users and tests: tspkube dispatches on its argv[0].
if [[ -d "$ROOT/.venv/bin" ]]; then
    ln -sfn "$out/tspkube" "$ROOT/.venv/bin/kubectl"
    log "kubectl: linked $ROOT/.venv/bin/kubectl -> $out/tspkube"
fi
# Builds of other revisions (about 275 MB each) go once unused for a week.
find "$CACHE/k8s" -mindepth 1 -maxdepth 1 -type d ! -name "$k8s_version-$key" -mtime +7 \
    -exec rm -rf {} + 2>/dev/null || true
log "k8s $k8s_version, kwok $kwok_version ready in $out ($((SECONDS - total)) s)"
