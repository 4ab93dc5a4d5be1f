"""What the real node's components are configured with (localinfra.nodeconfig): every
path under the node's own work folder, the settings this machine needs, and the network
the pods get. Pure: nothing is started."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest
from localinfra import nodeconfig
from localinfra.nodeconfig import NODES, NodeSpec

WD = Path("/tmp/tsp-node-test")
CRI = "io.containerd.grpc.v1.cri"


def test_containerd_keeps_everything_in_the_work_folder():
    cfg = tomllib.loads(nodeconfig.containerd_config(WD))
    cri = cfg["plugins"][CRI]
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    paths = [
        cfg["root"],
        cfg["state"],
        cfg["grpc"]["address"],
        cfg["ttrpc"]["address"],
        cfg["debug"]["address"],
        cfg["plugins"]["io.containerd.internal.v1.opt"]["path"],
        runc["Root"],
        cri["cni"]["conf_dir"],
    ]
    assert all(Path(p).is_relative_to(WD) for p in paths), paths
    assert cfg["grpc"]["address"] == str(nodeconfig.containerd_socket(WD))


def test_containerd_has_what_this_machine_needs():
    cri = tomllib.loads(nodeconfig.containerd_config(WD))["plugins"][CRI]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE in this VM
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == nodeconfig.IMAGES["pause"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["BinaryName"] == nodeconfig.RUNC_BIN
    assert cri["cni"]["bin_dir"] == nodeconfig.CNI_BIN_DIR


@pytest.mark.parametrize("spec", NODES, ids=lambda s: s.name)
def test_pods_get_an_address_on_their_nodes_bridge_and_a_route_to_the_other_nodes_pods_only(spec):
    cfg = nodeconfig.cni_config(spec, WD)
    assert cfg["name"] == spec.cni_network
    (bridge,) = cfg["plugins"]
    assert bridge["bridge"] == spec.bridge
    assert (bridge["isGateway"], bridge["ipMasq"]) == (False, False)  # no default route, no NAT
    (rng,) = bridge["ipam"]["ranges"][0]
    subnet = ipaddress.ip_network(rng["subnet"])
    assert subnet == ipaddress.ip_network(spec.subnet)
    assert rng["gateway"] == spec.ip
    assert {ipaddress.ip_address(rng[k]) for k in ("rangeStart", "rangeEnd")} <= set(subnet.hosts())
    assert int(ipaddress.ip_address(spec.ip)) not in range_of(rng)
    assert Path(bridge["ipam"]["dataDir"]).is_relative_to(WD)
    assert bridge["ipam"]["routes"] == [{"dst": other.subnet} for other in NODES if other != spec]


def test_node_0_keeps_the_names_of_the_single_node_and_every_node_has_its_own():
    assert (nodeconfig.NODE_NAME, nodeconfig.BRIDGE, nodeconfig.NODE_IP, nodeconfig.POD_SUBNET) == (
        "tsp-node-0",
        "tspbr0",
        "10.245.0.1",
        "10.245.0.0/24",
    )
    assert (NODES[1].name, NODES[1].bridge, NODES[1].ip, NODES[1].subnet) == (
        "tsp-node-1",
        "tspbr1",
        "10.246.0.1",
        "10.246.0.0/24",
    )
    for attr in ("name", "bridge", "ip", "subnet", "cni_network", "cgroup_root"):
        assert len({getattr(s, attr) for s in NODES}) == len(NODES), attr
    subnets = [ipaddress.ip_network(s.subnet) for s in NODES]
    # Neither kwok's pod addresses nor the Service range.
    for other in ("10.244.0.0/16", "10.96.0.0/16"):
        assert not any(n.overlaps(ipaddress.ip_network(other)) for n in subnets)
    # Each node's cached CNI results are found by its network's name as a prefix: no prefix
    # may be another's.
    assert not any(a.cni_network + "-" in b.cni_network + "-" for a in NODES for b in NODES if a != b)


def range_of(rng: dict) -> range:
    lo, hi = (int(ipaddress.ip_address(rng[k])) for k in ("rangeStart", "rangeEnd"))
    return range(lo, hi + 1)


@pytest.mark.parametrize("spec", NODES, ids=lambda s: s.name)
def test_the_kubelet_serves_on_its_bridge_and_talks_to_its_own_containerd(spec):
    cfg = nodeconfig.kubelet_config(spec, WD, port=10250, healthz_port=10248)
    assert (cfg["address"], cfg["port"], cfg["healthzPort"]) == (spec.ip, 10250, 10248)
    assert cfg["readOnlyPort"] == 0
    assert cfg["containerRuntimeEndpoint"] == f"unix://{nodeconfig.containerd_socket(WD)}"
    assert Path(cfg["podLogsDir"]).is_relative_to(WD)
    assert all(Path(cfg[k]).is_relative_to(WD) for k in ("tlsCertFile", "tlsPrivateKeyFile"))


def test_the_kubelet_runs_on_cgroup_v1_and_never_evicts_for_a_full_shared_disk():
    cfg = nodeconfig.kubelet_config(NODES[0], WD, port=1, healthz_port=2)
    assert (cfg["failCgroupV1"], cfg["cgroupDriver"]) == (False, "cgroupfs")
    assert {k: v for k, v in cfg["evictionHard"].items() if k != "memory.available"} == dict.fromkeys(
        ("nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree"), "0%"
    )
    assert cfg["imageGCHighThresholdPercent"] == 100


def test_node_0s_pods_live_under_kubepods_and_every_other_nodes_under_a_root_of_its_own():
    assert "cgroupRoot" not in nodeconfig.kubelet_config(NODES[0], WD, port=1, healthz_port=2)
    assert nodeconfig.kubelet_config(NodeSpec(1), WD, port=1, healthz_port=2)["cgroupRoot"] == "/tsp-node-1"
