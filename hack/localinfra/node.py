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

The pure configuration is in localinfra.nodeconfig, the host primitives, teardown and
sweep in localinfra.nodehost; this module is the node's lifecycle and its CLI.

Needs root, Linux and the packages hack/node-packages.sh installs; `unavailable()` says
why a machine cannot run a node (tests skip and the demo falls back with that reason).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localinfra import cache
from localinfra.kube import ControlPlane, issue_cert, write_kubeconfig
from localinfra.nodeconfig import (
    BRIDGE, CNI_BIN_DIR, CNI_NETWORK, CONTAINERD_BIN, CTR_BIN, IMAGES, NODE_IP, NODE_LABEL, NODE_NAME,
    POD_SUBNET, RUNC_BIN, cni_config, containerd_config, containerd_socket, kubelet_config,
)
from localinfra.nodehost import (
    CGROUP_ROOT, STATE_DIR, STATE_FILE, SYSCTLS, NodeError, forget_state, leftovers, nft_tables, read_sysctl,
    run, sweep, teardown,
)
from localinfra.proc import die_with_parent, free_port, rss_bytes

# What tests, the demo and bench import from here (the names of the node and its state).
__all__ = [
    "BRIDGE", "CNI_NETWORK", "IMAGES", "NODE_IP", "NODE_LABEL", "NODE_NAME", "POD_SUBNET", "STATE_FILE",
    "SYSCTLS", "Node", "NodeError", "ensure_images", "leftovers", "nft_tables", "read_sysctl", "sweep",
    "unavailable",
]

SCRIPT_PACKAGES = cache.HACK / "node-packages.sh"
SCRIPT_IMAGES = cache.HACK / "node-images.sh"


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


def _wait(probe, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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
        return str(containerd_socket(self.workdir))

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
        return run(CTR_BIN, "--address", self.containerd_socket, "--namespace", "k8s.io",
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
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")

        (wd / "containerd.toml").write_text(containerd_config(wd))
        (wd / "cni" / "net.d" / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(cni_config(wd), indent=2))
        self._spawn("containerd", [CONTAINERD_BIN, "--config", str(wd / "containerd.toml")])
        _wait(lambda: self._check() and os.path.exists(self.containerd_socket)
              and run(CTR_BIN, "--address", self.containerd_socket, "version", check=False).returncode == 0,
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
        issue_cert(pki, "kubelet", f"/CN={NODE_NAME}",
               base + f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\n")
        issue_cert(pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
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
                start_new_session=True, preexec_fn=die_with_parent)

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
                forget_state()
        except (OSError, ValueError):
            pass


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
