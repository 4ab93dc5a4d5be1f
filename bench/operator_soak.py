"""Operator soak: N pipelines (default 1,000) Running for an hour with the default resync.

On one fresh local control plane (as bench/operator_bench.py: etcd, kube-apiserver,
controller manager, scheduler, kwok fake nodes), the operator runs as a subprocess with
its defaults (no --resync-seconds: a resync every defaults.RESYNC_SECONDS), under
bench/soakhook.py (a thread that takes tracemalloc snapshots when asked). Then:

  1. one pipeline whose broker is unreachable the whole soak (topic management on,
     brokers at a TEST-NET-1 address nothing answers): its failed passes retry with
     backoff for the whole hour;
  2. the N pipelines (topic management off, as in operator_bench) created in batches of
     --batch, the next batch once all but --overlap of the created ones are Running; if
     --create-budget seconds pass first, no more batches (the soak runs with what
     converged, and the results say so);
  3. the soak window, --minutes long from the moment every created pipeline is Running:
     every --sample seconds the operator's RSS (VmRSS), CPU (user + system), threads and
     open fds from /proc, its writes in the API server's audit log, its reconcile passes
     (its debug log's "reconciled" lines) and the load average. At --warmup minutes
     and at the end the hook counts the live objects by type after a full collection
     (gc.get_objects(): no cost in between). With --trace-at M, tracemalloc also starts M
     minutes into the window and is snapshotted then too; not by default: its traces
     (about 120 MB at the peak of a resync round of 900 pipelines) stay in the RSS
     after they are freed, so the RSS of a traced run is not the operator's.

Aims (issue 26): RSS after the first --warmup minutes grows by <= 5%; 0 writes during
the window; the unreachable pipeline's retries leak nothing (threads, fds, memory flat).

Writes bench/results/operator-soak.md, operator-soak.json and operator-soak.png.
Run: `python -m bench.operator_soak` (70+ minutes; `make bench-soak`, the same as
`make bench BENCH=bench.operator_soak`; not part of a plain `make bench`).
`--report-only RESULT.json` rewrites the results from a run's JSON (the run's folder keeps it,
with the operator's log and the hook's snapshots).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from localinfra.proc import free_port

from bench import operator_bench as ob

ROOT = ob.ROOT
RESULTS = ob.RESULTS
NS = ob.NS
UNREACHABLE = "unreachable"
# A loopback port nothing listens on (benchmarks, like tests, target loopback only): every
# connection is refused, so each of its passes fails to bootstrap.
UNREACHABLE_BROKER = f"127.0.0.1:{free_port()}"


def unreachable_pipeline() -> dict:
    import yaml

    obj = yaml.safe_load(ob.SAMPLE_FILE.read_text())
    obj["metadata"] = {"name": UNREACHABLE, "namespace": NS}
    obj["spec"]["kafka"]["brokers"] = [UNREACHABLE_BROKER]
    obj["spec"]["kafka"]["topics"]["manage"] = True
    return obj


class AuditCounter:
    """The operator's writes in the audit log, read incrementally (the API server rotates
    the log at 200 MB, keeping one backup: a rotation is followed into the backup)."""

    def __init__(self, path: str):
        self.path = path
        self.offset = os.path.getsize(path)
        self.kinds: collections.Counter = collections.Counter()
        self.events: list[dict] = []

    def _take(self, path: str, since: int) -> None:
        for e in ob.audit_writes(path, since, agents=ob.OPERATOR_AGENTS):
            ref = e["objectRef"]
            self.kinds[
                f"{e['verb']} {ref.get('resource')}"
                f"{'/' + ref['subresource'] if ref.get('subresource') else ''} {ref.get('name')}"
            ] += 1
            if len(self.events) < 50:
                keep = ("verb", "objectRef", "userAgent", "requestReceivedTimestamp")
                self.events.append({k: e.get(k) for k in keep})

    def poll(self) -> int:
        size = os.path.getsize(self.path)
        if size < self.offset:  # rotated: the rest of the old file is the newest backup
            backups = sorted(glob.glob(os.path.join(os.path.dirname(self.path), "audit-*.log")), key=os.path.getmtime)
            if backups:
                self._take(backups[-1], self.offset)
            self.offset = 0
        self._take(self.path, self.offset)
        self.offset = size if size >= self.offset else os.path.getsize(self.path)
        return sum(self.kinds.values())


def proc_sample(pid: int) -> dict:
    st = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                st[key] = int(val.split()[0])
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return {
        "rss_mb": round(st["VmRSS"] / 1024, 2),
        "hwm_mb": round(st["VmHWM"] / 1024, 2),
        "threads": st["Threads"],
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": round((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), 2),
    }


def hook_command(d: Path, name: str, timeout: float = 300) -> None:
    (d / name).write_text("")
    ob.wait(lambda: (d / f"{name}.done").exists() or (d / f"{name}.error").exists(), timeout, f"soak hook: {name}")
    if (d / f"{name}.error").exists():
        print(f"soak: hook {name} failed: {(d / f'{name}.error').read_text()}", flush=True)


def last_hook_line(d: Path) -> dict:
    try:
        lines = (d / "hook.jsonl").read_text().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


def growth_sites(d: Path, top: int = 15) -> list[dict]:
    a, b = d / "warm.snapshot", d / "end.snapshot"
    if not (a.exists() and b.exists()):
        return []
    old, new = tracemalloc.Snapshot.load(str(a)), tracemalloc.Snapshot.load(str(b))
    filt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    old, new = old.filter_traces(filt), new.filter_traces(filt)
    out = []
    for stat in new.compare_to(old, "traceback")[:top]:
        frames = [f"{_rel(fr.filename)}:{fr.lineno}" for fr in stat.traceback]
        out.append(
            {
                "size_diff_kb": round(stat.size_diff / 1024, 1),
                "size_kb": round(stat.size / 1024, 1),
                "count_diff": stat.count_diff,
                "frames": frames[-6:],
            }
        )
    total_old = sum(s.size for s in old.statistics("filename"))
    total_new = sum(s.size for s in new.statistics("filename"))
    out.insert(0, {"traced_warm_kb": round(total_old / 1024, 1), "traced_end_kb": round(total_new / 1024, 1)})
    return out


def _rel(path: str) -> str:
    for marker in ("site-packages/", "/operator/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1] if marker != "/lib/python3" else "python3" + path.split(marker, 1)[1]
    return path


def type_totals(d: Path) -> list[int] | None:
    """Live objects of the 60 commonest types at the warm-up's end and at the end."""
    try:
        return [sum(json.loads((d / f"{label}.types.json").read_text()).values()) for label in ("warm", "end")]
    except OSError:
        return None


def type_growth(d: Path, top: int = 15) -> list[tuple[str, int, int]]:
    try:
        a = json.loads((d / "warm.types.json").read_text())
        b = json.loads((d / "end.types.json").read_text())
    except OSError:
        return []
    rows = [(k, a.get(k, 0), b.get(k, 0)) for k in set(a) | set(b)]
    rows.sort(key=lambda r: -(r[2] - r[1]))
    return rows[:top]


def soak(a) -> dict:  # noqa: C901 - the soak's stages, read top to bottom
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    hookdir = workdir / "hook"
    hookdir.mkdir()
    log_path = workdir / "operator.log"
    n = a.pipelines
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "revision": ob.revision(),
        "args": vars(a),
    }
    print(f"soak: workdir {workdir}", flush=True)
    cp = ob.fresh_plane(4 * (n + 1))
    op = None
    try:
        cp.kubectl("apply", "-f", str(ob.CRD_FILE))
        ob.wait(
            lambda: "timestamppipelines" in cp.kubectl("api-resources", "--api-group=tspipe.io", check=False).stdout,
            60,
            "CRD served",
        )
        argv = [sys.executable, "-m", "bench.soakhook", "--standalone", "--namespace", NS, "--log-level", "debug"]
        env = {
            **os.environ,
            "TSP_SOAK_DIR": str(hookdir),
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
        op = ob.OperatorProcess(argv, log_path, kubeconfig=cp.kubeconfig, env=env).start()
        ob.wait(lambda: b"_startup' succeeded" in log_path.read_bytes(), 120, "operator started")
        time.sleep(1)
        samples: list[dict] = []

        def sample(phase: str, t0: float, audit: AuditCounter | None = None, running: int | None = None) -> dict:
            text = log_path.read_text(errors="replace")
            s = {
                "t": round(time.monotonic() - t0, 1),
                "phase": phase,
                **proc_sample(op.pid),
                "load1": round(os.getloadavg()[0], 2),
                "passes": ob.passes_logged(text, f"{NS}/p"),
                "unreachable_lines": text.count(f"bench/{UNREACHABLE}"),
                "tracemalloc_mb": round(last_hook_line(hookdir).get("tracemalloc_bytes", 0) / 2**20, 2),
            }
            if audit is not None:
                s["writes"] = audit.poll()
            if running is not None:
                s["running"] = running
            samples.append(s)
            return s

        watch = ob.ReadyWatch(cp.kubeconfig, "tspipe.io", "v1alpha1", "timestamppipelines", 10**9, ob.pipeline_running)
        watch.start()
        watch.started.wait(30)
        ob.create(cp, [unreachable_pipeline()])
        # creation, in batches
        objs = ob.pipelines(n)
        t_create = time.monotonic()
        created, next_sample = 0, 0.0
        stopped_early = False
        while True:
            running = len(watch.ready - {UNREACHABLE})
            if created < n and running >= created - a.overlap:
                if time.monotonic() - t_create > a.create_budget:
                    stopped_early = True
                    n = created
                    continue
                ob.create(cp, objs[created : created + a.batch])
                created = min(n, created + a.batch)
                print(f"soak: {created} created, {running} Running, {time.monotonic() - t_create:.0f} s", flush=True)
            if created >= n and running >= n:
                break
            if time.monotonic() >= next_sample:
                sample("create", t_create, running=running)
                next_sample = time.monotonic() + a.sample
            if watch.error:
                raise watch.error
            if time.monotonic() - t_create > a.create_budget + 1800:
                raise TimeoutError(f"{running}/{created} Running after {time.monotonic() - t_create:.0f} s")
            time.sleep(1)
        create_s = time.monotonic() - t_create
        print(f"soak: {n} Running after {create_s:.0f} s; the window starts", flush=True)
        unreachable = json.loads(cp.kubectl("get", "timestamppipeline", UNREACHABLE, "-n", NS, "-o", "json").stdout)

        # the window
        audit = AuditCounter(cp.audit_log)
        t0 = time.monotonic()
        traced = warm = False
        end = t0 + a.minutes * 60
        while True:
            now = time.monotonic()
            if a.trace_at is not None and not traced and now - t0 >= a.trace_at * 60:
                hook_command(hookdir, f"start-{a.frames}")
                traced = True
            if not warm and now - t0 >= a.warmup * 60:
                hook_command(hookdir, "snap-warm")
                warm = True
                s = sample("warm", t0, audit, len(watch.ready - {UNREACHABLE}))
                print(f"soak: warm-up done at {s['t']:.0f} s: RSS {s['rss_mb']} MB", flush=True)
            s = sample("soak", t0, audit, len(watch.ready - {UNREACHABLE}))
            if len(samples) % 10 == 0:
                print(
                    f"soak: {s['t']:.0f} s RSS {s['rss_mb']} MB CPU {s['cpu_s']} s writes {s['writes']} "
                    f"threads {s['threads']} fds {s['fds']} load {s['load1']}",
                    flush=True,
                )
            if now >= end:
                break
            time.sleep(max(0.0, min(a.sample, end - time.monotonic())))
        hook_command(hookdir, "snap-end")
        s = sample("end", t0, audit, len(watch.ready - {UNREACHABLE}))
        unreachable_end = json.loads(cp.kubectl("get", "timestamppipeline", UNREACHABLE, "-n", NS, "-o", "json").stdout)
        oplog = log_path.read_text(errors="replace")
        unreach_lines = [ln for ln in oplog.splitlines() if f"bench/{UNREACHABLE}" in ln]
        result = {
            "meta": {**meta, "load_after": os.getloadavg()},
            "pipelines": n,
            "requested": a.pipelines,
            "stopped_early": stopped_early,
            "create_seconds": round(create_s, 1),
            "window_minutes": round((time.monotonic() - t0) / 60, 2),
            "samples": samples,
            "write_kinds": dict(audit.kinds),
            "write_events": audit.events,
            "growth_sites": growth_sites(hookdir),
            "type_growth": type_growth(hookdir),
            "gc_objects": type_totals(hookdir),
            "unreachable": {
                "status_start": unreachable.get("status"),
                "status_end": unreachable_end.get("status"),
                "resource_version_start": unreachable["metadata"]["resourceVersion"],
                "resource_version_end": unreachable_end["metadata"]["resourceVersion"],
                "log_lines": len(unreach_lines),
                "last_lines": unreach_lines[-5:],
            },
            "operator_alive": op.alive(),
        }
        (workdir / "result.json").write_text(json.dumps(result, indent=1))
        return result
    finally:
        if op is not None:
            op.stop(30)
        cp.stop()


# --- the report ------------------------------------------------------------------------


def summarize(r: dict, a_warmup: float, trace_at: float) -> dict:
    soak = [s for s in r["samples"] if s["phase"] in ("soak", "warm", "end")]
    warm = next(s for s in soak if s["phase"] == "warm")
    end = soak[-1]
    first = soak[0]
    pre = [s for s in soak if trace_at is None or s["t"] <= trace_at * 60]

    def adj(s):
        return s["rss_mb"] - s.get("tracemalloc_mb", 0.0)

    after = [s for s in soak if s["t"] >= warm["t"]]
    out = {
        "rss_start_mb": first["rss_mb"],
        "rss_warm_mb": warm["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "rss_max_after_warm_mb": max(s["rss_mb"] for s in after),
        "rss_growth_pct_raw": round(100 * (end["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"], 2),
        "rss_warm_adj_mb": round(adj(warm), 2),
        "rss_end_adj_mb": round(adj(end), 2),
        "rss_growth_pct": round(100 * (adj(end) - adj(warm)) / adj(warm), 2),
        "tracemalloc_end_mb": end.get("tracemalloc_mb", 0.0),
        "writes": end.get("writes", 0),
        "threads": (first["threads"], warm["threads"], end["threads"]),
        "fds": (first["fds"], warm["fds"], end["fds"]),
        "passes": end["passes"] - first["passes"],
        "cpu_s": round(end["cpu_s"] - first["cpu_s"], 2),
        "load1": (
            min(s["load1"] for s in soak),
            round(sum(s["load1"] for s in soak) / len(soak), 2),
            max(s["load1"] for s in soak),
        ),
    }
    out["cpu_per_pass_ms"] = round(1000 * out["cpu_s"] / out["passes"], 2) if out["passes"] else None
    if len(pre) >= 2 and pre[-1]["passes"] > pre[0]["passes"]:
        out["cpu_per_pass_ms_untraced"] = round(
            1000 * (pre[-1]["cpu_s"] - pre[0]["cpu_s"]) / (pre[-1]["passes"] - pre[0]["passes"]), 2
        )
        out["untraced_window"] = (
            pre[0]["t"],
            pre[-1]["t"],
            pre[-1]["passes"] - pre[0]["passes"],
            round(pre[-1]["cpu_s"] - pre[0]["cpu_s"], 2),
        )
    traced = [s for s in soak if s["t"] >= warm["t"]]
    if len(traced) >= 2 and traced[-1]["passes"] > traced[0]["passes"]:
        out["cpu_per_pass_ms_traced"] = round(
            1000 * (traced[-1]["cpu_s"] - traced[0]["cpu_s"]) / (traced[-1]["passes"] - traced[0]["passes"]), 2
        )
    out["cpu_per_min_s"] = round(out["cpu_s"] / (end["t"] - first["t"]) * 60, 3) if end["t"] > first["t"] else None
    return out


def plot(r: dict, path: Path, warmup: float, trace_at: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soak = [s for s in r["samples"] if s["phase"] in ("soak", "warm", "end")]
    t = [s["t"] / 60 for s in soak]
    fig, ax = plt.subplots(2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax[0].plot(t, [s["rss_mb"] for s in soak], "-", color="tab:blue", label="RSS (VmRSS)")
    ax[0].plot(
        t,
        [s["rss_mb"] - s.get("tracemalloc_mb", 0) for s in soak],
        "-",
        color="tab:green",
        label="RSS minus tracemalloc's own memory",
    )
    warm = next(s for s in soak if s["phase"] == "warm")
    base = warm["rss_mb"] - warm.get("tracemalloc_mb", 0)
    ax[0].axhline(base * 1.05, color="grey", ls="--", label="aim: +5% over the RSS at the warm-up's end")
    ax[0].axvline(warmup, color="black", ls=":", label=f"{warmup:g} min: warm-up ends, first snapshot")
    if trace_at is not None:
        ax[0].axvline(trace_at, color="tab:red", ls=":", label=f"{trace_at:g} min: tracemalloc starts")
    ax[0].set(
        ylabel="MB",
        title=f"Operator RSS, {r['pipelines']} pipelines Running + 1 with an unreachable broker, default resync",
    )
    lo = min(s["rss_mb"] - s.get("tracemalloc_mb", 0) for s in soak)
    ax[0].set_ylim(lo * 0.9, max(s["rss_mb"] for s in soak) * 1.08)
    ax[0].legend(fontsize=8, loc="lower right")
    cpu = [s["cpu_s"] - soak[0]["cpu_s"] for s in soak]
    ax[1].plot(t, cpu, "-", color="tab:orange", label="operator CPU s since the window's start")
    ax1b = ax[1].twinx()
    ax1b.plot(t, [s["load1"] for s in soak], "-", color="tab:gray", alpha=0.5, label="load average (1 min)")
    ax1b.set_ylabel("load")
    ax[1].set(xlabel="minutes since all pipelines Running", ylabel="CPU s")
    ax[1].legend(fontsize=8, loc="upper left")
    ax1b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(r: dict, s: dict, a) -> str:
    m = r["meta"]
    sites = r.get("growth_sites") or []
    total = sites[0] if sites else {}
    site_rows = "\n".join(
        f"| {x['size_diff_kb']:+.1f} | {x['count_diff']:+d} | `{' <- '.join(reversed(x['frames'][-3:]))}` |"
        for x in sites[1:11]
    )
    types = "\n".join(f"| `{k}` | {b0} | {b1} | {b1 - b0:+d} |" for k, b0, b1 in r.get("type_growth") or [])
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(r["write_kinds"].items())) or "none"
    u = r["unreachable"]
    ust = u["status_end"] or {}
    conds = "; ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason')})" for c in ust.get("conditions") or [])
    created = f"{r['pipelines']} pipelines created in {r['create_seconds']:.0f} s (batches of {a.batch})" + (
        f"; **stopped at {r['pipelines']} of {r['requested']}**: the creation budget ({a.create_budget:.0f} s) ran out"
        if r["stopped_early"]
        else ""
    )
    objs = " / ".join(str(x) for x in r.get("gc_objects") or ["-", "-"])
    if a.trace_at is None:
        tracing = (
            f"No tracemalloc in the window: at {a.warmup:g} min and at the end the hook counts the live "
            f"objects by type after a full collection (no cost in between)."
        )
        traced_rows = cpu_traced = ""
    else:
        tracing = (
            f"tracemalloc ({a.frames} frames) started at {a.trace_at:g} min, snapshots at {a.warmup:g} min "
            f"and at the end. **Its traces stay in the RSS** after they are freed (the allocator keeps "
            f"the pages), so the RSS after {a.trace_at:g} min is not the operator's alone: read the live "
            f"objects and the threads and fds for growth."
        )
        traced_rows = (
            f"| RSS growth minus tracemalloc's memory at the time (MB: {s['rss_warm_adj_mb']} / "
            f"{s['rss_end_adj_mb']}) | {s['rss_growth_pct']:+.2f}% | |\n"
        )
        cpu_traced = (
            f"| CPU per resynced pipeline, whole window / with tracemalloc on | {s['cpu_per_pass_ms']} / "
            f"{s.get('cpu_per_pass_ms_traced')} ms | |"
        )
    sites_section = (
        ""
        if not sites
        else f"""### Where memory went (tracemalloc, {a.warmup:g} min -> end)

Traced memory allocated since tracemalloc started and still live after a full collection:
{total.get("traced_warm_kb")} KB at {a.warmup:g} min, {total.get("traced_end_kb")} KB at the end. Largest growth by
allocation site (innermost frame first):

| KB | blocks | where |
|---:|---:|---|
{site_rows}

"""
    )
    return f"""# Operator soak: {r["pipelines"]} pipelines Running for {r["window_minutes"]:.0f} minutes (issue 26)

`python -m bench.operator_soak --pipelines {a.pipelines} --minutes {a.minutes:g} --create-budget {a.create_budget:g}\
{f" --trace-at {a.trace_at:g}" if a.trace_at is not None else ""}` on {m["date"]}, this tree
(`{m["revision"]}`), {m["cpus"]} CPUs shared with other builds and tests: load average (1 min) during the
window min {s["load1"][0]}, mean {s["load1"][1]}, max {s["load1"][2]}. The figures that matter here
(RSS growth, writes, threads, fds) do not depend on the load; the CPU figures do, a little.

Set-up: one fresh local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok fake
nodes) as in operator_bench; the operator a standalone subprocess with its **default resync**
({_resync():g} s; no `--resync-seconds`), debug log (to count passes), under `bench/soakhook.py`.
{created}; plus one pipeline, `{UNREACHABLE}`, with topic management on and its broker at
`{UNREACHABLE_BROKER}` (a loopback port nothing listens on), created first and failing for the whole soak.
The window starts when every created pipeline is Running; a sample every {a.sample:g} s.
{tracing}

| | value | aim |
|---|---:|---|
| RSS at window start (MB) | {s["rss_start_mb"]} | |
| RSS at {a.warmup:g} min / at the end (MB) | {s["rss_warm_mb"]} / {s["rss_end_mb"]} | |
| **RSS growth after the warm-up** (VmRSS) | **{s["rss_growth_pct_raw"]:+.2f}%** | <= +5% |
{traced_rows}| **live objects after a full collection**, at {a.warmup:g} min / at the end (60 commonest types) | \
**{objs}** | flat |
| **operator writes during the window** | **{s["writes"]}** | 0 |
| reconcile passes (resyncs) during the window | {s["passes"]} | |
| operator CPU during the window (s) | {s["cpu_s"]} ({s["cpu_per_min_s"]} s a minute) | |
| **CPU per resynced pipeline**{" before tracemalloc" if a.trace_at is not None else ""} | \
**{s.get("cpu_per_pass_ms_untraced")} ms** | |
{cpu_traced}
| threads (start, {a.warmup:g} min, end) | {", ".join(map(str, s["threads"]))} | flat |
| open fds (start, {a.warmup:g} min, end) | {", ".join(map(str, s["fds"]))} | flat |

Writes by kind: {kinds}.

CPU per resynced pipeline: the operator's CPU seconds (user + system, /proc) over a stretch of the
window divided by the "reconciled bench/p…" passes logged in it (each resync round visits every
pipeline once; a settled pipeline's pass reads it and its children from the cache and writes
nothing); measured over {s.get("untraced_window")} (from s, to s, passes, CPU s).
{r["meta"].get("notes", "")}

### The unreachable broker

`{UNREACHABLE}`: {u["log_lines"]} operator log lines over the whole run; its resourceVersion
{u["resource_version_start"]} at the window's start, {u["resource_version_end"]} at the end (unchanged = no status
writes); phase {ust.get("phase")!r}, conditions: {conds or "-"}. Its retries back off to
BACKOFF_MAX (300 s); the threads and fds above include whatever its Kafka clients leave. Last lines:

```
{chr(10).join(u["last_lines"])}
```

{sites_section}Live objects by type (gc.get_objects(), after gc.collect()), largest growth:

| type | at {a.warmup:g} min | at end | growth |
|---|---:|---:|---:|
{types}

![RSS curve](operator-soak.png)
"""


def _resync() -> float:
    from tspipe import defaults

    return defaults.RESYNC_SECONDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.operator_soak")
    ap.add_argument("--pipelines", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=60, help="the soak window, from all Running")
    ap.add_argument("--warmup", type=float, default=10, help="minutes before the growth baseline")
    ap.add_argument(
        "--trace-at",
        type=float,
        default=None,
        help="minutes into the window when tracemalloc starts (before --warmup; default: never, "
        "its memory stays in the RSS)",
    )
    ap.add_argument("--frames", type=int, default=10, help="tracemalloc frames per trace")
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--batch", type=int, default=100, help="pipelines per kubectl create")
    ap.add_argument(
        "--overlap", type=int, default=100, help="the next batch once all but this many created pipelines are Running"
    )
    ap.add_argument(
        "--create-budget",
        type=float,
        default=1500,
        help="seconds; no new batch after this (the soak runs with what converged)",
    )
    ap.add_argument("--report-only", metavar="JSON", help="rewrite the report from a result JSON")
    a = ap.parse_args(argv)
    if a.report_only:
        r = json.loads(Path(a.report_only).read_text())
        for k, v in r["meta"]["args"].items():
            if k != "report_only":
                setattr(a, k, v)
        hookdir = Path(a.report_only).parent / "hook"
        if hookdir.is_dir():  # a run's folder: the hook's files again
            r.update(
                growth_sites=growth_sites(hookdir), type_growth=type_growth(hookdir), gc_objects=type_totals(hookdir)
            )
    else:
        r = soak(a)
    RESULTS.mkdir(parents=True, exist_ok=True)
    s = summarize(r, a.warmup, a.trace_at)
    r["summary"] = s
    (RESULTS / "operator-soak.json").write_text(json.dumps(r, indent=1))
    plot(r, RESULTS / "operator-soak.png", a.warmup, a.trace_at)
    (RESULTS / "operator-soak.md").write_text(report(r, s, a))
    print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
