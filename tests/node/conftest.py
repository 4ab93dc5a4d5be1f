"""The real node: a control plane whose pods run for real (kubelet + containerd + CNI on a
bridge this run creates), a Kafka broker with a listener on the bridge for the pods, and
the operator as a local process watching the pipeline's namespace. Tests that ask for
`two_node_cluster` get a second real node beside the first, started when the first of
them runs (the single-node tests never pay for it).

The node needs root and Debian's container packages (installed when missing); on a
machine that cannot have them these tests skip, saying why."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from localinfra.nodeconfig import IMAGES
from nodehelpers import REPO, NodeCluster

# What the second node imports: every image, as node 0 does. The pipeline's apps move there
# on a drain or a node loss (test_node_cluster.py), and the HA operator runs a replica there.
NODE1_IMAGES = tuple(IMAGES)
# The seed recipe's router image (hack/recipe-image.sh), as containerd names it.
RECIPE_IMAGE = "docker.io/springcloud/polyglot-python-app:0.2"
# Stops the session's node: runs after every other test that uses it.
TEARDOWN_TESTS = "test_node_teardown.py"


def pytest_collection_modifyitems(items):
    """This folder's tests in three groups, each in file order: those on one node, then
    those on two (node 1 starts with the first of them; the single-node tests assert where
    their pods run and would find some on node 1), then the teardown tests, which stop the
    session's node. Other folders' tests keep their places."""
    here = Path(__file__).parent
    at = [i for i, item in enumerate(items) if item.path.parent == here]

    def group(item) -> int:
        if item.path.name == TEARDOWN_TESTS:
            return 2
        return 1 if "two_node_cluster" in getattr(item, "fixturenames", ()) else 0

    ordered = sorted((items[i] for i in at), key=group)  # stable: file order within a group
    for i, item in zip(at, ordered, strict=False):
        items[i] = item


@pytest.fixture(scope="session")
def node_cluster():
    from localinfra.kafka import KafkaBroker
    from localinfra.kube import ControlPlane
    from localinfra.node import NODE_IP, Node, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(f"no real node on this machine: {reason}")
    # The bridge must exist before the broker binds its pod listener on it.
    with ControlPlane(node_ip=NODE_IP) as cp, Node(cp) as node, KafkaBroker(pod_host=NODE_IP) as broker:
        cp.kubectl("apply", "-f", "crds/")
        cp.wait_crd_established("timestamppipelines.tspipe.io")
        yield NodeCluster(cp, node, broker)


@pytest.fixture(scope="session")
def node_kafka_cluster(node_cluster):
    """Three Kafka brokers (replication 3, min ISR 2) with pod listeners on node 0's bridge,
    which pods on either node reach; started when the first test asks for it (the bridge
    exists by then), stopped with the session's cluster (NodeCluster.close) or at the end."""
    from localinfra.kafka import KafkaCluster
    from localinfra.node import NODE_IP

    with KafkaCluster(pod_host=NODE_IP) as cluster:
        node_cluster.kafka_cluster = cluster
        yield cluster
    node_cluster.kafka_cluster = None


@pytest.fixture(scope="session")
def two_node_cluster(node_cluster):
    """node_cluster with tsp-node-1 Ready beside tsp-node-0 (`.node1`). Stopped before
    node 0 (the kubelets share the KUBE-* iptables chains that node 0's teardown removes)."""
    from localinfra.node import NODES, Node

    node_cluster.node1 = Node(node_cluster.cp, index=1, images=NODE1_IMAGES).start()
    yield node_cluster
    node_cluster.node1.stop()
    if node_cluster.cp.pids():  # (the teardown tests may have stopped the control plane)
        node_cluster.kubectl("delete", "node", NODES[1].name, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def recipe_image(node_cluster):
    """The seed recipe's router image in the node's containerd (built when its inputs
    changed), for the module's tests; removed at its end (no node start pays for it)."""
    archive = subprocess.run(
        ["bash", str(REPO / "hack" / "recipe-image.sh")], check=True, stdout=subprocess.PIPE, text=True, timeout=900
    ).stdout.split()[-1]
    t0 = time.monotonic()
    node_cluster.node.ctr("images", "import", archive)
    print(f"\n[recipe image] imported into the node's containerd in {time.monotonic() - t0:.1f} s")
    yield RECIPE_IMAGE
    node_cluster.node.ctr("images", "rm", RECIPE_IMAGE)
