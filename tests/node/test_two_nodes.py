"""Two real nodes under one control plane: tsp-node-1 (its own containerd, kubelet, cgroup
root, bridge tspbr1 and pod subnet 10.246.0.0/24) beside tsp-node-0. A pod pinned to each
node is made Ready by its own kubelet, reaches Kafka's pod listener and the API server,
and reaches the pod on the other node; stopping node 1 leaves nothing of it while node 0
keeps running. (A crashed two-node run is swept: test_node_teardown.py.)"""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest
from localinfra.nodeconfig import IMAGES, NODES
from localinfra.nodehost import node_leftovers, read_sysctl
from nodehelpers import explained, pod_ready, wait_for

# Generous: the first test also waits for the nodes to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

ACTUATOR_PORT = 8080  # the router's actuator (what the kubelet probes)
# Run inside a pod with the URL as its argument: HTTPS requests go as the pod's service
# account, verifying the API server's certificate as an in-cluster client does.
FETCH = r"""
import ssl, sys, urllib.request
url, ctx = sys.argv[1], None
req = urllib.request.Request(url)
if url.startswith("https:"):
    sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
    ctx = ssl.create_default_context(cafile=sa + "ca.crt")
    req.add_header("Authorization", "Bearer " + open(sa + "token").read())
with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
    print(r.status, r.read().decode())
"""


def router_pod(name: str, node: str, bootstrap: str, topic: str) -> dict:
    """The router image pinned to `node`: Ready only once it reached the broker and joined
    its consumer group (its readiness endpoint, probed by that node's kubelet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "two-nodes"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {
                    "name": "router",
                    "image": IMAGES["router"],
                    "imagePullPolicy": "Never",
                    "args": [
                        f"--spring.cloud.stream.kafka.binder.brokers={bootstrap}",
                        *(
                            f"--spring.cloud.stream.bindings.{b}.destination={topic}-{b}"
                            for b in ("input", "even", "odd")
                        ),
                        f"--spring.cloud.stream.bindings.input.group={topic}",
                    ],
                    "ports": [{"containerPort": ACTUATOR_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/actuator/health/readiness", "port": ACTUATOR_PORT},
                        "periodSeconds": 2,
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def pods(two_node_cluster):
    """{node name: its Ready router pod}, in a namespace of their own."""
    c = two_node_cluster
    ns = f"two-nodes-{uuid.uuid4().hex[:6]}"
    c.kubectl("create", "namespace", ns)
    for spec in NODES:
        pod = router_pod(f"router-{spec.index}", spec.name, c.broker.pod_bootstrap, f"{ns}-{spec.index}")
        c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))

    def ready():
        got = {p["spec"].get("nodeName"): p for p in c.get("pods", "-n", ns)["items"] if pod_ready(p)}
        return got if len(got) == len(NODES) else None

    with explained(c, ns):
        by_node = wait_for(ready, 180, "a Ready router pod on each node")
    yield by_node, ns
    # Node 1 may be gone by now (the last test stops it): nothing would confirm a graceful delete.
    c.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)
    c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def fetch(c, ns: str, pod: dict, url: str) -> str:
    return c.kubectl("exec", "-n", ns, pod["metadata"]["name"], "--", "python", "-c", FETCH, url, timeout=60).stdout


def test_both_nodes_are_ready_each_on_its_own_address(two_node_cluster):
    c = two_node_cluster
    nodes = {n["metadata"]["name"]: n for n in c.get("nodes")["items"]}
    for spec in NODES:
        status = nodes[spec.name]["status"]
        assert {x["type"]: x["status"] for x in status["conditions"]}["Ready"] == "True"
        assert {"type": "InternalIP", "address": spec.ip} in status["addresses"]
    n1 = c.node1
    print(
        f"\n{NODES[1].name}: Ready {n1.started_in:.1f}s after its start, {n1.ready_after_kubelet:.1f}s after its "
        f"kubelet's (images imported in {n1.import_seconds:.1f}s); RSS MiB "
        + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in n1.rss().items())
    )


def test_a_pod_on_each_node_gets_an_address_of_that_node_and_reaches_kafka(two_node_cluster, pods):
    by_node, _ns = pods
    for spec in NODES:
        pod = by_node[spec.name]
        assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(spec.subnet)
        # Ready = its kubelet probed it, and it reached the broker's pod listener on node 0's bridge.
        assert pod_ready(pod)


def test_pods_on_either_node_reach_each_other(two_node_cluster, pods):
    c = two_node_cluster
    by_node, ns = pods
    a, b = (by_node[spec.name] for spec in NODES)
    for src, dst in ((a, b), (b, a)):
        out = fetch(c, ns, src, f"http://{dst['status']['podIP']}:{ACTUATOR_PORT}/actuator/health")
        assert out.startswith("200 "), out
        assert json.loads(out.split(" ", 1)[1])["status"] == "UP"


def test_a_pod_on_the_second_node_reaches_the_api_server(two_node_cluster, pods):
    c = two_node_cluster
    by_node, ns = pods
    out = fetch(c, ns, by_node[NODES[1].name], f"https://{NODES[0].ip}:{c.cp.apiserver_port}/version")
    assert out.startswith("200 "), out
    assert json.loads(out.split(" ", 1)[1])["gitVersion"].startswith("v1.")


def test_the_second_node_stops_without_leftovers_while_the_first_runs_on(two_node_cluster, pods):
    """Last in this file: it stops node 1 (with its pod still running, as at the end of a run)."""
    c = two_node_cluster
    by_node, ns = pods
    node1 = c.node1
    sandboxes, workdir = node1.sandbox_ids(), node1.workdir
    assert sandboxes  # the router pod's
    forwarding = node1.sysctls["net.ipv4.ip_forward"]
    node1.stop()
    assert node_leftovers(NODES[1], workdir, sandboxes) == []
    assert node1.teardown_notes == []
    assert read_sysctl("net.ipv4.ip_forward") == forwarding
    pod0 = c.get("pod", by_node[NODES[0].name]["metadata"]["name"], "-n", ns)
    assert pod_ready(pod0)
    assert c.node.alive()
