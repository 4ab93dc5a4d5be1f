"""The operator's pipeline on a production-shaped cluster (issue 23): three Kafka brokers
(replication 3, min ISR 2) and two real nodes. The operator runs as production runs it:
manifests/overlays/ha, two pods with kopf peering, one per node (one active, one
standby). It runs the four apps as pods, the router at two replicas spread over both
nodes; a producer adds about RATE records a second to the time source's one, and the
tests fail what production sees fail, in file order on ONE running pipeline (starting
three JVMs on two cores is most of the time): the input's and then the even topic's
partition leader killed, every broker rolled, tsp-node-0 drained, tsp-node-1 dead (kill -9
of its kubelet, containerd and containers, with the active operator replica and every app
on it: the standby on tsp-node-0 takes over and applies a spec change made at the crash;
the node comes back after it for the tests that follow), and last the input's leader
killed again with the router switched to exactly-once.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from localinfra import proc
from localinfra.kafka import CLUSTER_MIN_ISR, CLUSTER_REPLICATION
from localinfra.nodeconfig import NODES
from localinfra.nodehost import node_leftovers
from nodehelpers import (
    REPO,
    apply_obj,
    component_pods,
    explained,
    new_namespace,
    node_pipeline,
    operator_env,
    pipeline_ready,
    pod_ready,
    sink_payloads,
)
from routerproc import BackgroundProducer, timestamps

from tspipe.peering import is_standby

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
SPREAD = {
    "maxSkew": 1,
    "topologyKey": "kubernetes.io/hostname",
    "whenUnsatisfiable": "DoNotSchedule",
    "nodeTaintsPolicy": "Honor",
}
ACTUATOR_PORT = 8080
WATCH_S = 2.0
ROUTED_AFTER = 3_000  # output records after a fault, with the broker still down: routing flows again
# Generous waits (2 busy cores): a JVM app's start on a node is 1-2 minutes here.
READY_S = 600
FLOW_S = 300
IN_SYNC_S = 180
CAUGHT_UP_S = 600
# Each test's producer values start apart (timestamps() are distinct seconds): never the same value twice.
STARTS = {
    "failover": 1_600_000_000,
    "roll": 1_610_000_000,
    "drain": 1_620_000_000,
    "loss": 1_630_000_000,
    "eos": 1_640_000_000,
}
HA_OVERLAY = REPO / "manifests" / "overlays" / "ha"
OPERATOR_NS = "tspipe-system"
PEERING = yaml.safe_load((HA_OVERLAY / "peering.yaml").read_text())["metadata"]["name"]
RESUMED = "Resuming operations after the pause"  # kopf's line when a peered replica becomes active
# The spec change made as the active operator's node dies: only the standby can apply it.
FAILOVER_CONFIG = {"retention.ms": 3 * 86_400_000}


def wait_for(probe, timeout: float, what: str, interval: float = 1.0):
    """A failed kubectl or a Kafka request that met a dead broker counts as "not yet"."""
    return proc.wait_for(probe, timeout, what, interval, retry_on=(subprocess.CalledProcessError, KafkaError))


# ---------------------------------------------------------------- Kafka, read as a user would


def _consumer(bootstrap: str, isolation: str = "read_uncommitted") -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 << 20,
        isolation_level=isolation,
    )


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


def read_upto(
    bootstrap: str, topic: str, ends: dict[int, int], timeout: float = 300, isolation: str = "read_uncommitted"
) -> list:
    """Every record of `topic` below `ends` (partition -> offset); read_committed: of committed
    transactions only (their markers take offsets too)."""
    c = _consumer(bootstrap, isolation)
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


def caught_up(bootstrap: str, group: str, topic: str, what: str, ends: dict[int, int] | None = None) -> None:
    ends = end_offsets(bootstrap, topic) if ends is None else ends
    wait_for(
        lambda: covers(committed(bootstrap, group, topic), ends),
        CAUGHT_UP_S,
        f"{what} committing {topic} up to {ends}",
        interval=2,
    )


def topic_configs(bootstrap: str, names: list[str], keys) -> dict[str, dict]:
    """{topic: {key: describe_configs' entry (value, config_source, ...)}}."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, list(keys)) for n in names], config_filter="all"
        )["topic"]
    finally:
        admin.close()


def longest_gap_ms(records, since_ms: int = 0) -> int:
    stamps = sorted(r.timestamp for r in records if r.timestamp >= since_ms)
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0)


# ---------------------------------------------------------------- the pipeline


@dataclass
class Run:
    c: object  # NodeCluster (two nodes)
    k: object  # KafkaCluster
    ns: str
    name: str
    group: str  # every app's consumer group: the stream's name (SCDF's wiring)
    topics: dict[str, str]
    logs: dict
    watch: Watch
    logdir: object = None  # where the operator pods' logs are saved when a test fails
    sent: dict = field(default_factory=dict)  # test -> the values its producer had acknowledged

    def output_count(self) -> int:
        return sum(sum(end_offsets(self.k.bootstrap, self.topics[ch]).values()) for ch in ("even", "odd"))


def pipeline_obj(k, topics: dict[str, str]) -> dict:
    obj = node_pipeline(k.pod_bootstrap, topics)
    name = obj["metadata"]["name"]
    obj["spec"]["kafka"]["brokers"] = k.pod_bootstrap.split(",")
    obj["spec"]["kafka"]["topics"].update(
        partitions=PARTITIONS, replicationFactor=CLUSTER_REPLICATION, config=TOPIC_CONFIG
    )
    spread = {
        **SPREAD,
        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "router"}},
    }
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
        out = [
            f"pipeline not Ready {spells(ss, lambda s: not s['ready'], t0)}",
            f"fewest Ready router pods {min(s['routers_ready'] for s in ss)}",
        ]
        pods = sorted({p for s in ss for p in s["router"]})
        for pod in pods:
            seen = [s for s in ss if pod in s["router"]]
            first, last = seen[0]["router"][pod], seen[-1]["router"][pod]
            delta = {k: round(last[k] - first[k]) for k in ("send_errors", "rebalances") if k in first and k in last}
            out.append(
                f"router {pod[-5:]}: readiness not 200 "
                f"{spells(seen, lambda s, pod=pod: s['router'][pod]['readiness'] != 200, t0)}"
                f", {delta}"
            )
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


# ---------------------------------------------------------------- the operator: manifests/overlays/ha


def ha_operator(c) -> list[dict]:
    """manifests/overlays/ha as kustomize builds it, less its sample pipeline and that one's
    namespace (four more JVMs), the operator given the API server's address (no kube-proxy
    here). The images are the overlay's tags, imported on both nodes."""
    built = [d for d in yaml.safe_load_all(c.kubectl("kustomize", str(HA_OVERLAY)).stdout) if d]
    out = []
    for o in built:
        if o["kind"] == "TimestampPipeline" or (o["kind"] == "Namespace" and o["metadata"]["name"] != OPERATOR_NS):
            continue
        if o["kind"] == "Deployment":
            o["spec"]["template"]["spec"]["containers"][0]["env"] = operator_env(c.cp.apiserver_port)
        out.append(o)
    return out


def operator_pods(c) -> list[dict]:
    return [p for p in c.get("pods", "-n", OPERATOR_NS)["items"] if not p["metadata"].get("deletionTimestamp")]


def operator_roles(c) -> dict[str, tuple[str, str]] | None:
    """{pod: (node, "active" | "standby")} for the two operator pods, as kopf decides from the
    peering object (a replica waits while a live peer has a higher priority); None unless both
    are Ready, each with its own entry, one active."""
    ps = operator_pods(c)
    if len(ps) != 2 or not all(map(pod_ready, ps)):
        return None
    peering, now = c.get("clusterkopfpeering", PEERING), datetime.now(UTC)
    out = {}
    for p in ps:
        name = p["metadata"]["name"]
        mine = [v for key, v in ((peering.get("status") or {}).items()) if name in key and isinstance(v, dict)]
        if len(mine) != 1:
            return None
        standby = is_standby(peering, int(mine[0]["priority"]), now)
        out[name] = (p["spec"]["nodeName"], "standby" if standby else "active")
    return out if sorted(role for _, role in out.values()) == ["active", "standby"] else None


def operator_log(c, pod: str) -> str:
    return c.kubectl("logs", "-n", OPERATOR_NS, pod, check=False, timeout=60).stdout


def put_active_operator_on(c, node: str, other: str) -> tuple[str, str, int]:
    """Delete operator pods until the active replica runs on `node` and the standby on `other`:
    a deleted replica stops cleanly (the other takes over at once), and its replacement, with a
    new random priority, can only go where no replica runs (one per node). Returns the active
    pod, the standby pod and how many pods were deleted."""
    deleted = 0
    for _ in range(8):
        roles = wait_for(lambda: operator_roles(c), READY_S, "two operator pods Ready and peered, one active")
        at = {role: (pod, n) for pod, (n, role) in roles.items()}
        if at["active"][1] == node and at["standby"][1] == other:
            return at["active"][0], at["standby"][0], deleted
        victim = at["standby"][0] if at["active"][1] == node else at["active"][0]
        c.kubectl("delete", "pod", "-n", OPERATOR_NS, victim, "--timeout=120s", timeout=150)
        deleted += 1
    raise AssertionError(f"no active operator replica on {node} after {deleted} pods deleted: {operator_roles(c)}")


def save_operator_logs(r: Run) -> None:
    """The operator pods' logs and the peering object, into files the diagnostics print."""
    for p in r.c.get("pods", "-n", OPERATOR_NS)["items"]:
        name = p["metadata"]["name"]
        path = r.logdir / f"{name}.log"
        path.write_text(f"node {p['spec'].get('nodeName')}\n" + operator_log(r.c, name))
        r.logs[f"operator pod {name}"] = path
    path = r.logdir / "peering.json"
    path.write_text(r.c.kubectl("get", "clusterkopfpeering", PEERING, "-o", "json", check=False).stdout)
    r.logs["peering"] = path


@contextlib.contextmanager
def explained_run(r: Run):
    """nodehelpers.explained, with the operator pods' logs."""
    with explained(r.c, r.ns, r.logs):
        try:
            yield
        except (AssertionError, TimeoutError, subprocess.CalledProcessError):
            with contextlib.suppress(Exception):
                save_operator_logs(r)
            raise


@pytest.fixture(scope="module")
def run(two_node_cluster, node_kafka_cluster, tmp_path_factory):
    c, k = two_node_cluster, node_kafka_cluster
    logdir = tmp_path_factory.mktemp("operator")
    ns = new_namespace(c, "cluster")
    operator = yaml.safe_dump_all(ha_operator(c))
    topics = {t: f"{t}-{ns}" for t in ("input", "even", "odd")}
    obj = pipeline_obj(k, topics)
    watch = Watch(c, ns, obj["metadata"]["name"])
    logs = {f"broker {n.index}": n.log_path for n in k.nodes}
    r = Run(c, k, ns, obj["metadata"]["name"], obj["spec"]["streamName"], topics, logs, watch, logdir)
    try:
        c.kubectl("apply", "-f", "-", input=operator)
        with explained_run(r):
            wait_for(
                lambda: (ps := operator_pods(c)) and len(ps) == 2 and all(map(pod_ready, ps)),
                READY_S,
                "two operator pods Ready",
            )
            wait_for(lambda: operator_roles(c), 120, "the operator pods peered, one active")
        apply_obj(c, obj, ns)
        watch.start()
        yield r
    finally:
        if watch.ident is not None:
            watch.stop()
        # The operator removes the pipeline's finalizer: it goes after the pipeline's namespace.
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=180s", check=False, timeout=200)
        # Pods a dead node held cannot be confirmed gone by their kubelet.
        c.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)
        c.kubectl(
            "delete",
            "-f",
            "-",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
            input=operator,
            check=False,
            timeout=240,
        )
        c.kubectl("delete", "pods", "--all", "-n", OPERATOR_NS, "--grace-period=0", "--force", check=False)
        k.start()  # every broker back for whoever comes next


def wait_ready(r: Run, what: str, since: float) -> float:
    """Wait for the pipeline's Ready (observed generation); seconds since `since`."""
    wait_for(lambda: pipeline_ready(r.c, r.ns, r.name), READY_S, what, interval=2)
    return time.monotonic() - since


@contextlib.contextmanager
def traffic(r: Run, test: str):
    """A producer adding about RATE records/s into the input (acks=all, idempotent); what it
    had acknowledged goes to r.sent[test]."""
    values = timestamps(MAX_RECORDS, start=STARTS[test])
    feed = BackgroundProducer(r.k.bootstrap, r.topics["input"], values, partitions=PARTITIONS, rate=RATE)
    feed.start()
    try:
        before = r.output_count()
        wait_for(lambda: r.output_count() >= before + ROUTED_AFTER, FLOW_S, "routing under way")
        yield feed
        assert feed.is_alive(), "the producer ran dry: the fault was not under traffic"
    finally:
        feed.stop()
        r.sent[test] = [v.decode() for v in values[: feed.sent]]
    assert not feed.errors, feed.errors[:3]


def routing_on(r: Run, what: str) -> float:
    """Wait until ROUTED_AFTER more records reached the outputs; seconds it took."""
    t0, before = time.monotonic(), r.output_count()
    wait_for(lambda: r.output_count() >= before + ROUTED_AFTER, FLOW_S, what, interval=1)
    return time.monotonic() - t0


def nothing_lost(r: Run, test: str | None = None, isolation: str = "read_uncommitted") -> dict:
    """Every record of the input (up to its end now) in the output its last digit names, and
    the loggers' group caught up with both outputs. Returns counts for the report, with those
    of `test`'s own producer's records (each routed once, or how many more times)."""
    bs = r.k.bootstrap
    ends = end_offsets(bs, r.topics["input"])
    wait_for(
        lambda: covers(committed(bs, r.group, r.topics["input"]), ends),
        CAUGHT_UP_S,
        f"the router's group committing the input up to {ends}",
        interval=2,
    )
    produced = collections.Counter(rec.value.decode() for rec in read_upto(bs, r.topics["input"], ends))
    want = {"even": collections.Counter(), "odd": collections.Counter()}
    for v, n in produced.items():
        want["even" if int(v[-1]) % 2 == 0 else "odd"][v] += n
    got, total, data_ends = {}, 0, {}
    for ch in ("even", "odd"):
        recs = read_upto(bs, r.topics[ch], end_offsets(bs, r.topics[ch]), isolation=isolation)
        data_ends[ch] = {}
        for rec in recs:
            data_ends[ch][rec.partition] = max(data_ends[ch].get(rec.partition, 0), rec.offset + 1)
        total += len(recs)
        values = [rec.value.decode() for rec in recs]
        wrong = [v for v in values if not v.startswith(PREFIXES[ch]) or int(v[-1]) % 2 != (0 if ch == "even" else 1)]
        assert not wrong, f"{len(wrong)} records in {r.topics[ch]} with the wrong prefix or parity: {wrong[:5]}"
        got[ch] = collections.Counter(v[len(PREFIXES[ch]) :] for v in values)
    missing = (want["even"] - got["even"]) + (want["odd"] - got["odd"])
    assert not missing, (
        f"{sum(missing.values())} of {sum(produced.values())} input records not routed, e.g. {sorted(missing)[:5]}"
    )
    for ch in ("even", "odd"):
        # Transactional output ends in a commit marker, and a log sink commits the offset after
        # the last record it logged, never past a marker no record follows (the time source's
        # sticky partitioner leaves a partition without new records for minutes): caught up is
        # then past the last committed record.
        ends = data_ends[ch] if isolation == "read_committed" else None
        caught_up(bs, r.group, r.topics[ch], f"the {ch} logger", ends)
    # Output read to its end now, later than the input's snapshot: it may hold more records than
    # the input counted; a duplicate is a value routed more than once.
    counts = {
        "input": sum(produced.values()),
        "output": total,
        "duplicates": sum(n - 1 for ch in got for n in got[ch].values() if n > 1),
    }
    if test:
        ours = collections.Counter(r.sent[test])
        assert not ours - produced, f"acknowledged records not in {r.topics['input']}: {sorted(ours - produced)[:5]}"
        counts[f"{test} records"] = sum(ours.values())
        counts[f"{test} duplicates"] = sum(
            max(0, got["even" if int(v[-1]) % 2 == 0 else "odd"][v] - n) for v, n in ours.items()
        )
    return counts


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
        recent = [rec for rec in tail_records(r.k.bootstrap, r.topics["input"], 200) if rec.value.decode()[6:8] == year]
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
    """Four apps Ready, the routers one per node, the operator's pods one per node, the topics
    at replication 3 with the spec's settings, and the time source's timestamps routed."""
    r, c, k = run, run.c, run.k
    t0 = time.monotonic()
    with explained_run(r):
        took = wait_ready(r, "the pipeline Ready", t0)
        roles = wait_for(lambda: operator_roles(c), 120, "the operator pods peered, one active")
        assert sorted(n for n, _ in roles.values()) == sorted(n.name for n in NODES), (
            f"one operator pod per node: {roles}"
        )
        ps = list(c.get("pods", "-n", r.ns)["items"])
        assert len(ps) == 3 + ROUTERS and all(map(pod_ready, ps)), [p["metadata"]["name"] for p in ps]
        routers = placement(r)["router"]
        assert routers == sorted(n.name for n in NODES), f"one router per node: {routers}"

        names = [r.topics[t] for t in ("input", "even", "odd")]
        admin = KafkaAdminClient(bootstrap_servers=k.bootstrap)
        try:
            described = {t["name"]: t for t in admin.describe_topics(names)}
        finally:
            admin.close()
        found = topic_configs(k.bootstrap, names, TOPIC_CONFIG)
        for n in names:
            parts = described[n]["partitions"]
            assert len(parts) == PARTITIONS, parts
            assert all(len(p["replica_nodes"]) == CLUSTER_REPLICATION for p in parts), parts
            for key, value in TOPIC_CONFIG.items():
                assert found[n][key]["value"] == str(value), found[n][key]
                assert found[n][key]["config_source"] == "DYNAMIC_TOPIC_CONFIG", found[n][key]  # the topic's own

        wait_for(
            lambda: sum(end_offsets(k.bootstrap, r.topics["input"]).values()) >= 20,
            120,
            "20 timestamps from the time source",
        )
        counts = nothing_lost(r)
        logger_shows_time_source(r)
    rss = {"brokers": sum(k.rss()), "node 0": sum(c.node.rss().values()), "node 1": sum(c.node1.rss().values())}
    per = {
        f"node {i} {proc_}": round(v / 2**20) for i, n in enumerate((c.node, c.node1)) for proc_, v in n.rss().items()
    }
    report(
        record_property,
        "cluster_start",
        f"pipeline Ready {took:.0f}s after this test began; brokers started in {k.start_seconds:.0f}s; "
        f"node 1 started in {c.node1.started_in:.0f}s (images imported in {c.node1.import_seconds:.0f}s); "
        "RSS MiB "
        + ", ".join(f"{n} {v / 2**20:.0f}" for n, v in rss.items())
        + f" (per broker {[round(x / 2**20) for x in k.rss()]}, per process {per}); placement {placement(r)}; "
        f"operator pods {roles}; {counts}",
    )


def test_partition_leaders_killed_under_traffic_lose_nothing(run, record_property):
    """kill -9 the broker leading input partition 0, later the one leading even partition 0,
    each brought back in sync before the next: every record routed, the pipeline Ready."""
    r, k = run, run.k
    events = []
    with explained_run(r), traffic(r, "failover"):
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
            events.append(
                f"{role} leader broker {victim} killed: routing on after {flowing:.1f}s, "
                f"pipeline Ready when looked at {ready:.1f}s after, new leader {new_leader}; meanwhile "
                + r.watch.summary(t0)
            )
    t1 = time.monotonic()
    counts = nothing_lost(r, "failover")
    stall = longest_gap_ms(
        read_upto(k.bootstrap, r.topics["even"], end_offsets(k.bootstrap, r.topics["even"])),
        since_ms=int((time.time() - (time.monotonic() - t0) - 5) * 1000),
    )
    logger_shows_time_source(r)
    report(
        record_property,
        "leader_failover",
        " | ".join(events) + f" | {counts}; longest even-output gap "
        f"since the second kill {stall} ms (test took {t1 - t0:.0f}s from the second kill)",
    )


def test_rolling_restart_of_every_broker_under_traffic_loses_nothing(run, record_property):
    r, k = run, run.k
    with explained_run(r), traffic(r, "roll"):
        t0, wall0 = time.monotonic(), time.time()
        took = k.rolling_restart(wait_timeout=IN_SYNC_S)
        flowing = routing_on(r, "routing on after the roll")
        t1 = time.monotonic()
    ready = wait_ready(r, "the pipeline Ready after the roll", t0)
    counts = nothing_lost(r, "roll")
    since = int(wall0 * 1000)
    gaps = {
        ch: longest_gap_ms(read_upto(k.bootstrap, r.topics[ch], end_offsets(k.bootstrap, r.topics[ch])), since)
        for ch in ("even", "odd")
    }
    both = longest_gap_ms(
        read_upto(k.bootstrap, r.topics["even"], end_offsets(k.bootstrap, r.topics["even"]))
        + read_upto(k.bootstrap, r.topics["odd"], end_offsets(k.bootstrap, r.topics["odd"])),
        since,
    )
    report(
        record_property,
        "rolling_restart",
        f"brokers' stop-to-in-sync s {[round(t, 1) for t in took]}; routing on {flowing:.1f}s after; "
        f"longest stall of the router's output (LogAppendTime gaps) {both} ms, per topic {gaps}; "
        f"pipeline Ready when looked at {ready:.0f}s after the roll began; meanwhile {r.watch.summary(t0, t1)}; "
        f"{counts}",
    )


def test_draining_a_node_moves_every_app_and_the_budget_holds(run, record_property):
    """`kubectl drain tsp-node-0` under traffic: it succeeds, one router pod is always Ready
    (the operator's PodDisruptionBudget), every app ends Ready on tsp-node-1; uncordon after."""
    r, c = run, run.c
    node0, node1 = NODES[0].name, NODES[1].name
    with explained_run(r):
        assert placement(r)["router"] == [node0, node1]
        (on_node0,) = [
            p["metadata"]["name"] for p in component_pods(c, r.ns, r.name, "router") if p["spec"]["nodeName"] == node0
        ]
        pdb = c.get("pdb", "-n", r.ns)["items"]
        assert len(pdb) == 1 and pdb[0]["spec"]["maxUnavailable"] == 1, pdb
        try:
            with traffic(r, "drain"):
                t0 = time.monotonic()
                out = c.kubectl(
                    "drain", node0, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=900s", timeout=960
                )
                drained = time.monotonic() - t0
                ready = wait_ready(r, "the pipeline Ready on tsp-node-1", t0)
                wait_for(
                    lambda: (
                        all(n == [node1] * len(n) for n in placement(r).values())
                        and all(map(pod_ready, c.get("pods", "-n", r.ns)["items"]))
                    ),
                    READY_S,
                    "every app's pods Ready on tsp-node-1",
                )
                flowing = routing_on(r, "routing on tsp-node-1")
                t1 = time.monotonic()
        finally:
            c.kubectl("uncordon", node0, check=False)
        during = r.watch.between(t0, t1)
        assert during and min(s["routers_ready"] for s in during) >= 1, (
            f"both router pods down at once: {[(round(s['t'] - t0), s['routers_ready']) for s in during]}"
        )
        assert not [p for p in component_pods(c, r.ns, r.name, "router") if p["metadata"]["name"] == on_node0], (
            f"the router pod that ran on {node0} was evicted"
        )
        counts = nothing_lost(r, "drain")
        logger_shows_time_source(r)
    held = [ln for ln in (out.stdout + out.stderr).splitlines() if "disruption budget" in ln]
    report(
        record_property,
        "drain",
        f"drain took {drained:.0f}s, pipeline Ready {ready:.0f}s after it began, routing on {flowing:.1f}s "
        f"after; evictions the budget refused: {len(held)} (e.g. {held[:1]}); PDB (healthy, desired, allowed) "
        f"seen {sorted({s['pdb'] for s in during if s['pdb']}, key=str)}; meanwhile {r.watch.summary(t0, t1)}; "
        f"placement {placement(r)}; {counts}",
    )


def test_a_dead_node_s_apps_and_operator_come_back_on_the_other_node(run, record_property):
    """tsp-node-1 (which holds every app's pod after the drain, and the active operator
    replica) dies at once: kubelet, containerd and containers kill -9. A spec change (a new
    topic setting) is made at the same moment. The node goes NotReady, its pods are evicted
    and recreated on tsp-node-0, the standby operator on tsp-node-0 takes over once the dead
    replica's peering entry lapses and applies the change, the pipeline is Ready again,
    nothing lost (the records routed twice are counted). Then the machine comes back: node 1
    cleaned up (nothing of the crash left) and started again."""
    r, c, k = run, run.c, run.k
    node0, node1 = NODES[0].name, NODES[1].name
    n1 = c.node1
    names = [r.topics[t] for t in ("input", "even", "odd")]

    def node_ready(name):
        conds = {x["type"]: x["status"] for x in c.get("node", name)["status"]["conditions"]}
        return conds.get("Ready") == "True"

    with explained_run(r):
        wait_for(lambda: all(n == [node1] * len(n) for n in placement(r).values()), 60, "every pod on tsp-node-1")
        pod = component_pods(c, r.ns, r.name, "router")[0]
        tolerations = {t["key"]: t.get("tolerationSeconds") for t in pod["spec"].get("tolerations", [])}
        # The drain put both operator replicas on tsp-node-1: one moves back, the active one stays.
        active, standby, deleted = put_active_operator_on(c, node1, node0)
        resumed = operator_log(c, standby).count(RESUMED)
        change = {key: str(v) for key, v in FAILOVER_CONFIG.items()}
        with traffic(r, "loss"):
            sandboxes, workdir = n1.sandbox_ids(), n1.workdir
            t0 = time.monotonic()
            n1.crash()
            c.kubectl(
                "patch",
                "tsp",
                r.name,
                "-n",
                r.ns,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"kafka": {"topics": {"config": FAILOVER_CONFIG}}}}),
            )
            seen: dict[str, float] = {}

            def crash_seen():
                if "not_ready" not in seen and not node_ready(node1):
                    seen["not_ready"] = time.monotonic() - t0
                if "applied" not in seen:
                    got = topic_configs(k.bootstrap, names, change)
                    if all(got[n][key]["value"] == v for n in names for key, v in change.items()):
                        seen["applied"] = time.monotonic() - t0
                return len(seen) == 2

            wait_for(crash_seen, 300, f"tsp-node-1 NotReady and {change} on the topics (the standby operator)")
            wait_for(
                lambda: (
                    all(n == [node0] * len(n) for n in placement(r).values())
                    and sum(map(len, placement(r).values())) == 3 + ROUTERS
                ),
                READY_S,
                "every app's pods recreated on tsp-node-0",
            )
            moved = time.monotonic() - t0
            ready = wait_ready(r, "the pipeline Ready on tsp-node-0", t0)
            flowing = routing_on(r, "routing on tsp-node-0")
            t1 = time.monotonic()
        summary = r.watch.summary(t0, t1)
        # The standby's kopf resumed: it, not a replica coming back, applied the change.
        assert operator_log(c, standby).count(RESUMED) > resumed, operator_log(c, standby)[-3000:]
        counts = nothing_lost(r, "loss")
        logger_shows_time_source(r)

        # The dead machine's remains: stop() removes everything of the crash. The dead operator
        # pod goes first (its 300 s tolerations have not run out; its replacement goes to
        # tsp-node-0, and node 1, back, has no operator image to restart it with).
        c.kubectl("delete", "pod", "-n", OPERATOR_NS, active, "--grace-period=0", "--force")
        t2 = time.monotonic()
        n1.stop()
        assert node_leftovers(NODES[1], workdir, sandboxes) == []
        assert n1.teardown_notes == []
        stopped = time.monotonic() - t2
        # It comes back (the node tests that follow use it, with the pause and router images
        # only: quicker); the pods it held are gone for good.
        n1.images = ("pause", "router")
        n1.start()
        wait_for(lambda: node_ready(node1), 120, "tsp-node-1 Ready again")
        back = time.monotonic() - t2
        wait_for(
            lambda: not [p for p in c.get("pods", "-n", r.ns)["items"] if p["spec"].get("nodeName") == node1],
            180,
            "the dead node's pods removed once its kubelet is back",
        )
        restored = time.monotonic() - t2
    report(
        record_property,
        "node_loss",
        f"tolerationSeconds {tolerations}; NotReady {seen['not_ready']:.0f}s after the kill, pods on tsp-node-0 "
        f"{moved:.0f}s, pipeline Ready {ready:.0f}s, routing on {flowing:.1f}s after that; meanwhile {summary}; "
        f"{counts}; node 1 cleaned up in {stopped:.0f}s, Ready {back:.0f}s, its pods gone {restored:.0f}s "
        f"after (started in {n1.started_in:.0f}s)",
    )
    report(record_property, "node_loss_duplicates", str(counts["loss duplicates"]))
    ops = operator_pods(c)
    report(
        record_property,
        "operator_failover",
        f"active operator {active} on {node1}, standby {standby} on {node0} ({deleted} pods deleted to place "
        f"them); the spec change made at the crash on the topics {seen['applied']:.0f}s after it (peering "
        f"lifetime 60 s); operator pods now {[(p['metadata']['name'], p['spec'].get('nodeName')) for p in ops]}",
    )


def routers_in_mode(r: Run, guarantee: str) -> bool:
    """Every router pod (terminating ones too) runs `guarantee`, ROUTERS of them, all Ready."""
    ps = component_pods(r.c, r.ns, r.name, "router")
    return (
        len(ps) == ROUTERS
        and all(map(pod_ready, ps))
        and all(f"={guarantee}" in json.dumps(p["spec"]["containers"]) for p in ps)
    )


def test_exactly_once_leader_kill_loses_nothing_and_routes_nothing_twice(run, record_property):
    """The router switched to exactly-once (spec.router.processingGuarantee), then kill -9 of
    the broker leading the input partition under traffic: read with read_committed, every
    record of the test's producer is in its output once, and nothing of the input is lost.
    Last: the broker stays down (two of three replicas take the writes; the module's teardown
    starts it), which spares the wait for it to catch up."""
    r, k = run, run.k
    with explained_run(r):
        t0 = time.monotonic()
        r.c.kubectl(
            "patch",
            "tsp",
            r.name,
            "-n",
            r.ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"router": {"processingGuarantee": "exactly_once"}}}),
        )
        wait_for(lambda: routers_in_mode(r, "exactly-once"), READY_S, "every router pod exactly-once and Ready")
        rolled = time.monotonic() - t0
        with traffic(r, "eos"):
            victim = wait_for(lambda: {k.leader(r.topics["input"], 0)} - {None}, 60, "the input's leader").pop()
            t1 = time.monotonic()
            k.kill(victim)
            flowing = routing_on(r, f"{ROUTED_AFTER} more records routed with broker {victim} (input leader) dead")
            ready = wait_ready(r, "the pipeline Ready with a broker dead", t1)
            t2 = time.monotonic()
        summary = r.watch.summary(t1, t2)
        counts = nothing_lost(r, "eos", isolation="read_committed")
    assert counts["eos duplicates"] == 0, f"records routed twice under exactly-once: {counts}"
    report(
        record_property,
        "exactly_once_leader_kill",
        f"routers exactly-once {rolled:.0f}s after the change; broker {victim} killed: routing on after "
        f"{flowing:.1f}s, pipeline Ready when looked at {ready:.1f}s after; meanwhile {summary}; {counts}",
    )
