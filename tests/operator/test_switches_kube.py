"""On the real control plane (kwok pods, the API server's audit log): holding
reconciliation with `tspipe.io/reconcile-paused`, the router's PodDisruptionBudget, and
restarting apps with `tspipe.io/restart`. The operator is a real subprocess."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from kubehelpers import conditions, describe, generations, no_broker_pipeline, settled, wait_for
from samples import SAMPLE_NAME as NAME

pytestmark = pytest.mark.kube

HOLD = "tspipe.io/reconcile-paused"
RESTART = "tspipe.io/restart"
RESTARTED_AT = "tspipe.io/restartedAt"
PDB = f"{NAME}-router"
NEW_ROUTER = "ghcr.io/tspipe/router:0.2.0"


def env_names(d):
    return {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0].get("env") or []}


def router_image(k):
    return k.json("deployment", f"{NAME}-router")["spec"]["template"]["spec"]["containers"][0]["image"]


def event_reasons(k):
    return [
        (e["type"], e["reason"], e["message"])
        for e in k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
    ]


def operator_writes(audit, since, namespace):
    """(verb, resource, subresource) of each write the operator made since `since`."""
    return [
        (w["verb"], w["objectRef"]["resource"], w["objectRef"].get("subresource"))
        for w in audit.writes(since, namespace)
    ]


# --- hold -----------------------------------------------------------------------------------


def test_held_reconciliation_writes_nothing_to_the_children_then_catches_up(k, operator_factory, audit, namespace):
    op = operator_factory("--resync-seconds", "2").start()
    k.apply(no_broker_pipeline())
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    gens = generations(k)
    before = audit.offset()

    k("annotate", "tsp", NAME, f"{HOLD}=true")
    wait_for(
        lambda: conditions(k.json("tsp", NAME)).get("ReconciliationPaused", {}).get("status") == "True",
        60,
        "condition ReconciliationPaused=True",
    )
    # While held: a spec change (new router image, a second router replica, which would
    # also bring a PodDisruptionBudget) and two hand edits of the children (drift).
    k(
        "patch",
        "tsp",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"router": {"image": NEW_ROUTER, "replicas": 2}}}),
    )
    k("scale", "deployment", f"{NAME}-time", "--replicas=3")
    k("set", "env", "deployment", f"{NAME}-evenlogger", "EXTRA=1")
    generation = k.json("tsp", NAME)["metadata"]["generation"]
    assert generation == 2
    # The operator saw all of it: its condition names the new generation, and it kept
    # running passes (the Deployment events, a resync every 2 s).
    obj = wait_for(
        lambda: (
            (o := k.json("tsp", NAME))
            and conditions(o)["ReconciliationPaused"]["observedGeneration"] == generation
            and o
        ),
        30,
        "the held condition observing generation 2",
    )
    passes = len(op.reconciles(NAME))
    wait_for(lambda: len(op.reconciles(NAME)) >= passes + 3, 30, "three more passes while held")

    cond = conditions(obj)["ReconciliationPaused"]
    assert cond["reason"] == "ReconciliationPaused" and HOLD in cond["message"]
    assert obj["status"]["observedGeneration"] == 1, "the status says generation 2 is not applied"
    # The audit log: no write to any child (or to the pipeline object itself), only the
    # status and the one Event saying the pipeline is held.
    writes = operator_writes(audit, before, namespace)
    assert ("patch", "timestamppipelines", "status") in writes
    assert set(writes) <= {("patch", "timestamppipelines", "status"), ("create", "events", None)}, [
        describe(w) for w in audit.writes(before, namespace)
    ]
    assert [r for t, r, _ in event_reasons(k) if r.startswith("Reconciliation")] == ["ReconciliationPaused"]
    # And the drift and the old spec are still there.
    assert k.json("deployment", f"{NAME}-time")["spec"]["replicas"] == 3
    assert "EXTRA" in env_names(k.json("deployment", f"{NAME}-evenlogger"))
    assert router_image(k) == "ghcr.io/tspipe/router:0.1.0"
    assert k.json("deployment", f"{NAME}-router")["spec"]["replicas"] == 1
    assert k.get_or_none("pdb", PDB) is None
    assert generations(k) == {**gens, "time": gens["time"] + 1, "evenlogger": gens["evenlogger"] + 1}, (
        "only the hand edits changed the Deployments"
    )

    # Released: the drift is repaired, the spec change applied, the condition gone.
    released = audit.offset()
    k("annotate", "tsp", NAME, f"{HOLD}-")
    obj = wait_for(settled(k, "Running"), 120, "Running at generation 2")
    assert "ReconciliationPaused" not in conditions(obj)
    assert k.json("deployment", f"{NAME}-time")["spec"]["replicas"] == 1
    assert "EXTRA" not in env_names(k.json("deployment", f"{NAME}-evenlogger"))
    assert router_image(k) == NEW_ROUTER
    assert obj["status"]["components"]["router"]["readyReplicas"] == 2
    assert k.get_or_none("pdb", PDB) is not None
    # The same audit log now shows the operator's writes to the children.
    assert ("update", "deployments", None) in operator_writes(audit, released, namespace)
    assert ("create", "poddisruptionbudgets", None) in operator_writes(audit, released, namespace)
    assert "ReconciliationResumed" in [r for _, r, _ in event_reasons(k)]


# --- disruption budget ------------------------------------------------------------------------


def test_router_budget_appears_at_two_replicas_and_goes_at_one(k, operator_factory):
    operator_factory().start()
    k.apply(no_broker_pipeline(rollout={"pauseDrainSeconds": 0}))
    obj = wait_for(settled(k, "Running"), 180, "pipeline Running")
    assert k.get_or_none("pdb", PDB) is None, "one router replica: no budget"

    k("scale", f"tsp/{NAME}", "--replicas=2")
    pdb = wait_for(lambda: k.get_or_none("pdb", PDB), 60, "the router's PodDisruptionBudget")
    router = k.json("deployment", f"{NAME}-router")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == router["spec"]["selector"]
    assert pdb["metadata"]["labels"] == router["metadata"]["labels"]
    (ref,) = pdb["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "TimestampPipeline",
        NAME,
        obj["metadata"]["uid"],
        True,
    )
    # The disruption controller finds exactly the router's two pods: one may go at a time.
    st = wait_for(
        lambda: (
            (s := k.json("pdb", PDB).get("status") or {}).get("expectedPods") == 2
            and s.get("currentHealthy") == 2
            and s
        ),
        60,
        "the budget counting the two router pods",
    )
    assert st["disruptionsAllowed"] == 1

    # Paused, the router is at zero and needs no budget; resumed at two, it is back.
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":true}}')
    wait_for(settled(k, "Paused"), 120, "phase Paused")
    wait_for(lambda: k.get_or_none("pdb", PDB) is None, 30, "budget removed while paused")
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":false}}')
    wait_for(lambda: k.get_or_none("pdb", PDB), 60, "budget back after resume")

    k("scale", f"tsp/{NAME}", "--replicas=1")
    wait_for(lambda: k.get_or_none("pdb", PDB) is None, 60, "budget removed at one replica")
    wait_for(settled(k, "Running"), 120, "Running with one router replica")
    reasons = [r for _, r, _ in event_reasons(k)]
    assert "CreatedPodDisruptionBudget" in reasons and "DeletedPodDisruptionBudget" in reasons


# --- restart ----------------------------------------------------------------------------------


def annotations(k):
    return k.json("tsp", NAME)["metadata"].get("annotations") or {}


def restarted(k, apps):
    """A probe: the pipeline once the restart annotation is consumed and recorded for `apps`."""

    def probe():
        obj = k.json("tsp", NAME)
        last = ((obj.get("status") or {}).get("history") or [{}])[-1]
        gone = RESTART not in (obj["metadata"].get("annotations") or {})
        return obj if gone and last.get("restarted") == apps else None

    return probe


def quiet(op):
    """A probe: the operator's last pass wrote nothing (it has settled)."""
    return lambda: op.reconciles(NAME) and op.reconciles(NAME)[-1].endswith(": 0 writes")


def test_restart_annotation_rolls_exactly_the_named_apps_and_is_recorded(k, operator_factory):
    op = operator_factory().start()
    k.apply(no_broker_pipeline())
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    gens = generations(k)
    selector = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=router"
    old_pods = {p["metadata"]["name"] for p in k.json("pods", "-l", selector)["items"]}
    t0 = datetime.now(UTC).replace(microsecond=0)

    k("annotate", "tsp", NAME, f"{RESTART}=router")
    obj = wait_for(restarted(k, ["router"]), 60, "restart of the router consumed and recorded")
    entry = obj["status"]["history"][-1]
    assert entry["generation"] == obj["metadata"]["generation"] == 1, "a restart is no spec change"
    after = generations(k)
    assert after["router"] == gens["router"] + 1
    assert {c: g for c, g in after.items() if c != "router"} == {c: g for c, g in gens.items() if c != "router"}
    stamp = k.json("deployment", f"{NAME}-router")["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert stamp.endswith("Z") and t0 - timedelta(seconds=1) <= datetime.fromisoformat(stamp) <= datetime.now(UTC)
    (msg,) = [m for t, r, m in event_reasons(k) if (t, r) == ("Normal", "Restarted")]
    assert "router" in msg and f"{NAME}-router" in msg
    # The rollout replaced the router's pod with one from the restarted template.

    def new_pods():
        pods = [p for p in k.json("pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]
        fresh = [p for p in pods if p["metadata"].get("annotations", {}).get(RESTARTED_AT) == stamp]
        return pods if pods and len(fresh) == len(pods) else None

    pods = wait_for(new_pods, 120, "the router's pod replaced")
    assert not {p["metadata"]["name"] for p in pods} & old_pods
    wait_for(settled(k, "Running"), 120, "Running after the restart")

    # A list restarts each app it names, and only those.
    gens = generations(k)
    k("annotate", "tsp", NAME, f"{RESTART}=oddLogger,time")
    wait_for(restarted(k, ["time", "oddLogger"]), 60, "restart of time and oddLogger consumed and recorded")
    after = generations(k)
    assert (after["time"], after["oddlogger"]) == (gens["time"] + 1, gens["oddlogger"] + 1)
    assert (after["router"], after["evenlogger"]) == (gens["router"], gens["evenlogger"])

    # An unknown name: refused as a whole (the valid name in the list is not restarted),
    # the annotation removed, a Warning and a condition naming the bad value.
    wait_for(quiet(op), 60, "the operator settled")
    gens = generations(k)
    k("annotate", "tsp", NAME, f"{RESTART}=evenLogger,routr")
    obj = wait_for(
        lambda: (o := k.json("tsp", NAME)) and "RestartRejected" in conditions(o) and o, 60, "RestartRejected condition"
    )
    assert RESTART not in (obj["metadata"].get("annotations") or {})
    cond = conditions(obj)["RestartRejected"]
    assert cond["status"] == "True" and cond["reason"] == "UnknownApp" and "'routr'" in cond["message"]
    warnings = [m for t, r, m in event_reasons(k) if (t, r) == ("Warning", "RestartRejected")]
    assert len(warnings) == 1 and "'routr'" in warnings[0]
    wait_for(quiet(op), 60, "the operator settled")
    assert generations(k) == gens, "nothing restarted"
    assert obj["status"]["history"][-1]["restarted"] == ["time", "oddLogger"]
