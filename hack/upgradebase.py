"""The children an earlier operator rendered for the upgrade pipelines (issue 26: an
upgrade of the operator rolls no app).

hack/upgrade/baseline.json holds, for each pipeline of hack/upgrade/pipelines.yaml, the
Deployments and PodDisruptionBudget that the operator at a pinned revision renders, with
the pipeline's namespace and UID as placeholders. tests/operator/test_upgrade_units.py
checks that this tree's operator sees no drift in them; test_upgrade_kube.py creates
them on the real API server, as that operator left them, and runs this tree's operator
over them: it must write none of them.

The baseline is a committed copy, not rendered from `git archive REV` at test time: CI's
clone may be shallow or lack the pinned commit. Move it at a release, when CHANGELOG.md
names what rolls:

  python hack/upgradebase.py --update REV
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "hack" / "upgrade" / "pipelines.yaml"
BASELINE = ROOT / "hack" / "upgrade" / "baseline.json"
NAMESPACE, UID = "@NAMESPACE@", "@UID@"

# Runs with REV's tspipe package first on the path: uses only what every revision since
# the PodDisruptionBudget (issue 23) has, render_deployments and router_pdb.
RENDER = f"""
import json, sys, yaml
from tspipe.disruption import router_pdb
from tspipe.model import Pipeline
from tspipe.render import render_deployments, spec_replicas
from tspipe.components import ROUTER
out = {{}}
for obj in yaml.safe_load(open(sys.argv[1])):
    obj["metadata"].update(namespace="{NAMESPACE}", uid="{UID}", generation=1)
    p = Pipeline.from_resource(obj)
    children = render_deployments(obj)
    pdb = router_pdb(obj, p, spec_replicas(p, ROUTER))
    out[obj["metadata"]["name"]] = children + ([pdb] if pdb else [])
print(json.dumps(out))
"""


def pipelines() -> list[dict]:
    import yaml

    return yaml.safe_load(PIPELINES.read_text())


def revision() -> str:
    """The pinned revision the baseline was rendered at (12 hex digits)."""
    return json.loads(BASELINE.read_text())["revision"]


def children(namespace: str, uids: dict[str, str]) -> dict[str, list[dict]]:
    """The baseline's children of each pipeline, as the earlier operator would have written
    them in `namespace` for the pipelines of UIDs `uids` (by name)."""
    data = json.loads(BASELINE.read_text())["children"]
    out = {
        name: json.loads(json.dumps(data[name]).replace(NAMESPACE, namespace).replace(UID, uid))
        for name, uid in uids.items()
    }
    for objs in out.values():
        for d in objs:
            if d["kind"] == "Deployment":
                _rehash(d)
    return out


def _rehash(deployment: dict) -> None:
    """The spec-hash annotation as the earlier operator computed it for this namespace and
    UID. (The hash rule is this tree's; tests/operator/test_pass_cost_units.py pins its values.)"""
    from tspipe.render import stamp_hash

    stamp_hash(deployment)


def render_at(rev: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="tsp-upgradebase-") as d:
        archive = subprocess.run(["git", "archive", rev, "operator/tspipe"], cwd=ROOT, capture_output=True)
        if archive.returncode != 0:
            raise SystemExit(
                f"upgradebase: no operator at {rev!r} in this clone's history ({archive.stderr.decode().strip()})"
            )
        subprocess.run(["tar", "-x", "-C", d], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(d) / "operator")}
        r = subprocess.run(
            [sys.executable, "-c", RENDER, str(PIPELINES)], env=env, capture_output=True, text=True, check=True
        )
        return json.loads(r.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python hack/upgradebase.py")
    ap.add_argument("--update", metavar="REV", required=True, help="render the pipelines with REV's operator")
    a = ap.parse_args(argv)
    full = subprocess.run(
        ["git", "rev-parse", "--short=12", a.update], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    data = {"revision": full, "namespace": NAMESPACE, "uid": UID, "children": render_at(a.update)}
    BASELINE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"upgradebase: {BASELINE.relative_to(ROOT)} now holds what the operator at {full} renders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
