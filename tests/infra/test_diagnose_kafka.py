"""The Kafka part of a failing end-to-end test's diagnostics, against the real broker:
end offsets, the group's members with what they subscribe and hold, committed offsets."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from localinfra import diagnose
from localinfra.proc import wait_for

pytestmark = pytest.mark.kafka


def test_kafka_state_shows_offsets_members_assignments_and_commits(kafka_bootstrap):
    topic, group = f"diag-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(3):
        producer.send(topic, f"v{i}".encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        wait_for(lambda: sum(len(b) for b in consumer.poll(500).values()) or None, 60, "records")
        consumer.commit()
        text = diagnose.kafka_state(kafka_bootstrap, [topic, f"{topic}-missing"], [group])
    finally:
        consumer.close()
    lines = text.splitlines()
    assert f"topic {topic}: end offsets p0=3" in lines
    assert f"topic {topic}-missing: does not exist" in lines
    assert any(
        ln.startswith(f"group {group}: state=Stable") and f"subscribed ['{topic}'] assigned {topic}[0]" in ln
        for ln in lines
    ), text
    assert f"  committed: {topic}/p0=3" in lines
