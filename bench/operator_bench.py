"""Operator benchmark: N pipelines applied at once vs the floor, on fresh control planes.

For each N (default 10, 100, 500), two runs, each on its own fresh local control plane
(etcd, kube-apiserver, controller manager, scheduler, kwok; enough fake nodes for the
pods):
  * floor: the same Deployments the operator would render (render_deployments) created
    directly with one `kubectl create -f`, timed until every one is Available;
  * operator: the operator (a real subprocess, standalone) running; N TimestampPipelines
    created with one `kubectl create -f`, timed until every one reports phase Running
    for its generation.
Both are watched (not polled) from this process. Also measured for the operator: its
API write requests per pipeline (the API server's audit log, by user agent), the writes
during idle resyncs after everything is Running (--resync-seconds 10, two rounds), its
peak RSS (VmHWM) and CPU time. The pipelines leave topic management off: the floor does
not talk to Kafka either, and there is no broker here.

Writes bench/results/operator.md, operator.json and operator.png.
Run: `python -m bench.operator_bench [--sizes 10,100,500]` (or `make bench BENCH=bench.operator_bench`).

A change side by side: `--against REV` runs git revision REV's operator package and this
tree's in turn on the same N (one floor run per N, the pair's order alternating), and writes
bench/results/operator-scale.md and operator-scale.json instead. `--profile` samples the
operator with py-spy during each operator run and adds its hottest functions to the results.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
from localinfra.demo import SAMPLE as SAMPLE_FILE  # noqa: E402  (the sample's path, declared there once)
from localinfra.kube import audit_events  # noqa: E402
from localinfra.operatorproc import OperatorProcess, manager_argv  # noqa: E402
from localinfra.proc import wait_for as wait  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CRD_FILE = ROOT / "crds" / "timestamppipelines.tspipe.io.yaml"
NS = "bench"
PODS_PER_NODE = 240
RESYNC = 10.0
OPERATOR_AGENTS = ("tspipe-operator/", "kopf/")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def passes_logged(log_text: str, prefix: str = "bench/") -> int:
    """The reconcile passes and resync answers over pipelines named `prefix`... in the
    operator's debug log: one "reconciled" line each (test_watchcache_units holds the
    controller to it; a pass stopped at the inputs check used to log two, which the results'
    earlier pass counts carry)."""
    return log_text.count(f"reconciled {prefix}")


def pipelines(n: int) -> list[dict]:
    import yaml

    base = yaml.safe_load(SAMPLE_FILE.read_text())
    base["spec"]["kafka"]["topics"]["manage"] = False
    out = []
    for i in range(n):
        obj = copy.deepcopy(base)
        obj["metadata"] = {"name": f"p{i:04d}", "namespace": NS}
        out.append(obj)
    return out


def floor_deployments(n: int) -> list[dict]:
    """What the operator renders for the same pipelines, minus the owner reference
    (there is no pipeline object to own them in the floor run)."""
    from tspipe.render import render_deployments

    out = []
    for original in pipelines(n):
        obj = copy.deepcopy(original)
        obj["metadata"]["uid"] = str(uuid.uuid4())
        for d in render_deployments(obj):
            d["metadata"].pop("ownerReferences")
            out.append(d)
    return out


def add_nodes(cp, pods: int) -> None:
    from localinfra.kube import NODE_MANIFEST

    extra = max(0, math.ceil(pods / PODS_PER_NODE) - 1)
    docs = []
    for i in range(1, extra + 1):
        node = copy.deepcopy(NODE_MANIFEST)
        node["metadata"]["name"] = f"kwok-node-{i}"
        node["metadata"]["labels"]["kubernetes.io/hostname"] = f"kwok-node-{i}"
        docs.append(node)
    if docs:
        cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

    def all_ready():
        nodes = json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        ok = [
            n
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions") or []
            )
        ]
        return len(ok) == extra + 1

    wait(all_ready, 120, "nodes Ready")


class ReadyWatch(threading.Thread):
    """Watches `plural` in NS and records when `n` objects satisfy `is_ready`."""

    def __init__(self, kubeconfig: str, group: str, version: str, plural: str, n: int, is_ready):
        super().__init__(daemon=True)
        import kubernetes

        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))
        self.args = (group, version, NS, plural)
        self.n, self.is_ready = n, is_ready
        self.ready: set[str] = set()
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self.started = threading.Event()

    def run(self):
        import kubernetes

        try:
            rv = self.api.list_namespaced_custom_object(*self.args)["metadata"]["resourceVersion"]
            self.started.set()
            while self.done_at is None:
                w = kubernetes.watch.Watch()
                for ev in w.stream(
                    self.api.list_namespaced_custom_object,
                    *self.args,
                    resource_version=rv,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if ev["type"] != "DELETED" and self.is_ready(obj):
                        self.ready.add(name)
                    else:
                        self.ready.discard(name)
                    if len(self.ready) >= self.n:
                        self.done_at = time.monotonic()
                        w.stop()
                        break
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
            self.started.set()


def deployment_available(d: dict) -> bool:
    st = d.get("status") or {}
    avail = any(c["type"] == "Available" and c["status"] == "True" for c in st.get("conditions") or [])
    return (
        avail
        and st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
        and st.get("availableReplicas", 0) == d["spec"].get("replicas", 1)
    )


def pipeline_running(p: dict) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and st.get("observedGeneration") == p["metadata"].get("generation")


def audit_writes(path: str, since: int, agents=None, namespace=NS) -> list[dict]:
    out = []
    for ev in audit_events(path, since):
        if ev.get("verb") not in WRITE_VERBS or (ev.get("objectRef") or {}).get("namespace") != namespace:
            continue
        if agents and not any((ev.get("userAgent") or "").startswith(a) for a in agents):
            continue
        out.append(ev)
    return out


def proc_stats(pid: int) -> dict:
    rss = None
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {"peak_rss_mb": round(rss / 2**20, 1) if rss else None, "cpu_s": round(cpu, 1)}


def create(cp, objs: list[dict]) -> None:
    cp.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}), timeout=1800)


def fresh_plane(pods: int):
    from localinfra.kube import ControlPlane

    cp = ControlPlane().start()
    try:
        add_nodes(cp, pods)
        cp.kubectl("create", "namespace", NS)
        wait(
            lambda: cp.kubectl("get", "serviceaccount", "default", "-n", NS, check=False).returncode == 0,
            60,
            "default ServiceAccount",
        )
    except BaseException:
        cp.stop()
        raise
    return cp


def run_floor(n: int, timeout: float) -> dict:
    deps = floor_deployments(n)
    cp = fresh_plane(len(deps))
    try:
        w = ReadyWatch(cp.kubeconfig, "apps", "v1", "deployments", len(deps), deployment_available)
        w.start()
        w.started.wait(30)
        since = os.path.getsize(cp.audit_log)
        t0 = time.monotonic()
        create(cp, deps)
        w.join(timeout)
        if w.error:
            raise w.error
        if w.done_at is None:
            raise TimeoutError(f"floor N={n}: {len(w.ready)}/{len(deps)} Available after {timeout}s")
        writes = audit_writes(cp.audit_log, since, agents=("kubectl",))
        return {
            "seconds": round(w.done_at - t0, 2),
            "writes": len(writes),
            "writes_per_pipeline": round(len(writes) / n, 2),
        }
    finally:
        cp.stop()


def run_operator(
    n: int,
    timeout: float,
    workdir: Path,
    package: str | None = None,
    label: str = "",
    profile: bool = False,
    reaction: int = 0,
) -> dict:
    """One operator run; `package`: a directory holding another revision's tspipe (first on
    the operator's PYTHONPATH, it shadows this tree's editable install); `reaction`: after
    the idle rounds, change that many pipelines one at a time and time each change's way to
    its Deployment (bench/reaction.py)."""
    objs = pipelines(n)
    cp = fresh_plane(4 * n)
    op = spy = None
    log_path = workdir / f"operator-{n}{label}.log"
    env = {**os.environ, **({"PYTHONPATH": package} if package else {})}
    try:
        cp.kubectl("apply", "-f", str(CRD_FILE))
        wait(
            lambda: "timestamppipelines" in cp.kubectl("api-resources", "--api-group=tspipe.io", check=False).stdout,
            60,
            "CRD served",
        )
        argv = manager_argv(NS, extra=("--resync-seconds", str(RESYNC), "--log-level", "debug"))
        op = OperatorProcess(argv, log_path, kubeconfig=cp.kubeconfig, env=env).start()
        wait(lambda: b"_startup' succeeded" in log_path.read_bytes(), 60, "operator started")
        if profile:
            spy = start_profile(op.pid, workdir / f"profile-{n}{label}.txt")
        time.sleep(1)  # kopf's initial listings
        w = ReadyWatch(cp.kubeconfig, "tspipe.io", "v1alpha1", "timestamppipelines", n, pipeline_running)
        w.start()
        w.started.wait(30)
        since = os.path.getsize(cp.audit_log)
        t0 = time.monotonic()
        create(cp, objs)
        w.join(timeout)
        if w.error:
            raise w.error
        if w.done_at is None:
            raise TimeoutError(f"operator N={n}: {len(w.ready)}/{n} Running after {timeout}s")
        took = w.done_at - t0
        cpu_running = proc_stats(op.pid)["cpu_s"]
        # Any write still in flight for the creation (none expected once Running).
        time.sleep(2)
        writes = audit_writes(cp.audit_log, since, agents=OPERATOR_AGENTS)
        kinds = collections.Counter(
            f"{e['verb']} {e['objectRef'].get('resource')}"
            f"{'/' + e['objectRef']['subresource'] if e['objectRef'].get('subresource') else ''}"
            for e in writes
        )
        # Idle: two resync rounds over every pipeline, no change anywhere.
        idle_from = os.path.getsize(cp.audit_log)
        passes_before = passes_logged(log_path.read_text(errors="replace"))
        time.sleep(2 * RESYNC + 2)
        idle = audit_writes(cp.audit_log, idle_from, agents=OPERATOR_AGENTS)
        passes = passes_logged(log_path.read_text(errors="replace")) - passes_before
        stats = proc_stats(op.pid)
        hot = stop_profile(spy) if spy else None
        if reaction:
            stats["reaction"] = measure_reaction(cp, [o["metadata"]["name"] for o in objs], reaction)
        return {
            "seconds": round(took, 2),
            "writes": len(writes),
            "writes_per_pipeline": round(len(writes) / n, 2),
            "write_kinds": dict(kinds),
            "idle_writes": len(idle),
            "idle_passes": passes,
            "cpu_s_at_running": cpu_running,
            **stats,
            **({"profile": hot} if hot else {}),
        }
    finally:
        if spy is not None and spy[0].poll() is None:
            spy[0].kill()
            spy[0].wait(10)
        if op is not None:
            op.stop(30)
        cp.stop()


def measure_reaction(cp, names: list[str], k: int) -> dict:
    """Patch the router's even prefix of `k` of the running pipelines, one at a time, and
    read each change's way to the router's Deployment from the audit log."""
    import kubernetes

    from bench import reaction
    from tspipe.components import ROUTER
    from tspipe.render import deployment_name

    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=cp.kubeconfig, client_configuration=cfg)
    api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))

    def patch(name: str, j: int) -> None:
        api.patch_namespaced_custom_object(
            "tspipe.io",
            "v1alpha1",
            NS,
            "timestamppipelines",
            name,
            {"spec": {"router": {"evenPrefix": f"Even timestamp {j}:"}}},
        )

    since = os.path.getsize(cp.audit_log)
    chosen = reaction.drive(patch, names, k)
    changed = {name: deployment_name(name, ROUTER) for name in chosen}

    def found() -> dict:
        return reaction.latencies(audit_events(cp.audit_log, since), changed, NS, OPERATOR_AGENTS)

    deadline = time.monotonic() + reaction.SETTLE_SECONDS
    while None in found().values() and time.monotonic() < deadline:
        time.sleep(1)
    return reaction.summary(found())


PROFILE_RATE = 50  # samples per second: enough for the top functions of a minutes-long run


def start_profile(pid: int, path: Path) -> tuple[subprocess.Popen, Path]:
    """py-spy sampling the operator (all threads, no pausing of it, idle stacks left out)
    into collapsed stacks at `path`."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--nonblocking",
            "--threads",
            "--format",
            "raw",
            "--rate",
            str(PROFILE_RATE),
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, path


def stop_profile(spy: tuple[subprocess.Popen, Path], top: int = 25) -> dict:
    """Stop py-spy (SIGINT: it writes its file then) and summarise it (hot_functions)."""
    import signal

    proc, path = spy
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    return hot_functions(path.read_text(errors="replace").splitlines(), top)


# Innermost frames that wait rather than compute: py-spy cannot always tell a thread
# blocked in a socket read or in epoll from a running one, so they are left out.
WAITING = (
    "SSLSocket.read",
    "SSLObject.read",
    "SSLSocket.send",
    "EpollSelector.select",
    "Condition.wait",
    "SimpleQueue.get",
    "_worker",
)


# Frames every stack of a thread has (start-up, the event loop, the thread pool): no news.
FRAMES_OF_ALL = (
    "threading.py",
    "runpy",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "concurrent/futures/thread.py",
    "tspipe/manager.py",
    "kopf/_core/reactor/running.py",
)


def hot_functions(lines: list[str], top: int) -> dict:
    """From py-spy's collapsed stacks (`frame;frame;... count`, outermost first, the first
    frame the thread): samples per function, inclusive (on the stack) and self (innermost),
    as seconds at PROFILE_RATE, waits left out."""
    total = 0
    incl: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = [_short(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if frames and frames[-1].split(" (")[0].endswith(WAITING):
            continue
        total += c
        for f in set(frames):
            if not any(m in f for m in FRAMES_OF_ALL):
                incl[f] += c
        if frames:
            own[frames[-1]] += c

    def rows(counter):
        return [[f, round(v / PROFILE_RATE, 1), round(100 * v / total, 1)] for f, v in counter.most_common(top)]

    return {"samples": total, "seconds": round(total / PROFILE_RATE, 1), "inclusive": rows(incl), "self": rows(own)}


def _short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`: one row per function."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/operator/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(int(n) for n in results)
    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    ax[0].plot(ns, [results[str(n)]["floor"]["seconds"] for n in ns], "o-", label="floor (Deployments directly)")
    ax[0].plot(ns, [results[str(n)]["operator"]["seconds"] for n in ns], "s-", label="operator (pipelines)")
    ax[0].set(xscale="log", xlabel="pipelines applied at once", ylabel="seconds until all ready", title="Time to ready")
    ax[0].legend()
    ax[1].bar(
        [str(n) for n in ns], [results[str(n)]["operator"]["writes_per_pipeline"] for n in ns], color="tab:orange"
    )
    ax[1].axhline(6, color="grey", ls="--", label="aim: 6")
    ax[1].set(xlabel="pipelines", ylabel="API writes per pipeline", title="Operator writes per pipeline")
    ax[1].legend()
    ax[2].bar([str(n) for n in ns], [results[str(n)]["operator"]["peak_rss_mb"] for n in ns], color="tab:green")
    ax[2].axhline(200, color="grey", ls="--", label="aim: 200 MB")
    ax[2].set(xlabel="pipelines", ylabel="MB", title="Operator peak RSS")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results: dict, meta: dict) -> str:
    rows = []
    for n in sorted(results, key=int):
        f, o = results[n]["floor"], results[n]["operator"]
        rows.append(
            f"| {n} | {f['seconds']:.1f} | {o['seconds']:.1f} | {o['seconds'] / f['seconds']:.2f}x | "
            f"{o['writes_per_pipeline']:.2f} | {o['idle_writes']} ({o['idle_passes']} passes) | "
            f"{o['peak_rss_mb']} | {o['cpu_s']} |"
        )
    kinds = "\n".join(
        f"- N={n}: " + ", ".join(f"{k}: {v}" for k, v in sorted(results[n]["operator"]["write_kinds"].items()))
        for n in sorted(results, key=int)
    )
    return f"""# Operator benchmark

`python -m bench.operator_bench --sizes {meta["sizes"]}` on {meta["date"]} ({meta["cpus"]} CPUs, load before:
{meta["load"]}). Each run on its own fresh local control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, one kwok fake node per {PODS_PER_NODE} pods).

- **floor**: the Deployments the operator renders for the same N pipelines, created directly with
  one `kubectl create -f`, until every Deployment is Available.
- **operator**: the operator running (standalone subprocess); N TimestampPipelines created with one
  `kubectl create -f`, until every pipeline reports phase Running for its generation.
- writes: the operator's API write requests in the audit log (user agents `tspipe-operator/`, `kopf/`)
  from the create until all Running, divided by N. Idle: writes during two resync rounds
  (`--resync-seconds {RESYNC:g}`) after everything is Running, and the reconcile passes they made.
- Topic management is off in these pipelines (no broker; the floor does not talk to Kafka either).

| N | floor s | operator s | operator / floor | writes / pipeline | idle writes | peak RSS MB | operator CPU s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Both runs create Deployments at the same pace (N=500: 2000 Deployments in about the same time): the
cluster's own controllers and the shared CPUs set it, not the operator.

Aims: operator <= 1.5x floor at N=500; <= 6 writes per pipeline created; 0 writes per idle resync;
<= 200 MB peak RSS at N=500.

Writes by kind:
{kinds}

![plot](operator.png)
"""


def operator_at(rev: str) -> str:
    """A temporary directory holding git revision `rev`'s tspipe package."""
    d = tempfile.mkdtemp(prefix="bench-tspipe-")
    archive = subprocess.run(["git", "archive", rev, "operator/tspipe"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", d], input=archive.stdout, check=True)
    return os.path.join(d, "operator")


def revision() -> str:
    """This tree's commit, and whether its operator differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "operator/tspipe"], cwd=ROOT, capture_output=True, text=True
    )
    return head.stdout.strip() + (" + uncommitted operator changes" if dirty.stdout.strip() else "")


def scale_report(data: dict) -> str:
    """operator-scale.md: per N, each side's runs (floor shared), and the profiles."""
    rows, profiles, reactions = [], [], []
    for n in sorted(data["results"], key=int):
        r = data["results"][n]
        floor = r.get("floor")
        for side in ("before", "after"):
            for o in r.get(side) or []:
                floor_s = o["floor_seconds"] if "floor_seconds" in o else (floor or {}).get("seconds")
                vs = f"{o['seconds'] / floor_s:.2f}x" if floor_s else "-"
                who = o.get("operator", data["labels"][side]) + (", py-spy attached" if o.get("profile") else "")
                rows.append(
                    f"| {n} | {who} | {floor_s or '-'} | "
                    f"{o['seconds']:.1f} | {vs} | {o['cpu_s']} | **{o['cpu_s'] / int(n):.3f}** | "
                    f"{o['cpu_s_at_running'] / int(n):.3f} | {o['peak_rss_mb']} | "
                    f"{o['writes_per_pipeline']:.2f} | {o['idle_writes']} ({o['idle_passes']} passes) | "
                    f"{o.get('when', '')} | {o.get('load', '-')} |"
                )
                if o.get("reaction"):
                    rx = o["reaction"]
                    reactions.append(
                        f"| {n} | {o.get('operator', data['labels'][side])} | {rx['changes']} | "
                        f"{rx['reached']} | {rx.get('p50_s', '-')} | {rx.get('p99_s', '-')} | "
                        f"{rx.get('max_s', '-')} | {o.get('when', '')} |"
                    )
                if o.get("profile"):
                    prof = o["profile"]
                    head = (
                        f"#### N={n}, {o.get('operator', data['labels'][side])}: {prof['seconds']} s of samples "
                        f"({prof['samples']} at {PROFILE_RATE}/s, all threads, waits left out; the operator's CPU in "
                        f"the "
                        f"same run: {o['cpu_s']} s)"
                    )
                    table = [
                        "| function | inclusive s | % | | self (innermost) | s | % |",
                        "|---|---:|---:|---|---|---:|---:|",
                    ]
                    for a, b in zip(prof["inclusive"], prof["self"], strict=False):
                        table.append(f"| `{a[0]}` | {a[1]} | {a[2]} | | `{b[0]}` | {b[1]} | {b[2]} |")
                    profiles.append("\n".join([head, "", *table, ""]))
    return f"""# Operator at scale: CPU and memory per pipeline as N grows (issue 26)

Commands: {"; ".join(f"`{c}`" for c in data["commands"])}. {data["cpus"]} CPUs shared with other
builds and tests, so wall times are noisy: the operator's own CPU seconds (user + system, from
/proc) are the figure compared. Each run on its own fresh control plane, as in operator.md; the
floor (Deployments created directly) once per N; the two sides' runs alternate.

- CPU / pipeline: the operator process's CPU seconds from its start to the end of the idle rounds,
  divided by N (the aim: <= 0.1, flat in N). "at Running": the same when the last pipeline reported
  Running (before the two idle resync rounds).
- writes / pipeline: API write requests from the create until all Running (aim <= 6); idle writes
  during two resync rounds (`--resync-seconds {RESYNC:g}`) afterwards (aim 0).

| N | operator | floor s | operator s | vs floor | CPU s | CPU s / pipeline | at Running | peak RSS MB | writes / pipeline | idle writes | run at | load at its end (1, 5, 15 min) |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|
{chr(10).join(rows)}

{data.get("notes", "")}

### Reaction: a spec change to one running pipeline, to its Deployment (`--reaction K`)

After the idle rounds, K pipelines spread over the N get a new router prefix, one every
0.5 s; each change is timed by the API server's audit log, from the patch of the pipeline
(completed) to the operator's write of its router Deployment (received). Aim at N=2,000:
p50 <= 0.5 s, p99 <= 2 s.

| N | operator | changes | reached | p50 s | p99 s | max s | run at |
|---|---|---:|---:|---:|---:|---:|---|
{chr(10).join(reactions) if reactions else "| (none in these runs) | | | | | | | |"}

### Profiles

{chr(10).join(profiles) if profiles else "(none in these runs)"}
"""


def main_scale(a, sizes: list[int], workdir: Path) -> int:
    """--scale / --against: results merged per N into operator-scale.json, then its report."""
    path = RESULTS / "operator-scale.json"
    data = json.loads(path.read_text()) if path.exists() else {"results": {}, "commands": [], "labels": {}}
    data["cpus"] = os.cpu_count()
    command = "python -m bench.operator_bench " + " ".join(sys.argv[1:] if a.argv is None else a.argv)
    if command not in data["commands"]:
        data["commands"].append(command)
    sides: list[tuple[str, str | None]] = [("after", None)]
    data["labels"]["after"] = f"this tree (`{revision()}`)"
    if a.against:
        data["labels"]["before"] = f"`{a.against}`"
        sides.insert(0, ("before", operator_at(a.against)))
    for k, n in enumerate(sizes):
        r = data["results"].setdefault(str(n), {})
        if not a.skip_floor:
            print(f"operator bench: N={n} floor", flush=True)
            r["floor"] = run_floor(n, a.timeout)
            print(f"  floor: {r['floor']}", flush=True)
        # Alternate which side goes first, so a drift in the machine's load favours neither.
        for side, package in sides if k % 2 == 0 else sides[::-1]:
            print(f"operator bench: N={n} operator, {side}", flush=True)
            op = run_operator(n, a.timeout, workdir, package, f"-{side}", a.profile, a.reaction)
            op["operator"] = data["labels"][side]
            op["floor_seconds"] = (r.get("floor") or {}).get("seconds")  # the floor this run is compared with
            op["when"] = time.strftime("%H:%M UTC", time.gmtime())
            op["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  operator ({side}): { {k: v for k, v in op.items() if k != 'profile'} }", flush=True)
            r.setdefault(side, []).append(op)
            path.write_text(json.dumps(data, indent=2) + "\n")
    for _, package in sides:
        if package:
            shutil.rmtree(Path(package).parent, ignore_errors=True)  # operator_at's copy
    (RESULTS / "operator-scale.md").write_text(scale_report(data))
    print(f"operator bench: wrote {RESULTS / 'operator-scale.md'} (operator logs in {workdir})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.operator_bench")
    ap.add_argument("--sizes", default="10,100,500", help="comma list of N")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run before giving up")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite operator.md and operator.png (with --scale: operator-scale.md) from the json",
    )
    ap.add_argument(
        "--scale", action="store_true", help="write operator-scale.md/json, merging runs per N with earlier ones there"
    )
    ap.add_argument(
        "--against",
        metavar="REV",
        help="also run git revision REV's operator, alternating with this tree's (implies --scale)",
    )
    ap.add_argument("--skip-floor", action="store_true", help="no floor run (with --scale: keep the one recorded)")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="sample each operator run with py-spy; the hottest functions go into the results",
    )
    ap.add_argument(
        "--reaction",
        type=int,
        default=0,
        metavar="K",
        help="after the idle rounds, change K pipelines one at a time and report the p50/p99 of "
        "each change's way to its Deployment (audit timestamps)",
    )
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])
    a.argv = argv
    if a.report_only and (a.scale or a.against):
        data = json.loads((RESULTS / "operator-scale.json").read_text())
        (RESULTS / "operator-scale.md").write_text(scale_report(data))
        return 0
    if a.report_only:
        data = json.loads((RESULTS / "operator.json").read_text())
        (RESULTS / "operator.md").write_text(report(data["results"], data["meta"]))
        plot(data["results"], RESULTS / "operator.png")
        return 0
    sizes = [int(x) for x in a.sizes.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tsp-opbench-"))
    if a.scale or a.against:
        return main_scale(a, sizes, workdir)
    meta = {
        "sizes": a.sizes,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    results: dict = {}
    for n in sizes:
        print(f"operator bench: N={n} floor", flush=True)
        floor = run_floor(n, a.timeout)
        print(f"  floor: {floor}", flush=True)
        print(f"operator bench: N={n} operator", flush=True)
        op = run_operator(n, a.timeout, workdir, profile=a.profile, reaction=a.reaction)
        print(f"  operator: {op}", flush=True)
        results[str(n)] = {"floor": floor, "operator": op}
    (RESULTS / "operator.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (RESULTS / "operator.md").write_text(report(results, meta))
    plot(results, RESULTS / "operator.png")
    print(f"operator bench: wrote {RESULTS / 'operator.md'} (operator logs in {workdir})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
