"""Where the project's built infrastructure lives, and how to find it.

The cache folder is ``$TSP_CACHE`` or ``~/.cache/tspipe``; the ``hack/*.sh``
scripts fill it and the helpers here only look things up (they never build).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"


def cache_dir() -> Path:
    """The cache folder shared by the build scripts and the Python helpers."""
    env = os.environ.get("TSP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tspipe"


def _go_mod_require(go_mod: Path, module: str) -> str:
    """The version `go_mod` requires for `module` (first match)."""
    for line in go_mod.read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["require"]:
            fields = fields[1:]
        if len(fields) >= 2 and fields[0] == module:
            return fields[1]
    raise LookupError(f"{module} not required in {go_mod}")


# Files whose content decides the build; the same list, in the same order, as
# the key in hack/build-k8s.sh (which holds the build flags, hence its presence).
_K8S_KEY_FILES = ("k8s/go.mod", "k8s/go.sum", "k8s/main.go", "kwok/go.mod", "kwok/go.sum", "build-k8s.sh")


def k8s_version() -> str:
    return _go_mod_require(HACK / "k8s" / "go.mod", "k8s.io/kubernetes")


def kwok_version() -> str:
    return _go_mod_require(HACK / "kwok" / "go.mod", "sigs.k8s.io/kwok")


def k8s_bin_dir() -> Path:
    """The folder hack/build-k8s.sh builds tspkube, kwok and kwok-stages.yaml into."""
    digest = hashlib.sha256()
    for name in _K8S_KEY_FILES:
        digest.update((HACK / name).read_bytes())
    return cache_dir() / "k8s" / f"{k8s_version()}-{digest.hexdigest()[:16]}"


def k8s_file(name: str) -> Path:
    """A built control-plane file (``tspkube``, ``kwok``, ``kwok-stages.yaml``)."""
    path = k8s_bin_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make k8s-bins` (bash hack/build-k8s.sh) first")
    return path


def monitoring_versions() -> dict[str, str]:
    """The pins of hack/monitoring-tools.sh (hack/monitoring/versions, KEY=value lines)."""
    out = {}
    for raw in (HACK / "monitoring" / "versions").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _monitoring_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `make {what}` (bash hack/monitoring-tools.sh {what.split('-')[-1]}) first"
        )
    return path


def prometheus_operator_crd(plural: str) -> Path:
    """A Prometheus operator CRD (``podmonitors``, ``servicemonitors``, ``prometheusrules``)."""
    version = monitoring_versions()["PROMETHEUS_OPERATOR_VERSION"]
    return _monitoring_file(cache_dir() / "prometheus-operator" / version / f"{plural}.yaml", "monitoring-crds")


def promtool() -> Path:
    """The promtool hack/monitoring-tools.sh builds."""
    version = monitoring_versions()["PROMETHEUS_VERSION"]
    return _monitoring_file(cache_dir() / "promtool" / version / "promtool", "promtool")


def prometheus() -> Path:
    """The Prometheus server hack/monitoring-tools.sh builds (Kubernetes discovery only)."""
    version = monitoring_versions()["PROMETHEUS_VERSION"]
    return _monitoring_file(cache_dir() / "prometheus" / version / "prometheus", "prometheus")


def helm() -> Path:
    """The helm hack/helm.sh builds (pin in hack/helm/versions)."""
    version = ""
    for line in (HACK / "helm" / "versions").read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key == "HELM_VERSION":
            version = value
    path = cache_dir() / "helm" / version / "helm"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make helm` (bash hack/helm.sh) first")
    return path
