"""The host side of the real node: what it changes on the machine (processes, cgroups,
mounts, the bridge and its veths, the kubelet's iptables chains and netfilter tables,
kernel settings, libcni's result cache, shim sockets), how each is found, and the
teardown that removes all of it. The same teardown is the sweep of a crashed run, whose
state (work folder, kernel settings and netfilter tables as they were) is in its
`state_file()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from localinfra.nodeconfig import NODES, NodeSpec

STATE_DIR = Path("/run/tspipe-node")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
# Kernel settings the kubelet sets at start (setupKernelTunables) and the bridge plugin
# may set; restored at teardown to what they were.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
)
SHIM_NAME = "containerd-shim"
SHIM_SOCKET_DIR = Path("/run/containerd/s")
# libcni's result cache (not configurable in containerd 1.6): `<network>-<sandbox>-<ifname>`.
CNI_RESULTS = Path("/var/lib/cni/results")
# containerd's own network for a sandbox's `lo`; its results are named by sandbox only.
CNI_LOOPBACK = "cni-loopback"
# What runs containers through libcni: while none runs, no cached result can be deleted
# by its owner any more.
RUNTIMES = ("containerd", "crio", "dockerd")


def state_file(spec: NodeSpec) -> Path:
    """Where a running node records its owner, work folder, and the kernel settings and
    netfilter tables as they were before it started: what the sweep needs after a crash."""
    return STATE_DIR / f"{spec.name}.json"


class NodeError(RuntimeError):
    """The node could not start or stop; the message carries the log tails."""


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
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
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value + "\n")


def pids_matching(needle: str) -> list[int]:
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


def kill(pids, sig=signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def unreaped(pids) -> list[int]:
    """The pids that still have a /proc entry. A killed process is a zombie until its parent
    reaps it: its command line is already empty (so `pids_matching` no longer sees it) but
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


def cgroup_hierarchies() -> list[Path]:
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


def _pods_top(spec: NodeSpec) -> str:
    """The cgroup folder, below each hierarchy's root, that holds all of the node's pods."""
    return spec.cgroup_root.strip("/") if spec.cgroup_root else KUBEPODS


def pod_cgroups(spec: NodeSpec) -> list[Path]:
    """The node's pod cgroup folders (its cgroup root or `kubepods`, any depth below it
    included) in every hierarchy, deepest first."""
    found = []
    for h in cgroup_hierarchies():
        top = h / _pods_top(spec)
        if top.is_dir():
            found += [Path(dp) for dp, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def pod_pids(spec: NodeSpec) -> set[int]:
    pids = set()
    for cg in pod_cgroups(spec):
        with contextlib.suppress(OSError):
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
    return pids


def make_cgroup_root(spec: NodeSpec) -> None:
    """The kubelet refuses a cgroupRoot missing in any hierarchy ("cgroup [...] has some
    missing paths"); a new cpuset cgroup has no CPUs or memory nodes until given the
    parent's, and then no task may join it."""
    if not spec.cgroup_root:
        return
    for h in cgroup_hierarchies():
        top = h / _pods_top(spec)
        top.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (h / f).exists():
                (top / f).write_text((h / f).read_text())


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


def bridge_links(spec: NodeSpec) -> list[str]:
    """The node's bridge and every link enslaved to it (the pods' host-side veths)."""
    p = run("ip", "-o", "link", "show", check=False)
    out = []
    for line in p.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name == spec.bridge or f" master {spec.bridge} " in line:
            out.append(name)
    return out


def sandbox_ids(workdir: Path | None) -> set[str]:
    """The pod sandboxes the node's containerd has (or had, while its folder is there)."""
    out: set[str] = set()
    if workdir is not None:
        for kind in ("root", "state"):
            d = workdir / "containerd" / kind / "io.containerd.grpc.v1.cri" / "sandboxes"
            if d.is_dir():
                out.update(x.name for x in d.iterdir())
    return out


def cni_results(spec: NodeSpec, sandboxes: Collection[str] = ()) -> list[Path]:
    """libcni's cached results of the node's pods: its own network's, and the `lo` ones of
    those pods and of `sandboxes`. A sandbox torn down without a CNI DEL (containerd
    stopped first, or a crash) leaves both."""
    if not CNI_RESULTS.is_dir():
        return []
    ours = sorted(CNI_RESULTS.glob(f"{spec.cni_network}-*"))
    ids = set(sandboxes) | {f.name[len(spec.cni_network) + 1 :].rsplit("-", 1)[0] for f in ours}
    return ours + [f for i in sorted(ids) if (f := CNI_RESULTS / f"{CNI_LOOPBACK}-{i}-lo").exists()]


def runtime_processes() -> list[str]:
    """`pid: command line` of every container runtime process on the machine (kubelets too)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            comm = (p / "comm").read_text().strip()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm.startswith(SHIM_NAME) or comm in RUNTIMES or (comm.startswith("tspkube") and " kubelet " in cmd + " "):
            out.append(f"{p.name}: {cmd.strip() or '(exited, not yet reaped)'}")
    return out


def orphan_loopback_results() -> list[Path]:
    """Every `lo` result while no container runtime runs: nothing can delete them any more
    (one from a run that crashed before its teardown knew of them, for instance)."""
    if not CNI_RESULTS.is_dir() or runtime_processes():
        return []
    return sorted(CNI_RESULTS.glob(f"{CNI_LOOPBACK}-*"))


# ---------------------------------------------------------------- teardown (also the sweep)


def nft_tables() -> list[str]:
    """The netfilter tables there are now (`table ip filter`, ...); [] without nft."""
    if not shutil.which("nft"):
        return []
    return sorted(
        ln.strip() for ln in run("nft", "list", "tables", check=False).stdout.splitlines() if ln.startswith("table ")
    )


def kube_chains() -> list[str]:
    """The kubelet's iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...)."""
    out = []
    for binary in ("iptables", "ip6tables"):
        if not shutil.which(binary):
            continue
        for table in ("filter", "nat", "mangle"):
            for rule in run(binary, "-w", "5", "-t", table, "-S", check=False).stdout.splitlines():
                if rule.startswith("-N KUBE-"):
                    out.append(f"{binary} -t {table} {rule.split()[1]}")
    return out


def _remove_kube_chains() -> None:
    """Undo the kubelet's iptables bookkeeping: jumps into KUBE-* chains, then the chains."""
    for binary in ("iptables", "ip6tables"):
        if not shutil.which(binary):
            continue
        for table in ("filter", "nat", "mangle"):
            rules = run(binary, "-w", "5", "-t", table, "-S", check=False).stdout.splitlines()
            for rule in rules:
                if rule.startswith("-A ") and " -j KUBE-" in rule:
                    run(binary, "-w", "5", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            for rule in rules:
                if rule.startswith("-N KUBE-"):
                    run(binary, "-w", "5", "-t", table, "-F", rule.split()[1], check=False)
            for rule in rules:
                if rule.startswith("-N KUBE-"):
                    run(binary, "-w", "5", "-t", table, "-X", rule.split()[1], check=False)


def teardown(  # noqa: C901 - best-effort steps in teardown order, each guarded on its own
    spec: NodeSpec,
    workdir: Path | None,
    sysctls: dict[str, str] | None,
    timeout: float = 30,
    remove_workdir: bool = True,
    tables_before: list[str] | None = None,
    shared: bool = True,
) -> list[str]:
    """Remove everything node `spec`'s run made; returns what was found left over (for
    logs). Safe to run on a half-started or crashed run, and more than once. `shared`:
    also what every kubelet on the machine shares (the KUBE-* iptables chains, netfilter
    tables); False while another node still runs and needs them."""
    notes = []
    # 1. Every container process: they live in the node's pod cgroups (freezing is not needed:
    #    SIGKILL until no process is left, new ones cannot start once the kubelet is gone).
    deadline = time.monotonic() + timeout
    while (pids := pod_pids(spec)) and time.monotonic() < deadline:
        kill(pids)
        time.sleep(0.2)
    if pids:
        notes.append(f"container processes still alive: {sorted(pids)}")
    # 2. containerd, kubelet and the shims: each has the work folder in its arguments.
    if workdir is not None:
        killed: set[int] = set()
        while (pids := pids_matching(str(workdir))) and time.monotonic() < deadline:
            kill(pids)
            killed.update(pids)
            time.sleep(0.2)
        if pids:
            notes.append(f"node processes still alive: {pids}")
        while (pids := unreaped(killed)) and time.monotonic() < deadline:
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
    # 4. The node's pod cgroups, in every hierarchy (deepest first; empty folders only).
    for _ in range(20):
        left = pod_cgroups(spec)
        if not left:
            break
        for cg in left:
            with contextlib.suppress(OSError):
                cg.rmdir()
        time.sleep(0.1)
    if pod_cgroups(spec):
        notes.append(f"cgroups left: {[str(c) for c in pod_cgroups(spec)][:5]}")
    # 5. Network: the pods' veths (normally gone with their namespaces) and the bridge.
    for link in reversed(bridge_links(spec)):
        run("ip", "link", "del", link, check=False)
    for f in cni_results(spec, sandbox_ids(workdir)):
        f.unlink(missing_ok=True)
    # 6. The kubelet's iptables chains, and the netfilter tables that only it made.
    if shared:
        _remove_kube_chains()
    if shared and tables_before is not None:
        for table in nft_tables():
            if table not in tables_before:
                run("nft", "delete", *table.split(), check=False)
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
    _rmdir_empty(SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent, *((CNI_RESULTS, CNI_RESULTS.parent) if shared else ()))
    return notes


def _rmdir_empty(*folders: Path) -> None:
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty: another runtime's files stay


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


def sweep(live: tuple[int, ...] = ()) -> list[str]:
    """Clean up after earlier runs that died without their teardown: every node the harness
    knows, the highest first (each restores the kernel settings it found, and node 0 found
    them first). `live`: the indices of nodes this process runs, which stay. Raises
    NodeError if another live process owns a node (one per machine: its bridge, its cgroups)."""
    notes = []
    for spec in reversed(NODES):
        if spec.index in live:
            continue
        try:
            state = json.loads(state_file(spec).read_text())
        except (OSError, ValueError):
            state = None
        if state:
            try:
                os.kill(int(state["owner"]), 0)
                if int(state["owner"]) != os.getpid():
                    raise NodeError(
                        f"another process (pid {state['owner']}) runs the node {spec.name} in {state.get('workdir')}"
                    )
            except ProcessLookupError:
                pass
        notes += teardown(
            spec,
            Path(state["workdir"]) if state and state.get("workdir") else None,
            state.get("sysctls") if state else None,
            tables_before=state.get("nft_tables") if state else None,
            shared=not live,
        )
        forget_state(spec)
    for f in orphan_loopback_results():
        f.unlink(missing_ok=True)
    if not live:
        _rmdir_empty(CNI_RESULTS, CNI_RESULTS.parent)
    return notes


def forget_state(spec: NodeSpec) -> None:
    """Remove the node's state file and the folder (when empty): /run as it was before the run."""
    state_file(spec).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()


def node_leftovers(spec: NodeSpec, workdir: Path | None = None, sandboxes: Collection[str] = ()) -> list[str]:
    """What node `spec`'s run could leave behind and is there now, while other nodes may
    still run: processes with its work folder in their arguments, processes and folders in
    its pod cgroups, its bridge and veths, mounts, its cached CNI results (with the `lo`
    ones of `sandboxes`), its state file."""
    out = []
    if workdir is not None:
        out += [f"process {pid}" for pid in pids_matching(str(workdir))]
    if pod_pids(spec):
        out.append(f"processes in {spec.name}'s pod cgroups: {sorted(pod_pids(spec))}")
    out += [f"cgroup {c}" for c in pod_cgroups(spec)]
    out += [f"link {link}" for link in bridge_links(spec)]
    if workdir is not None:
        out += [f"mount {m}" for m in mounts_under(workdir)]
        if workdir.exists():
            out.append(f"work folder {workdir}")
    out += [f"CNI result {f}" for f in cni_results(spec, {*sandboxes, *sandbox_ids(workdir)})]
    if state_file(spec).exists():
        out.append(f"state file {state_file(spec)}")
    return out


def leftovers(*workdirs: Path | None) -> list[str]:
    """What node runs could leave behind and is there now: empty after a clean teardown of
    every node (the container runtime processes on the machine are counted whoever runs them)."""
    out = [f"process {p}" for p in runtime_processes()]
    dirs = [w for w in workdirs if w is not None]
    for spec in NODES:
        out += node_leftovers(spec)
    for w in dirs:
        out += [f"mount {m}" for m in mounts_under(w)]
        if w.exists():
            out.append(f"work folder {w}")
    out += [f"CNI result {f}" for f in sorted(CNI_RESULTS.glob(f"{CNI_LOOPBACK}-*")) if CNI_RESULTS.is_dir()]
    if Path("/run/netns").is_dir():
        out += [f"netns /run/netns/{n.name}" for n in Path("/run/netns").iterdir() if n.name.startswith("cni-")]
    if STATE_DIR.exists():
        out.append(f"state folder {STATE_DIR}")
    out += [f"stale shim socket {f}" for f in stale_shim_sockets()]
    out += [f"iptables chain {c}" for c in kube_chains()]
    return list(dict.fromkeys(out))  # a node's `lo` results are also among all of them
