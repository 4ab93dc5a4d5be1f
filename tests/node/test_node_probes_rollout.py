"""The kubelet's probes and rollouts, for real: a router that cannot reach its broker is
Running but not Ready; a router that stops answering is restarted; a changed prefix
rolls the router pod, the old one settling its sends before it exits. Nothing is lost."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from localinfra.node import NODE_IP
from localinfra.proc import free_port, stop_process_group
from nodehelpers import (apply_obj, by_parity, component_pods, explained, logger_payloads, new_namespace,
                         pipeline_ready, pipeline_status, pod_ready, read_topic, sample_pipeline,
                         start_operator, strip, wait_for)

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node]


@pytest.fixture
def pipeline_ns(node_cluster, tmp_path):
    c = node_cluster
    ns = new_namespace(c, "probe")
    op_log = tmp_path / "operator.log"
    op = start_operator(c, ns, op_log)
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    try:
        yield ns, topics, {"operator": op_log}
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        stop_process_group(op, 15)


def router_pod(c, ns, name) -> dict | None:
    ps = [p for p in component_pods(c, ns, name, "router") if not p["metadata"].get("deletionTimestamp")]
    return ps[0] if len(ps) == 1 else None


def events_for(c, ns, pod: str) -> list[dict]:
    return c.get("events", "-n", ns, "--field-selector", f"involvedObject.name={pod}")["items"]


def everything_arrived(c, ns, name, prefixes_even, prefixes_odd, upto: int | None = None):
    """Every timestamp in the input topic (the first `upto`) in the right logger."""
    produced = read_topic(c.broker.bootstrap, f"input-{ns}")
    even, odd = by_parity(produced[:upto] if upto else produced)

    def check():
        got_even = strip(logger_payloads(c, ns, name, "evenlogger"), prefixes_even)
        got_odd = strip(logger_payloads(c, ns, name, "oddlogger"), prefixes_odd)
        assert all(int(t[-1]) % 2 == 0 for t in got_even) and all(int(t[-1]) % 2 == 1 for t in got_odd)
        missing = (even - got_even) + (odd - got_odd)
        return True if not missing else None

    wait_for(check, 240, f"all {sum(even.values()) + sum(odd.values())} timestamps in the right logger")


def test_readiness_is_real_a_router_without_its_broker_is_running_but_not_ready(node_cluster, pipeline_ns):
    c = node_cluster
    ns, topics, extra = pipeline_ns
    # A closed port on the node's bridge: the connection is refused at once.
    wrong = f"{NODE_IP}:{free_port()}"
    obj = sample_pipeline(wrong, topics)
    obj["spec"]["kafka"]["topics"]["manage"] = False  # the operator cannot reach it either
    name = obj["metadata"]["name"]
    with explained(c, ns, extra):
        apply_obj(c, obj, ns)
        # The kubelet probed the router's actuator and got DOWN: Running, not Ready.
        pod = wait_for(lambda: (p := router_pod(c, ns, name)) and p["status"].get("phase") == "Running"
                       and any(e["reason"] == "Unhealthy" and "Readiness probe failed" in e.get("message", "")
                               for e in events_for(c, ns, p["metadata"]["name"])) and p,
                       240, "a failed readiness probe of the Running router pod")
        pod = router_pod(c, ns, name)
        assert not pod_ready(pod), pod["status"]
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, "liveness stays UP"
        # The pipeline says which component is not ready.
        status = wait_for(lambda: (s := pipeline_status(c, ns, name)).get("components", {})
                          .get("router", {}).get("ready") is False and s, 60, "status naming the router")
        ready = {x["type"]: x for x in status["conditions"]}["Ready"]
        assert ready["status"] == "False" and "router" in ready["message"], ready

        # Fixing the address makes it Ready.
        obj = sample_pipeline(c.broker.pod_bootstrap, topics)
        apply_obj(c, obj, ns)
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready after the fix")
        pod = wait_for(lambda: (p := router_pod(c, ns, name)) and pod_ready(p) and p, 120, "router Ready")


def container_pid(c, pod: dict) -> int:
    """The host PID of the pod's container's main process (containerd's task list)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for line in c.node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"container {cid} not in containerd's task list")


def test_liveness_is_real_a_frozen_router_is_restarted_and_nothing_is_lost(node_cluster, pipeline_ns):
    c = node_cluster
    ns, topics, extra = pipeline_ns
    obj = sample_pipeline(c.broker.pod_bootstrap, topics)
    name = obj["metadata"]["name"]
    with explained(c, ns, extra):
        apply_obj(c, obj, ns)
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready")
        wait_for(lambda: logger_payloads(c, ns, name, "evenlogger") and logger_payloads(c, ns, name, "oddlogger"),
                 240, "the first lines in both loggers")
        pod = router_pod(c, ns, name)
        pid = container_pid(c, pod)
        os.kill(pid, signal.SIGSTOP)  # alive as a process, but its actuator no longer answers
        restarted = wait_for(lambda: (p := router_pod(c, ns, name)) and
                             p["status"]["containerStatuses"][0]["restartCount"] >= 1 and p,
                             420, "the kubelet to restart the frozen router")
        assert restarted["metadata"]["uid"] == pod["metadata"]["uid"], "the same pod, its container restarted"
        assert any(e["reason"] == "Unhealthy" and "Liveness probe failed" in e.get("message", "")
                   for e in events_for(c, ns, pod["metadata"]["name"]))
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready again")
        # Everything written before and while the router was frozen reaches the loggers.
        upto = len(read_topic(c.broker.bootstrap, topics["input"]))
        everything_arrived(c, ns, name, ["Even timestamp:"], ["Odd timestamp:"], upto)


def test_a_prefix_change_rolls_the_router_pod_and_loses_nothing(node_cluster, pipeline_ns):
    c = node_cluster
    ns, topics, extra = pipeline_ns
    obj = sample_pipeline(c.broker.pod_bootstrap, topics)
    name = obj["metadata"]["name"]
    with explained(c, ns, extra):
        apply_obj(c, obj, ns)
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready")
        wait_for(lambda: logger_payloads(c, ns, name, "evenlogger") and logger_payloads(c, ns, name, "oddlogger"),
                 240, "the first lines in both loggers")
        old = router_pod(c, ns, name)["metadata"]["name"]
        # Follow the old pod's log to its end, as `kubectl logs -f` would show it.
        follow = subprocess.Popen([str(c.cp._tspkube()), "kubectl", "--kubeconfig", c.cp.kubeconfig,
                                   "logs", "-f", "-n", ns, old], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            apply_obj(c, sample_pipeline(c.broker.pod_bootstrap, topics, evenPrefix="EVEN:"), ns)
            new = wait_for(lambda: (p := router_pod(c, ns, name)) and p["metadata"]["name"] != old
                           and pod_ready(p) and p, 300, "a new Ready router pod")
            old_log, _ = follow.communicate(timeout=120)
        finally:
            stop_process_group(follow, 5)
        # The old router got SIGTERM and stopped cleanly: its last offsets committed.
        last = [ln for ln in old_log.splitlines() if ln.strip()][-3:]
        assert any(ln.rstrip().endswith("stopped") for ln in last), last
        assert "Killing" in {e["reason"] for e in events_for(c, ns, old)}
        assert "--tsrouter.even-prefix=EVEN:" in new["spec"]["containers"][0]["args"]
        wait_for(lambda: any(p.startswith("EVEN:") for p in logger_payloads(c, ns, name, "evenlogger")),
                 180, "the new prefix in the even logger's kubectl logs")
        # Not one timestamp lost across the rollout.
        wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready after the rollout")
        upto = len(read_topic(c.broker.bootstrap, topics["input"]))
        everything_arrived(c, ns, name, ["Even timestamp:", "EVEN:"], ["Odd timestamp:"], upto)
