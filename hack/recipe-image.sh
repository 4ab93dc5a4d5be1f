#!/usr/bin/env bash
# The seed recipe's own router image, for tests/node/test_node_recipe_router.py: the recipe's
# Dockerfile (bench/seed_router/Dockerfile, its substitutions said there) with
# bench/seed_router/ as its context, on hack/node-images.sh's Python base, tagged as
# manifests/samples/recipe-router.yaml names it. Output: a docker-archive that
# `ctr images import` takes, ${TSP_CACHE:-~/.cache/tspipe}/node/images/recipe-router.tar,
# rebuilt only when what it is built from changes (the key file beside it).
# A script of its own, not a target of hack/node-images.sh: that script's cache keys cover
# its own text, so any change to it rebuilds every node image from the Debian bootstrap up
# (in every checkout sharing the cache). It shares that script's buildah store and lock.
# Usage: hack/recipe-image.sh   (prints the archive's path)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TSP_CACHE:-$HOME/.cache/tspipe}"
OUT="$CACHE/node/images"
STORE="$CACHE/node/buildah"
CTX="$ROOT/bench/seed_router"
TAG=docker.io/springcloud/polyglot-python-app:0.2
BASE_PY=localhost/tspipe/base-python:bookworm  # hack/node-images.sh's BASE_PY

log() { printf '[recipe-image] %s\n' "$*" >&2; }

# The Python base, current (hack/node-images.sh builds it with the router image, which
# every node start needs anyway: a no-op when both are fresh).
bash "$ROOT/hack/node-images.sh" router
# This script, the context's files as .dockerignore leaves them, and the base's key.
key="$({ cat "${BASH_SOURCE[0]}"
         cd "$CTX" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | sort | while read -r f; do
             printf '%s\n' "$f"; cat "$f"; done
         cat "$OUT/base-python.key"; } | sha256sum | cut -c1-16)"
if [[ -f "$OUT/recipe-router.tar" && "$(cat "$OUT/recipe-router.key" 2>/dev/null)" == "$key" ]]; then
    echo "$OUT/recipe-router.tar"
    exit 0
fi

exec 9>"$STORE/lock"
flock -n 9 || { log "waiting for another build using $STORE"; flock 9; }
RUNROOT="$(mktemp -d /tmp/tsp-buildah-run-XXXXXX)"
trap 'rm -rf "$RUNROOT"' EXIT
bh() { buildah --root "$STORE/root" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
start=$SECONDS
log "buildah bud -f bench/seed_router/Dockerfile (base $BASE_PY)"
# As hack/node-images.sh builds: chroot isolation, the host's network, CA bundle and
# pip.conf (PyPI through the host's configured proxy).
mounts=()
[[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
bh bud --quiet --isolation chroot --network host --layers=false \
    -v /etc/ssl/certs:/etc/ssl/certs:ro "${mounts[@]}" \
    --build-arg "BASE_IMAGE=$BASE_PY" -f "$CTX/Dockerfile" -t "$TAG" "$CTX" >/dev/null
rm -f "$OUT/recipe-router.tar.tmp"
bh push --quiet "$TAG" "docker-archive:$OUT/recipe-router.tar.tmp:$TAG" >/dev/null
mv -f "$OUT/recipe-router.tar.tmp" "$OUT/recipe-router.tar"
echo "$key" > "$OUT/recipe-router.key"
# Only the archive is used; under vfs the image in the store is a full copy of its root
# filesystem, and hack/node-images.sh's prune does not know this tag.
bh rmi "$TAG" >/dev/null 2>&1 || true
log "$TAG -> $OUT/recipe-router.tar ($(du -m "$OUT/recipe-router.tar" | cut -f1) MB) built in $((SECONDS - start)) s"
echo "$OUT/recipe-router.tar"
