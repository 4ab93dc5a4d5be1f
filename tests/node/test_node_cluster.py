"""The operator's pipeline on a production-shaped cluster (issue 23): three Kafka brokers
(replication 3, min ISR 2) and two real nodes. The operator (a local process) runs the
four apps as pods, the router at two replicas spread over both nodes; a producer adds
about RATE records a second to the time source's one, and the tests fail what production
sees fail, in file order on ONE running pipeline (starting three JVMs on two cores is
most of the time): the input's and then the even topic's partition leader killed, every
broker rolled, tsp-node-0 drained, tsp-node-1 dead (kill -9 of its kubelet, containerd
and containers; last, as it kills the node the drain moved every pod to; the node comes
back after it for the tests that follow).

"Nothing lost", each time: every record of the input topic (its end when the check
starts) is in the output topic its last digit names, with the right prefix, and the
loggers' consumer group committed the whole of both output topics. The output topics are
read, not the loggers' `kubectl logs`: at hundreds of lines a second the kubelet rotates a
logger's log within minutes (`kubectl logs` shows the current file only), and a drained or
lost node's pods take their logs with them. `kubectl logs` is still looked at, as the seed
reads it: the time source's newest timestamp in the right logger's log.

What the apps said meanwhile (the pipeline's Ready condition, each router pod's readiness
endpoint and metrics, the router's PodDisruptionBudget) is sampled by a watcher every
WATCH_S and printed; times are reported, never asserted (machines are noisy)."""
from __future__ import annotations

import collections
import contextlib
import itertools
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from localinfra import proc
from localinfra.kafka import CLUSTER_MIN_ISR, CLUSTER_REPLICATION
from localinfra.nodeconfig import NODES
from localinfra.nodehost import node_leftovers
from nodehelpers import (apply_obj, component_pods, explained, new_namespace, pipeline_ready, pod_ready,
                         node_pipeline, sink_payloads, start_operator)
from routerproc import BackgroundProducer, timestamps

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1800)]

# Records/s the test adds to the input (the time source writes one a second). Not the router
# tests' 1,000: a log sink printed about 250 records/s on this 2-core machine under a test run,
# so at 1,000 (500 per logger) the loggers fell further behind in every test (120,000 records
# behind after the drain) and "the loggers caught up" took minutes. 300 keeps them within pace.
RATE = 300
MAX_RECORDS = 1_000_000  # more than a test sends at RATE: the producer is stopped, never runs dry
PARTITIONS = 2  # both router replicas route
ROUTERS = 2
PREFIXES = {"even": "Even timestamp:", "odd": "Odd timestamp:"}
# The topics stamp what they append, so the output's timestamps say when output landed.
TOPIC_CONFIG = {"min.insync.replicas": CLUSTER_MIN_ISR, "message.timestamp.type": "LogAppendTime"}
# One router per node while both take pods; the fake kwok node and a cordoned node (both
# tainted) are not domains (nodeTaintsPolicy: Honor), or a drained node's router could not
# be placed beside the other.
SPREAD = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
          "nodeTaintsPolicy": "Honor"}
ACTUATOR_PORT = 8080
WATCH_S = 2.0
ROUTED_AFTER = 3_000  # output records after a fault, with the broker still down: routing flows again
# Generous waits (2 busy cores): a JVM app's start on a node is 1-2 minutes here.
READY_S = 600
FLOW_S = 300
IN_SYNC_S = 180
CAUGHT_UP_S = 600
# Each test's producer values start apart (timestamps() are distinct seconds): never the same value twice.
STARTS = {"failover": 1_600_000_000, "roll": 1_610_000_000, "drain": 1_620_000_000, "loss": 1_630_000_000}


def wait_for(probe, timeout: float, what: str, interval: float = 1.0):
    """A failed kubectl or a Kafka request that met a dead broker counts as "not yet"."""
    return proc.wait_for(probe, timeout, what, interval, retry_on=(subprocess.CalledProcessError, KafkaError))


# ---------------------------------------------------------------- Kafka, read as a user would

def _consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100,
                         max_partition_fetch_bytes=4 << 20)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = _consumer(bootstrap)
    try:
        parts = wait_for(lambda: c.partitions_for_topic(topic), 60, f"{topic}'s partitions")
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on `topic` (-1: none yet), read without joining it."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = c.partitions_for_topic(topic) or set()
        return {p: (c.committed(TopicPartition(topic, p)) or -1) for p in parts}
    finally:
        c.close(autocommit=False)


def covers(done: dict[int, int], ends: dict[int, int]) -> bool:
    """Committed offsets up to `ends`; an empty partition needs none (the time source's sticky
    partitioner leaves a partition empty for minutes at a record a second, and nothing is
    ever committed there)."""
    return all(o == 0 or done.get(p, -1) >= o for p, o in ends.items())


def read_upto(bootstrap: str, topic: str, ends: dict[int, int], timeout: float = 300) -> list:
    """Every record of `topic` below `ends` (partition -> offset)."""
    c = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out, deadline = [], time.monotonic() + timeout
        while any(c.position(tp) < ends[tp.partition] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} up to {ends} in {timeout:.0f}s")
            for tp, recs in c.poll(timeout_ms=500, max_records=50_000).items():
                out += [r for r in recs if r.offset < ends[tp.partition]]
        return out
    finally:
        c.close()


def caught_up(bootstrap: str, group: str, topic: str, what: str) -> None:
    ends = end_offsets(bootstrap, topic)
    wait_for(lambda: covers(committed(bootstrap, group, topic), ends),
             CAUGHT_UP_S, f"{what} committing {topic} up to {ends}", interval=2)


def longest_gap_ms(records, since_ms: int = 0) -> int:
    stamps = sorted(r.timestamp for r in records if r.timestamp >= since_ms)
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0)


# ---------------------------------------------------------------- the pipeline

@dataclass
class Run:
    c: object   # NodeCluster (two nodes)
    k: object   # KafkaCluster
    ns: str
    name: str
    group: str  # every app's consumer group: the stream's name (SCDF's wiring)
    topics: dict[str, str]
    logs: dict
    watch: "Watch"

    def output_count(self) -> int:
        return sum(sum(end_offsets(self.k.bootstrap, self.topics[ch]).values()) for ch in ("even", "odd"))


def pipeline_obj(k, topics: dict[str, str]) -> dict:
    obj = node_pipeline(k.pod_bootstrap, topics)
    name = obj["metadata"]["name"]
    obj["spec"]["kafka"]["brokers"] = k.pod_bootstrap.split(",")
    obj["spec"]["kafka"]["topics"].update(partitions=PARTITIONS, replicationFactor=CLUSTER_REPLICATION,
                                          config=TOPIC_CONFIG)
    spread = {**SPREAD, "labelSelector": {"matchLabels": {
        "app.kubernetes.io/instance": name, "app.kubernetes.io/component": "router"}}}
    obj["spec"]["router"].update(replicas=ROUTERS, podTemplate={"topologySpreadConstraints": [spread]})
    return obj


class Watch(threading.Thread):
    """What a user watching would see, every WATCH_S: the pipeline's Ready condition, its
    pods (node, Ready), the router's PodDisruptionBudget, and each router pod's readiness
    endpoint and metrics (read from the host, which is on both bridges)."""

    def __init__(self, c, ns: str, name: str):
        super().__init__(daemon=True)
        self.c, self.ns, self.name = c, ns, name
        self.samples: list[dict] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(WATCH_S):
            with contextlib.suppress(Exception):  # a sample missed is a gap, not a failure
                self.samples.append(self.sample())

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def sample(self) -> dict:
        t = time.monotonic()
        got = json.loads(self.c.kubectl("get", "tsp,pods,pdb", "-n", self.ns, "-o", "json", timeout=30).stdout)
        s: dict = {"t": t, "ready": False, "pods": {}, "routers_ready": 0, "pdb": None, "router": {}}
        for obj in got["items"]:
            kind = obj["kind"]
            if kind == "TimestampPipeline" and obj["metadata"]["name"] == self.name:
                conds = {x["type"]: x for x in (obj.get("status") or {}).get("conditions", [])}
                s["ready"] = conds.get("Ready", {}).get("status") == "True"
                s["reason"] = conds.get("Ready", {}).get("reason")
            elif kind == "Pod":
                comp = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                ready = pod_ready(obj)
                s["pods"][obj["metadata"]["name"]] = (comp, obj["spec"].get("nodeName"), ready)
                if comp == "router":
                    s["routers_ready"] += ready
                    ip = obj.get("status", {}).get("podIP")
                    if ip and not obj["metadata"].get("deletionTimestamp"):
                        s["router"][obj["metadata"]["name"]] = router_endpoints(ip)
            elif kind == "PodDisruptionBudget":
                st = obj.get("status") or {}
                s["pdb"] = (st.get("currentHealthy"), st.get("desiredHealthy"), st.get("disruptionsAllowed"))
        return s

    def between(self, t0: float, t1: float | None = None) -> list[dict]:
        return [s for s in self.samples if s["t"] >= t0 and (t1 is None or s["t"] <= t1)]

    def summary(self, t0: float, t1: float | None = None) -> str:
        """Spells of the pipeline not Ready and of each router pod's readiness not 200, the
        router's send errors and rebalances in the window, the fewest Ready routers."""
        ss = self.between(t0, t1)
        if not ss:
            return "no samples"
        out = [f"pipeline not Ready {spells(ss, lambda s: not s['ready'], t0)}",
               f"fewest Ready router pods {min(s['routers_ready'] for s in ss)}"]
        pods = sorted({p for s in ss for p in s["router"]})
        for pod in pods:
            seen = [s for s in ss if pod in s["router"]]
            first, last = seen[0]["router"][pod], seen[-1]["router"][pod]
            delta = {k: round(last[k] - first[k]) for k in ("send_errors", "rebalances") if k in first and k in last}
            out.append(f"router {pod[-5:]}: readiness not 200 {spells(seen, lambda s, pod=pod: s['router'][pod]['readiness'] != 200, t0)}"
                       f", {delta}")
        return "; ".join(out)


def spells(samples: list[dict], bad, t0: float) -> str:
    """'[(start s, seconds), ...]' of consecutive samples where bad(sample), from t0."""
    out, start, prev = [], None, None
    for s in samples:
        if bad(s) and start is None:
            start = s["t"]
        elif not bad(s) and start is not None:
            out.append((round(start - t0, 1), round(s["t"] - start, 1)))
            start = None
        prev = s
    if start is not None and prev is not None:
        out.append((round(start - t0, 1), "still"))
    return str(out)


METRIC = re.compile(r"^(tsrouter_[a-z_]+?)(?:_total)?(?:\{[^}]*\})? ([0-9.eE+-]+)$")


def router_endpoints(ip: str) -> dict:
    """A router pod's readiness status code (None: no answer) and its counters."""
    out: dict = {"readiness": None}
    base = f"http://{ip}:{ACTUATOR_PORT}/actuator"
    try:
        with urllib.request.urlopen(f"{base}/health/readiness", timeout=2) as r:
            out["readiness"] = r.status
    except urllib.error.HTTPError as exc:
        out["readiness"] = exc.code
    except OSError:
        return out
    try:
        with urllib.request.urlopen(f"{base}/prometheus", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return out
    sums: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if (m := METRIC.match(line)) and not line.startswith("#"):
            sums[m.group(1)] += float(m.group(2))
    out["routed"] = sums.get("tsrouter_records_routed", 0.0)
    out["send_errors"] = sums.get("tsrouter_send_errors", 0.0)
    out["rebalances"] = sums.get("tsrouter_rebalances", 0.0)
    return out


@pytest.fixture(scope="module")
def run(two_node_cluster, node_kafka_cluster, tmp_path_factory):
    c, k = two_node_cluster, node_kafka_cluster
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    ns = new_namespace(c, "cluster")
    op = start_operator(c, ns, log)
    topics = {t: f"{t}-{ns}" for t in ("input", "even", "odd")}
    obj = pipeline_obj(k, topics)
    apply_obj(c, obj, ns)
    watch = Watch(c, ns, obj["metadata"]["name"])
    watch.start()
    logs = {"operator": log, **{f"broker {n.index}": n.log_path for n in k.nodes}}
    try:
        yield Run(c, k, ns, obj["metadata"]["name"], obj["spec"]["streamName"], topics, logs, watch)
    finally:
        watch.stop()
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=180s", check=False, timeout=200)
        # Pods a dead node held cannot be confirmed gone by their kubelet.
        c.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)
        op.stop(15)
        k.start()  # every broker back for whoever comes next


def wait_ready(r: Run, what: str, since: float) -> float:
    """Wait for the pipeline's Ready (observed generation); seconds since `since`."""
    wait_for(lambda: pipeline_ready(r.c, r.ns, r.name), READY_S, what, interval=2)
    return time.monotonic() - since


@contextlib.contextmanager
def traffic(r: Run, test: str):
    """A producer adding about RATE records/s into the input (acks=all, idempotent)."""
    feed = BackgroundProducer(r.k.bootstrap, r.topics["input"], timestamps(MAX_RECORDS, start=STARTS[test]),
                              partitions=PARTITIONS, rate=RATE)
    feed.start()
    try:
        before = r.output_count()
        wait_for(lambda: r.output_count() >= before + ROUTED_AFTER, FLOW_S, "routing under way")
        yield feed
        assert feed.is_alive(), "the producer ran dry: the fault was not under traffic"
    finally:
        feed.stop()
    assert not feed.errors, feed.errors[:3]


def routing_on(r: Run, what: str) -> float:
    """Wait until ROUTED_AFTER more records reached the outputs; seconds it took."""
    t0, before = time.monotonic(), r.output_count()
    wait_for(lambda: r.output_count() >= before + ROUTED_AFTER, FLOW_S, what, interval=1)
    return time.monotonic() - t0


def nothing_lost(r: Run) -> dict:
    """Every record of the input (up to its end now) in the output its last digit names, and
    the loggers' group caught up with both outputs. Returns counts for the report."""
    bs = r.k.bootstrap
    ends = end_offsets(bs, r.topics["input"])
    wait_for(lambda: covers(committed(bs, r.group, r.topics["input"]), ends),
             CAUGHT_UP_S, f"the router's group committing the input up to {ends}", interval=2)
    produced = collections.Counter(rec.value.decode() for rec in read_upto(bs, r.topics["input"], ends))
    want = {"even": collections.Counter(), "odd": collections.Counter()}
    for v, n in produced.items():
        want["even" if int(v[-1]) % 2 == 0 else "odd"][v] += n
    got, total = {}, 0
    for ch in ("even", "odd"):
        recs = read_upto(bs, r.topics[ch], end_offsets(bs, r.topics[ch]))
        total += len(recs)
        values = [rec.value.decode() for rec in recs]
        wrong = [v for v in values if not v.startswith(PREFIXES[ch])
                 or int(v[-1]) % 2 != (0 if ch == "even" else 1)]
        assert not wrong, f"{len(wrong)} records in {r.topics[ch]} with the wrong prefix or parity: {wrong[:5]}"
        got[ch] = collections.Counter(v[len(PREFIXES[ch]):] for v in values)
    missing = (want["even"] - got["even"]) + (want["odd"] - got["odd"])
    assert not missing, f"{sum(missing.values())} of {sum(produced.values())} input records not routed, " \
                        f"e.g. {sorted(missing)[:5]}"
    for ch in ("even", "odd"):
        caught_up(bs, r.group, r.topics[ch], f"the {ch} logger")
    # Output read to its end now, later than the input's snapshot: it may hold more records than
    # the input counted; a duplicate is a value routed more than once.
    return {"input": sum(produced.values()), "output": total,
            "duplicates": sum(n - 1 for ch in got for n in got[ch].values() if n > 1)}


def tail_records(bootstrap: str, topic: str, n: int) -> list:
    """The last `n` records of each partition of `topic`."""
    ends = end_offsets(bootstrap, topic)
    c = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, max(0, ends[tp.partition] - n))
        out, deadline = [], time.monotonic() + 60
        while any(c.position(tp) < ends[tp.partition] for tp in tps) and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                out += [r for r in recs if r.offset < ends[tp.partition]]
        return out
    finally:
        c.close()


def logger_shows_time_source(r: Run) -> None:
    """The time source's newest timestamp in the right logger's `kubectl logs` (the seed's
    check); after the test's traffic, so the loggers print about a line a second again."""
    year = time.strftime("%y")  # the producer's values are years back: never this year's

    def shown():
        recent = [rec for rec in tail_records(r.k.bootstrap, r.topics["input"], 200)
                  if rec.value.decode()[6:8] == year]
        if not recent:
            return False
        v = max(recent, key=lambda rec: rec.timestamp).value.decode()
        ch = "even" if int(v[-1]) % 2 == 0 else "odd"
        out = []
        for p in component_pods(r.c, r.ns, r.name, f"{ch}logger"):
            res = r.c.kubectl("logs", "-n", r.ns, p["metadata"]["name"], "--tail=3000", check=False, timeout=60)
            out += sink_payloads(res.stdout)
        return f"{PREFIXES[ch]}{v}" in out

    wait_for(shown, 180, "the time source's newest timestamp in the right logger's kubectl logs", interval=3)


def placement(r: Run) -> dict[str, list[str]]:
    """component -> the nodes its live pods run on."""
    out = collections.defaultdict(list)
    for p in r.c.get("pods", "-n", r.ns)["items"]:
        if not p["metadata"].get("deletionTimestamp"):
            out[p["metadata"]["labels"]["app.kubernetes.io/component"]].append(p["spec"].get("nodeName"))
    return {k: sorted(v) for k, v in out.items()}


def report(record_property, key: str, text: str) -> None:
    print(f"\n{key}: {text}")
    record_property(key, text)


# ---------------------------------------------------------------- the tests, in order

def test_pipeline_on_three_brokers_and_two_nodes(run, record_property):
    """Four apps Ready, the routers one per node, the topics at replication 3 with the
    spec's settings, and the time source's timestamps routed."""
    r, c, k = run, run.c, run.k
    t0 = time.monotonic()
    with explained(c, r.ns, r.logs):
        took = wait_ready(r, "the pipeline Ready", t0)
        ps = list(c.get("pods", "-n", r.ns)["items"])
        assert len(ps) == 3 + ROUTERS and all(map(pod_ready, ps)), [p["metadata"]["name"] for p in ps]
        routers = placement(r)["router"]
        assert routers == sorted(n.name for n in NODES), f"one router per node: {routers}"

        names = [r.topics[t] for t in ("input", "even", "odd")]
        admin = KafkaAdminClient(bootstrap_servers=k.bootstrap)
        try:
            described = {t["name"]: t for t in admin.describe_topics(names)}
            found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, list(TOPIC_CONFIG))
                                            for n in names], config_filter="all")["topic"]
        finally:
            admin.close()
        for n in names:
            parts = described[n]["partitions"]
            assert len(parts) == PARTITIONS, parts
            assert all(len(p["replica_nodes"]) == CLUSTER_REPLICATION for p in parts), parts
            for key, value in TOPIC_CONFIG.items():
                assert found[n][key]["value"] == str(value), found[n][key]
                assert found[n][key]["config_source"] == "DYNAMIC_TOPIC_CONFIG", found[n][key]  # the topic's own

        wait_for(lambda: sum(end_offsets(k.bootstrap, r.topics["input"]).values()) >= 20, 120,
                 "20 timestamps from the time source")
        counts = nothing_lost(r)
        logger_shows_time_source(r)
    rss = {"brokers": sum(k.rss()), "node 0": sum(c.node.rss().values()), "node 1": sum(c.node1.rss().values())}
    report(record_property, "cluster_start",
           f"pipeline Ready {took:.0f}s after this test began; brokers started in {k.start_seconds:.0f}s; "
           f"node 1 started in {c.node1.started_in:.0f}s (images imported in {c.node1.import_seconds:.0f}s); "
           "RSS MiB " + ", ".join(f"{n} {v / 2**20:.0f}" for n, v in rss.items())
           + f" (per broker {[round(x / 2**20) for x in k.rss()]}); placement {placement(r)}; {counts}")


def test_partition_leaders_killed_under_traffic_lose_nothing(run, record_property):
    """kill -9 the broker leading input partition 0, later the one leading even partition 0,
    each brought back in sync before the next: every record routed, the pipeline Ready."""
    r, k = run, run.k
    events = []
    with explained(r.c, r.ns, r.logs), traffic(r, "failover"):
        for role in ("input", "even"):
            topic = r.topics[role]
            victim = wait_for(lambda topic=topic: {k.leader(topic, 0)} - {None}, 60, f"{topic}'s leader").pop()
            t0 = time.monotonic()
            k.kill(victim)
            flowing = routing_on(r, f"{ROUTED_AFTER} more records routed with broker {victim} (leading {role}) dead")
            ready = wait_ready(r, "the pipeline Ready with a broker dead", t0)
            new_leader = k.leader(topic, 0)
            k.start(victim)
            k.wait_in_sync(IN_SYNC_S)
            events.append(f"{role} leader broker {victim} killed: routing on after {flowing:.1f}s, "
                          f"pipeline Ready when looked at {ready:.1f}s after, new leader {new_leader}; meanwhile "
                          + r.watch.summary(t0))
    t1 = time.monotonic()
    counts = nothing_lost(r)
    stall = longest_gap_ms(read_upto(k.bootstrap, r.topics["even"], end_offsets(k.bootstrap, r.topics["even"])),
                           since_ms=int((time.time() - (time.monotonic() - t0) - 5) * 1000))
    logger_shows_time_source(r)
    report(record_property, "leader_failover", " | ".join(events) + f" | {counts}; longest even-output gap "
           f"since the second kill {stall} ms (test took {t1 - t0:.0f}s from the second kill)")


def test_rolling_restart_of_every_broker_under_traffic_loses_nothing(run, record_property):
    r, k = run, run.k
    with explained(r.c, r.ns, r.logs), traffic(r, "roll"):
        t0, wall0 = time.monotonic(), time.time()
        took = k.rolling_restart(wait_timeout=IN_SYNC_S)
        flowing = routing_on(r, "routing on after the roll")
        t1 = time.monotonic()
    ready = wait_ready(r, "the pipeline Ready after the roll", t0)
    counts = nothing_lost(r)
    since = int(wall0 * 1000)
    gaps = {ch: longest_gap_ms(read_upto(k.bootstrap, r.topics[ch], end_offsets(k.bootstrap, r.topics[ch])), since)
            for ch in ("even", "odd")}
    both = longest_gap_ms(read_upto(k.bootstrap, r.topics["even"], end_offsets(k.bootstrap, r.topics["even"]))
                          + read_upto(k.bootstrap, r.topics["odd"], end_offsets(k.bootstrap, r.topics["odd"])), since)
    report(record_property, "rolling_restart",
           f"brokers' stop-to-in-sync s {[round(t, 1) for t in took]}; routing on {flowing:.1f}s after; "
           f"longest stall of the router's output (LogAppendTime gaps) {both} ms, per topic {gaps}; "
           f"pipeline Ready when looked at {ready:.0f}s after the roll began; meanwhile {r.watch.summary(t0, t1)}; {counts}")


def test_draining_a_node_moves_every_app_and_the_budget_holds(run, record_property):
    """`kubectl drain tsp-node-0` under traffic: it succeeds, one router pod is always Ready
    (the operator's PodDisruptionBudget), every app ends Ready on tsp-node-1; uncordon after."""
    r, c = run, run.c
    node0, node1 = NODES[0].name, NODES[1].name
    with explained(c, r.ns, r.logs):
        assert placement(r)["router"] == [node0, node1]
        (on_node0,) = [p["metadata"]["name"] for p in component_pods(c, r.ns, r.name, "router")
                       if p["spec"]["nodeName"] == node0]
        pdb = c.get("pdb", "-n", r.ns)["items"]
        assert len(pdb) == 1 and pdb[0]["spec"]["maxUnavailable"] == 1, pdb
        try:
            with traffic(r, "drain"):
                t0 = time.monotonic()
                out = c.kubectl("drain", node0, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=900s",
                                timeout=960)
                drained = time.monotonic() - t0
                ready = wait_ready(r, "the pipeline Ready on tsp-node-1", t0)
                wait_for(lambda: all(n == [node1] * len(n) for n in placement(r).values())
                         and all(map(pod_ready, c.get("pods", "-n", r.ns)["items"])), READY_S,
                         "every app's pods Ready on tsp-node-1")
                flowing = routing_on(r, "routing on tsp-node-1")
                t1 = time.monotonic()
        finally:
            c.kubectl("uncordon", node0, check=False)
        during = r.watch.between(t0, t1)
        assert during and min(s["routers_ready"] for s in during) >= 1, \
            f"both router pods down at once: {[(round(s['t'] - t0), s['routers_ready']) for s in during]}"
        assert not [p for p in component_pods(c, r.ns, r.name, "router") if p["metadata"]["name"] == on_node0], \
            f"the router pod that ran on {node0} was evicted"
        counts = nothing_lost(r)
        logger_shows_time_source(r)
    held = [ln for ln in (out.stdout + out.stderr).splitlines() if "disruption budget" in ln]
    report(record_property, "drain",
           f"drain took {drained:.0f}s, pipeline Ready {ready:.0f}s after it began, routing on {flowing:.1f}s "
           f"after; evictions the budget refused: {len(held)} (e.g. {held[:1]}); PDB (healthy, desired, allowed) "
           f"seen {sorted({s['pdb'] for s in during if s['pdb']}, key=str)}; meanwhile {r.watch.summary(t0, t1)}; "
           f"placement {placement(r)}; {counts}")


def test_a_dead_node_s_apps_come_back_on_the_other_node(run, record_property):
    """Last: tsp-node-1 (which holds every pod after the drain) dies at once: kubelet,
    containerd and containers kill -9. The node goes NotReady, its pods are evicted and
    recreated on tsp-node-0, the pipeline is Ready again, nothing lost. Then the machine
    comes back: node 1 cleaned up (nothing of the crash left) and started again."""
    r, c = run, run.c
    node0, node1 = NODES[0].name, NODES[1].name
    n1 = c.node1

    def node_ready(name):
        conds = {x["type"]: x["status"] for x in c.get("node", name)["status"]["conditions"]}
        return conds.get("Ready") == "True"

    with explained(c, r.ns, r.logs):
        wait_for(lambda: all(n == [node1] * len(n) for n in placement(r).values()), 60, "every pod on tsp-node-1")
        pod = component_pods(c, r.ns, r.name, "router")[0]
        tolerations = {t["key"]: t.get("tolerationSeconds") for t in pod["spec"].get("tolerations", [])}
        with traffic(r, "loss"):
            sandboxes, workdir = n1.sandbox_ids(), n1.workdir
            t0 = time.monotonic()
            n1.crash()
            not_ready = wait_for(lambda: not node_ready(node1) and time.monotonic() - t0, 300,
                                 "tsp-node-1 NotReady")
            wait_for(lambda: all(n == [node0] * len(n) for n in placement(r).values())
                     and sum(map(len, placement(r).values())) == 3 + ROUTERS, READY_S,
                     "every app's pods recreated on tsp-node-0")
            moved = time.monotonic() - t0
            ready = wait_ready(r, "the pipeline Ready on tsp-node-0", t0)
            flowing = routing_on(r, "routing on tsp-node-0")
            t1 = time.monotonic()
        summary = r.watch.summary(t0, t1)
        counts = nothing_lost(r)
        logger_shows_time_source(r)

        # The dead machine's remains: stop() removes everything of the crash.
        n1.stop()
        assert node_leftovers(NODES[1], workdir, sandboxes) == []
        assert n1.teardown_notes == []
        # It comes back (the node tests that follow use it, with the pause and router images
        # only: quicker); the pods it held are gone for good.
        n1.images = ("pause", "router")
        n1.start()
        wait_for(lambda: node_ready(node1), 120, "tsp-node-1 Ready again")
        wait_for(lambda: not [p for p in c.get("pods", "-n", r.ns)["items"] if p["spec"].get("nodeName") == node1],
                 180, "the dead node's pods removed once its kubelet is back")
    report(record_property, "node_loss",
           f"tolerationSeconds {tolerations}; NotReady {not_ready:.0f}s after the kill, pods on tsp-node-0 "
           f"{moved:.0f}s, pipeline Ready {ready:.0f}s, routing on {flowing:.1f}s after that; meanwhile {summary}; "
           f"{counts}; node 1 back in {n1.started_in:.0f}s")
