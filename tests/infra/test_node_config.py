"""What the real node's components are configured with (localinfra.nodeconfig): every
path under the node's own work folder, the settings this machine needs, and the network
the pods get. Pure: nothing is started."""
from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from localinfra import nodeconfig

WD = Path("/tmp/tsp-node-test")
CRI = "io.containerd.grpc.v1.cri"


def test_containerd_keeps_everything_in_the_work_folder():
    cfg = tomllib.loads(nodeconfig.containerd_config(WD))
    cri = cfg["plugins"][CRI]
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    paths = [cfg["root"], cfg["state"], cfg["grpc"]["address"], cfg["ttrpc"]["address"], cfg["debug"]["address"],
             cfg["plugins"]["io.containerd.internal.v1.opt"]["path"], runc["Root"], cri["cni"]["conf_dir"]]
    assert all(Path(p).is_relative_to(WD) for p in paths), paths
    assert cfg["grpc"]["address"] == str(nodeconfig.containerd_socket(WD))


def test_containerd_has_what_this_machine_needs():
    cri = tomllib.loads(nodeconfig.containerd_config(WD))["plugins"][CRI]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE in this VM
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == nodeconfig.IMAGES["pause"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["BinaryName"] == nodeconfig.RUNC_BIN
    assert cri["cni"]["bin_dir"] == nodeconfig.CNI_BIN_DIR


def test_pods_get_an_address_on_the_bridge_and_no_way_out():
    cfg = nodeconfig.cni_config(WD)
    assert cfg["name"] == nodeconfig.CNI_NETWORK
    (bridge,) = cfg["plugins"]
    assert bridge["bridge"] == nodeconfig.BRIDGE
    assert (bridge["isGateway"], bridge["ipMasq"]) == (False, False)  # no forwarding, no NAT
    (rng,) = bridge["ipam"]["ranges"][0]
    subnet = ipaddress.ip_network(rng["subnet"])
    assert subnet == ipaddress.ip_network(nodeconfig.POD_SUBNET)
    assert rng["gateway"] == nodeconfig.NODE_IP
    assert {ipaddress.ip_address(rng[k]) for k in ("rangeStart", "rangeEnd")} <= set(subnet.hosts())
    assert ipaddress.ip_address(nodeconfig.NODE_IP) not in range_of(rng)
    assert Path(bridge["ipam"]["dataDir"]).is_relative_to(WD)


def range_of(rng: dict) -> range:
    lo, hi = (int(ipaddress.ip_address(rng[k])) for k in ("rangeStart", "rangeEnd"))
    return range(lo, hi + 1)


def test_the_kubelet_serves_on_the_bridge_and_talks_to_its_own_containerd():
    cfg = nodeconfig.kubelet_config(WD, port=10250, healthz_port=10248)
    assert (cfg["address"], cfg["port"], cfg["healthzPort"]) == (nodeconfig.NODE_IP, 10250, 10248)
    assert cfg["readOnlyPort"] == 0
    assert cfg["containerRuntimeEndpoint"] == f"unix://{nodeconfig.containerd_socket(WD)}"
    assert Path(cfg["podLogsDir"]).is_relative_to(WD)
    assert all(Path(cfg[k]).is_relative_to(WD) for k in ("tlsCertFile", "tlsPrivateKeyFile"))


def test_the_kubelet_runs_on_cgroup_v1_and_never_evicts_for_a_full_shared_disk():
    cfg = nodeconfig.kubelet_config(WD, port=1, healthz_port=2)
    assert (cfg["failCgroupV1"], cfg["cgroupDriver"]) == (False, "cgroupfs")
    assert {k: v for k, v in cfg["evictionHard"].items() if k != "memory.available"} == {
        k: "0%" for k in ("nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree")}
    assert cfg["imageGCHighThresholdPercent"] == 100
