#!/usr/bin/env bash
# The operator image of an earlier git revision, for the upgrade test on the real node
# (tests/node/test_node_upgrade.py): REV's own Dockerfile.operator and operator/ (the tree of
# that commit, read with git archive) built with buildah exactly as hack/node-images.sh
# builds the current one (same base-python image, same bud flags), tagged
# ghcr.io/tspipe/operator:git-<rev12> and saved as <cache>/node/images/operator-<rev12>.tar,
# which hack/localinfra/node.py's Node.import_image() loads into containerd.
# Built once per revision and base image (a key file beside the archive, as node-images.sh
# keeps them); the image leaves buildah's store once saved (vfs keeps full copies).
# A separate script, not a target of node-images.sh: every image's key there hashes that
# script, so editing it rebuilds every image of every checkout sharing the cache.
# Usage: hack/node-image-at.sh REV   (prints the archive's path; exit 4: REV not in this clone)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
OUT="$CACHE/node/images"
STORE="$CACHE/node/buildah"
BASE_PY=localhost/tspipe/base-python:bookworm   # node-images.sh's BASE_PY
log() { printf '[node-image-at] %s\n' "$*" >&2; }

[[ $# -eq 1 ]] || { echo "usage: $0 REV" >&2; exit 2; }
if ! full="$(git -C "$ROOT" rev-parse --verify --quiet "$1^{commit}")"; then
    log "no commit $1 in this clone ($ROOT)"
    exit 4
fi
short=${full:0:12}
name="operator-$short" tag="ghcr.io/tspipe/operator:git-$short"

RUNROOT="$(mktemp -d /tmp/tsp-buildah-run-XXXXXX)"
trap 'rm -rf "$RUNROOT"' EXIT
bh() { buildah --root "$STORE/root" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
# The base image: node-images.sh builds it with the current operator's image (which the
# node imports anyway), and takes the store's lock itself.
if ! bh inspect --type image "$BASE_PY" >/dev/null 2>&1 || [[ ! -f "$OUT/base-python.key" ]]; then
    bash "$ROOT/hack/node-images.sh" operator
fi
# REV's tree is immutable: the key is this script, the revision and the base image's key.
k="$({ cat "${BASH_SOURCE[0]}"; echo "$full"; cat "$OUT/base-python.key"; } | sha256sum | cut -c1-16)"
if [[ -f "$OUT/$name.tar" && "$(cat "$OUT/$name.key" 2>/dev/null)" == "$k" ]]; then
    echo "$OUT/$name.tar"
    exit 0
fi
exec 9>"$STORE/lock"
flock -n 9 || { log "waiting for another build using $STORE"; flock 9; }
start=$SECONDS
ctx="$RUNROOT/$name"; mkdir -p "$ctx"
git -C "$ROOT" archive "$full" Dockerfile.operator .dockerignore operator | tar -x -C "$ctx"
log "$name: buildah bud -f Dockerfile.operator of $short (base $BASE_PY)"
mounts=()
[[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
bh bud --quiet --isolation chroot --network host --layers=false \
    -v /etc/ssl/certs:/etc/ssl/certs:ro "${mounts[@]}" \
    --build-arg "BASE_IMAGE=$BASE_PY" -f "$ctx/Dockerfile.operator" -t "$tag" "$ctx" >/dev/null
rm -f "$OUT/$name.tar.tmp"
bh push --quiet "$tag" "docker-archive:$OUT/$name.tar.tmp:$tag" >/dev/null
mv -f "$OUT/$name.tar.tmp" "$OUT/$name.tar"
echo "$k" > "$OUT/$name.key"
bh rmi "$tag" >/dev/null 2>&1 || true
log "$name: $tag -> $OUT/$name.tar ($(du -m "$OUT/$name.tar" | cut -f1) MB) in $((SECONDS - start)) s"
echo "$OUT/$name.tar"
