"""A real Kubernetes node beside the local control plane: containerd + runc + the CNI
bridge plugin (Debian's packages) and the kubelet (`tspkube kubelet`), with every
configuration file, socket, state and log in the run's work folder.

Usage::

    with ControlPlane(node_ip=NODE_IP) as cp, Node(cp) as node:
        cp.kubectl("get", "nodes")      # kwok-node-0 (tainted) and tsp-node-0 (real)

The node lives on a bridge the run creates (BRIDGE, NODE_IP/24). Pods get addresses on
it and have no route anywhere else: they reach the host's listeners on NODE_IP (Kafka's
pod listener, the API server) and nothing outside the machine. A second node
(`Node(cp, index=1)`, tsp-node-1) has its own containerd, kubelet, cgroup root, bridge
(tspbr1) and subnet (10.246.0.0/24); each node's pods have a route to the other's subnet,
and the host forwards between the bridges while node 1 runs.

Teardown leaves nothing: no kubelet, containerd, shim or container process, no mount
under the work folder, no pod cgroup in any v1 hierarchy, no bridge, veth, network
namespace or cached CNI result, and the kernel settings the kubelet changes are put back.
What a crashed run left (each node records its state in `state_file()`) is swept at the
next start.

The pure configuration is in localinfra.nodeconfig, the host primitives, teardown and
sweep in localinfra.nodehost; this module is the node's lifecycle and its CLI.

Needs root, Linux and the packages hack/node-packages.sh installs; `unavailable()` says
why a machine cannot run a node (tests skip and the demo falls back with that reason).
"""

from __future__ import annotations

import atexit
import contextlib
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
    BRIDGE,
    CNI_BIN_DIR,
    CNI_NETWORK,
    CONTAINERD_BIN,
    CTR_BIN,
    IMAGES,
    NODE_IP,
    NODE_LABEL,
    NODE_NAME,
    NODES,
    POD_SUBNET,
    RUNC_BIN,
    NodeSpec,
    cni_config,
    containerd_config,
    containerd_socket,
    kubelet_config,
)
from localinfra.nodehost import (
    CGROUP_ROOT,
    STATE_DIR,
    SYSCTLS,
    NodeError,
    forget_state,
    kill,
    leftovers,
    make_cgroup_root,
    nft_tables,
    node_leftovers,
    pids_matching,
    pod_pids,
    read_sysctl,
    run,
    sandbox_ids,
    state_file,
    sweep,
    teardown,
    write_sysctl,
)
from localinfra.proc import die_with_parent, free_port, rss_bytes

# What tests, the demo and bench import from here (the names of the node and its state).
__all__ = [
    "BRIDGE",
    "CNI_NETWORK",
    "IMAGES",
    "NODES",
    "NODE_IP",
    "NODE_LABEL",
    "NODE_NAME",
    "POD_SUBNET",
    "SYSCTLS",
    "Node",
    "NodeError",
    "NodeSpec",
    "ensure_images",
    "leftovers",
    "nft_tables",
    "node_leftovers",
    "read_sysctl",
    "state_file",
    "sweep",
    "unavailable",
]
# Pods of one node reach the other node's pods through the host: it must forward between
# the bridges (0 on this machine before a second node starts; put back at its teardown).
FORWARDING = ("net.ipv4.ip_forward", "1")

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
    for b in (
        CONTAINERD_BIN,
        CTR_BIN,
        RUNC_BIN,
        f"{CNI_BIN_DIR}/bridge",
        f"{CNI_BIN_DIR}/host-local",
        f"{CNI_BIN_DIR}/loopback",
    ):
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

_LIVE: list[Node] = []


@atexit.register
def _stop_all() -> None:
    for n in list(_LIVE):
        n.stop()


class Node:
    """containerd + kubelet registered as node `index` (NODES: tsp-node-0, tsp-node-1) with
    `cp` (started with node_ip=NODE_IP, node 0's address, where every node's pods reach the
    API server). Node 1 runs only beside a running node 0, in the same process."""

    def __init__(
        self,
        cp: ControlPlane,
        workdir: str | os.PathLike | None = None,
        *,
        index: int = 0,
        images: tuple[str, ...] = tuple(IMAGES),
        start_timeout: float = 240,
    ):
        if cp.node_ip != NODE_IP:
            raise NodeError(f"start the control plane with ControlPlane(node_ip={NODE_IP!r})")
        if not 0 <= index < len(NODES):
            raise NodeError(f"the harness knows nodes 0 to {len(NODES) - 1}, not {index}")
        self.spec = NODES[index]
        self.name = self.spec.name
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
        self.kubelet_started: float | None = None
        self.ready_after_kubelet: float | None = None

    # -- public surface ---------------------------------------------------
    @property
    def containerd_socket(self) -> str:
        return str(containerd_socket(self.workdir))

    def logs(self) -> dict[str, Path]:
        return {n: self.workdir / f"{n}.log" for n in ("containerd", "kubelet")}

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for path in self.logs().values():
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
        return run(CTR_BIN, "--address", self.containerd_socket, "--namespace", "k8s.io", *args, timeout=timeout)

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- start ------------------------------------------------------------
    def start(self) -> Node:
        t0 = time.monotonic()
        live = tuple(n.spec.index for n in _LIVE)
        if self.spec.index in live:
            raise NodeError(f"{self.name} runs already")
        if self.spec.index > 0 and 0 not in live:
            # Its pods reach the API server and Kafka on node 0's bridge address.
            raise NodeError(f"{self.name} runs only beside {NODE_NAME} (start that first, in this process)")
        reason = unavailable()
        if reason:
            raise NodeError(reason)
        archives = ensure_images(self.images)
        notes = sweep(live)
        if notes:
            print(f"[node] swept an earlier run: {'; '.join(notes)}", file=sys.stderr)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sysctls = {k: v for k in SYSCTLS if (v := read_sysctl(k)) is not None}
        self.nft_tables = nft_tables()
        # Recorded before anything changes, so a crash at any later point is swept.
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state_file(self.spec).write_text(
            json.dumps(
                {
                    "owner": os.getpid(),
                    "workdir": str(self.workdir),
                    "sysctls": self.sysctls,
                    "nft_tables": self.nft_tables,
                }
            )
        )
        _LIVE.append(self)
        try:
            self._start(archives, t0 + self.start_timeout)
        except BaseException as exc:
            tails = self.log_tails()
            self.stop()
            raise NodeError(f"node {self.name} failed to start: {exc}\n{tails}") from exc
        self.started_in = time.monotonic() - t0
        return self

    def _start(self, archives: dict[str, Path], deadline: float) -> None:
        wd = self.workdir
        for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "pki"):
            (wd / d).mkdir(parents=True, exist_ok=True)
        spec = self.spec
        # The bridge first: the kubelet's address and the node IP live on it.
        run("ip", "link", "add", spec.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{spec.ip}/24", "dev", spec.bridge)
        run("ip", "link", "set", spec.bridge, "up")
        if spec.index > 0:
            write_sysctl(*FORWARDING)
        make_cgroup_root(spec)

        (wd / "containerd.toml").write_text(containerd_config(wd))
        (wd / "cni" / "net.d" / f"10-{spec.cni_network}.conflist").write_text(
            json.dumps(cni_config(spec, wd), indent=2)
        )
        self._spawn("containerd", [CONTAINERD_BIN, "--config", str(wd / "containerd.toml")])
        _wait(
            lambda: (
                self._check()
                and os.path.exists(self.containerd_socket)
                and run(CTR_BIN, "--address", self.containerd_socket, "version", check=False).returncode == 0
            ),
            max(5, deadline - time.monotonic()),
            "containerd to answer",
        )
        t = time.monotonic()
        for path in archives.values():
            # docker-archive from buildah push; unpacked into overlayfs for the CRI.
            self.ctr("images", "import", str(path))
        self.import_seconds = time.monotonic() - t

        # The kubelet's certificates, signed by the cluster CA.
        cpki = Path(self.cp.workdir) / "pki"
        pki = wd / "pki"
        for f in ("ca.crt", "ca.key"):
            shutil.copy(cpki / f, pki / f)
        base = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        issue_cert(
            pki,
            "kubelet",
            f"/CN={spec.name}",
            base + f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{spec.ip},DNS:{spec.name}\n",
        )
        issue_cert(
            pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{spec.name}", base + "extendedKeyUsage=clientAuth\n"
        )
        (pki / "ca.key").unlink()
        write_kubeconfig(
            wd / "kubelet.kubeconfig",
            self.cp.apiserver_url,
            pki / "ca.crt",
            pki / "kubelet-client.crt",
            pki / "kubelet-client.key",
            f"system:node:{spec.name}",
        )
        self.kubelet_port = free_port()
        (wd / "kubelet.yaml").write_text(json.dumps(kubelet_config(spec, wd, self.kubelet_port, free_port()), indent=2))
        self._spawn(
            "kubelet",
            [
                str(cache.k8s_file("tspkube")),
                "kubelet",
                f"--config={wd / 'kubelet.yaml'}",
                f"--kubeconfig={wd / 'kubelet.kubeconfig'}",
                f"--root-dir={wd / 'kubelet'}",
                f"--cert-dir={pki}",
                f"--hostname-override={spec.name}",
                f"--node-ip={spec.ip}",
                f"--node-labels={NODE_LABEL}=real",
                "--v=1",
            ],
        )
        self.kubelet_started = time.monotonic()
        _wait(lambda: self._check() and self._ready(), max(5, deadline - time.monotonic()), f"node {spec.name} Ready")
        self.ready_after_kubelet = time.monotonic() - self.kubelet_started

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.workdir / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl call, no lock taken
            )

    def _check(self) -> bool:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise NodeError(f"{name} exited with code {p.returncode}")
        return True

    def _ready(self) -> bool:
        p = self.cp.kubectl("get", "node", self.name, "-o", "json", check=False)
        if p.returncode != 0:
            return False
        conds = json.loads(p.stdout).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    # -- stop -------------------------------------------------------------
    def crash(self) -> None:
        """The machine dies: SIGKILL to the kubelet, containerd, the shims and every container
        process at once, nothing told, nothing cleaned up (the API server hears nothing more
        from the node). Its mounts, cgroups, veths, network namespaces and CNI results stay
        until stop(), which removes them as after any crash."""
        if self.workdir is None:
            return
        pids = set(pids_matching(str(self.workdir))) | pod_pids(self.spec)
        kill(pids)
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)  # reap the kubelet and containerd (our children); stop() sees them dead

    def stop(self, timeout: float = 30) -> None:
        # Nodes with a higher index stop first: each puts back the kernel settings it found,
        # which node 0 found first; and node 0's teardown removes what all kubelets share.
        for other in [n for n in _LIVE if n.spec.index > self.spec.index]:
            other.stop(timeout)
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
        self.teardown_notes = teardown(
            self.spec,
            self.workdir,
            self.sysctls,
            timeout,
            remove_workdir=self._own_workdir and not keep,
            tables_before=self.nft_tables,
            shared=not _LIVE,
        )
        try:
            st = json.loads(state_file(self.spec).read_text())
            if st.get("owner") == os.getpid():
                forget_state(self.spec)
        except (OSError, ValueError):
            pass

    def sandbox_ids(self) -> set[str]:
        """The pod sandboxes of this node's containerd (their `lo` CNI results are its own)."""
        return sandbox_ids(self.workdir)


def main(argv: list[str] | None = None) -> int:
    """`python -m localinfra.node [--nodes N]`: a control plane with N real nodes until
    Ctrl-C; `sweep`: clean up after crashed runs; `leftovers`: what a run left (exit 1 if any)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m localinfra.node", description=main.__doc__)
    ap.add_argument("command", nargs="?", choices=("run", "sweep", "leftovers"), default="run")
    ap.add_argument("--nodes", type=int, default=1, choices=range(1, len(NODES) + 1))
    args = ap.parse_args(argv)
    if args.command == "sweep":
        before = leftovers()
        try:
            notes = sweep()
        except NodeError as exc:  # a live run owns a node: not ours to remove
            print(exc, file=sys.stderr)
            return 1
        after = leftovers()
        print(
            "\n".join([f"removed {x}" for x in before if x not in after] + notes + [f"left {x}" for x in after])
            or "nothing was left",
            flush=True,
        )
        return 1 if after else 0
    if args.command == "leftovers":
        left = leftovers()
        print("\n".join(left) or "nothing is left", flush=True)
        return 1 if left else 0
    reason = unavailable()
    if reason:
        print(f"no real node on this machine: {reason}", file=sys.stderr)
        return 2
    with ControlPlane(node_ip=NODE_IP) as cp, contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(Node(cp, index=i)) for i in range(args.nodes)]
        for n in nodes:
            print(f"node {n.name} Ready in {n.started_in:.0f}s", flush=True)
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while all(n.alive() for n in nodes):
                time.sleep(1)
            print("a node component exited; stopping\n" + "\n".join(n.log_tails() for n in nodes), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
