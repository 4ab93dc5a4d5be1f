"""An upgrade of the operator rolls no app: this tree renders nothing that differs, for the
operator's own comparison, from what the operator at the pinned revision rendered for the
upgrade pipelines (hack/upgrade/; move the baseline with `python hack/upgradebase.py
--update REV` at a release, naming in CHANGELOG.md what rolls)."""

from __future__ import annotations

import copy

import pytest
import upgradebase

from tspipe.childdiff import drift
from tspipe.components import ROUTER
from tspipe.disruption import pdb_drift, router_pdb
from tspipe.model import Pipeline
from tspipe.render import render_deployments, spec_replicas

NS, UID = "apps", "0f6c2a52-3b7e-4d1e-9d3a-7c1f00000001"


def rendered_now(obj: dict) -> dict[str, dict]:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(namespace=NS, uid=UID, generation=1)
    p = Pipeline.from_resource(obj)
    out = {f"{d['kind']}/{d['metadata']['name']}": d for d in render_deployments(obj)}
    pdb = router_pdb(obj, p, spec_replicas(p, ROUTER))
    if pdb:
        out[f"{pdb['kind']}/{pdb['metadata']['name']}"] = pdb
    return out


@pytest.mark.parametrize("obj", upgradebase.pipelines(), ids=lambda o: o["metadata"]["name"])
def test_the_pinned_operator_s_children_need_no_write(obj):
    name = obj["metadata"]["name"]
    before = {f"{c['kind']}/{c['metadata']['name']}": c for c in upgradebase.children(NS, {name: UID})[name]}
    now = rendered_now(obj)
    assert sorted(now) == sorted(before), "the upgrade adds or removes a child"
    for key, desired in now.items():
        judge = pdb_drift if desired["kind"] == "PodDisruptionBudget" else drift
        assert judge(desired, before[key]) == [], (
            f"{key}: an upgrade from {upgradebase.revision()} rewrites it; if that is meant, name it in "
            f"CHANGELOG.md and move the baseline (python hack/upgradebase.py --update REV)"
        )


def test_the_comparison_sees_a_changed_pod_template():
    # The check above can fail: the same baseline against a template change is drift.
    obj = upgradebase.pipelines()[0]
    name = obj["metadata"]["name"]
    before = upgradebase.children(NS, {name: UID})[name][1]
    now = copy.deepcopy(rendered_now(obj)[f"Deployment/{before['metadata']['name']}"])
    now["spec"]["template"]["spec"]["containers"][0]["image"] += "-new"
    assert "template" in drift(now, before)
