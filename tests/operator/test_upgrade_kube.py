"""An upgrade of the operator rolls no app, on the real API server: the children the
operator at the pinned revision left (hack/upgrade/baseline.json, created here as it would
have created them) are taken over by this tree's operator without a single write."""

from __future__ import annotations

import json

import pytest
import upgradebase
from kubehelpers import describe, settled, wait_for

pytestmark = pytest.mark.kube


def test_an_upgraded_operator_writes_none_of_the_children_the_earlier_one_left(k, operator_factory, audit, namespace):
    objs = upgradebase.pipelines()
    k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    uids = {o["metadata"]["name"]: k.json("tsp", o["metadata"]["name"])["metadata"]["uid"] for o in objs}
    children = [c for cs in upgradebase.children(namespace, uids).values() for c in cs]
    k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": children}))
    before = {d["metadata"]["name"]: d for d in k.json("deployments")["items"]}
    since = audit.offset()

    op = operator_factory().start()
    for name in uids:
        wait_for(settled(k, "Running", name), 120, f"{name} Running under the upgraded operator")
        wait_for(
            lambda n=name: op.reconciles(n) and op.reconciles(n)[-1].endswith(": 0 writes"),
            60,
            f"a pass over {name} with nothing to write",
        )

    writes = [
        w
        for w in audit.writes(since, namespace)
        if w["objectRef"]["resource"] in ("deployments", "poddisruptionbudgets")
    ]
    assert not writes, f"the upgrade from {upgradebase.revision()} rewrote {sorted(describe(w) for w in writes)}"
    after = {d["metadata"]["name"]: d for d in k.json("deployments")["items"]}
    assert {n: d["metadata"]["generation"] for n, d in after.items()} == {
        n: d["metadata"]["generation"] for n, d in before.items()
    }
    assert {n: d["spec"]["template"] for n, d in after.items()} == {n: d["spec"]["template"] for n, d in before.items()}
    assert len(after) == 12 and k.get_or_none("pdb", "shaped-router") is not None
