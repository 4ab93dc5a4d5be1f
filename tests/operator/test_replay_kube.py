"""Replay on the real control plane and the real broker: `tspipe.io/reset-offsets` sets
the router group's committed offsets on the input topic (to the log start, to a time,
to explicit offsets) with the router stopped around it, and records what it did; a
request the broker's state refuses changes nothing.

kwok's router pods consume nothing, so the test makes the group's state itself: it
commits offsets as the group (what the router does) and, for the refusal, keeps a
consumer of its own in the group."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from kubehelpers import conditions, settled, wait_for
from samples import SAMPLE_NAME as NAME
from samples import sample_pipeline

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

PARTITIONS = 2
ANNOTATION = "tspipe.io/reset-offsets"


class ReplicaWatch:
    """`kubectl get deployment -w`: every spec.replicas the router's Deployment had (a
    poll could miss a short stop)."""

    def __init__(self, cp, namespace: str, name: str):
        argv = [
            str(cp._tspkube()),
            "kubectl",
            "--kubeconfig",
            cp.kubeconfig,
            "-n",
            namespace,
            "get",
            "deployment",
            name,
            "-w",
            "-o",
            'jsonpath={.spec.replicas}{"\\n"}',
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cp._env())
        self.seen: list[int] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip():
                self.seen.append(int(line))

    def changes(self) -> list[int]:
        """The counts in order, each once per change (every status update repeats the count)."""
        return [v for i, v in enumerate(self.seen) if i == 0 or self.seen[i - 1] != v]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def watch(control_plane, namespace):
    started = []

    def make(name):
        w = ReplicaWatch(control_plane, namespace, name)
        started.append(w)
        wait_for(lambda: w.seen, 60, "the watch's first line")
        return w

    yield make
    for w in started:
        w.stop()


def produce_stamped(bootstrap, topic, partition, stamps_ms):
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for ms in stamps_ms:
        producer.send(topic, f"11/27/26 00:00:{ms // 1000 % 60:02d}".encode(), partition=partition, timestamp_ms=ms)
    producer.flush()
    producer.close()


def join(bootstrap, topic, group, client_id="test-consumer") -> KafkaConsumer:
    """A member of `group` holding the partitions of `topic`."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, client_id=client_id, enable_auto_commit=False
    )
    deadline = time.monotonic() + 60
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(500)
    assert consumer.assignment(), "no partitions assigned"
    return consumer


def commit_as_group(bootstrap, topic, group, offsets: dict[int, int]) -> None:
    """Commit as the router's group does (join, commit, leave)."""
    consumer = join(bootstrap, topic, group)
    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
    consumer.close()


def committed(bootstrap, topic, group) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        got = admin.list_group_offsets({group: [TopicPartition(topic, p) for p in range(PARTITIONS)]})[group]
    finally:
        admin.close()
    return {tp.partition: o.offset for tp, o in got.items() if o.offset >= 0}


def events(k, reason):
    items = k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
    return [e for e in items if e["reason"] == reason]


def start(k, operator_factory, bootstrap) -> tuple[str, str]:
    """A pipeline on its own topics, Running; returns (its group, its input topic)."""
    tag = uuid.uuid4().hex[:8]
    obj = sample_pipeline()
    group, topic = f"s{tag}", f"in-{tag}"
    obj["spec"]["streamName"] = group
    obj["spec"]["kafka"] = {
        "brokers": [bootstrap],
        "topics": {"input": topic, "even": f"even-{tag}", "odd": f"odd-{tag}", "partitions": PARTITIONS},
    }
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    return group, topic


def reset(k, value, state, timeout=120):
    """Annotate, and wait until the operator consumed it with `state`; the pipeline then."""
    k("annotate", "tsp", NAME, f"{ANNOTATION}={value}", "--overwrite")

    def done():
        obj = k.json("tsp", NAME)
        st = (obj.get("status") or {}).get("offsetReset") or {}
        gone = ANNOTATION not in (obj["metadata"].get("annotations") or {})
        return obj if gone and st.get("request") == value and st.get("state") == state else None

    return wait_for(done, timeout, f"{ANNOTATION}={value} {state}")


def test_reset_to_earliest_to_a_time_and_to_offsets_with_the_router_stopped(
    k, operator_factory, kafka_bootstrap, watch
):
    group, topic = start(k, operator_factory, kafka_bootstrap)
    now = int(time.time() * 1000)
    old, new = now - 600_000, now - 60_000  # ten records ten minutes ago, then ten a minute ago
    for p in range(PARTITIONS):
        produce_stamped(kafka_bootstrap, topic, p, [old + i for i in range(10)] + [new + i for i in range(10)])
    commit_as_group(kafka_bootstrap, topic, group, {0: 20, 1: 15})
    replicas = watch(f"{NAME}-router")

    # 1. earliest: both partitions from their log start.
    obj = reset(k, "earliest", "Completed")
    assert committed(kafka_bootstrap, topic, group) == {0: 0, 1: 0}
    entry = obj["status"]["history"][-1]["offsetReset"]
    assert entry == {
        "request": "earliest",
        "group": group,
        "topic": topic,
        "partitions": [{"partition": 0, "from": 20, "to": 0}, {"partition": 1, "from": 15, "to": 0}],
    }
    wait_for(settled(k, "Running"), 120, "Running again")
    assert k.json("deployment", f"{NAME}-router")["spec"]["replicas"] == 1
    assert replicas.changes() == [1, 0, 1], "stopped, then started again"
    cond = conditions(obj)["OffsetReset"]
    assert (cond["status"], cond["reason"]) == ("False", "Completed")
    (event,) = events(k, "OffsetsReset")
    assert event["type"] == "Normal" and "partition 0 20 -> 0, partition 1 15 -> 0" in event["message"]

    # 2. A time between the two batches: from the first of the newer ten.
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now - 300_000) / 1000))
    obj = reset(k, at, "Completed")
    assert committed(kafka_bootstrap, topic, group) == {0: 10, 1: 10}
    assert obj["status"]["history"][-1]["offsetReset"]["partitions"] == [
        {"partition": 0, "from": 0, "to": 10},
        {"partition": 1, "from": 0, "to": 10},
    ]

    # 3. Explicit offsets: partition 1 only; partition 0 keeps its offset.
    reset(k, "1:17", "Completed")
    assert committed(kafka_bootstrap, topic, group) == {0: 10, 1: 17}
    assert replicas.changes() == [1, 0, 1, 0, 1, 0, 1], "stopped and started again for each reset"
    assert len(events(k, "ResettingOffsets")) == 3 and len(events(k, "OffsetsReset")) == 3
    wait_for(settled(k, "Running"), 120, "Running at the end")
    assert k("get", "deployment", f"{NAME}-router", "-o", "jsonpath={.spec.replicas}").stdout == "1"


def test_refused_resets_change_nothing(k, operator_factory, kafka_bootstrap, watch):
    group, topic = start(k, operator_factory, kafka_bootstrap)
    for p in range(PARTITIONS):
        produce_stamped(kafka_bootstrap, topic, p, [int(time.time() * 1000)] * 5)
    commit_as_group(kafka_bootstrap, topic, group, {0: 5, 1: 3})
    replicas = watch(f"{NAME}-router")

    # A consumer outside the pipeline in the router's group.
    foreign = join(kafka_bootstrap, topic, group, client_id="someone-elses-consumer")
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [foreign.poll(200) for _ in iter(stop.is_set, True)], daemon=True)
    poller.start()
    try:
        obj = reset(k, "earliest", "Rejected")
        cond = conditions(obj)["OffsetReset"]
        assert (cond["status"], cond["reason"]) == ("False", "GroupHasForeignMembers")
        assert "someone-elses-consumer" in cond["message"] and "partition(s) 0, 1 of " + topic in cond["message"]
        (warning,) = events(k, "OffsetResetRejected")
        assert warning["type"] == "Warning" and "someone-elses-consumer" in warning["message"]
    finally:
        stop.set()
        poller.join(10)
        foreign.close()
    assert committed(kafka_bootstrap, topic, group) == {0: 5, 1: 3}

    # An offset past the end, and a malformed value: refused, naming the partition / the problem.
    obj = reset(k, "0:2,1:99", "Rejected")
    cond = conditions(obj)["OffsetReset"]
    assert (
        cond["reason"] == "OffsetOutOfRange" and f"partition 1 of {topic}: offset 99 is outside 0..5" in cond["message"]
    )
    obj = reset(k, "yesterday", "Rejected")
    assert conditions(obj)["OffsetReset"]["reason"] == "MalformedValue"
    assert committed(kafka_bootstrap, topic, group) == {0: 5, 1: 3}
    assert replicas.changes() == [1], "the router was never stopped"
    assert not any("offsetReset" in h for h in obj["status"]["history"])
    assert len(events(k, "OffsetResetRejected")) == 3
