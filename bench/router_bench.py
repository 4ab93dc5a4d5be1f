"""Router benchmark: tsp-router vs the seed's router vs Kafka's own perf tools, one run.

On one local broker (started here), for each router:
  * throughput: N timestamps produced as fast as Kafka's ProducerPerformance can, routed
    input -> even/odd; rate = N / (last routed record's timestamp - first input timestamp);
  * end-to-end latency at 100 and 1,000 records/s: a paced producer writes values carrying
    their send time; a consumer of even/odd records the receive time; p50/p99 of the gap.
Kafka's perf tools give the broker's own limit on the same hop: ProducerPerformance (max
rate, ack latency at 100/1,000 rec/s) and ConsumerPerformance (max rate).

Writes bench/results/router.md and bench/results/router.png; `--profile` also runs
tsp-router under cProfile during the throughput run and prints where its main thread goes.

Run: `python -m bench.router_bench` (or via `make bench`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
RESULTS = ROOT / "bench" / "results"
SEED_DIR = ROOT / "bench" / "seed_router"

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.structs import TopicPartition  # noqa: E402
from localinfra.proc import free_port  # noqa: E402


def uid(p: str) -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


class Topics:
    def __init__(self):
        self.input, self.even, self.odd = uid("bin"), uid("bev"), uid("bod")


# ---------------------------------------------------------------- the two routers


class Router:
    extra: ClassVar[list[str]] = []  # --router-arg values, for experiments
    package: str | None = None  # a directory holding another revision's tsrouter (--against)

    def __init__(self, kind: str, bootstrap: str, t: Topics, profile: str | None = None):
        self.kind, self.bootstrap, self.t = kind, bootstrap, t
        self.port = free_port()
        # The router writes to it until stop(), which closes it.
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRING_", "SERVER_", "TSROUTER_"))}
        env["PYTHONUNBUFFERED"] = "1"
        if self.package and kind != "seed":
            env["PYTHONPATH"] = os.pathsep.join(x for x in (self.package, env.get("PYTHONPATH")) if x)
        args = [
            f"--spring.cloud.stream.bindings.input.destination={t.input}",
            f"--spring.cloud.stream.bindings.even.destination={t.even}",
            f"--spring.cloud.stream.bindings.odd.destination={t.odd}",
        ]
        if kind == "seed":
            env["SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS"] = bootstrap
            env["SEED_ACTUATOR_PORT"] = str(self.port)
            env["SEED_ACTUATOR_HOST"] = "127.0.0.1"  # the stand-in listens on every interface by default
            cmd = [sys.executable, str(SEED_DIR / "python_router_app.py"), *args]
            cwd = SEED_DIR
        else:
            args += [
                f"--spring.cloud.stream.kafka.binder.brokers={bootstrap}",
                f"--server.port={self.port}",
                "--server.address=127.0.0.1",
                f"--spring.cloud.stream.bindings.input.group={uid('bgrp')}",
            ]
            args += self.extra
            if kind == "tsp-router-eos":
                args.append("--tsrouter.processing-guarantee=exactly-once")
            if kind == "tsp-router-w2":
                args.append("--tsrouter.workers=2")
            pre = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
            cmd = [*pre, "-m", "tsrouter", *args]
            cwd = ROOT
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind != "seed" else signal.SIGKILL)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited {self.proc.returncode}:\n{Path(self.log.name).read_text()[-3000:]}")


def warm_up(bootstrap: str, router: Router, timeout: float = 90) -> None:
    """Send a few records until one comes out: the router is subscribed and at `latest`."""
    t = router.t
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    p = KafkaProducer(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout
    try:
        while True:
            parts = c.partitions_for_topic(t.even)
            if parts:
                break
            router.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{router.kind}: topics never appeared")
            time.sleep(0.2)
        c.assign([TopicPartition(t.even, p_) for p_ in parts])
        while time.monotonic() < deadline:
            router.check()
            p.send(t.input, b"00/00/00 00:00:00 warmup 0").get(timeout=30)
            got = c.poll(timeout_ms=1000)
            if got:
                return
        raise RuntimeError(f"{router.kind}: no warm-up record routed")
    finally:
        p.close()
        c.close()


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or ())]
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


def first_last_timestamps(bootstrap: str, topics: list[str]) -> tuple[int, int]:
    """(earliest, latest) record timestamp over the topics' partitions, warm-up records aside.

    Per output partition the router's timestamps do not decrease, so reading a few records
    at each end is enough (reading all 300k back would take longer than routing them)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    first, last = [], []
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or ())]
        begin, end = c.beginning_offsets(tps), c.end_offsets(tps)
        for tp in tps:
            if end[tp] <= begin[tp]:
                continue
            c.assign([tp])
            # The last offsets may be transaction markers, which are never returned: read the tail.
            for start, pick in ((begin[tp], first), (max(begin[tp], end[tp] - 50), last)):
                c.seek(tp, start)
                got: list = []
                while c.position(tp) < end[tp] and not (got and pick is first):
                    recs = c.poll(timeout_ms=1000, max_records=100).get(tp, [])
                    got += [r.timestamp for r in recs if b"warmup" not in (r.value or b"")]
                if got:
                    pick.append(got[0] if pick is first else got[-1])
        return min(first), max(last)
    finally:
        c.close()


def _proc_cpu(pid: int) -> float:
    """user + system seconds of pid and its descendants (workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


class CpuSampler:
    """Samples a process tree's CPU seconds against wall time, so the CPU spent between two
    record timestamps (first and last routed record) can be read off: start-up and the
    waiting around it are not counted."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), _proc_cpu(self.pid)))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()
        self.samples.append((time.time(), _proc_cpu(self.pid)))

    def at(self, when: float) -> float:
        s = self.samples
        for (t0, c0), (t1, c1) in itertools.pairwise(s):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return s[0][1] if when < s[0][0] else s[-1][1]


def payload_file(n: int = 1000) -> str:
    with tempfile.NamedTemporaryFile("w", prefix="bench-payload-", suffix=".txt", delete=False) as f:
        for i in range(n):
            f.write(time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(1_700_000_000 + i)) + "\n")
    return f.name


def perf_produce(broker, topic: str, n: int, payloads: str):
    return broker.run_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(n),
        "--payload-file",
        payloads,
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={broker.bootstrap}",
        "acks=all",
        "linger.ms=5",
    )


def throughput(broker, kind: str, n: int, payloads: str, partitions: int = 1, profile: str | None = None) -> dict:
    """Catch-up rate: N records wait in the input topic, the router drains them.

    Input and output topics have `partitions` partitions (created here, for every router).
    tsp-router starts on the full topic (new group, earliest). The seed router reads from
    `latest`, so it is started and warmed up first, frozen with SIGSTOP while the records
    are written, then resumed. Both: rate = N / (last routed timestamp - first routed
    timestamp); CPU = the router process tree's user+system seconds between those instants.
    """
    t = Topics()
    r = None
    sampler = broker_sampler = None
    try:
        for name in (t.input, t.even, t.odd):
            admin_topic(broker.bootstrap, name, partitions)
        if kind == "seed":
            r = Router(kind, broker.bootstrap, t)
            warm_up(broker.bootstrap, r)
            r.proc.send_signal(signal.SIGSTOP)
            perf_produce(broker, t.input, n, payloads)
            sampler, broker_sampler = CpuSampler(r.proc.pid), CpuSampler(broker.pid)
            r.proc.send_signal(signal.SIGCONT)
        else:
            perf_produce(broker, t.input, n, payloads)
            r = Router(kind, broker.bootstrap, t, profile=profile)
            sampler, broker_sampler = CpuSampler(r.proc.pid), CpuSampler(broker.pid)
        deadline = time.monotonic() + max(180, n / 200)
        while True:
            done = end_offsets(broker.bootstrap, [t.even, t.odd])
            if done >= n + (1 if kind == "seed" else 0):
                break
            r.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: only {done} of {n} routed in time")
            time.sleep(0.2)
        time.sleep(0.2)
        sampler.stop()
        broker_sampler.stop()
        first, last = first_last_timestamps(broker.bootstrap, [t.even, t.odd])
        secs = (last - first) / 1000.0
        cpu = sampler.at(last / 1000.0) - sampler.at(first / 1000.0)
        broker_cpu = broker_sampler.at(last / 1000.0) - broker_sampler.at(first / 1000.0)
        # Router and broker share the machine's cores: how many of them the two kept busy.
        return {
            "records": n,
            "partitions": partitions,
            "seconds": secs,
            "rate": (n - 1) / secs,
            "cpu_s": cpu,
            "cpu_per_100k": cpu / n * 100_000,
            "broker_cpu_per_100k": broker_cpu / n * 100_000,
            "cores_busy": (cpu + broker_cpu) / secs,
        }
    finally:
        for s in (sampler, broker_sampler):
            if s is not None:
                s.stop()
        if r is not None:
            r.stop()


def admin_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    from kafka.admin import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        a.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        a.close()


def broker_warm_up(broker, payloads: str) -> None:
    """Let the broker JVM warm up before anything is measured."""
    t = uid("warm")
    perf_produce(broker, t, 50_000, payloads)
    broker.run_perf_consumer(t, 50_000)


PACED_PRODUCER = r"""
import sys, time
from kafka import KafkaProducer
bootstrap, topic, rate, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
start = time.monotonic()
for i in range(n):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    ts = time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(1_700_000_000 + i))
    p.send(topic, f"{ts} t={int(time.time() * 1e6)}".encode())
p.flush()
print(n / (time.monotonic() - start))
p.close()
"""


def latency(broker, kind: str, rate: int, seconds: float) -> dict:
    t = Topics()
    r = Router(kind, broker.bootstrap, t)
    try:
        warm_up(broker.bootstrap, r)
        lat: list[float] = []
        n = int(rate * seconds)
        # small retry_backoff_ms: kafka-python sleeps that long in poll() when no fetch is in flight
        c = KafkaConsumer(
            bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100, retry_backoff_ms=5
        )
        tps = [TopicPartition(tp, p) for tp in (t.even, t.odd) for p in c.partitions_for_topic(tp)]
        c.assign(tps)
        c.seek_to_end()
        for tp in tps:
            c.position(tp)
        stop = threading.Event()

        def consume():
            while not stop.is_set() and len(lat) < n:
                for recs in c.poll(timeout_ms=100).values():
                    now = time.time()
                    for rec in recs:
                        v = rec.value
                        if b" t=" in v:
                            lat.append((now - int(v.rsplit(b" t=", 1)[1]) / 1e6) * 1000.0)

        th = threading.Thread(target=consume, daemon=True)
        th.start()
        # The paced producer is its own process: in this one it would share the GIL with the
        # measuring consumer and inflate what it measures.
        out = subprocess.run(
            [sys.executable, "-c", PACED_PRODUCER, broker.bootstrap, t.input, str(rate), str(n)],
            check=True,
            timeout=seconds * 3 + 120,
            capture_output=True,
            text=True,
        )
        achieved = float(out.stdout.strip().splitlines()[-1])
        th.join(timeout=60)
        stop.set()
        c.close()
        r.check()
        return {
            "rate": rate,
            "achieved_rate": achieved,
            "sent": n,
            "received": len(lat),
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "max_ms": max(lat) if lat else float("nan"),
        }
    finally:
        r.stop()


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def kafka_tools(broker, n: int) -> dict:
    """Java's producer and consumer perf tools at full speed (with their CPU per 100k records:
    JVM start-up and JIT included, which flatters nothing)."""
    topic = uid("perf")
    c0 = _children_cpu()
    out = {"producer_max": broker.run_perf_producer(topic, n, 20, -1, props={"linger.ms": "5"})}
    c1 = _children_cpu()
    out["consumer_max"] = broker.run_perf_consumer(topic, n)
    c2 = _children_cpu()
    out["producer_max"]["cpu_per_100k"] = (c1 - c0) / n * 100_000
    out["consumer_max"]["cpu_per_100k"] = (c2 - c1) / n * 100_000
    return out


def kafka_ack_latency(broker, rate: int, seconds: float) -> dict:
    """Java's producer paced at `rate`: its produce-ack latency, the reference for the routers'."""
    return broker.run_perf_producer(uid("perf"), int(rate * seconds), 20, rate, props={"linger.ms": "0"})


def profile_groups(path: str) -> list[tuple[str, float, float]]:
    """Own (tottime) seconds of the profiled main thread by area: [(area, seconds, share)]."""
    import pstats

    st = pstats.Stats(path)
    areas = {}
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
        total += tt
        if "tsrouter/fastfetch" in filename or "tsrouter/kafka_private/fastfetch" in filename:
            area = "tsp-router input decoding (tsrouter.fastfetch)"
        elif "tsrouter/fastsend" in filename or "tsrouter/kafka_private/fastsend" in filename:
            area = "tsp-router output encoding (tsrouter.fastsend)"
        elif "tsrouter/wire" in filename or "tsrouter/chunks" in filename:
            area = "tsp-router record format (tsrouter.wire, tsrouter.chunks: decoding and encoding)"
        elif "tsrouter" in filename:
            area = "tsp-router code (routing, planning, settling, metrics calls)"
        elif "/kafka/producer/" in filename or (
            "/kafka/record/" in filename
            and "default_records" in filename
            and func in ("append", "size_of", "_encode_msg")
        ):
            area = "kafka-python producer (send, accumulator, record encoding)"
        elif "/kafka/consumer/" in filename or "/kafka/record/" in filename:
            area = "kafka-python consumer (fetch, record decoding)"
        elif "/kafka/" in filename:
            area = "kafka-python other (network, cluster metadata, futures)"
        elif "prometheus_client" in filename:
            area = "prometheus_client"
        elif func == "<method 'acquire' of '_thread.lock' objects>":
            area = "waiting on locks (kafka-python's IO threads, GIL hand-off)"
        else:
            area = "other (interpreter, stdlib, start-up)"
        areas[area] = areas.get(area, 0.0) + tt
    return sorted(((a, t, t / total) for a, t in areas.items()), key=lambda x: -x[1])


def profile_report(path: str, top: int = 15) -> str:
    import io
    import pstats

    s = io.StringIO()
    for area, secs, share in profile_groups(path):
        s.write(f"{share * 100:5.1f}%  {secs:6.2f}s  {area}\n")
    s.write("\n--- top functions by own time ---\n")
    st = pstats.Stats(path, stream=s)
    st.sort_stats("tottime").print_stats(top)
    return s.getvalue()


# ---------------------------------------------------------------- report

NAMES = {
    "tsp-router": "tsp-router (at-least-once)",
    "tsp-router-eos": "tsp-router (exactly-once)",
    "tsp-router-w2": "tsp-router (at-least-once, 2 workers)",
    "seed": "seed router (as written)",
}
KINDS = ("tsp-router", "tsp-router-eos", "tsp-router-w2", "seed")
BEFORE = (
    "Before polled records stayed encoded (main 1867278; side by side with 273d881 in "
    "`bench/results/router-compare.md`, 2026-12-01 06:38 UTC): at-least-once 505,305 / 576,368 rec/s on 1 / 2 "
    "partitions (273d881: 685,400 / 798,721), exactly-once 435,919 / 459,770 (528,820 / 591,365), 0.17-0.19 "
    "CPU s per 100k (0.12-0.14). Its own full run (main ddb8eeb, 03:12 UTC, not side by side): at-least-once "
    "358,423 / 401,284 rec/s, 55% / 61% of the Java producer's 654,664 rec/s, exactly-once 0.85x / 0.83x, 2 "
    "workers 1.57x. "
    "Before the GIL switch interval and 5000-record polls (main 43339e2, `bench/results/router.md` of "
    "2026-11-30 20:05 UTC, 1,000,000 records per run; not side by side): at-least-once 249,563 / 320,102 "
    "rec/s on 1 / 2 partitions, exactly-once 210,837 / 199,402 rec/s (0.84x / 0.62x), 2 workers 391,389 rec/s"
    " (1.22x); p99 at 1,000 rec/s 28.6 ms (Kafka's produce ack: 25.0 ms). Earlier (main 0ca626d, 16:44 UTC, "
    "300,000 records): exactly-once 0.54x / 0.56x at-least-once (186,799 / 164,473 rec/s). Earlier (main "
    "6028e13, 13:51 UTC, kafka-python's ConsumerRecords): at-least-once 33,787 / 54,073 rec/s, 1.39 CPU s per"
    " 100k records. Before issue 13 (main a5d01e3, 2026-11-28, 50,000 records): 23,419 rec/s, p99 at 1,000 "
    "rec/s 111.0 ms (Kafka's produce ack: 109 ms)."
)


def _median_run(runs: list[dict], key: str) -> dict:
    """The run whose `key` is the median (the upper one of an even count): a real run, so its
    other figures belong together."""
    return sorted(runs, key=lambda x: x[key])[len(runs) // 2]


def _summary(rs: list[dict]) -> dict:
    """Median of the runs by rate (and its CPU), plus the spread of both."""
    med = _median_run(rs, "rate")
    cpus = sorted(x["cpu_per_100k"] for x in rs)
    return {
        **med,
        "cpu_median": cpus[len(cpus) // 2],
        "all_rates": [round(x["rate"]) for x in rs],
        "all_cpu": [round(x["cpu_per_100k"], 2) for x in rs],
        "min": min(x["rate"] for x in rs),
        "best": max(x["rate"] for x in rs),
    }


def compare(
    broker,
    sides: list[tuple[list[str], str | None]],
    kinds: list[str],
    part_counts: list[int],
    n: int,
    repeat: int,
    payloads: str,
) -> list[dict]:
    """Two routers side by side, each side (its arguments, its package or None for this tree's),
    per kind, in pairs whose order alternates (a warmer broker or page cache favours neither)."""
    rows = []
    for parts in part_counts:
        for kind in kinds:
            pairs = []
            for rep in range(repeat):
                pair = [{}, {}]
                for side in (0, 1) if rep % 2 == 0 else (1, 0):
                    Router.extra, Router.package = sides[side]
                    pair[side] = throughput(broker, kind, n, payloads, parts)
                print(f"  {kind} ({parts}p): {pair[0]['rate']:,.0f} before, {pair[1]['rate']:,.0f} after", flush=True)
                pairs.append(pair)
            Router.extra, Router.package = sides[0][0], None
            before, after = _summary([p[0] for p in pairs]), _summary([p[1] for p in pairs])
            rows.append(
                {
                    "kind": kind,
                    "partitions": parts,
                    "before": before,
                    "after": after,
                    "ratio": after["rate"] / before["rate"],
                    "pairs_faster": sum(p[1]["rate"] > p[0]["rate"] for p in pairs),
                    "pairs": len(pairs),
                }
            )
    return rows


def router_at(rev: str) -> str:
    """A temporary directory holding git revision `rev`'s tsrouter package (first on the
    router's PYTHONPATH, it shadows this tree's editable install)."""
    d = tempfile.mkdtemp(prefix="bench-tsrouter-")
    archive = subprocess.run(["git", "archive", rev, "router/tsrouter"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", d], input=archive.stdout, check=True)
    return os.path.join(d, "router")


def _router_revision() -> str:
    """This tree's commit, and whether its router differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "router/tsrouter"], cwd=ROOT, capture_output=True, text=True
    )
    return head.stdout.strip() + (" + uncommitted router changes" if dirty.stdout.strip() else "")


def write_compare(rows: list[dict], labels: tuple[str, str], path: Path, meta: dict) -> None:
    before, after = labels
    lines = [
        "# Router change, side by side",
        "",
        f"{after} against {before}; {meta['when']}; {meta['records']:,} records per run, "
        f"runs in pairs on one broker, their order alternating; load average before/after "
        f"{meta['load_before']} / {meta['load_after']}. Command: `{meta['command']}`.",
        "",
        f"| router | partitions | {before}: median rec/s (runs) | {after}: median rec/s (runs) | ratio | "
        f"pairs faster | CPU s / 100k, {before} / {after} |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        runs_b, runs_a = (", ".join(f"{v:,}" for v in y["all_rates"]) for y in (b, a))
        lines.append(
            f"| {NAMES[r['kind']]} | {r['partitions']} | {b['rate']:,.0f} ({runs_b}) | "
            f"{a['rate']:,.0f} ({runs_a}) | {r['ratio']:.2f}x | "
            f"{r['pairs_faster']} of {r['pairs']} | {b['cpu_median']:.2f} / {a['cpu_median']:.2f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def aims(res: dict) -> list[tuple[str, str, bool | None]]:
    """(aim, this run's figure, met?) from this run's numbers (issue 13's aims)."""
    out: list[tuple[str, str, bool | None]] = []
    th, kt = res.get("throughput", {}), res.get("kafka", {})
    hop = None
    if kt:
        hop = min(kt["producer_max"]["records_per_sec"], kt["consumer_max"]["nMsg_sec"])
    for parts, row in sorted(th.items()):
        a, seed, eos = row.get("tsp-router"), row.get("seed"), row.get("tsp-router-eos")
        if a and seed:
            x = a["rate"] / seed["rate"]
            out.append(
                (
                    f"at-least-once >= 2.0x the seed router ({parts} partition(s))",
                    f"{x:.2f}x ({a['rate']:,.0f} / {seed['rate']:,.0f} rec/s)",
                    x >= 2.0,
                )
            )
        if a and hop:
            x = a["rate"] / hop
            out.append(
                (
                    f"at-least-once >= 70% of Kafka's hop limit ({parts} partition(s))",
                    f"{x * 100:.0f}% ({a['rate']:,.0f} / {hop:,.0f} rec/s)",
                    x >= 0.7,
                )
            )
        if a and eos:
            x = eos["rate"] / a["rate"]
            out.append(
                (
                    f"exactly-once >= 0.7x at-least-once ({parts} partition(s))",
                    f"{x:.2f}x ({eos['rate']:,.0f} / {a['rate']:,.0f} rec/s)",
                    x >= 0.7,
                )
            )
        w2 = row.get("tsp-router-w2")
        if a and w2:
            x = w2["rate"] / a["rate"]
            out.append(
                (
                    f"2 workers >= 1.6x one process ({parts} partitions, {os.cpu_count()} cores)",
                    f"{x:.2f}x ({w2['rate']:,.0f} / {a['rate']:,.0f} rec/s)",
                    x >= 1.6,
                )
            )
    lat = res.get("latency", {}).get("tsp-router", {}).get(1000)
    if lat and "producer_1000" in kt:
        ref = kt["producer_1000"]["p99_latency_ms"]
        out.append(
            (
                "p99 at 1,000 rec/s within 15 ms of Kafka's produce-ack p99",
                f"{lat['p99_ms']:.1f} ms vs {ref:.1f} ms ({lat['p99_ms'] - ref:+.1f} ms)",
                lat["p99_ms"] <= ref + 15,
            )
        )
    return out


def findings(res: dict, rates: list[int]) -> list[str]:
    """Plain statements computed from this run's numbers (no hard-coded conclusions)."""
    notes = []
    th, kt = res.get("throughput", {}), res.get("kafka", {})
    for parts, row in sorted(th.items()):
        if "tsp-router" in row and "seed" in row:
            a, seed = row["tsp-router"], row["seed"]
            notes.append(
                f"{parts} partition(s): tsp-router (at-least-once: every send acknowledged before its "
                f"offset is committed) reaches {a['rate'] / seed['rate']:.2f}x the seed router's median "
                f"rate at {a['cpu_median'] / seed['cpu_median']:.2f}x its CPU per 100k records "
                f"({a['cpu_median']:.2f} vs {seed['cpu_median']:.2f} s); the seed neither waits for "
                f"acknowledgements nor commits anything."
            )
        if "tsp-router-eos" in row and "tsp-router" in row:
            notes.append(
                f"{parts} partition(s): exactly-once (one transaction per 100 ms or 20,000 records) runs at "
                f"{row['tsp-router-eos']['rate'] / row['tsp-router']['rate']:.2f}x the at-least-once rate."
            )
        if "tsp-router-w2" in row and "tsp-router" in row:
            w2, one = row["tsp-router-w2"], row["tsp-router"]
            notes.append(
                f"{parts} partitions, 2 workers: router and broker kept {w2['cores_busy']:.2f} of "
                f"{os.cpu_count()} cores busy (one process: {one['cores_busy']:.2f}); per 100k records "
                f"the router spent {w2['cpu_median']:.2f} CPU s (one process: {one['cpu_median']:.2f}), "
                f"the broker {w2['broker_cpu_per_100k']:.2f} (one process: "
                f"{one['broker_cpu_per_100k']:.2f})."
            )
    if kt:
        notes.append(
            f"Kafka's Java tools: producer {kt['producer_max']['records_per_sec']:,.0f} rec/s at "
            f"{kt['producer_max']['cpu_per_100k']:.2f} CPU s/100k, consumer "
            f"{kt['consumer_max']['nMsg_sec']:,.0f} rec/s at {kt['consumer_max']['cpu_per_100k']:.2f} "
            f"CPU s/100k (JVM start-up included)."
        )
    if res.get("profile_groups"):
        g = {a: share for a, _s, share in res["profile_groups"]}
        notes.append(
            "Profile of tsp-router's main thread: "
            + ", ".join(f"{k} {v * 100:.0f}%" for k, v in sorted(g.items(), key=lambda x: -x[1])[:4])
            + "."
        )
    return notes


def write_report(res: dict, path_md: Path, path_png: Path, meta: dict) -> None:
    rates = meta["rates"]
    th_all = res["throughput"]
    kt = res["kafka"]
    lines = [
        "# Router benchmark",
        "",
        f"One local Kafka {meta['kafka']} broker (KRaft, single node) on {meta['host']}; "
        f"{meta['when']}; load average before/after: {meta['load_before']} / {meta['load_after']} "
        "(other work shares this machine, so absolute rates are noisy: CPU per 100k records is the "
        f"steadier figure). Command: `{meta['command']}`.",
        "",
        f"Throughput (catch-up): {meta['records']:,} records wait in the input topic and the router drains "
        "them input -> even/odd (input and output topics with the same partition count); rate = routed "
        "records / (last - first routed record timestamp); CPU = user + system seconds of the router's "
        "process tree (workers included) between those two instants, per 100,000 records; the broker's the "
        "same way, and cores busy = both together / the run's seconds. The seed router "
        "reads from `latest`, so it is started, warmed up and frozen (SIGSTOP) while the records are "
        f"written, then resumed. {meta['repeat']} runs each, interleaved; median, and the spread (min - max). "
        "Latency (1-partition topics): a paced kafka-python producer writes values carrying their send "
        "time, a consumer of even/odd takes the receive time (end to end through the router, both broker "
        "hops included).",
        "",
        "| router | partitions | throughput median (min - max) rec/s | CPU s / 100k median (runs) | "
        "broker CPU s / 100k, cores busy (router + broker) | "
        + " | ".join(f"p50 / p99 @ {r} rec/s (ms)" for r in rates)
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(rates),
    ]
    for parts, row in sorted(th_all.items()):
        for k in KINDS:
            if k not in row:
                continue
            th = row[k]
            cells = []
            for r in rates:
                lat = res["latency"].get(k, {}).get(r) if parts == 1 else None
                cells.append(f"{lat['p50_ms']:.1f} / {lat['p99_ms']:.1f}" if lat else "-")
            lines.append(
                f"| {NAMES[k]} | {parts} | {th['rate']:,.0f} ({th['min']:,.0f} - {th['best']:,.0f}) | "
                f"{th['cpu_median']:.2f} ({', '.join(map(str, th['all_cpu']))}) | "
                f"{th['broker_cpu_per_100k']:.2f}, {th['cores_busy']:.2f} of {os.cpu_count()} | "
                + " | ".join(cells)
                + " |"
            )
    cells = [
        f"{kt[f'producer_{r}']['p50_latency_ms']:.1f} / {kt[f'producer_{r}']['p99_latency_ms']:.1f} (produce ack)"
        for r in rates
    ]
    lines.append(
        f"| Kafka perf tools (Java) | 1 | produce {kt['producer_max']['records_per_sec']:,.0f}, "
        f"consume {kt['consumer_max']['nMsg_sec']:,.0f} | produce {kt['producer_max']['cpu_per_100k']:.2f}, "
        f"consume {kt['consumer_max']['cpu_per_100k']:.2f} | - | " + " | ".join(cells) + " |"
    )
    lines += ["", "## Aims (issue 13), from this run's numbers", "", "| aim | this run | met |", "|---|---|---|"]
    for aim, figure, met in aims(res):
        lines.append(f"| {aim} | {figure} | {'yes' if met else 'no'} |")
    lines += ["", BEFORE]
    lines += [
        "",
        "Latency details (the median-p99 run; all runs' p50 and p99 in the last columns):",
        "",
        "| router | target rate | achieved | received | p50 ms | p99 ms | max ms | p50 runs | p99 runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for k in KINDS:
        for r in rates:
            lat = res["latency"].get(k, {}).get(r)
            if lat:
                lines.append(
                    f"| {NAMES[k]} | {r} | {lat['achieved_rate']:.0f} | {lat['received']}/{lat['sent']} | "
                    f"{lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.1f} | "
                    f"{', '.join(map(str, lat.get('all_p50', [])))} | "
                    f"{', '.join(map(str, lat.get('all_p99', [])))} |"
                )
    for r in rates:
        k = kt.get(f"producer_{r}")
        if k:
            lines.append(
                f"| Kafka's Java producer (produce ack) | {r} | {k['records_per_sec']:.0f} | "
                f"{k['records']} acknowledged | {k['p50_latency_ms']:.1f} | {k['p99_latency_ms']:.1f} | "
                f"{k['max_latency_ms']:.1f} | - | {', '.join(map(str, k.get('all_p99', [])))} |"
            )
    if res.get("profile"):
        lines += [
            "",
            "## Where tsp-router's time goes (cProfile of its main thread, one throughput run)",
            "",
            "Own time by area (kafka-python's sender and network threads are not in a main-thread "
            "profile; their cost shows as lock waits and as the GIL they hold):",
            "",
            "```",
            res["profile"].strip(),
            "```",
        ]
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    path_md.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(22, 5.2))
    bars = [
        (f"{NAMES[k]}, {parts}p", row[k]["rate"], row[k]["cpu_median"], f"C{KINDS.index(k)}")
        for parts, row in sorted(th_all.items())
        for k in KINDS
        if k in row
    ]
    bars += [
        ("Kafka producer (Java)", kt["producer_max"]["records_per_sec"], kt["producer_max"]["cpu_per_100k"], "C7"),
        ("Kafka consumer (Java)", kt["consumer_max"]["nMsg_sec"], kt["consumer_max"]["cpu_per_100k"], "C8"),
    ]
    labels = [b[0] for b in bars]
    axes[0].barh(labels, [b[1] for b in bars], color=[b[3] for b in bars])
    axes[0].set_xlabel("records/s")
    axes[0].set_title("Throughput (median)")
    axes[0].invert_yaxis()
    axes[1].barh(labels, [b[2] for b in bars], color=[b[3] for b in bars])
    axes[1].set_yticklabels([])
    axes[1].set_xlabel("CPU seconds per 100,000 records")
    axes[1].set_title("CPU cost (median; lower is better)")
    axes[1].invert_yaxis()
    series = [(NAMES[k], [res["latency"][k][r] for r in rates]) for k in ("tsp-router", "seed") if k in res["latency"]]
    series.append(
        (
            "Kafka produce ack (Java)",
            [
                {"p50_ms": kt[f"producer_{r}"]["p50_latency_ms"], "p99_ms": kt[f"producer_{r}"]["p99_latency_ms"]}
                for r in rates
            ],
        )
    )
    width = 0.8 / len(series)
    for ax, stat in ((axes[2], "p50_ms"), (axes[3], "p99_ms")):
        for i, (name, cells) in enumerate(series):
            ax.bar(
                [x + i * width for x in range(len(rates))],
                [c[stat] for c in cells],
                width,
                label=name,
                color=["C0", "C3", "C7"][i % 3],
            )
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(rates))])
        ax.set_xticklabels([f"{r} rec/s" for r in rates])
        ax.set_ylabel("ms")
        ax.set_title(f"End-to-end latency {stat[:3]}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=100)


def _meta(a: argparse.Namespace, argv: list[str] | None, load_before: str) -> dict:
    """What every report says about its run: when, how big, the load around it, the command."""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "records": a.records,
        "repeat": a.repeat,
        "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "command": "python -m bench.router_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - the bench's phases, read top to bottom
    ap = argparse.ArgumentParser(prog="python -m bench.router_bench")
    ap.add_argument(
        "--records",
        type=int,
        default=1_000_000,
        help="records per throughput run (>= 300,000; "
        "at 300,000 tsp-router's runs lasted 1-1.5 s, and start-up, the 2 workers' first rebalance "
        "above all, weighed in them)",
    )
    ap.add_argument("--partitions", default="1,2", help="partition counts of the throughput runs")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each latency run")
    ap.add_argument("--latency-repeat", type=int, default=3, help="latency runs per router and rate")
    ap.add_argument("--rates", default="100,1000")
    ap.add_argument("--no-eos", action="store_true", help="skip the exactly-once throughput rows")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs per router (median reported)")
    ap.add_argument("--profile", action="store_true", help="cProfile tsp-router during its throughput run")
    ap.add_argument("--max-load", type=float, default=3.0, help="wait for this 1-min load average first")
    ap.add_argument("--wait-calm", type=float, default=60, help="...for at most this many seconds")
    ap.add_argument("--router-arg", action="append", default=[], help="extra tsp-router argument")
    ap.add_argument("--only", help="comma list of phases: throughput,latency,kafka")
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="ARG",
        help="measure a lever instead: tsp-router (and exactly-once) with and without these extra "
        "arguments, in alternating pairs, --repeat pairs each; writes results/router-compare.md",
    )
    ap.add_argument(
        "--against",
        metavar="REV",
        help="measure a change instead: this tree's tsp-router (and exactly-once) against git "
        "revision REV's, like --compare",
    )
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])
    rates = [int(x) for x in a.rates.split(",")]
    part_counts = [int(x) for x in a.partitions.split(",")]
    Router.extra = list(a.router_arg)
    phases = set((a.only or "throughput,latency,kafka").split(","))
    from localinfra.kafka import KafkaBroker

    RESULTS.mkdir(parents=True, exist_ok=True)
    # Shared machine: give other work a chance to finish so the numbers mean something.
    deadline = time.monotonic() + a.wait_calm
    while os.getloadavg()[0] > a.max_load and time.monotonic() < deadline:
        time.sleep(10)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    res: dict = {"throughput": {}, "latency": {}, "notes": []}
    payloads = payload_file()
    # cProfile writes the file by name in the router process; the name only needs to be unused.
    prof_path = tempfile.mktemp(prefix="tsrouter-", suffix=".prof") if a.profile else None  # noqa: S306
    with KafkaBroker() as broker:
        print(f"router bench: broker {broker.bootstrap}", flush=True)
        broker_warm_up(broker, payloads)
        if a.compare or a.against:
            kinds = ["tsp-router"] + ([] if a.no_eos else ["tsp-router-eos"])
            base = list(a.router_arg)
            if a.against:
                sides = [(base, router_at(a.against)), (base, None)]
                labels = (f"`{a.against}`", f"this tree (`{_router_revision()}`)")
            else:
                sides = [(base, None), (base + a.compare, None)]
                labels = ("without", f"`{' '.join(a.compare)}`")
            try:
                rows = compare(broker, sides, kinds, part_counts, a.records, a.repeat, payloads)
            finally:
                if sides[0][1]:
                    shutil.rmtree(os.path.dirname(sides[0][1]))
            os.unlink(payloads)
            write_compare(rows, labels, RESULTS / "router-compare.md", _meta(a, argv, load_before))
            for r in rows:
                print(
                    f"  {NAMES[r['kind']]} ({r['partitions']}p): {r['ratio']:.2f}x, "
                    f"{r['pairs_faster']} of {r['pairs']} pairs faster",
                    flush=True,
                )
            print(f"router bench: wrote {RESULTS / 'router-compare.md'}", flush=True)
            return 0
        # Repeats interleave the routers so background load hits them alike; median reported.
        runs: dict = {}
        for _rep in range(a.repeat if "throughput" in phases else 0):
            for parts in part_counts:
                kinds = ["tsp-router"] + ([] if a.no_eos else ["tsp-router-eos"]) + ["seed"]
                if parts >= 2:
                    kinds.append("tsp-router-w2")
                for kind in kinds:
                    r = throughput(broker, kind, a.records, payloads, parts)
                    runs.setdefault(parts, {}).setdefault(kind, []).append(r)
                    print(
                        f"  {kind} ({parts}p): {r['rate']:,.0f} rec/s, {r['cpu_per_100k']:.2f} CPU s/100k "
                        f"({r['records']} in {r['seconds']:.2f}s)",
                        flush=True,
                    )
        for parts, per_kind in runs.items():
            res["throughput"][parts] = {kind: _summary(rs) for kind, rs in per_kind.items()}
        if prof_path and "throughput" in phases:
            throughput(broker, "tsp-router", a.records, payloads, 1, profile=prof_path)
        # Interleaved and repeated like the throughput runs; per (router, rate) the run with
        # the median p99 is reported.
        # Kafka's own produce-ack latency, the reference of the p99 aim, is repeated and
        # interleaved the same way: one run of it swung from 12 to 33 ms between bench runs.
        lat_runs: dict = {}
        ack_runs: dict = {}
        for _rep in range(a.latency_repeat if "latency" in phases else 0):
            for rate in rates:
                for kind in ("tsp-router", "seed"):
                    lat = latency(broker, kind, rate, a.seconds)
                    lat_runs.setdefault(kind, {}).setdefault(rate, []).append(lat)
                    print(
                        f"  {kind}: {rate} rec/s -> p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
                        f"({lat['received']}/{lat['sent']} received, achieved {lat['achieved_rate']:.0f}/s)",
                        flush=True,
                    )
                if "kafka" in phases:
                    k = kafka_ack_latency(broker, rate, a.seconds)
                    ack_runs.setdefault(rate, []).append(k)
                    print(
                        f"  kafka producer: {rate} rec/s -> p50 {k['p50_latency_ms']:.1f} ms, "
                        f"p99 {k['p99_latency_ms']:.1f} ms (produce ack)",
                        flush=True,
                    )
        for kind, per_rate in lat_runs.items():
            res["latency"][kind] = {}
            for rate, ls in per_rate.items():
                med = _median_run(ls, "p99_ms")
                res["latency"][kind][rate] = {
                    **med,
                    "all_p99": [round(x["p99_ms"], 1) for x in ls],
                    "all_p50": [round(x["p50_ms"], 1) for x in ls],
                }
        if "kafka" not in phases:
            print("router bench: partial run (--only), no report written", flush=True)
            return 0
        res["kafka"] = kafka_tools(broker, a.records * 2)
        for rate in rates:  # without the latency phase: one run each, as a reference
            ks = ack_runs.get(rate) or [kafka_ack_latency(broker, rate, a.seconds)]
            med = _median_run(ks, "p99_latency_ms")
            res["kafka"][f"producer_{rate}"] = {**med, "all_p99": [round(x["p99_latency_ms"], 1) for x in ks]}
        print(
            f"  kafka perf: produce {res['kafka']['producer_max']['records_per_sec']:,.0f} rec/s, "
            f"consume {res['kafka']['consumer_max']['nMsg_sec']:,.0f} rec/s",
            flush=True,
        )
        kafka_ver = broker.version
    if prof_path and os.path.exists(prof_path):
        res["profile"] = profile_report(prof_path)
        res["profile_groups"] = profile_groups(prof_path)
        print(res["profile"], flush=True)
    os.unlink(payloads)
    res["notes"] = findings(res, rates)
    res["aims"] = aims(res)
    meta = {**_meta(a, argv, load_before), "kafka": kafka_ver, "host": f"{os.cpu_count()} cores", "rates": rates}
    (RESULTS / "router.json").write_text(
        json.dumps({k: v for k, v in res.items() if k != "profile"}, indent=1, default=str)
    )
    write_report(res, RESULTS / "router.md", RESULTS / "router.png", meta)
    for aim, figure, met in res["aims"]:
        print(f"  aim {'MET ' if met else 'NOT '} {aim}: {figure}", flush=True)
    print(f"router bench: wrote {RESULTS / 'router.md'} and {RESULTS / 'router.png'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
