"""Automatic rollback on the real node: readiness is the kubelet's probes of the real
actuators, so a release whose router never becomes Ready (arguments it refuses: it exits
at start and the kubelet restarts it in a loop) is rolled back at the progress deadline,
and the pipeline goes on with the stable revision's router without losing a timestamp."""
from __future__ import annotations

import json
import time

import pytest

from localinfra.kafka import topic_values
from nodehelpers import (apply_obj, everything_arrived, explained, new_namespace, pipeline_status, pod_ready,
                         router_pod, sample_pipeline, start_operator, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

DEADLINE = 30


def rollout(c, ns, name) -> dict:
    return pipeline_status(c, ns, name).get("rollout") or {}


def test_a_router_that_never_becomes_ready_is_rolled_back_at_the_deadline(node_cluster, tmp_path):
    c = node_cluster
    ns = new_namespace(c, "rollback")
    log = tmp_path / "operator.log"
    op = start_operator(c, ns, log)
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    obj = sample_pipeline(c.broker.pod_bootstrap, topics)
    # The first revision gets the default deadline: three JVMs starting on two cores may
    # take longer than the short one the bad release is judged by.
    obj["spec"]["rollout"] = {"autoRollback": True, "verifySeconds": 15}
    name = obj["metadata"]["name"]
    try:
        with explained(c, ns, {"operator": log}):
            apply_obj(c, obj, ns)
            first = wait_for(lambda: (r := rollout(c, ns, name)).get("verdict") == "Stable" and r, 420,
                             "the first revision verified on real pods")
            assert first["reason"] == "ChecksPassed" and first["checks"]["consumed"] > 0, first
            stable_pod = router_pod(c, ns, name)["metadata"]["name"]

            # A release whose router refuses its arguments: it never passes its readiness probe.
            c.kubectl("patch", "tsp", name, "-n", ns, "--type=merge", "-p", json.dumps(
                {"spec": {"rollout": {"progressDeadlineSeconds": DEADLINE},
                          "router": {"properties": {"tsrouter.max-poll-records": "0"}}}}))
            t0 = time.monotonic()
            bad = wait_for(lambda: (r := rollout(c, ns, name)).get("verdict") == "RolledBack" and r,
                           DEADLINE + 180, "the release that never became Ready rolled back")
            after = time.monotonic() - t0
            assert bad["reason"] == "ProgressDeadlineExceeded", bad
            assert bad["message"].startswith("rolled back to generation 1"), bad

            # The stable router serves again; the new pods are gone; the spec is as the user wrote it.
            wait_for(lambda: (p := router_pod(c, ns, name)) and pod_ready(p)
                     and "--tsrouter.max-poll-records=0" not in p["spec"]["containers"][0]["args"]
                     and len([x for x in c.get("pods", "-n", ns)["items"]
                              if x["metadata"]["labels"].get("app.kubernetes.io/component") == "router"]) == 1,
                     180, "one Ready router pod of the stable revision")
            assert router_pod(c, ns, name)["metadata"]["name"] == stable_pod, \
                "the stable pod kept serving through the failed rollout"
            spec = c.get("tsp", name, "-n", ns)["spec"]
            assert spec["router"]["properties"] == {"tsrouter.max-poll-records": "0"}
            status = wait_for(lambda: (s := pipeline_status(c, ns, name)).get("phase") == "Degraded" and s, 120,
                              "Degraded with the rollback")
            degraded = {x["type"]: x for x in status["conditions"]}["Degraded"]
            assert degraded["reason"] == "RolledBack", degraded

            # Nothing lost: every timestamp so far reaches the right logger.
            upto = len(topic_values(c.broker.bootstrap, topics["input"]))
            everything_arrived(c, ns, name, topics["input"], ["Even timestamp:"], ["Odd timestamp:"], upto)
            print(f"node rollback: a router that never became Ready was rolled back {after:.1f}s after the "
                  f"change (progressDeadlineSeconds {DEADLINE})")
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        op.stop(15)
