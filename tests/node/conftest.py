"""The real node: a control plane whose pods run for real (kubelet + containerd + CNI on a
bridge this run creates), a Kafka broker with a listener on the bridge for the pods, and
the operator as a local process watching the pipeline's namespace.

The node needs root and Debian's container packages (installed when missing); on a
machine that cannot have them these tests skip, saying why."""
from __future__ import annotations

import pytest

from nodehelpers import NodeCluster


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
