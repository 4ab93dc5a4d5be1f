"""The host side of the real node: what it changes on the machine (processes, cgroups,
mounts, the bridge and its veths, the kubelet's iptables chains and netfilter tables,
kernel settings, libcni's result cache, shim sockets), how each is found, and the
teardown that removes all of it. The same teardown is the sweep of a crashed run, whose
state (work folder, kernel settings and netfilter tables as they were) is in STATE_FILE.
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
from pathlib import Path

from localinfra.nodeconfig import BRIDGE, CNI_NETWORK

STATE_DIR = Path("/run/tspipe-node")
STATE_FILE = STATE_DIR / "state.json"
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
# Kernel settings the kubelet sets at start (setupKernelTunables) and the bridge plugin
# may set; restored at teardown to what they were.
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward")
SHIM_NAME = "containerd-shim"
SHIM_SOCKET_DIR = Path("/run/containerd/s")


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
    try:
        Path("/proc/sys", *name.split(".")).write_text(value + "\n")
    except OSError:
        pass


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
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


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


def kubepods_cgroups() -> list[Path]:
    """Every `kubepods` cgroup folder (any depth below it included), deepest first."""
    found = []
    for h in cgroup_hierarchies():
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
    p = run("ip", "-o", "link", "show", check=False)
    out = []
    for line in p.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name == BRIDGE or f" master {BRIDGE} " in line:
            out.append(name)
    return out


# ---------------------------------------------------------------- teardown (also the sweep)

def nft_tables() -> list[str]:
    """The netfilter tables there are now (`table ip filter`, ...); [] without nft."""
    if not shutil.which("nft"):
        return []
    return sorted(ln.strip() for ln in run("nft", "list", "tables", check=False).stdout.splitlines()
                  if ln.startswith("table "))


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


def teardown(workdir: Path | None, sysctls: dict[str, str] | None, timeout: float = 30,
             remove_workdir: bool = True, tables_before: list[str] | None = None) -> list[str]:
    """Remove everything a node run made; returns what was found left over (for logs).
    Safe to run on a half-started or crashed run, and more than once."""
    notes = []
    # 1. Every container process: they live in kubepods cgroups (freezing is not needed:
    #    SIGKILL until no process is left, new ones cannot start once the kubelet is gone).
    deadline = time.monotonic() + timeout
    while (pids := kubepods_pids()) and time.monotonic() < deadline:
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
        run("ip", "link", "del", link, check=False)
    for f in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*"):
        f.unlink(missing_ok=True)  # libcni's result cache (not configurable in containerd 1.6)
    # 6. The kubelet's iptables chains, and the netfilter tables that only it made.
    _remove_kube_chains()
    if tables_before is not None:
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
    forget_state()
    return notes


def forget_state() -> None:
    """Remove the state file and its folder (when empty): /run as it was before the run."""
    STATE_FILE.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()


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
    out += [f"link {link}" for link in bridge_links()]
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
