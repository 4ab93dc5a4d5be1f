"""tsrouter.kafka_private: the one start-up check of kafka-python's private API, and the
fallback to the public path it decides (the router logs what is missing; nothing is swallowed).

No broker: clients pointed at a closed port with a fixed api_version never connect, and
kafka-python is "changed" by patching what the check reads. tests/router/test_router_kafka.py
runs every combination of the switches, and the fallback, on the real broker.
"""

from __future__ import annotations

import logging

import kafka
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.producer.transaction_manager import TransactionalRequestResult
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import TopicPartition

from tsrouter import kafka_private
from tsrouter.kafka_private import (
    BATCH_SEND,
    BOUNDED_TXN,
    CONNECTION_PROBE,
    FAST_FETCH,
    FIXES,
    Fence,
    fastfetch,
    fastsend,
    fixes,
    probe,
    txn,
)

NOWHERE = "127.0.0.1:9"  # nothing listens there: the clients below never connect


@pytest.fixture
def clients():
    p = KafkaProducer(bootstrap_servers=NOWHERE, api_version=(3, 0))
    c = KafkaConsumer(bootstrap_servers=NOWHERE, api_version=(3, 0))
    try:
        yield p, c
    finally:
        c.close()
        p.close(timeout=1)


def warnings(caplog) -> str:
    """The router's warnings (kafka-python's own, about clients that cannot connect, aside)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "tsrouter")


def test_the_pinned_kafka_python_passes_every_part(clients):
    assert kafka.__version__ == kafka_private.PINNED_KAFKA_PYTHON
    every_part_passes = {FAST_FETCH: [], BATCH_SEND: [], CONNECTION_PROBE: [], BOUNDED_TXN: [], FIXES: []}
    assert kafka_private.check() == every_part_passes
    assert kafka_private.check(*clients) == every_part_passes


def test_all_private_paths_on_when_the_check_passes(clients, caplog):
    caplog.set_level(logging.INFO, "tsrouter")
    fence = Fence(fast_fetch=True, batch_send=True, transactional=True)
    producer, consumer = clients
    sender = fence.attach(producer, consumer, 65536, "in")
    assert (fence.fast_fetch, fence.batch_send, fence.private_probe) == (True, True, True)
    assert isinstance(sender, fastsend.FastSender)
    assert consumer._fetcher.PartitionRecords is fastfetch.ChunkRecords
    assert isinstance(fence.connected, probe.PrivateProbe) and fence.connected() is False  # never connected
    assert warnings(caplog) == ""
    assert (
        "private API in use: tsrouter.fast-fetch, tsrouter.batch-send, connection probe, bounded transactional "
        "calls, kafka-python fixes" in caplog.text
    )


@pytest.mark.parametrize("fast_fetch,batch_send", [(False, False), (True, False), (False, True)])
def test_the_switches_turn_each_fast_path_off(clients, fast_fetch, batch_send):
    fence = Fence(fast_fetch=fast_fetch, batch_send=batch_send)
    producer, consumer = clients
    sender = fence.attach(producer, consumer, 65536, "in")
    assert (fence.fast_fetch, sender is not None) == (fast_fetch, batch_send)
    assert (consumer._fetcher.PartitionRecords is fastfetch.ChunkRecords) == fast_fetch


def test_another_kafka_python_takes_every_public_path_and_says_why(clients, monkeypatch, caplog):
    monkeypatch.setattr(kafka, "__version__", "3.0.13")
    found = kafka_private.check()
    for part in (FAST_FETCH, BATCH_SEND, CONNECTION_PROBE, BOUNDED_TXN):
        assert found[part] == ["kafka-python 3.0.13 installed, 3.0.12 expected"], part
    assert found[FIXES] == []  # the fixes are judged by the code they replace
    fence = Fence(fast_fetch=True, batch_send=True, transactional=True)
    producer, consumer = clients
    assert fence.attach(producer, consumer, 65536, "in") is None
    assert (fence.fast_fetch, fence.batch_send, fence.private_probe) == (False, False, False)
    assert consumer._fetcher.PartitionRecords is not fastfetch.ChunkRecords
    assert isinstance(fence.connected, probe.PublicProbe)
    said = warnings(caplog)
    assert "tsrouter.fast-fetch uses kafka-python's ConsumerRecords" in said
    assert "tsrouter.batch-send uses KafkaProducer.send() per record" in said
    assert "connection probe uses an end-offset request" in said
    assert "bounded transactional calls uses KafkaProducer's own transactional calls" in said
    assert said.count("3.0.13 installed, 3.0.12 expected") == 4


def test_a_missing_attribute_turns_off_only_the_path_that_needs_it(monkeypatch, caplog):
    monkeypatch.setattr(DefaultRecordBatchBuilder, "__slots__", ("_buffer",))
    assert kafka_private.check()[BATCH_SEND][0] == "DefaultRecordBatchBuilder fields"
    fence = Fence(fast_fetch=True, batch_send=True)
    assert (fence.fast_fetch, fence.batch_send, fence.private_probe) == (True, False, True)
    assert "tsrouter.kafka_private.fastsend relies on (DefaultRecordBatchBuilder fields" in warnings(caplog)


def test_changed_behaviour_is_found_before_any_record_is_read(monkeypatch, caplog):
    # A take() that counts but hands out nothing, and a builder whose batches kafka-python
    # would write otherwise: attributes all present, behaviour not.
    monkeypatch.setattr(fastfetch.ChunkRecords, "take", lambda self, n=None: fastfetch.Taken())
    real_builder = fastsend._builder

    def late(parts, batch_size, compression, ts):
        return real_builder(parts, batch_size, compression, ts + 1)

    monkeypatch.setattr(fastsend, "_builder", late)
    found = kafka_private.check()
    assert found[FAST_FETCH] == [
        "ChunkRecords on PartitionRecords hands out other records or positions than kafka-python's own"
    ]
    assert found[BATCH_SEND] == ["batches built through MemoryRecordsBuilder's fields differ from its own"]
    fence = Fence(fast_fetch=True, batch_send=True)
    assert (fence.fast_fetch, fence.batch_send) == (False, False)
    assert "other records or positions" in warnings(caplog)


def test_a_consumer_without_the_connections_falls_back_to_the_public_probe(clients, caplog):
    producer, consumer = clients
    manager = consumer._client._manager
    conns = manager._conns
    del manager._conns  # an instance attribute: as if kafka-python had renamed it
    try:
        assert kafka_private.check(producer, consumer)[CONNECTION_PROBE] == ["KafkaConsumer._client._manager._conns"]
        fence = Fence(fast_fetch=True, batch_send=True)
        fence.attach(producer, consumer, 65536, "in")
        assert isinstance(fence.connected, probe.PublicProbe)
        assert (fence.fast_fetch, fence.batch_send) == (True, True)
        assert "(KafkaConsumer._client._manager._conns): connection probe uses" in warnings(caplog)
    finally:
        manager._conns = conns


def test_fixes_that_cannot_be_applied_stop_the_router_naming_them(monkeypatch, caplog):
    monkeypatch.setattr(fixes, "_READ_NAMES", fixes._READ_NAMES | {"renamed"})
    assert kafka_private.check()[FIXES] == ["kafka-python's KafkaTCPTransport._read_from_sock changed"]
    fence = Fence(fast_fetch=True, batch_send=True)
    assert "lacks what the router's fixes need" in caplog.text
    with pytest.raises(RuntimeError, match=r"_read_from_sock changed: review tsrouter\.kafka_private\.fixes"):
        fence.install_fixes()


class FakeConsumer:
    def __init__(self, assigned=()):
        self.assigned = set(assigned)
        self.asked: list = []
        self.fail = False

    def assignment(self):
        return self.assigned

    def end_offsets(self, partitions, timeout_ms=None):
        self.asked.append((partitions, timeout_ms))
        if self.fail:
            raise KafkaTimeoutError("no answer")
        return dict.fromkeys(partitions, 0)


def test_the_public_probe_asks_the_broker_now_and_then(caplog):
    now = [100.0]
    c = FakeConsumer()
    up = probe.PublicProbe(c, "in", clock=lambda: now[0])
    assert up() is True and c.asked == [([TopicPartition("in", 0)], probe.PUBLIC_PROBE_TIMEOUT_MS)]
    c.fail = True
    now[0] += probe.PUBLIC_PROBE_INTERVAL_S / 2
    assert up() is True and len(c.asked) == 1  # the last answer stands until the interval is over
    now[0] += probe.PUBLIC_PROBE_INTERVAL_S
    assert up() is False and "broker unreachable: end offset of in-0 not answered" in caplog.text
    c.fail, c.assigned = False, {TopicPartition("in", 3), TopicPartition("in", 1)}
    now[0] += probe.PUBLIC_PROBE_INTERVAL_S
    assert up() is True and c.asked[-1][0] == [TopicPartition("in", 1)]  # a partition it owns


def test_a_transactional_call_that_never_completes_is_given_up_after_its_bound():
    # kafka-python waits on these results with no timeout; Bounded makes the same request
    # and gives up, so the router rebuilds its clients instead of hanging while UP.
    producer = KafkaProducer(bootstrap_servers=NOWHERE, api_version=(3, 0), transactional_id="t-1")
    try:
        assert kafka_private.check(producer)[BOUNDED_TXN] == []
        never = TransactionalRequestResult()  # the sender never answers it
        producer._transaction_manager.begin_abort = lambda: never
        with pytest.raises(KafkaTimeoutError, match="the transaction's abort not done after 0s"):
            txn.Bounded(producer, timeout_s=0.2).abort()
        consumer = KafkaConsumer(bootstrap_servers=NOWHERE, api_version=(3, 0))
        fence = Fence(fast_fetch=True, batch_send=True, transactional=True)
        fence.attach(producer, consumer, 65536, "in")
        assert isinstance(fence.txn, txn.Bounded)
        consumer.close()
    finally:
        producer.close(timeout=1)


def test_a_non_transactional_router_neither_uses_nor_names_the_transactional_internals(clients, caplog):
    caplog.set_level(logging.INFO, "tsrouter")
    fence = Fence(fast_fetch=True, batch_send=True)
    fence.attach(*clients, 65536, "in")
    assert not fence.bounded_txn and fence.txn is None
    assert (
        "private API in use: tsrouter.fast-fetch, tsrouter.batch-send, connection probe, kafka-python fixes\n"
        in caplog.text
    )
