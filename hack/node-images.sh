#!/usr/bin/env bash
# Builds the images the real node runs, with buildah (no Docker engine, no registry here),
# into docker-archive files that hack/localinfra/node.py imports into containerd:
#   base-python  Debian bookworm (mmdebstrap) + python3 with a venv at /usr/local, so that
#                `python` and pip are where the official python image has them
#   base-jre     Debian bookworm (mmdebstrap) + openjdk-17-jre-headless
#   pause        build/pause/linux/pause.c of the pinned k8s.io/kubernetes, gcc -static
#   router       Dockerfile.router   on base-python  -> ghcr.io/tspipe/router:0.1.0
#   operator     Dockerfile.operator on base-python  -> ghcr.io/tspipe/operator:0.1.0
#   time-source  hack/node/Dockerfile.spring-app on base-jre -> springcloudstream/time-source-kafka:5.1.1
#   log-sink     hack/node/Dockerfile.spring-app on base-jre -> springcloudstream/log-sink-kafka:5.1.1
# Each archive is rebuilt only when what it is built from changes (a key file beside it).
# Output: ${TSP_CACHE:-~/.cache/tspipe}/node/images/<name>.tar; buildah's own storage is
# ${TSP_CACHE}/node/buildah (vfs: works on any filesystem, needs no fuse-overlayfs). vfs keeps
# every layer as a full copy of the root filesystem (250-450 MB each), so after a build the
# store is pruned to the images the tags below name (prune()).
# Usage: hack/node-images.sh [NAME...]   (default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
OUT="$CACHE/node/images"
STORE="$CACHE/node/buildah"
SUITE=bookworm
# Tags: what the sample pipeline and the operator's manifests name (keep in step with
# manifests/samples/timestamppipeline.yaml, manifests/base/deployment.yaml and
# hack/localinfra/nodeconfig.py).
ROUTER_TAG=ghcr.io/tspipe/router:0.1.0
OPERATOR_TAG=ghcr.io/tspipe/operator:0.1.0
TIME_TAG=docker.io/springcloudstream/time-source-kafka:5.1.1
LOG_TAG=docker.io/springcloudstream/log-sink-kafka:5.1.1
PAUSE_TAG=localhost/tspipe/pause:3.10
BASE_PY=localhost/tspipe/base-python:$SUITE
BASE_JRE=localhost/tspipe/base-jre:$SUITE

log() { printf '[node-images] %s\n' "$*" >&2; }

bash "$ROOT/hack/node-packages.sh"
mkdir -p "$OUT" "$STORE"
# One run at a time per store (checkouts share the cache): prune() must not remove what a
# build running beside it still uses.
exec 9>"$STORE/lock"
flock -n 9 || { log "waiting for another build using $STORE"; flock 9; }
RUNROOT="$(mktemp -d /tmp/tsp-buildah-run-XXXXXX)"
trap 'rm -rf "$RUNROOT"' EXIT
bh() { buildah --root "$STORE/root" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
BUILT=0

# key NAME FILES...: a hash of this script and FILES' content (and names).
key() {
    shift
    # Names relative to the repository or the scratch folder: the key must not change
    # with where the build runs.
    { cat "${BASH_SOURCE[0]}"; for f in "$@"; do f2="${f#"$ROOT"/}"; printf '%s\n' "${f2#"$RUNROOT"/}"; cat "$f"; done; } \
        | sha256sum | cut -c1-16
}
fresh() { [[ -f "$OUT/$1.tar" && "$(cat "$OUT/$1.key" 2>/dev/null)" == "$2" ]]; }
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

# save NAME TAG KEY: the image as a docker-archive that `ctr images import` takes.
save() {
    rm -f "$OUT/$1.tar.tmp"
    bh push --quiet "$2" "docker-archive:$OUT/$1.tar.tmp:$2" >/dev/null
    mv -f "$OUT/$1.tar.tmp" "$OUT/$1.tar"
    echo "$3" > "$OUT/$1.key"
    BUILT=1
    log "$1: $2 -> $OUT/$1.tar ($(du -m "$OUT/$1.tar" | cut -f1) MB)"
}

# base NAME TAG PACKAGES POST: a Debian root filesystem as an image.
base() {
    local name=$1 tag=$2 pkgs=$3 post=$4 k ctr mnt start=$SECONDS
    k="$(printf '%s %s %s' "$pkgs" "$post" "$(key x /dev/null)" | sha256sum | cut -c1-16)"
    if have_image "$tag" && [[ "$(cat "$OUT/$name.key" 2>/dev/null)" == "$k" ]]; then
        return
    fi
    log "$name: mmdebstrap $SUITE with $pkgs"
    local tar="$RUNROOT/$name.tar" sources=()
    # The host's own Debian sources (the mirror this machine reaches), when present.
    [[ -f /etc/apt/sources.list.d/debian.sources ]] && sources=(/etc/apt/sources.list.d/debian.sources)
    # Documentation, manuals and message translations are left out as Debian's -slim images
    # (and so the official python:*-slim base) leave them out: 52 of the 248 MB here, never
    # read at run time. Licences (doc/*/copyright) stay.
    local slim=() p
    for p in doc groff info linda lintian/overrides locale man; do
        slim+=(--dpkgopt="path-exclude=/usr/share/$p/*")
    done
    # openjdk's postinst links its manuals with update-alternatives, which fails without
    # the folder (as in the official openjdk -slim images).
    slim+=(--dpkgopt='path-include=/usr/share/doc/*/copyright'
           --setup-hook='mkdir -p "$1"/usr/share/man/man1')
    mmdebstrap --quiet --variant=minbase --include="$pkgs" "${slim[@]}" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$SUITE" "$tar" "${sources[@]}"
    ctr="$(bh from --quiet scratch)"
    mnt="$(bh mount "$ctr")"
    tar -xf "$tar" -C "$mnt" --numeric-owner
    rm -f "$tar"
    [[ -n "$post" ]] && bh run --isolation chroot "$ctr" -- sh -c "$post"
    bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd '["/bin/sh"]' "$ctr"
    bh umount "$ctr" >/dev/null
    bh commit --quiet --rm "$ctr" "$tag" >/dev/null
    echo "$k" > "$OUT/$name.key"
    BUILT=1
    log "$name: $tag built in $((SECONDS - start)) s"
}

build_pause() {
    local src k ctr dir
    src="$(cd "$ROOT/hack/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
    k="$(key pause "$src")"
    fresh pause "$k" && return
    dir="$RUNROOT/pause"; mkdir -p "$dir"
    gcc -Os -static -o "$dir/pause" "$src"
    strip "$dir/pause"
    ctr="$(bh from --quiet scratch)"
    bh copy "$ctr" "$dir/pause" /pause >/dev/null
    bh config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
    bh commit --quiet --rm "$ctr" "$PAUSE_TAG" >/dev/null
    save pause "$PAUSE_TAG" "$k"
}

# bud NAME TAG DOCKERFILE CONTEXT BASE [--build-arg ...]: buildah bud, then save.
bud() {
    local name=$1 tag=$2 file=$3 ctx=$4 basetag=$5 k start=$SECONDS
    shift 5
    # The context's files as .dockerignore leaves them (and that file: it decides them).
    local ignore=()
    [[ -f "$ctx/.dockerignore" ]] && ignore=("$ctx/.dockerignore")
    k="$(key "$name" "$file" "${ignore[@]}" $(cd "$ctx" && find "${BUD_SOURCES[@]}" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -path '*/build/*' ! -path '*/dist/*' ! -name '*.pyc' ! -name '*.log' | sort | sed "s|^|$ctx/|") "$OUT/$(basename "${basetag%%:*}").key")"
    fresh "$name" "$k" && return
    log "$name: buildah bud -f ${file#"$ROOT"/} (base $basetag)"
    # chroot isolation: no user namespaces or fuse needed. Host network and the host's CA
    # bundle and pip.conf: PyPI is reached through the host's configured proxy and CA.
    local mounts=()
    [[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    bh bud --quiet --isolation chroot --network host --layers=false \
        -v /etc/ssl/certs:/etc/ssl/certs:ro "${mounts[@]}" \
        --build-arg "BASE_IMAGE=$basetag" "$@" -f "$file" -t "$tag" "$ctx" >/dev/null
    save "$name" "$tag" "$k"
    log "$name: built in $((SECONDS - start)) s"
}

# prune: after a build, remove from the store what no current tag names. A rebuild moves
# its tag to the new image and leaves the old one untagged, with its layers (each a full
# copy under vfs): without this the store grew by the image's size on every rebuild.
# Working containers are removed by bud and commit --rm; one left over is a killed build's.
# Only those older than an hour go: a younger one may belong to a build running now from a
# checkout whose copy of this script takes no lock. An image a container still uses stays
# (rmi refuses it).
prune() {
    local keep=" $ROUTER_TAG $OPERATOR_TAG $TIME_TAG $LOG_TAG $PAUSE_TAG $BASE_PY $BASE_JRE "
    local before id name dir kept=" "
    before=$(du -sm "$STORE" 2>/dev/null | cut -f1)
    for id in $(bh containers --all --quiet --notruncate); do
        dir="$STORE/root/vfs-containers/$id"
        if [[ -d "$dir" && -z "$(find "$dir" -maxdepth 0 -mmin -60)" ]]; then
            bh rm "$id" >/dev/null 2>&1 || true
        fi
    done
    # One line per image and name (<none>:<none> when untagged).
    while read -r id name; do
        [[ "$keep" == *" $name "* ]] && kept+="$id "
    done < <(bh images --all --noheading --no-trunc --format '{{.ID}} {{.Name}}:{{.Tag}}')
    for id in $(bh images --all --noheading --no-trunc --format '{{.ID}}' | sort -u); do
        [[ "$kept" == *" $id "* ]] || bh rmi "${id#sha256:}" >/dev/null 2>&1 || true
    done
    log "buildah store pruned: $before MB -> $(du -sm "$STORE" 2>/dev/null | cut -f1) MB ($STORE)"
}

want() { [[ $# -eq 0 ]] || [[ " ${WANT[*]} " == *" $1 "* ]]; }
WANT=("$@")
all=(pause router operator time-source log-sink)
[[ ${#WANT[@]} -eq 0 ]] && WANT=("${all[@]}")
total=$SECONDS

if want router || want operator; then
    # python3-venv brings ensurepip, so the venv at /usr/local has pip like the official image.
    base base-python "$BASE_PY" python3,python3-venv,ca-certificates "python3 -m venv /usr/local"
    # base() keys on its arguments; save its key where bud() looks for it.
fi
if want time-source || want log-sink; then
    base base-jre "$BASE_JRE" openjdk-17-jre-headless,ca-certificates ""
fi
if want pause; then build_pause; fi
if want router; then
    BUD_SOURCES=(router)
    bud router "$ROUTER_TAG" "$ROOT/Dockerfile.router" "$ROOT" "$BASE_PY"
fi
if want operator; then
    BUD_SOURCES=(operator)
    bud operator "$OPERATOR_TAG" "$ROOT/Dockerfile.operator" "$ROOT" "$BASE_PY"
fi
for app in time-source log-sink; do
    want "$app" || continue
    jar="$CACHE/spring-apps/5.1.1/$app-kafka.jar"
    [[ -f "$jar" ]] || bash "$ROOT/hack/spring-apps.sh"
    dir="$RUNROOT/$app"; mkdir -p "$dir"
    cp "$jar" "$dir/app.jar"
    cp "$ROOT/hack/node/Dockerfile.spring-app" "$dir/Dockerfile"
    tag=$TIME_TAG; [[ $app == log-sink ]] && tag=$LOG_TAG
    BUD_SOURCES=(.)
    bud "$app" "$tag" "$dir/Dockerfile" "$dir" "$BASE_JRE"
done
[[ $BUILT -eq 1 ]] && prune
log "images ready in $OUT ($((SECONDS - total)) s)"
