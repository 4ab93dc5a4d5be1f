"""The local Kafka harness: pure helpers, then a real broker (marked `kafka`)."""
import time
import uuid

import pytest

from localinfra.kafka import (KafkaBroker, KafkaError, parse_consumer_perf, parse_producer_perf,
                              random_cluster_id, server_properties)


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
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor",
                "share.coordinator.state.topic.min.isr", "min.insync.replicas"):
        assert props[key] == "1", key


def test_server_properties_overrides_win():
    props = _props(server_properties(broker_port=1, controller_port=2, data_dir="/d",
                                     overrides={"auto.create.topics.enable": "false", "x.y": "z"}))
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


def _create_topic(bootstrap, name, partitions):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
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

    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False)


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

    return sum(consumer.committed(TopicPartition(topic, p)) or 0
               for p in consumer.partitions_for_topic(topic))


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
