"""tsrouter.kafka_private.fastsend: whole record batches into kafka-python's producer (private API).

The unit tests compare its bytes with kafka-python's own encoder; the broker tests send
through a real KafkaProducer and read the records back, committed and aborted in
transactions, and see a failed batch reported as failed. An upgrade of kafka-python
that changes what fastsend relies on fails here (and the router's start-up check falls back to send()).
"""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition
from localinfra.proc import wait_for
from routerproc import new_topic, unique

from tsrouter import wire
from tsrouter.kafka_private import fastsend
from tsrouter.routing import output_headers

DEFAULT = output_headers(None)
DEFAULT_BLOCK = wire.encode_headers(DEFAULT)
TS = 1_700_000_000_123


def records(n: int) -> list:
    out = []
    for i in range(n):
        key = None if i % 3 else f"k{i}".encode()
        headers = None if i % 4 else [("trace-id", str(i).encode()), ("empty", None), ("ü", b"x" * (i % 300))]
        out.append((key, f"Even timestamp:11/30/26 13:{i % 60:02d}:0{i % 10}".encode() * (1 + i % 7), headers))
    return out


def reference(recs, batch_size: int) -> list[bytes]:
    """The same records through kafka-python's own builder, split where it splits them."""
    out, b = [], MemoryRecordsBuilder(2, 0, batch_size)
    for key, value, headers in recs:
        hdrs = DEFAULT if headers is None else headers
        if b.append(TS, key, value, hdrs) is None:
            b.close()
            out.append(bytes(b.buffer()))
            b = MemoryRecordsBuilder(2, 0, batch_size)
            assert b.append(TS, key, value, hdrs) is not None
    b.close()
    return out + [bytes(b.buffer())]


@pytest.mark.parametrize("batch_size", [1024, 16384, 512 * 1024])
def test_batches_are_byte_for_byte_what_kafka_python_builds(batch_size):
    recs = records(3000)
    ours = fastsend.build_batches(recs, DEFAULT_BLOCK, batch_size, 0, TS)
    for b in ours:
        b.close()
    assert [bytes(b.buffer()) for b in ours] == reference(recs, batch_size)


@pytest.mark.parametrize("batch_size", [1024, 16384, 512 * 1024])
def test_whole_records_are_rebatched_byte_for_byte_as_kafka_python_would(batch_size):
    # What tsrouter.rawplan hands over: each record encoded as if one batch held them all.
    recs = records(3000)
    whole = [
        wire.encode_record(i, wire.encode_tail(k, v, DEFAULT_BLOCK if h is None else wire.encode_headers(h)))
        for i, (k, v, h) in enumerate(recs)
    ]
    ours = fastsend.build_from_records(whole, batch_size, 0, TS)
    for b in ours:
        b.close()
    assert [bytes(b.buffer()) for b in ours] == reference(recs, batch_size)


def test_decoded_records_are_the_input():
    recs = records(500)
    (b,) = fastsend.build_batches(recs, DEFAULT_BLOCK, 512 * 1024, 0, TS)
    b.close()
    got = [r for batch in MemoryRecords(b.buffer()) for r in batch]
    assert [(r.offset, r.key, r.value, r.timestamp) for r in got] == [
        (i, k, v, TS) for i, (k, v, _h) in enumerate(recs)
    ]
    assert [list(r.headers) for r in got] == [DEFAULT if h is None else h for _k, _v, h in recs]


def test_refuses_a_producer_without_the_internals_it_uses():
    class NotAProducer:
        pass

    with pytest.raises(RuntimeError, match="internals changed"):
        fastsend.check(NotAProducer())


# ---------------------------------------------------------------- on the real broker


def _read(bootstrap: str, topic: str, partitions: int, expected: int, isolation_level="read_uncommitted") -> list:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level, fetch_max_wait_ms=100
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning()
    out: list = []
    try:

        def done():
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
            return len(out) >= expected and all(c.position(tp) >= c.end_offsets([tp])[tp] for tp in tps)

        wait_for(done, 60, f"{expected} records in {topic}")
        return out
    finally:
        c.close()


@pytest.mark.kafka
def test_round_trip_through_the_broker(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, "fastsend", 2)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    try:
        sender = fastsend.FastSender(p, 4096)  # small: many batches per call
        recs = records(2000)
        acks = []
        for part in (0, 1):
            acks += sender.send(TopicPartition(topic, part), recs, DEFAULT_BLOCK)
        assert len(acks) > 2
        p.flush(timeout=30)
        assert all(a.is_done and a.succeeded() and a.exception is None for a in acks)
        assert sum(a.records for a in acks) == 2 * len(recs)
    finally:
        p.close()
    got = _read(kafka_bootstrap, topic, 2, 2 * len(recs))
    for part in (0, 1):
        mine = sorted((r for r in got if r.partition == part), key=lambda r: r.offset)
        assert [(r.key, r.value, list(r.headers)) for r in mine] == [
            (k, v, DEFAULT if h is None else h) for k, v, h in recs
        ]


@pytest.mark.kafka
def test_transactions_commit_and_abort_what_it_sends(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, "fastsend")
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique("fastsend"))
    tp = TopicPartition(topic, 0)
    try:
        p.init_transactions()
        sender = fastsend.FastSender(p, 16384)
        p.begin_transaction()
        aborted = sender.send(tp, [(None, b"aborted-%d" % i, None) for i in range(300)], DEFAULT_BLOCK)
        p.flush(timeout=30)
        p.abort_transaction()
        p.begin_transaction()
        kept = sender.send(tp, [(None, b"kept-%d" % i, None) for i in range(300)], DEFAULT_BLOCK)
        p.commit_transaction()
        assert all(a.succeeded() for a in aborted + kept)
    finally:
        p.close()
    got = _read(kafka_bootstrap, topic, 1, 300, isolation_level="read_committed")
    assert [r.value for r in got] == [b"kept-%d" % i for i in range(300)]


@pytest.mark.kafka
def test_a_batch_the_broker_never_takes_is_reported_failed(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, "fastsend")
    p = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        request_timeout_ms=1000,
        delivery_timeout_ms=2000,
        linger_ms=0,
        max_block_ms=2000,
    )
    try:
        sender = fastsend.FastSender(p, 16384)
        p.partitions_for(topic)
        (ack,) = sender.send(TopicPartition(topic, 7), [(None, b"nowhere", None)], DEFAULT_BLOCK)  # no partition 7
        wait_for(lambda: ack.is_done, 60, "the batch expires")
        assert not ack.succeeded()
        assert ack.exception is not None
    finally:
        p.close(timeout=5)
