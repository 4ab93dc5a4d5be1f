"""A real Kubernetes node beside the local control plane: containerd + runc + the CNI
bridge plugin (Debian's packages) and the kubelet (`tspkube kubelet`), with every
configuration file, socket, state and log in the run's work folder.

Usage::

    with ControlPlane(node_ip=NODE_IP) as cp, Node(cp) as node:
        cp.kubectl("get", "nodes")      # kwok-node-0 (tainted) and tsp-node-0 (real)

The node lives on a bridge the run creates (BRIDGE, NODE_IP/24). Pods get addresses on
it and have no route anywhere else: they reach the host's listeners on NODE_IP (Kafka's
pod listener, the API server) and nothing outside the machine.

Teardown leaves nothing: no kubelet, containerd, shim or container process, no mount
under the work folder, no cgroup under `kubepods` in any v1 hierarchy, no bridge, veth
or network namespace, and the kernel settings the kubelet changes are put back. What a
crashed run left (its state is recorded in STATE_FILE) is swept at the next start.

Needs root, Linux and the packages hack/node-packages.sh installs; `unavailable()` says
why a machine cannot run a node (tests skip and the demo falls back with that reason).
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localinfra import cache
from localinfra.kube import ControlPlane, _die_with_parent, _issue, write_kubeconfig
from localinfra.proc import free_port, rss_bytes

NODE_NAME = "tsp-node-0"
BRIDGE = "tspbr0"
NODE_IP = "10.245.0.1"          # the bridge's address: node InternalIP, Kafka's pod listener
POD_SUBNET = "10.245.0.0/24"
NODE_LABEL = "tspipe.io/node"   # = "real" on this node
CNI_NETWORK = "tspipe-node"
STATE_DIR = Path("/run/tspipe-node")
STATE_FILE = STATE_DIR / "state.json"
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
PAUSE_IMAGE = "localhost/tspipe/pause:3.10"
# Images hack/node-images.sh builds (archive name -> tag as containerd names it).
IMAGES = {
    "pause": PAUSE_IMAGE,
    "router": "ghcr.io/tspipe/router:0.1.0",
    "operator": "ghcr.io/tspipe/operator:0.1.0",
    "time-source": "docker.io/springcloudstream/time-source-kafka:5.1.1",
    "log-sink": "docker.io/springcloudstream/log-sink-kafka:5.1.1",
}
# Kernel settings the kubelet sets at start (setupKernelTunables) and the bridge plugin
# may set; restored at teardown to what they were.
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward")
CONTAINERD_BIN, CTR_BIN, RUNC_BIN = "/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
SHIM_NAME = "containerd-shim"
SHIM_SOCKET_DIR = Path("/run/containerd/s")
SCRIPT_PACKAGES = cache.HACK / "node-packages.sh"
SCRIPT_IMAGES = cache.HACK / "node-images.sh"


class NodeError(RuntimeError):
    """The node could not start or stop; the message carries the log tails."""


# ---------------------------------------------------------------- can this machine run it

def unavailable(install: bool = True) -> str | None:
    """Why this machine cannot run a real node, or None if it can. With `install`,
    missing Debian packages are installed first (root + apt-get)."""
    if sys.platform != "linux":
        return "a real node needs Linux"
    if os.geteuid() != 0:
        return "a real node needs root (containerd, kubelet, a bridge and cgroups)"
    if not (CGROUP_ROOT / "memory").is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists():
        return "no cgroup filesystem at /sys/fs/cgroup"
    if install:
        rc = subprocess.run(["bash", str(SCRIPT_PACKAGES)]).returncode
        if rc != 0:
            return f"the node's Debian packages cannot be installed ({SCRIPT_PACKAGES.name} exit {rc})"
    for b in (CONTAINERD_BIN, CTR_BIN, RUNC_BIN, f"{CNI_BIN_DIR}/bridge", f"{CNI_BIN_DIR}/host-local",
              f"{CNI_BIN_DIR}/loopback"):
        if not os.access(b, os.X_OK):
            return f"{b} is missing (hack/node-packages.sh installs it)"
    return None


def ensure_images(names: tuple[str, ...] = tuple(IMAGES)) -> dict[str, Path]:
    """The image archives (building what is missing or stale with hack/node-images.sh)."""
    subprocess.run(["bash", str(SCRIPT_IMAGES), *names], check=True)
    out = cache.cache_dir() / "node" / "images"
    return {n: out / f"{n}.tar" for n in names}


# ---------------------------------------------------------------- small system helpers

def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    try:
        Path("/proc/sys", *name.split(".")).write_text(value + "\n")
    except OSError:
        pass


def _pids_matching(needle: str) -> list[int]:
    """Processes whose command line mentions `needle` (the work folder: every process the
    node starts has it in its arguments)."""
    me = os.getpid()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append(int(d.name))
    return out


def _kill(pids, sig=signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _unreaped(pids) -> list[int]:
    """The pids that still have a /proc entry. A killed process is a zombie until its parent
    reaps it: its command line is already empty (so `_pids_matching` no longer sees it) but
    `leftovers()` still does. Our own zombie children are reaped here; the others (shims,
    and after a crash containerd and kubelet) belong to init, which reaps them shortly."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state == "Z" and int(ppid) == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        out.append(pid)
    return out


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted v1 hierarchy (and the v2 one), each once."""
    seen, out = set(), []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] in ("cgroup", "cgroup2"):
            mp = Path(fields[4])
            if mp not in seen:
                seen.add(mp)
                out.append(mp)
    return out


def kubepods_cgroups() -> list[Path]:
    """Every `kubepods` cgroup folder (any depth below it included), deepest first."""
    found = []
    for h in _cgroup_hierarchies():
        top = h / KUBEPODS
        if top.is_dir():
            found += [Path(dp) for dp, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kubepods_pids() -> set[int]:
    pids = set()
    for cg in kubepods_cgroups():
        try:
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return pids


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder`, deepest (latest) first."""
    prefix = str(folder).rstrip("/") + "/"
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp.startswith(prefix) or mp == prefix.rstrip("/"):
            out.append(mp)
    return list(reversed(out))


_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def _umount(path: str) -> None:
    if _libc.umount2(path.encode(), 0) != 0:
        _libc.umount2(path.encode(), _MNT_DETACH)  # busy: detach now, freed when unused


def bridge_links() -> list[str]:
    """Our bridge and every link enslaved to it (the pods' host-side veths)."""
    p = _run("ip", "-o", "link", "show", check=False)
    out = []
    for line in p.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name == BRIDGE or f" master {BRIDGE} " in line:
            out.append(name)
    return out


def _wait(probe, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- teardown (also the sweep)

def nft_tables() -> list[str]:
    """The netfilter tables there are now (`table ip filter`, ...); [] without nft."""
    if not shutil.which("nft"):
        return []
    return sorted(ln.strip() for ln in _run("nft", "list", "tables", check=False).stdout.splitlines()
                  if ln.startswith("table "))


def kube_chains() -> list[str]:
    """The kubelet's iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...)."""
    out = []
    for binary in ("iptables", "ip6tables"):
        if not shutil.which(binary):
            continue
        for table in ("filter", "nat", "mangle"):
            for rule in _run(binary, "-w", "5", "-t", table, "-S", check=False).stdout.splitlines():
                if rule.startswith("-N KUBE-"):
                    out.append(f"{binary} -t {table} {rule.split()[1]}")
    return out


def _remove_kube_chains() -> None:
    """Undo the kubelet's iptables bookkeeping: jumps into KUBE-* chains, then the chains."""
    for binary in ("iptables", "ip6tables"):
        if not shutil.which(binary):
            continue
        for table in ("filter", "nat", "mangle"):
            rules = _run(binary, "-w", "5", "-t", table, "-S", check=False).stdout.splitlines()
            for rule in rules:
                if rule.startswith("-A ") and " -j KUBE-" in rule:
                    _run(binary, "-w", "5", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            for rule in rules:
                if rule.startswith("-N KUBE-"):
                    _run(binary, "-w", "5", "-t", table, "-F", rule.split()[1], check=False)
            for rule in rules:
                if rule.startswith("-N KUBE-"):
                    _run(binary, "-w", "5", "-t", table, "-X", rule.split()[1], check=False)


def teardown(workdir: Path | None, sysctls: dict[str, str] | None, timeout: float = 30,
             remove_workdir: bool = True, tables_before: list[str] | None = None) -> list[str]:
    """Remove everything a node run made; returns what was found left over (for logs).
    Safe to run on a half-started or crashed run, and more than once."""
    notes = []
    # 1. Every container process: they live in kubepods cgroups (freezing is not needed:
    #    SIGKILL until no process is left, new ones cannot start once the kubelet is gone).
    deadline = time.monotonic() + timeout
    while (pids := kubepods_pids()) and time.monotonic() < deadline:
        _kill(pids)
        time.sleep(0.2)
    if pids:
        notes.append(f"container processes still alive: {sorted(pids)}")
    # 2. containerd, kubelet and the shims: each has the work folder in its arguments.
    if workdir is not None:
        killed: set[int] = set()
        while (pids := _pids_matching(str(workdir))) and time.monotonic() < deadline:
            _kill(pids)
            killed.update(pids)
            time.sleep(0.2)
        if pids:
            notes.append(f"node processes still alive: {pids}")
        while (pids := _unreaped(killed)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pids:
            notes.append(f"node processes killed but not reaped: {pids}")
        # 3. Mounts: container root filesystems, shm, netns, secret/projected tmpfs.
        for _ in range(3):
            mps = mounts_under(workdir)
            if not mps:
                break
            for mp in mps:
                _umount(mp)
        if mounts_under(workdir):
            notes.append(f"mounts left: {mounts_under(workdir)}")
    # 4. cgroups under kubepods, in every hierarchy (deepest first; empty folders only).
    for _ in range(20):
        left = kubepods_cgroups()
        if not left:
            break
        for cg in left:
            try:
                cg.rmdir()
            except OSError:
                pass
        time.sleep(0.1)
    if kubepods_cgroups():
        notes.append(f"cgroups left: {[str(c) for c in kubepods_cgroups()][:5]}")
    # 5. Network: the pods' veths (normally gone with their namespaces) and the bridge.
    for link in reversed(bridge_links()):
        _run("ip", "link", "del", link, check=False)
    for f in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*"):
        f.unlink(missing_ok=True)  # libcni's result cache (not configurable in containerd 1.6)
    # 6. The kubelet's iptables chains, and the netfilter tables that only it made.
    _remove_kube_chains()
    if tables_before is not None:
        for table in nft_tables():
            if table not in tables_before:
                _run("nft", "delete", *table.split(), check=False)
    # 7. Kernel settings as they were before the kubelet started.
    for name, value in (sysctls or {}).items():
        if read_sysctl(name) != value:
            write_sysctl(name, value)
    if workdir is not None and remove_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    # Shims put their sockets in containerd's default state folder whatever the config
    # says (containerd 1.6); a socket nobody listens on any more is garbage.
    for sock in stale_shim_sockets():
        sock.unlink(missing_ok=True)
    for d in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
        try:
            d.rmdir()  # only when empty: another containerd's files stay
        except OSError:
            pass
    return notes


def stale_shim_sockets() -> list[Path]:
    out = []
    if SHIM_SOCKET_DIR.is_dir():
        for f in SHIM_SOCKET_DIR.iterdir():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(str(f))
                except (ConnectionRefusedError, FileNotFoundError):
                    out.append(f)
                except OSError:
                    pass
    return out


def sweep() -> list[str]:
    """Clean up after an earlier run that died without its teardown. Raises NodeError if a
    live process still owns the node (one node per machine: one bridge, one kubepods)."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        state = None
    if state:
        try:
            os.kill(int(state["owner"]), 0)
            if int(state["owner"]) != os.getpid():
                raise NodeError(f"another process (pid {state['owner']}) runs the node "
                                f"in {state.get('workdir')}")
        except ProcessLookupError:
            pass
    notes = teardown(Path(state["workdir"]) if state and state.get("workdir") else None,
                     state.get("sysctls") if state else None,
                     tables_before=state.get("nft_tables") if state else None)
    _forget_state()
    return notes


def _forget_state() -> None:
    """Remove the state file and its folder (when empty): /run as it was before the run."""
    STATE_FILE.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()


# ---------------------------------------------------------------- configuration files

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


def cni_config(wd: Path) -> dict:
    # No gateway role and no masquerade: the bridge plugin then neither turns on IP
    # forwarding nor adds NAT rules; pods have only the bridge's subnet, no default route.
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": False, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local", "dataDir": str(wd / "cni" / "ipam"),
                "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.245.0.10",
                             "rangeEnd": "10.245.0.250", "gateway": NODE_IP}]],
            },
        }],
    }


def kubelet_config(wd: Path, port: int, healthz_port: int) -> dict:
    pki = wd / "pki"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        # Only the API server (a client certificate signed by the cluster CA) reaches it.
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "containerRuntimeEndpoint": f"unix://{wd / 'containerd' / 'containerd.sock'}",
        "podLogsDir": str(wd / "pod-logs"),
        # cgroup v1 only on this machine (v2 has no controllers): opt in explicitly.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        # The host's resolv.conf names resolvers pods cannot (and must not) reach.
        "resolvConf": "",
        # A shared development disk: never evict pods or collect our imported images
        # because the disk is fuller than a production node's.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%",
                         "nodefs.inodesFree": "0%", "imagefs.available": "0%",
                         "imagefs.inodesFree": "0%"},
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


# ---------------------------------------------------------------- the node

_LIVE: list["Node"] = []


@atexit.register
def _stop_all() -> None:
    for n in list(_LIVE):
        n.stop()


class Node:
    """containerd + kubelet registered as NODE_NAME with `cp` (started with node_ip=NODE_IP)."""

    def __init__(self, cp: ControlPlane, workdir: str | os.PathLike | None = None, *,
                 images: tuple[str, ...] = tuple(IMAGES), start_timeout: float = 240):
        if cp.node_ip != NODE_IP:
            raise NodeError(f"start the control plane with ControlPlane(node_ip={NODE_IP!r})")
        self.cp = cp
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.images = images
        self.start_timeout = start_timeout
        self.sysctls: dict[str, str] = {}
        self.nft_tables: list[str] | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_in: float | None = None
        self.teardown_notes: list[str] = []
        self.import_seconds: float | None = None

    # -- public surface ---------------------------------------------------
    @property
    def containerd_socket(self) -> str:
        return str(self.workdir / "containerd" / "containerd.sock")

    def logs(self) -> dict[str, Path]:
        return {n: self.workdir / f"{n}.log" for n in ("containerd", "kubelet")}

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for name, path in self.logs().items():
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except (FileNotFoundError, TypeError):
                continue
            out.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    def rss(self) -> dict[str, int]:
        """Resident memory of kubelet and containerd (bytes)."""
        return {n: rss_bytes(p.pid) for n, p in self.procs.items() if p.poll() is None}

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(CTR_BIN, "--address", self.containerd_socket, "--namespace", "k8s.io",
                    *args, timeout=timeout)

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- start ------------------------------------------------------------
    def start(self) -> "Node":
        t0 = time.monotonic()
        reason = unavailable()
        if reason:
            raise NodeError(reason)
        archives = ensure_images(self.images)
        notes = sweep()
        if notes:
            print(f"[node] swept an earlier run: {'; '.join(notes)}", file=sys.stderr)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="tsp-node-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sysctls = {k: v for k in SYSCTLS if (v := read_sysctl(k)) is not None}
        self.nft_tables = nft_tables()
        # Recorded before anything changes, so a crash at any later point is swept.
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps({"owner": os.getpid(), "workdir": str(self.workdir),
                                          "sysctls": self.sysctls, "nft_tables": self.nft_tables}))
        _LIVE.append(self)
        try:
            self._start(archives, t0 + self.start_timeout)
        except BaseException as exc:
            tails = self.log_tails()
            self.stop()
            raise NodeError(f"node failed to start: {exc}\n{tails}") from exc
        self.started_in = time.monotonic() - t0
        return self

    def _start(self, archives: dict[str, Path], deadline: float) -> None:
        wd = self.workdir
        for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "pki"):
            (wd / d).mkdir(parents=True, exist_ok=True)
        # The bridge first: the kubelet's address and the node IP live on it.
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")

        (wd / "containerd.toml").write_text(containerd_config(wd))
        (wd / "cni" / "net.d" / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(cni_config(wd), indent=2))
        self._spawn("containerd", [CONTAINERD_BIN, "--config", str(wd / "containerd.toml")])
        _wait(lambda: self._check() and os.path.exists(self.containerd_socket)
              and _run(CTR_BIN, "--address", self.containerd_socket, "version", check=False).returncode == 0,
              max(5, deadline - time.monotonic()), "containerd to answer")
        t = time.monotonic()
        for name, path in archives.items():
            # docker-archive from buildah push; unpacked into overlayfs for the CRI.
            self.ctr("images", "import", str(path))
        self.import_seconds = time.monotonic() - t

        # The kubelet's certificates, signed by the cluster CA.
        cpki = Path(self.cp.workdir) / "pki"
        pki = wd / "pki"
        for f in ("ca.crt", "ca.key"):
            shutil.copy(cpki / f, pki / f)
        base = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        _issue(pki, "kubelet", f"/CN={NODE_NAME}",
               base + f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\n")
        _issue(pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
               base + "extendedKeyUsage=clientAuth\n")
        (pki / "ca.key").unlink()
        write_kubeconfig(wd / "kubelet.kubeconfig", self.cp.apiserver_url, pki / "ca.crt",
                         pki / "kubelet-client.crt", pki / "kubelet-client.key", f"system:node:{NODE_NAME}")
        self.kubelet_port = free_port()
        (wd / "kubelet.yaml").write_text(json.dumps(
            kubelet_config(wd, self.kubelet_port, free_port()), indent=2))
        self._spawn("kubelet", [
            str(cache.k8s_file("tspkube")), "kubelet",
            f"--config={wd / 'kubelet.yaml'}", f"--kubeconfig={wd / 'kubelet.kubeconfig'}",
            f"--root-dir={wd / 'kubelet'}", f"--cert-dir={pki}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
            f"--node-labels={NODE_LABEL}=real", "--v=1",
        ])
        _wait(lambda: self._check() and self._ready(), max(5, deadline - time.monotonic()),
              f"node {NODE_NAME} Ready")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.workdir / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)

    def _check(self) -> bool:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise NodeError(f"{name} exited with code {p.returncode}")
        return True

    def _ready(self) -> bool:
        p = self.cp.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if p.returncode != 0:
            return False
        conds = json.loads(p.stdout).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    # -- stop -------------------------------------------------------------
    def stop(self, timeout: float = 30) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        # The kubelet first (it would restart what we kill), then containerd; then
        # everything they leave behind.
        for name in ("kubelet", "containerd"):
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = {}
        keep = os.environ.get("TSP_KEEP_WORKDIR")
        self.teardown_notes = teardown(self.workdir, self.sysctls, timeout,
                                       remove_workdir=self._own_workdir and not keep,
                                       tables_before=self.nft_tables)
        try:
            st = json.loads(STATE_FILE.read_text())
            if st.get("owner") == os.getpid():
                _forget_state()
        except (OSError, ValueError):
            pass


def leftovers(workdir: Path | None = None) -> list[str]:
    """What a node run could leave behind and is there now (empty after a clean teardown)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            comm = (p / "comm").read_text().strip()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm.startswith(SHIM_NAME) or comm == "containerd" or \
                (comm.startswith("tspkube") and " kubelet " in cmd + " "):
            out.append(f"process {p.name}: {cmd.strip() or '(exited, not yet reaped)'}")
    if kubepods_pids():
        out.append(f"processes in kubepods cgroups: {sorted(kubepods_pids())}")
    out += [f"cgroup {c}" for c in kubepods_cgroups()]
    out += [f"link {l}" for l in bridge_links()]
    if workdir is not None:
        out += [f"mount {m}" for m in mounts_under(workdir)]
        if workdir.exists():
            out.append(f"work folder {workdir}")
    if Path("/run/netns").is_dir():
        out += [f"netns /run/netns/{n.name}" for n in Path("/run/netns").iterdir() if n.name.startswith("cni-")]
    if STATE_DIR.exists():
        out.append(f"state folder {STATE_DIR}")
    out += [f"stale shim socket {f}" for f in stale_shim_sockets()]
    out += [f"iptables chain {c}" for c in kube_chains()]
    return out


def main() -> int:
    """`python -m localinfra.node`: a control plane with a real node until Ctrl-C."""
    reason = unavailable()
    if reason:
        print(f"no real node on this machine: {reason}", file=sys.stderr)
        return 2
    with ControlPlane(node_ip=NODE_IP) as cp, Node(cp) as node:
        print(f"node {NODE_NAME} Ready in {node.started_in:.0f}s; export KUBECONFIG={cp.kubeconfig}",
              flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while node.alive():
                time.sleep(1)
            print("a node component exited; stopping\n" + node.log_tails(), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
