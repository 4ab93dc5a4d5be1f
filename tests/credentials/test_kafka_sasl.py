"""The Kafka harness's SASL_PLAINTEXT listener: PLAIN and SCRAM work, wrong passwords don't."""

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError as ClientError
from localinfra.kafka import SASL_MECHANISMS, sasl_properties, scram_arguments, server_properties


def _props(text):
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_sasl_listener_beside_plaintext_with_users_in_jaas_and_scram():
    users = {"alice": "pw-a", "bob": "pw-b"}
    props = _props(
        server_properties(broker_port=1, controller_port=2, data_dir="/d", sasl=True, sasl_port=3, sasl_users=users)
    )
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2,SASL_PLAINTEXT://127.0.0.1:3")
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:3"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # broker/controller traffic stays plain
    assert "SASL_PLAINTEXT:SASL_PLAINTEXT" in props["listener.security.protocol.map"]
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    plain = props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert 'user_alice="pw-a"' in plain and 'user_bob="pw-b"' in plain
    assert scram_arguments(users).count("--add-scram") == 4
    assert "SCRAM-SHA-512=[name=bob,password=pw-b]" in scram_arguments(users)


def test_sasl_ssl_listener_has_a_pem_keystore_and_the_same_users():
    props = _props(
        server_properties(
            broker_port=1,
            controller_port=2,
            data_dir="/d",
            sasl=True,
            sasl_port=3,
            sasl_users={"alice": "pw-a"},
            tls_port=4,
            tls_keystore="/k.pem",
        )
    )
    assert props["listeners"].endswith(",SASL_SSL://127.0.0.1:4")
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == "/k.pem"
    assert 'user_alice="pw-a"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]


@pytest.mark.parametrize("bad", [{}, {"alice": 'a"b'}, {"al,ice": "x"}, {"alice": "a]b"}])
def test_unquotable_users_are_refused(bad):
    with pytest.raises(ValueError):
        sasl_properties(sasl_port=1, users=bad)


def _client_args(broker, mechanism, password):
    return {
        "bootstrap_servers": broker.sasl_bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "alice",
        "sasl_plain_password": password,
    }


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
def test_produce_and_consume_through_the_sasl_listener(sasl_broker, mechanism):
    args = _client_args(sasl_broker, mechanism, sasl_broker.sasl_users["alice"])
    topic = f"sasl-{mechanism.lower()}-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**args)
    try:
        producer.send(topic, b"through-sasl").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(auto_offset_reset="earliest", **args)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        # Read until the end offset the broker reports (a busy machine's first fetch can
        # take a while): exactly the one record, nothing else.
        end = consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
        got, deadline = [], time.monotonic() + 60
        while len(got) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got += [m.value for m in records]
        assert got == [b"through-sasl"]
    finally:
        consumer.close()


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_wrong_password_does_not_authenticate(sasl_broker, mechanism):
    with pytest.raises(ClientError):
        producer = KafkaProducer(
            **_client_args(sasl_broker, mechanism, "wrong-password"), bootstrap_timeout_ms=4000, max_block_ms=4000
        )
        try:
            producer.send("never", b"x").get(timeout=10)
        finally:
            producer.close()


@pytest.mark.kafka
def test_plaintext_listener_still_open_beside_sasl(sasl_broker):
    producer = KafkaProducer(bootstrap_servers=sasl_broker.bootstrap)
    try:
        producer.send(f"plain-{uuid.uuid4().hex[:8]}", b"x").get(timeout=30)
    finally:
        producer.close()


@pytest.mark.kafka
def test_sasl_ssl_listener_with_the_throwaway_ca(sasl_broker):
    args = {
        "bootstrap_servers": sasl_broker.tls_bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(sasl_broker.ca_file),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bob",
        "sasl_plain_password": sasl_broker.sasl_users["bob"],
    }
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**args)
    try:
        producer.send(topic, b"through-tls").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **args)
    try:
        assert [m.value for m in consumer] == [b"through-tls"]
    finally:
        consumer.close()
