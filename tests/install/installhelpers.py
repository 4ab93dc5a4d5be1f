"""Helpers for the install tests: kustomize builds with the project's kubectl, the two
install variants, a kubeconfig holding a ServiceAccount token, bounded waits."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from localinfra import cache
from localinfra.kube import audit_events  # noqa: F401  (re-exported for the tests)
from localinfra.proc import wait_for  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRD_FILE = ROOT / "crds" / "timestamppipelines.tspipe.io.yaml"
OPERATOR_NS = "tspipe-system"
SA_NAME = "tspipe-operator"
SA_USER = f"system:serviceaccount:{OPERATOR_NS}:{SA_NAME}"


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    watched: str | None  # None: every namespace

    def __str__(self) -> str:
        return self.name


CLUSTER = Variant("cluster", MANIFESTS, None)
NAMESPACED = Variant("namespaced", MANIFESTS / "overlays" / "namespaced", "tspipe-pipelines")
VARIANTS = (CLUSTER, NAMESPACED)


def kubectl_argv() -> list[str]:
    """The project's kubectl (tspkube dispatches on its first argument)."""
    return [str(cache.k8s_file("tspkube")), "kubectl"]


def kustomize(path: Path) -> list[dict]:
    proc = subprocess.run([*kubectl_argv(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def with_components(folder: Path, base: Path, *components: str) -> Path:
    """A user's kustomization under `folder`: `base` with components of manifests/ (kustomize
    takes relative paths only)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(base, folder)],
                "components": [os.path.relpath(MANIFESTS / c, folder) for c in components],
            }
        )
    )
    return folder


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def token_kubeconfig(admin_kubeconfig: str, token: str, path: Path) -> str:
    """A kubeconfig for the same API server and CA as the admin one, authenticating
    with a bearer token (the operator's identity), nothing else."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": cluster["server"], "certificate-authority": cluster["certificate-authority"]},
            }
        ],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": SA_NAME}}],
        "current-context": "operator",
    }
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return str(path)


def api_request(
    kubeconfig_path: str, method: str, path: str, body: dict | None = None, content_type: str = "application/json"
) -> tuple[int, dict]:
    """One raw request with the kubeconfig's token (for verbs kubectl only reaches after
    a GET, such as PATCH). Returns (HTTP status, decoded body)."""
    import ssl
    import urllib.error
    import urllib.request

    cfg = json.loads(Path(kubeconfig_path).read_text())
    cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    req = urllib.request.Request(
        cluster["server"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {user['token']}",
            "Content-Type": content_type,
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def readme_commands(readme: Path, heading: str) -> list[list[str]]:
    """The commands of the first ```sh block under `heading` in a Markdown file, each
    split into words (comments dropped, backslash continuations joined)."""
    import shlex

    lines = readme.read_text().splitlines()
    start = lines.index(heading)
    i = next(n for n in range(start + 1, len(lines)) if lines[n].strip() == "```sh")
    block = []
    for line in lines[i + 1 :]:
        if line.strip() == "```":
            break
        block.append(line)
    text = "\n".join(block).replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out
