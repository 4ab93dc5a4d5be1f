"""The local Kafka harness: pure helpers, then a real broker (marked `kafka`)."""

import time
import uuid

import pytest
from localinfra.kafka import (
    CLUSTER_MIN_ISR,
    CLUSTER_REPLICATION,
    CLUSTER_SIZE,
    KafkaBroker,
    KafkaError,
    cluster_properties,
    initial_controllers,
    node_id_of,
    parse_consumer_perf,
    parse_producer_perf,
    quorum_servers,
    random_cluster_id,
    server_properties,
)
from localinfra.proc import wait_for

# ---------------------------------------------------------------- pure helpers


def _props(text):
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_server_properties_single_node_on_loopback():
    props = _props(server_properties(broker_port=9092, controller_port=9093, data_dir="/d"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert props["log.dirs"] == "/d"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key


def test_server_properties_overrides_win():
    props = _props(
        server_properties(
            broker_port=1,
            controller_port=2,
            data_dir="/d",
            overrides={"auto.create.topics.enable": "false", "x.y": "z"},
        )
    )
    assert props["auto.create.topics.enable"] == "false"
    assert props["x.y"] == "z"


def test_sasl_needs_its_port_and_users_never_a_silent_plaintext():
    # The SASL listener itself is tested in tests/credentials/test_kafka_sasl.py.
    with pytest.raises(ValueError):
        server_properties(broker_port=1, controller_port=2, data_dir="/d", sasl=True)


def test_random_cluster_id_is_a_kafka_uuid():
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert set(cid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


REPLICATION_KEYS = (
    "default.replication.factor",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "share.coordinator.state.topic.replication.factor",
)
MIN_ISR_KEYS = ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr")

BROKER_PORTS, CONTROLLER_PORTS, POD_PORTS = [9092, 9192, 9292], [9093, 9193, 9293], [9094, 9194, 9294]


def test_quorum_strings_name_every_controller_in_node_order():
    assert quorum_servers(CONTROLLER_PORTS) == "127.0.0.1:9093,127.0.0.1:9193,127.0.0.1:9293"
    dirs = [random_cluster_id() for _ in CONTROLLER_PORTS]
    voters = initial_controllers(CONTROLLER_PORTS, dirs).split(",")
    assert [v.split("@")[0] for v in voters] == ["1", "2", "3"]
    assert voters[1] == f"2@127.0.0.1:9193:{dirs[1]}"
    assert [node_id_of(i) for i in range(CLUSTER_SIZE)] == [1, 2, 3]


@pytest.mark.parametrize(
    "call",
    [
        lambda: quorum_servers([]),
        lambda: initial_controllers([], []),
        lambda: initial_controllers([1, 2, 3], ["a", "b"]),
    ],
    ids=["no-controller", "no-voter", "a-voter-without-directory"],
)
def test_quorum_strings_refuse_a_quorum_that_cannot_form(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("index", range(CLUSTER_SIZE))
def test_cluster_properties_node_i_has_its_listeners_the_whole_quorum_and_replicated_defaults(index):
    props = _props(
        cluster_properties(
            index,
            broker_ports=BROKER_PORTS,
            controller_ports=CONTROLLER_PORTS,
            data_dir=f"/d{index}",
            pod_host="10.245.0.1",
            pod_ports=POD_PORTS,
        )
    )
    b, c, pod = BROKER_PORTS[index], CONTROLLER_PORTS[index], POD_PORTS[index]
    assert props["node.id"] == str(index + 1)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c},PODS://10.245.0.1:{pod}"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{b},PODS://10.245.0.1:{pod}"
    assert props["controller.quorum.bootstrap.servers"] == quorum_servers(CONTROLLER_PORTS)
    assert props["log.dirs"] == f"/d{index}"
    assert CLUSTER_MIN_ISR < CLUSTER_REPLICATION == CLUSTER_SIZE  # one broker may be down
    for key in REPLICATION_KEYS:
        assert props[key] == str(CLUSTER_REPLICATION), key
    for key in MIN_ISR_KEYS:
        assert props[key] == str(CLUSTER_MIN_ISR), key


def test_cluster_properties_without_pods_and_with_overrides():
    props = _props(
        cluster_properties(
            0,
            broker_ports=BROKER_PORTS,
            controller_ports=CONTROLLER_PORTS,
            data_dir="/d",
            overrides={"min.insync.replicas": "3"},
        )
    )
    assert "PODS" not in props["listeners"] and "PODS" not in props["listener.security.protocol.map"]
    assert props["min.insync.replicas"] == "3"
    assert props["transaction.state.log.min.isr"] == str(CLUSTER_MIN_ISR)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"broker_ports": BROKER_PORTS, "controller_ports": CONTROLLER_PORTS[:2]},
        {"broker_ports": BROKER_PORTS, "controller_ports": CONTROLLER_PORTS, "pod_host": "10.245.0.1"},
        {
            "broker_ports": BROKER_PORTS,
            "controller_ports": CONTROLLER_PORTS,
            "pod_host": "10.245.0.1",
            "pod_ports": POD_PORTS[:1],
        },
    ],
    ids=["a-node-without-controller", "pods-without-ports", "pods-short-of-ports"],
)
def test_cluster_properties_refuse_mismatched_ports(kwargs):
    with pytest.raises(ValueError):
        cluster_properties(0, data_dir="/d", **kwargs)


def test_min_isr_above_replication_is_refused():
    # Every acks=all write would fail with NOT_ENOUGH_REPLICAS: say so at once.
    with pytest.raises(ValueError):
        server_properties(broker_port=1, controller_port=2, data_dir="/d", replication=1, min_isr=2)


PRODUCER_OUTPUT = """\
12961 records sent, 2591.7 records/sec (0.25 MB/sec), 280.4 ms avg latency, 1113.0 ms max latency.
20000 records sent, 11904.761905 records/sec (1.14 MB/sec), 427.46 ms avg latency, 1113.00 ms max latency, 452 ms 50th, 540 ms 95th, 544 ms 99th, 546 ms 99.9th.
"""

CONSUMER_OUTPUT = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-27 22:41:57:388, 2026-11-27 22:41:58:696, 1.9073, 1.4582, 20000, 15290.5199, 1045, 263, 7.2523, 76045.6274
"""


def test_parse_producer_perf_takes_the_final_summary():
    r = parse_producer_perf(PRODUCER_OUTPUT)
    assert r["records"] == 20000
    assert r["records_per_sec"] == pytest.approx(11904.761905)
    assert r["mb_per_sec"] == pytest.approx(1.14)
    assert r["avg_latency_ms"] == pytest.approx(427.46)
    assert (r["p50_latency_ms"], r["p95_latency_ms"], r["p99_latency_ms"], r["p999_latency_ms"]) == (452, 540, 544, 546)


def test_parse_consumer_perf_maps_columns():
    r = parse_consumer_perf(CONSUMER_OUTPUT)
    assert r["records"] == 20000
    assert r["nMsg_sec"] == pytest.approx(15290.5199)
    assert r["MB_sec"] == pytest.approx(1.4582)
    assert r["start_time"] == "2026-11-27 22:41:57:388"


@pytest.mark.parametrize("parse", [parse_producer_perf, parse_consumer_perf])
def test_parsers_refuse_output_without_a_summary(parse):
    with pytest.raises(KafkaError):
        parse("WARNING: Exiting before consuming the expected number of records\n")


# ---------------------------------------------------------------- real broker


def _topic(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create_topic(bootstrap, name, partitions, replication=1):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication)])
    finally:
        admin.close()


def _produce(bootstrap, topic, values):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for v in values:
            producer.send(topic, key=v.encode(), value=v.encode())
        producer.flush(timeout=60)
    finally:
        producer.close()


def _consumer(bootstrap, topic, group):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )


def _poll_until(consumer, want, bound_s=60):
    """Poll until `want` records arrived or the bound passed; returns (values, partitions seen)."""
    got, partitions = [], set()
    deadline = time.monotonic() + bound_s
    while len(got) < want and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            partitions.add(tp.partition)
            got.extend(r.value.decode() for r in records)
    return got, partitions


def _drain_quietly(consumer, polls=6, bound_s=60):
    """Once the consumer owns partitions, poll a few more rounds so anything unexpected
    (duplicates, old records) shows up."""
    extra = []
    deadline = time.monotonic() + bound_s
    while not consumer.assignment() and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            extra.extend(r.value.decode() for r in records)
    assert consumer.assignment(), "consumer was never assigned partitions"
    for _ in range(polls):
        for records in consumer.poll(timeout_ms=500).values():
            extra.extend(r.value.decode() for r in records)
    return extra


def _committed_total(consumer, topic):
    from kafka import TopicPartition

    return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in consumer.partitions_for_topic(topic))


@pytest.mark.kafka
def test_three_partitions_produce_consume_commit(kafka_bootstrap):
    topic, group = _topic("harness"), _topic("group")
    _create_topic(kafka_bootstrap, topic, 3)
    sent = [f"r{i}" for i in range(1000)]
    _produce(kafka_bootstrap, topic, sent)

    consumer = _consumer(kafka_bootstrap, topic, group)
    try:
        got, partitions = _poll_until(consumer, len(sent))
        got += _drain_quietly(consumer, polls=2)
        consumer.commit()
        assert sorted(got) == sorted(sent)
        assert partitions == {0, 1, 2}
        assert _committed_total(consumer, topic) == 1000
    finally:
        consumer.close()


@pytest.mark.kafka
def test_perf_tools_run_against_the_broker(kafka_broker):
    topic = _topic("perf")
    _create_topic(kafka_broker.bootstrap, topic, 3)
    produced = kafka_broker.run_perf_producer(topic, num_records=5000, record_size=100)
    assert produced["records"] == 5000
    assert produced["records_per_sec"] > 0 and produced["p99_latency_ms"] >= produced["p50_latency_ms"]
    consumed = kafka_broker.run_perf_consumer(topic, messages=5000)
    assert consumed["records"] == 5000
    assert consumed["nMsg_sec"] > 0


@pytest.mark.kafka
def test_restart_and_crash_keep_data_and_committed_offsets():
    with KafkaBroker() as broker:
        topic, group = _topic("restart"), _topic("group")
        port = broker.port
        _create_topic(broker.bootstrap, topic, 3)
        first = [f"a{i}" for i in range(1000)]
        _produce(broker.bootstrap, topic, first)
        consumer = _consumer(broker.bootstrap, topic, group)
        try:
            got, _ = _poll_until(consumer, len(first))
            consumer.commit()
        finally:
            consumer.close()
        assert sorted(got) == sorted(first)

        broker.restart()
        assert broker.port == port

        # A new member of the same group gets only what was produced after its commit.
        second = [f"b{i}" for i in range(50)]
        _produce(broker.bootstrap, topic, second)
        consumer = _consumer(broker.bootstrap, topic, group)
        try:
            assert _committed_total(consumer, topic) == 1000
            got, _ = _poll_until(consumer, len(second))
            got += _drain_quietly(consumer)
            consumer.commit()
        finally:
            consumer.close()
        assert sorted(got) == sorted(second)

        # A crash (SIGKILL, no controlled shutdown) loses neither records nor offsets.
        broker.kill()
        assert not broker.running()
        broker.start()
        assert broker.port == port
        consumer = _consumer(broker.bootstrap, topic, group)
        try:
            assert _committed_total(consumer, topic) == 1050
            assert _drain_quietly(consumer) == []
        finally:
            consumer.close()
        reader = _consumer(broker.bootstrap, topic, _topic("fresh"))
        try:
            everything, _ = _poll_until(reader, 1050)
        finally:
            reader.close()
        assert sorted(everything) == sorted(first + second)


# ---------------------------------------------------------------- real cluster


@pytest.mark.kafka
def test_cluster_leader_moves_on_a_crash_and_the_isr_heals_after_a_restart(kafka_cluster, record_property):
    mib = [r >> 20 for r in kafka_cluster.rss()]
    print(f"\ncluster started in {kafka_cluster.start_seconds:.1f}s; brokers' RSS {mib} MiB")
    record_property("cluster_start_s", round(kafka_cluster.start_seconds, 1))
    record_property("broker_rss_mib", mib)
    bootstrap = kafka_cluster.bootstrap
    topic = _topic("cluster")
    _create_topic(bootstrap, topic, 1, replication=CLUSTER_REPLICATION)
    first = [f"a{i}" for i in range(500)]
    _produce(bootstrap, topic, first)
    leader = wait_for(lambda: {kafka_cluster.leader(topic, 0)} - {None}, 30, "a leader").pop()
    assert kafka_cluster.under_replicated() == []

    kafka_cluster.kill(leader)
    try:
        assert not kafka_cluster.nodes[leader].running()
        # The controller fences the crashed node, a replica in sync takes over, and the ISR
        # (2 of 3, still min.insync.replicas) takes acks=all writes.
        wait_for(lambda: {kafka_cluster.leader(topic, 0)} - {None, leader}, 60, "a new leader")
        assert (topic, 0) in kafka_cluster.under_replicated()
        second = [f"b{i}" for i in range(500)]
        _produce(kafka_cluster.bootstrap, topic, second)
    finally:
        kafka_cluster.start(leader)
    kafka_cluster.wait_in_sync(120)
    assert kafka_cluster.leader(topic, 0) is not None
    reader = _consumer(bootstrap, topic, _topic("fresh"))
    try:
        everything, _ = _poll_until(reader, 1000)
    finally:
        reader.close()
    assert sorted(everything) == sorted(first + second)
