#!/usr/bin/env bash
# Installs the Debian packages the real node needs, when missing (root, apt-get).
# Versions are Debian bookworm's: containerd 1.6.20, runc 1.1.5, CNI plugins 1.1.1,
# buildah 1.28.2, mmdebstrap 1.3.5 (kubelet 1.37 still accepts containerd 1.6).
# Exits 3 (without changing anything) when the machine cannot have them: not root or
# no apt-get; the node tests and `make demo` then fall back or skip, saying so.
set -euo pipefail
PKGS=(containerd runc containernetworking-plugins buildah mmdebstrap iproute2 iptables)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "[node-packages] cannot install ${missing[*]}: needs root and apt-get" >&2
    exit 3
fi
echo "[node-packages] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The package index may be old or absent on a fresh machine.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
