"""The seed's pipeline on a real node: the operator's four Deployments run as pods
(containerd, runc, the CNI bridge), made Ready by the kubelet's probes against the real
actuators, and their output read the way the seed recipe reads it, with `kubectl logs`.
Then the kubelet's probes and a rollout, for real: a router without its broker is Running
but not Ready; a frozen router is restarted; a changed prefix rolls the router pod, the old
one settling its sends before it exits. Not one timestamp is lost. A real Prometheus
configured from manifests/monitoring's router PodMonitor (as the Prometheus operator
translates it) finds the router pod through the API server and scrapes it at its pod IP,
and follows the rollout to the new pod.

Images: the router's from Dockerfile.router, the Spring time source and log sink from
the assembled 5.1.1 jars, tagged as the sample names them (hack/node-images.sh). The
sample, liveness and rollout tests share one running pipeline (in file order), because
starting three JVMs on two cores is most of each test's time."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time

import pytest
from localinfra.kafka import topic_values
from localinfra.node import NODE_IP, NODE_NAME
from localinfra.proc import free_port, stop_process_group
from nodehelpers import (
    TIMESTAMP,
    apply_obj,
    by_parity,
    component_pods,
    container_pid,
    events_for,
    everything_arrived,
    explained,
    logger_payloads,
    new_namespace,
    node_pipeline,
    node_prometheus,
    pipeline_ready,
    pipeline_status,
    pod_ready,
    pods,
    reset_offsets,
    router_pod,
    router_probe_failing,
    start_operator,
    strip,
    wait_for,
)
from promchecks import ROUTER_PODMONITOR, ROUTER_POOL, podmonitor_jobs, targets, up_pods

# Generous: the first test also waits for the node to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

COMPONENTS = ("time", "router", "evenlogger", "oddlogger")


def _namespace_with_operator(c, log_path, prefix):
    """A restricted namespace, the operator watching it, unique topics."""
    ns = new_namespace(c, prefix)
    op = start_operator(c, ns, log_path)
    return ns, op, {k: f"{k}-{ns}" for k in ("input", "even", "odd")}


def _remove(c, ns, op):
    # Deleting the namespace first lets the kubelet stop the pods gracefully.
    c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
    op.stop(15)


@pytest.fixture(scope="module")
def prometheus(node_cluster):
    """A real Prometheus with the router PodMonitor's scrape job (every 2 s, not 30 s)."""
    with node_prometheus(podmonitor_jobs(ROUTER_PODMONITOR, node_cluster.cp.kubeconfig)) as prom:
        yield prom


@pytest.fixture(scope="module")
def sample(node_cluster, prometheus, tmp_path_factory):
    """The sample pipeline, applied with kubectl; (ns, name, topics, extra logs)."""
    c = node_cluster
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    ns, op, topics = _namespace_with_operator(c, log, "node")
    obj = node_pipeline(c.broker.pod_bootstrap, topics)
    apply_obj(c, obj, ns)
    try:
        yield ns, obj["metadata"]["name"], topics, {"operator": log, "prometheus": prometheus.dir / "prometheus.log"}
    finally:
        _remove(c, ns, op)


def scraped_router(c, prom, ns: str, name: str) -> dict:
    """Wait until Prometheus scrapes the router's one pod, and only it, with `up == 1`
    (the PodMonitor's selector, port and relabeling); its target."""
    pod = wait_for(lambda: (p := router_pod(c, ns, name)) and pod_ready(p) and p, 120, "a Ready router pod")
    pod_name = pod["metadata"]["name"]
    (target,) = wait_for(
        lambda: (
            up_pods(prom, "tspipe-router", ns) == {pod_name} and len(ts := targets(prom, ROUTER_POOL, ns)) == 1 and ts
        ),
        60,
        f"up == 1 for {pod_name}, the only target",
    )
    assert target["health"] == "up", target
    assert target["labels"] == {
        **target["labels"],
        "job": "tspipe-router",
        "pipeline": name,
        "pod": pod_name,
        "container": "router",
        "endpoint": "http",
    }, target["labels"]
    # At the pod's own IP on the node's bridge, the port the kubelet probes.
    assert target["scrapeUrl"] == f"http://{pod['status']['podIP']}:8080/actuator/prometheus", target["scrapeUrl"]
    return target


def test_sample_pipeline_runs_as_four_ready_pods_and_routes_every_timestamp(node_cluster, sample, prometheus):
    c = node_cluster
    ns, name, topics, extra = sample
    with explained(c, ns, extra):
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready (4/4)")
        running = wait_for(
            lambda: (ps := pods(c, ns)) and len(ps) == 4 and all(map(pod_ready, ps)) and ps,
            120,
            "four pods Running and Ready",
        )
        # On the real node, each made Ready by the kubelet's probe of its actuator.
        for p in running:
            assert p["spec"]["nodeName"] == NODE_NAME, p["metadata"]["name"]
            assert p["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 8080
            assert p["status"]["podIP"].startswith("10.245.0."), p["status"]
        comps = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in running)
        assert comps == sorted(COMPONENTS)

        # The time source has been writing for at least 30 s ...
        wait_for(
            lambda: len(topic_values(c.broker.bootstrap, topics["input"])) >= 30,
            300,
            "30 timestamps from the time source",
        )
        produced = topic_values(c.broker.bootstrap, topics["input"])
        assert all(TIMESTAMP.fullmatch(ts) for ts in produced), produced[:5]
        even, odd = by_parity(produced)
        assert even and odd, "30 s of timestamps hold both even and odd seconds"
        # ... and `kubectl logs` of each logger shows every one of them, in the right one
        # (only Even lines in the even logger, only Odd lines in the odd one).
        everything_arrived(c, ns, name, topics["input"], ["Even timestamp:"], ["Odd timestamp:"], upto=len(produced))
        for p in pods(c, ns):
            assert all(cs["restartCount"] == 0 for cs in p["status"]["containerStatuses"]), p["status"]
        # Prometheus found the router pod (and none of the other three) and scrapes it.
        scraped_router(c, prometheus, ns, name)


def test_liveness_is_real_a_frozen_router_is_restarted_and_nothing_is_lost(node_cluster, sample):
    c = node_cluster
    ns, name, topics, extra = sample
    with explained(c, ns, extra):
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready")
        pod = router_pod(c, ns, name)
        restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        os.kill(container_pid(c, pod), signal.SIGSTOP)  # a process that no longer answers
        restarted = wait_for(
            lambda: (
                (p := router_pod(c, ns, name)) and p["status"]["containerStatuses"][0]["restartCount"] > restarts and p
            ),
            420,
            "the kubelet to restart the frozen router",
        )
        assert restarted["metadata"]["uid"] == pod["metadata"]["uid"], "the same pod, its container restarted"
        assert any(
            e["reason"] == "Unhealthy" and "Liveness probe failed" in e.get("message", "")
            for e in events_for(c, ns, pod["metadata"]["name"])
        )
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready again")
        # Everything written before and while the router was frozen reaches the loggers.
        upto = len(topic_values(c.broker.bootstrap, topics["input"]))
        everything_arrived(c, ns, name, topics["input"], ["Even timestamp:"], ["Odd timestamp:"], upto)


def test_a_prefix_change_rolls_the_router_pod_and_loses_nothing(node_cluster, sample, prometheus):
    c = node_cluster
    ns, name, topics, extra = sample
    with explained(c, ns, extra):
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready")
        old = router_pod(c, ns, name)["metadata"]["name"]
        # Follow the old pod's log to its end, as `kubectl logs -f` would show it.
        follow = subprocess.Popen(
            [str(c.cp._tspkube()), "kubectl", "--kubeconfig", c.cp.kubeconfig, "logs", "-f", "-n", ns, old],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            apply_obj(c, node_pipeline(c.broker.pod_bootstrap, topics, evenPrefix="EVEN:"), ns)
            new = wait_for(
                lambda: (p := router_pod(c, ns, name)) and p["metadata"]["name"] != old and pod_ready(p) and p,
                300,
                "a new Ready router pod",
            )
            old_log, _ = follow.communicate(timeout=120)
        finally:
            stop_process_group(follow, 5)
        # The old router got SIGTERM and stopped cleanly, its last offsets committed.
        last = [ln for ln in old_log.splitlines() if ln.strip()][-3:]
        assert any(ln.rstrip().endswith("stopped") for ln in last), last
        assert "Killing" in {e["reason"] for e in events_for(c, ns, old)}
        assert "--tsrouter.even-prefix=EVEN:" in new["spec"]["containers"][0]["args"]
        # Prometheus follows the rollout: the new pod is scraped, the old one's target is gone.
        assert scraped_router(c, prometheus, ns, name)["labels"]["pod"] == new["metadata"]["name"]
        wait_for(
            lambda: any(p.startswith("EVEN:") for p in logger_payloads(c, ns, name, "evenlogger")),
            180,
            "the new prefix in the even logger's kubectl logs",
        )
        # Not one timestamp lost across the rollout.
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready after the rollout")
        upto = len(topic_values(c.broker.bootstrap, topics["input"]))
        everything_arrived(c, ns, name, topics["input"], ["Even timestamp:", "EVEN:"], ["Odd timestamp:"], upto)


# The consumers of the stream's group (SCDF names every consumer's group after the stream):
# a reset holds them at zero; the time source runs on.
GROUP_APPS = ("router", "evenlogger", "oddlogger")
EVEN_PREFIXES, ODD_PREFIXES = ("Even timestamp:", "EVEN:"), ("Odd timestamp:",)


def _held_state(c, ns: str, name: str) -> dict[str, tuple[int, frozenset[str]]]:
    """Per component: its Deployment's generation and its pods' UIDs."""
    return {
        comp: (
            c.get("deploy", f"{name}-{comp}", "-n", ns)["metadata"]["generation"],
            frozenset(p["metadata"]["uid"] for p in component_pods(c, ns, name, comp)),
        )
        for comp in COMPONENTS
    }


def _routed(c, topics: dict, since: dict[str, int]):
    """What the router wrote to the real even and odd topics from these offsets on (one
    partition each), as timestamps per side; AssertionError on a record on the wrong side."""
    even = strip(topic_values(c.broker.bootstrap, topics["even"])[since["even"] :], EVEN_PREFIXES)
    odd = strip(topic_values(c.broker.bootstrap, topics["odd"])[since["odd"] :], ODD_PREFIXES)
    assert all(int(t[-1]) % 2 == 0 for t in even), even
    assert all(int(t[-1]) % 2 == 1 for t in odd), odd
    return even, odd


def _ends(c, topics: dict) -> dict[str, int]:
    return {side: len(topic_values(c.broker.bootstrap, topics[side])) for side in ("even", "odd")}


def test_a_replay_without_credentials_holds_the_log_sinks_and_routes_every_record_again(node_cluster, sample):
    """`tspipe.io/reset-offsets` on the running pipeline, the operator reading and writing
    the broker itself (no credentials). The log sinks consume in the router's group, so
    the operator holds them at zero with the router until the group has no members, sets
    the offsets and starts all three again. `earliest`: every record of the input is
    routed again to the right topic; then `latest`: what the time source wrote while the
    apps were held is skipped, and routing goes on from the end."""
    c = node_cluster
    ns, name, topics, extra = sample
    with explained(c, ns, extra):
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready")
        start = time.monotonic()
        before = _held_state(c, ns, name)
        outputs_at = _ends(c, topics)
        t0 = time.monotonic()
        done = reset_offsets(c, ns, name, "earliest")
        earliest_s = time.monotonic() - t0
        assert done["state"] == "Completed" and "job" not in done, done
        stream = c.get("tsp", name, "-n", ns)["spec"]["streamName"]
        assert (done["group"], done["topic"]) == (stream, topics["input"]), done
        ((move,),) = [done["partitions"]]
        inputs = topic_values(c.broker.bootstrap, topics["input"])
        # Committed by the router as it stopped; the time source went on meanwhile.
        assert move["partition"] == 0 and move["to"] == 0 and 0 < move["from"] <= len(inputs), done
        # Every record the router had committed is routed again, each to its side.
        even, odd = by_parity(inputs[: move["from"]])
        wait_for(
            lambda: not ((even - (r := _routed(c, topics, outputs_at))[0]) + (odd - r[1])),
            180,
            f"the {move['from']} records before the reset routed again to the right topics",
        )
        replayed_s = time.monotonic() - t0

        # The router and both log sinks were held at zero and started again (their
        # Deployments scaled twice, their pods new); the time source was left alone.
        after = wait_for(
            lambda: (
                (s := _held_state(c, ns, name))
                and all(s[comp][1] and not s[comp][1] & before[comp][1] for comp in GROUP_APPS)
                and s
            ),
            120,
            "new pods for the router and both log sinks",
        )
        for comp in GROUP_APPS:
            assert after[comp][0] >= before[comp][0] + 2, (comp, before[comp], after[comp])
        assert after["time"] == before["time"], (before["time"], after["time"])

        # `latest`: the time source's records written while the apps were held are skipped.
        outputs_at = _ends(c, topics)
        t0 = time.monotonic()
        skipped = reset_offsets(c, ns, name, "latest")
        latest_s = time.monotonic() - t0
        assert skipped["state"] == "Completed" and "job" not in skipped, skipped
        ((move2,),) = [skipped["partitions"]]
        assert move2["from"] < move2["to"], f"no backlog while the apps were held: {skipped}"
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready after the resets")
        ready = wait_for(
            lambda: (ps := pods(c, ns)) and len(ps) == 4 and all(map(pod_ready, ps)) and ps,
            120,
            "four pods Running and Ready",
        )
        uids = {p["metadata"]["uid"] for p in ready}
        assert all(not uids & after[comp][1] for comp in GROUP_APPS), "held again by the second reset"
        # Routing goes on from the end: the next record is routed, the backlog never is.
        nxt = wait_for(
            lambda: len(i := topic_values(c.broker.bootstrap, topics["input"])) > move2["to"] and i[move2["to"]],
            60,
            "a record after the reset",
        )
        wait_for(
            lambda: nxt in sum(_routed(c, topics, outputs_at), collections.Counter()),
            120,
            "the first record after the reset routed",
        )
        backlog = set(topic_values(c.broker.bootstrap, topics["input"])[move2["from"] : move2["to"]])
        routed = sum(_routed(c, topics, outputs_at), collections.Counter())
        assert not backlog & set(routed), sorted(backlog & set(routed))

        status = pipeline_status(c, ns, name)
        history = [h["offsetReset"] for h in status["history"] if "offsetReset" in h]
        assert history[-2:] == [
            {"request": "earliest", "group": done["group"], "topic": topics["input"], "partitions": [move]},
            {"request": "latest", "group": done["group"], "topic": topics["input"], "partitions": [move2]},
        ], history
        cond = {x["type"]: x for x in status["conditions"]}["OffsetReset"]
        assert (cond["status"], cond["reason"]) == ("False", "Completed"), cond
        events = c.get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
        said = [e["message"] for e in events if e["reason"] == "OffsetsReset"]
        for m in (move, move2):
            assert any(f"partition 0 {m['from']} -> {m['to']}" in x for x in said), said
        assert any(
            e["reason"] == "ResettingOffsets" and "and the log sinks, in the same group" in e["message"] for e in events
        ), [e["message"] for e in events]
        print(
            f"node replay (no credentials): earliest Completed {earliest_s:.1f}s after the annotation, "
            f"{move['from']} records routed again {replayed_s:.1f}s after it; latest Completed in {latest_s:.1f}s, "
            f"skipping {move2['to'] - move2['from']} records written while the apps were held; "
            f"{time.monotonic() - start:.1f}s from the first annotation to the last check"
        )


def test_readiness_is_real_a_router_without_its_broker_is_running_but_not_ready(node_cluster, tmp_path):
    c = node_cluster
    ns, op, topics = _namespace_with_operator(c, tmp_path / "operator.log", "probe")
    extra = {"operator": tmp_path / "operator.log"}
    # A closed port on the node's bridge: connections are refused at once.
    obj = node_pipeline(f"{NODE_IP}:{free_port()}", topics)
    obj["spec"]["kafka"]["topics"]["manage"] = False  # the operator cannot reach it either
    name = obj["metadata"]["name"]
    try:
        with explained(c, ns, extra):
            apply_obj(c, obj, ns)
            # The kubelet probed the router's actuator and got DOWN: Running, not Ready.
            wait_for(
                lambda: (
                    (p := router_pod(c, ns, name))
                    and p["status"].get("phase") == "Running"
                    and any(
                        e["reason"] == "Unhealthy" and "Readiness probe failed" in e.get("message", "")
                        for e in events_for(c, ns, p["metadata"]["name"])
                    )
                ),
                240,
                "a failed readiness probe of the Running router pod",
            )
            pod = router_pod(c, ns, name)
            assert not pod_ready(pod), pod["status"]
            assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, "liveness stays UP"
            # The pipeline says which component is not ready.
            status = wait_for(
                lambda: (
                    (s := pipeline_status(c, ns, name)).get("components", {}).get("router", {}).get("ready") is False
                    and s
                ),
                60,
                "status naming the router",
            )
            ready = {x["type"]: x for x in status["conditions"]}["Ready"]
            assert ready["status"] == "False" and "router" in ready["message"], ready
            # Once the probe had its full chance, the status says it is the readiness probe (no pod
            # event marks that moment: the operator looks again when it comes).
            router_probe_failing(c, ns, name, 120, "status.components.router.notReady")

            # An image the node cannot pull: the kubelet's reason, named at once.
            apply_obj(c, node_pipeline(c.broker.pod_bootstrap, topics, image="localhost/tspipe/missing:0"), ns)
            status = wait_for(
                lambda: (
                    (s := pipeline_status(c, ns, name))
                    .get("components", {})
                    .get("router", {})
                    .get("notReady", {})
                    .get("reason")
                    in ("ErrImagePull", "ImagePullBackOff")
                    and s
                ),
                180,
                "status naming the router's image pull",
            )
            assert "localhost/tspipe/missing:0" in status["components"]["router"]["notReady"]["message"]

            # Fixing the address makes it Ready.
            apply_obj(c, node_pipeline(c.broker.pod_bootstrap, topics), ns)
            wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready after the fix")
            wait_for(lambda: (p := router_pod(c, ns, name)) and pod_ready(p), 120, "router Ready")
    finally:
        _remove(c, ns, op)
