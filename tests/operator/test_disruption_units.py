"""Unit tests: the router's PodDisruptionBudget, rendered and planned (pure functions)."""

import copy

from samples import sample_pipeline

from tspipe.childdiff import CREATE, DELETE, UPDATE
from tspipe.disruption import pdb_name, plan_pdb, router_pdb
from tspipe.model import Pipeline
from tspipe.render import render_deployments


def rendered(replicas=2, asked=None):
    obj = sample_pipeline(stored=True, router={"replicas": replicas})
    return obj, router_pdb(obj, Pipeline.from_resource(obj), replicas if asked is None else asked)


def test_budget_only_above_one_replica():
    assert rendered(1)[1] is None
    assert rendered(2, asked=0)[1] is None, "a paused router (asked for 0) has no budget"
    assert rendered(3)[1]["spec"]["maxUnavailable"] == 1


def test_budget_selects_exactly_the_router_pods_and_is_owned_like_the_deployments():
    obj, pdb = rendered(2)
    deps = render_deployments(obj)
    router = next(d for d in deps if d["metadata"]["name"] == "timestamps-router")
    assert (pdb["apiVersion"], pdb["kind"]) == ("policy/v1", "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == pdb_name("timestamps") == "timestamps-router"
    assert pdb["metadata"]["namespace"] == "ns"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": router["spec"]["selector"]}
    assert pdb["metadata"]["labels"] == router["metadata"]["labels"]
    assert pdb["metadata"]["ownerReferences"] == router["metadata"]["ownerReferences"]
    # The selector matches the router's pods and no other app's.
    others = [d for d in deps if d is not router]
    assert len(others) == 3
    sel = pdb["spec"]["selector"]["matchLabels"].items()
    assert sel <= router["spec"]["template"]["metadata"]["labels"].items()
    assert not any(sel <= d["spec"]["template"]["metadata"]["labels"].items() for d in others)


def served(pdb):
    """`pdb` as the API server returns it: server fields added."""
    out = copy.deepcopy(pdb)
    out["metadata"].update(resourceVersion="7", uid="pdb-uid", generation=1, managedFields=[{"manager": "x"}])
    out["status"] = {"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1, "expectedPods": 2}
    return out


def test_plan_creates_keeps_and_deletes():
    obj, pdb = rendered(2)
    (a,) = plan_pdb(obj, "timestamps-router", pdb, None).actions
    assert (a.verb, a.kind, a.body) == (CREATE, "PodDisruptionBudget", pdb)
    assert plan_pdb(obj, "timestamps-router", pdb, served(pdb)).actions == [], "in sync: no write"
    (a,) = plan_pdb(obj, "timestamps-router", None, served(pdb)).actions
    assert (a.verb, a.name, a.resource_version) == (DELETE, "timestamps-router", "7")
    assert plan_pdb(obj, "timestamps-router", None, None).actions == []


def test_plan_repairs_drift_keeping_what_others_added():
    obj, pdb = rendered(2)
    actual = served(pdb)
    actual["spec"] = {
        "minAvailable": 2,
        "selector": {"matchLabels": {"app": "x"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    actual["metadata"]["labels"]["team"] = "a"
    (a,) = plan_pdb(obj, "timestamps-router", pdb, actual).actions
    assert a.verb == UPDATE and "spec" in a.reason
    assert a.body["spec"] == {**pdb["spec"], "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    assert a.body["metadata"]["labels"] == {**pdb["metadata"]["labels"], "team": "a"}
    assert a.body["metadata"]["resourceVersion"] == "7", "a PUT guarded by what was read"
    assert "status" not in a.body and "managedFields" not in a.body["metadata"]


def test_someone_elses_budget_is_never_touched():
    obj, pdb = rendered(2)
    foreign = served(pdb)
    foreign["metadata"]["labels"] = {"app": "x"}
    foreign["metadata"]["ownerReferences"] = []
    p = plan_pdb(obj, "timestamps-router", pdb, foreign)
    assert p.actions == [] and "timestamps-router" in p.blocked[0] and "no owner" in p.blocked[0]
    assert plan_pdb(obj, "timestamps-router", None, foreign) == plan_pdb(obj, "x", None, None), (
        "not wanted and not ours: left alone, no complaint"
    )
    # Ours by label with the owner reference edited away: adopted back (as the Deployments are).
    adopted = served(pdb)
    adopted["metadata"]["ownerReferences"] = []
    (a,) = plan_pdb(obj, "timestamps-router", pdb, adopted).actions
    assert a.verb == UPDATE and a.body["metadata"]["ownerReferences"] == pdb["metadata"]["ownerReferences"]


def test_a_budget_being_deleted_is_waited_for():
    obj, pdb = rendered(2)
    going = served(pdb)
    going["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    p = plan_pdb(obj, "timestamps-router", pdb, going)
    assert p.actions == [] and p.waiting == ["timestamps-router"]
