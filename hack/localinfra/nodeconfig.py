"""What the real node's components read, rendered: containerd's config, the CNI network
list and the kubelet's configuration. Pure functions of the node's work folder and ports
(no I/O), so what the node runs with is reviewable and unit-tested
(tests/infra/test_node_config.py); localinfra.node writes them and starts the processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NODE_LABEL = "tspipe.io/node"  # = "real" on every real node
# The real nodes the harness knows, and sweeps after a crash: tsp-node-0 and tsp-node-1.
NODE_COUNT = 2
# Node i's pod subnet is 10.(245+i).0.0/24: 10.244.0.0/16 is kwok's POD_CIDR (kube.py),
# and 10.96.0.0/16 the Service range, so the nodes' subnets meet neither.
_SUBNET_BASE = 245


@dataclass(frozen=True)
class NodeSpec:
    """The names and addresses of real node `index`: its own bridge and /24, its CNI
    network, and (beside node 0) its own cgroup root."""

    index: int

    @property
    def name(self) -> str:
        return f"tsp-node-{self.index}"

    @property
    def bridge(self) -> str:
        return f"tspbr{self.index}"

    @property
    def subnet(self) -> str:
        return f"10.{_SUBNET_BASE + self.index}.0.0/24"

    @property
    def ip(self) -> str:
        """The bridge's address: the node's InternalIP and its kubelet's address, the
        pods' gateway; node 0's is also where the API server and Kafka's pod listener are."""
        return f"10.{_SUBNET_BASE + self.index}.0.1"

    @property
    def pod_range(self) -> tuple[str, str]:
        return f"10.{_SUBNET_BASE + self.index}.0.10", f"10.{_SUBNET_BASE + self.index}.0.250"

    @property
    def cni_network(self) -> str:
        # Also the prefix of libcni's result cache files: one per node, so each teardown
        # finds its own.
        return f"tspipe-node-{self.index}"

    @property
    def cgroup_root(self) -> str | None:
        """The kubelet's cgroupRoot: node 0 keeps the default (its pods under /kubepods),
        every other node its own folder, so each kubelet manages only its own pods."""
        return None if self.index == 0 else f"/{self.name}"

    def peers(self) -> list[NodeSpec]:
        return [NodeSpec(i) for i in range(NODE_COUNT) if i != self.index]


NODES = tuple(NodeSpec(i) for i in range(NODE_COUNT))
# Node 0's names, as everything written for one node knows them.
NODE_NAME, BRIDGE, NODE_IP, POD_SUBNET = NODES[0].name, NODES[0].bridge, NODES[0].ip, NODES[0].subnet
CNI_NETWORK = NODES[0].cni_network
PAUSE_IMAGE = "localhost/tspipe/pause:3.10"
# Images hack/node-images.sh builds (archive name -> tag as containerd names it).
IMAGES = {
    "pause": PAUSE_IMAGE,
    "router": "ghcr.io/tspipe/router:0.1.0",
    "operator": "ghcr.io/tspipe/operator:0.1.0",
    "time-source": "docker.io/springcloudstream/time-source-kafka:5.1.1",
    "log-sink": "docker.io/springcloudstream/log-sink-kafka:5.1.1",
}
CONTAINERD_BIN, CTR_BIN, RUNC_BIN = "/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"


def containerd_socket(wd: Path) -> Path:
    return wd / "containerd" / "containerd.sock"


def containerd_config(wd: Path) -> str:
    cd = wd / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{cd}/root"
state = "{cd}/state"
# Not btrfs/zfs/devmapper/aufs: overlayfs on the host's filesystem only.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{cd}/containerd.sock"
[ttrpc]
  address = "{cd}/containerd.sock.ttrpc"
[debug]
  address = "{cd}/debug.sock"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{cd}/opt"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # This VM withholds CAP_SYS_RESOURCE: without this runc fails every sandbox with
  # "can't get final child's PID from pipe: EOF" (it may not lower oom_score_adj).
  restrict_oom_score_adj = true
  disable_apparmor = true
  # Pod network namespaces under the work folder, not /run/netns.
  netns_mounts_under_state_dir = true
  # exec/attach/port-forward streaming on loopback, a free port.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC_BIN}"
        # runc's state under the work folder, not /run/containerd/runc.
        Root = "{cd}/runc"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{wd}/cni/net.d"
    max_conf_num = 1
"""


def cni_config(spec: NodeSpec, wd: Path) -> dict:
    # No gateway role and no masquerade: the bridge plugin then neither turns on IP
    # forwarding nor adds NAT rules; pods have the bridge's subnet and a route to each
    # other node's (through this node's bridge address; the host forwards when a second
    # node runs), no default route.
    start, end = spec.pod_range
    return {
        "cniVersion": "0.4.0",
        "name": spec.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": spec.bridge,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(wd / "cni" / "ipam"),
                    "ranges": [[{"subnet": spec.subnet, "rangeStart": start, "rangeEnd": end, "gateway": spec.ip}]],
                    "routes": [{"dst": p.subnet} for p in spec.peers()],
                },
            }
        ],
    }


def kubelet_config(spec: NodeSpec, wd: Path, port: int, healthz_port: int) -> dict:
    pki = wd / "pki"
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": spec.ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        # Only the API server (a client certificate signed by the cluster CA) reaches it.
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "containerRuntimeEndpoint": f"unix://{containerd_socket(wd)}",
        "podLogsDir": str(wd / "pod-logs"),
        # cgroup v1 only on this machine (v2 has no controllers): opt in explicitly.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        # The host's resolv.conf names resolvers pods cannot (and must not) reach.
        "resolvConf": "",
        # A shared development disk: never evict pods or collect our imported images
        # because the disk is fuller than a production node's.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
            "imagefs.inodesFree": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 30,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "staticPodPath": "",
        "containerLogMaxSize": "20Mi",
        "logging": {"format": "text"},
    }
    if spec.cgroup_root:
        cfg["cgroupRoot"] = spec.cgroup_root
    return cfg
