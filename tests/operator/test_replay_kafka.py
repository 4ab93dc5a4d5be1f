"""The Kafka half of an offset reset (kafka_admin.py) against the real broker: what a
reset is planned from (log start and end, committed offsets, offsets by time, the
group's members and what they hold) and the offsets it writes."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from localinfra.proc import wait_for

from tspipe.kafka_admin import TopicAdmin

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"replay-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, 2, 1)])
    yield name
    admin.delete_topics([name])
    admin.close()


def produce_at(bootstrap, topic, partition, stamps_ms):
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for ms in stamps_ms:
        producer.send(topic, b"11/27/26 00:00:00", partition=partition, timestamp_ms=ms)
    producer.flush()
    producer.close()


def commit(bootstrap, topic, group, offsets):
    """Commit as a member of `group` would (join, get the partitions, commit, leave)."""
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    deadline = time.monotonic() + 60
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(500)
    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
    consumer.close()


def test_reset_state_and_commit(kafka_bootstrap, topic):
    now = int(time.time() * 1000)
    produce_at(kafka_bootstrap, topic, 0, [now - 60_000 + i * 1000 for i in range(10)])  # one a second, a minute ago
    produce_at(kafka_bootstrap, topic, 1, [now - 60_000])
    group = f"g-{uuid.uuid4().hex[:8]}"
    commit(kafka_bootstrap, topic, group, {0: 7})
    admin = TopicAdmin(10)

    parts, members, txns = admin.reset_state((kafka_bootstrap,), group, topic, now - 55_000)
    assert members == [] and txns == []
    by = {s.partition: s for s in parts}
    assert (by[0].start, by[0].end, by[0].committed, by[0].at, by[0].first_time) == (0, 10, 7, 5, now - 60_000)
    assert (by[1].start, by[1].end, by[1].committed, by[1].at) == (0, 1, None, None)  # nothing after the time

    assert admin.commit_offsets((kafka_bootstrap,), group, topic, {0: 2, 1: 1}) == {}
    parts, _, _ = admin.reset_state((kafka_bootstrap,), group, topic, None)
    assert {s.partition: s.committed for s in parts} == {0: 2, 1: 1}
    assert admin.reset_state((kafka_bootstrap,), group, "no-such-topic", None)[0] is None


def test_a_member_is_seen_with_its_partitions_and_the_broker_refuses_offsets_for_its_group(kafka_bootstrap, topic):
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, client_id="someone-else", enable_auto_commit=False
    )
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(500)
        admin = TopicAdmin(10)

        def seen():
            consumer.poll(100)  # stay in the group (a rebalance under load may still be settling)
            members = admin.reset_state((kafka_bootstrap,), group, topic, None)[1]
            return [(m.client_id, m.partitions) for m in members] == [("someone-else", (0, 1))]

        wait_for(seen, 60, "the member and its partitions")
        refused = admin.commit_offsets((kafka_bootstrap,), group, topic, {0: 0})
        assert refused and 0 in refused, refused
    finally:
        consumer.close()


def test_an_open_transaction_on_an_output_is_seen_until_it_ends(kafka_bootstrap, topic):
    # What an exactly-once router killed mid-transaction leaves on its outputs.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"t-{uuid.uuid4().hex[:8]}")
    admin = TopicAdmin(10)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, b"11/27/26 00:00:01", partition=1).get(30)
        _, _, txns = admin.reset_state((kafka_bootstrap,), "g-none", topic, None, (topic,))
        assert txns == [f"{topic}-1"]
        producer.abort_transaction()
        # The coordinator writes the abort markers after it answered: gone within moments.
        wait_for(
            lambda: admin.reset_state((kafka_bootstrap,), "g-none", topic, None, (topic,))[2] == [],
            30,
            "the transaction's end seen",
        )
    finally:
        producer.close()


def test_a_time_before_a_trimmed_log_start_is_refused_a_later_one_is_not(kafka_bootstrap, topic):
    from tspipe.replay import BEFORE_LOG_START, parse_reset, plan

    now = int(time.time() * 1000)
    produce_at(kafka_bootstrap, topic, 0, [now - 600_000 + i * 1000 for i in range(10)])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(topic, 0): 5})  # what retention does to old segments
    finally:
        admin.close()

    def iso(ms):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

    before, after = now - 600_000, now - 600_000 + 7_000  # the first deleted record; the 8th record
    for at, refused in ((before, True), (after, False)):
        r = parse_reset(iso(at))
        parts, _, _ = TopicAdmin(10).reset_state((kafka_bootstrap,), "g-none", topic, r.at_ms)
        p = plan(r, topic, parts, int(time.time() * 1000))
        if refused:
            assert p.reason == BEFORE_LOG_START and "partition 0" in p.message and "offset 5" in p.message, p
        else:
            assert not p.refused and p.moves[0].after == 7, p
