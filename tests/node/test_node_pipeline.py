"""The seed's pipeline on a real node: the operator's four Deployments run as pods
(containerd, runc, the CNI bridge), made Ready by the kubelet's probes against the real
actuators, and their output read the way the seed recipe reads it, with `kubectl logs`.

Images: the router's from Dockerfile.router, the Spring time source and log sink from
the assembled 5.1.1 jars, tagged as the sample names them (hack/node-images.sh)."""
from __future__ import annotations

import pytest

from localinfra.node import NODE_NAME
from localinfra.proc import stop_process_group
from nodehelpers import (TIMESTAMP, apply_obj, by_parity, component_pods, explained, logger_payloads,
                         new_namespace, pipeline_ready, pod_ready, pods, read_topic, sample_pipeline,
                         start_operator, strip, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node]

COMPONENTS = ("time", "router", "evenlogger", "oddlogger")


@pytest.fixture
def pipeline_ns(node_cluster, tmp_path):
    """A restricted namespace, the operator watching it, unique topics; removed afterwards."""
    c = node_cluster
    ns = new_namespace(c)
    op_log = tmp_path / "operator.log"
    op = start_operator(c, ns, op_log)
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    try:
        yield ns, topics, {"operator": op_log}
    finally:
        # Deleting the namespace first lets the kubelet stop the pods gracefully.
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        stop_process_group(op, 15)


def test_sample_pipeline_runs_as_four_ready_pods_and_routes_every_timestamp(node_cluster, pipeline_ns):
    c = node_cluster
    ns, topics, extra = pipeline_ns
    obj = sample_pipeline(c.broker.pod_bootstrap, topics)
    name = obj["metadata"]["name"]
    with explained(c, ns, extra):
        apply_obj(c, obj, ns)
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready (4/4)")
        running = wait_for(lambda: (ps := pods(c, ns)) and len(ps) == 4 and all(map(pod_ready, ps)) and ps,
                           120, "four pods Running and Ready")
        # On the real node, each made Ready by the kubelet's probe of its actuator.
        for p in running:
            assert p["spec"]["nodeName"] == NODE_NAME, p["metadata"]["name"]
            assert p["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 8080
            assert p["status"]["podIP"].startswith("10.245.0."), p["status"]
        comps = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in running)
        assert comps == sorted(COMPONENTS)

        # The time source has been writing for at least 30 s ...
        wait_for(lambda: len(read_topic(c.broker.bootstrap, topics["input"])) >= 30, 300,
                 "30 timestamps from the time source")
        produced = read_topic(c.broker.bootstrap, topics["input"])
        assert all(TIMESTAMP.fullmatch(ts) for ts in produced), produced[:5]
        even, odd = by_parity(produced)
        assert even and odd, "30 s of timestamps hold both even and odd seconds"

        # ... and `kubectl logs` of each logger shows every one of them, in the right one.
        def arrived():
            got_even = strip(logger_payloads(c, ns, name, "evenlogger"), ["Even timestamp:"])
            got_odd = strip(logger_payloads(c, ns, name, "oddlogger"), ["Odd timestamp:"])
            return (got_even, got_odd) if got_even >= even and got_odd >= odd else None

        got_even, got_odd = wait_for(arrived, 180, "every produced timestamp in the right logger's kubectl logs")
        assert all(int(ts[-1]) % 2 == 0 for ts in got_even), got_even
        assert all(int(ts[-1]) % 2 == 1 for ts in got_odd), got_odd
        # No pod restarted along the way.
        for p in pods(c, ns):
            assert all(cs["restartCount"] == 0 for cs in p["status"]["containerStatuses"]), p["status"]
