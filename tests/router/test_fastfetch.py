"""tsrouter.kafka_private.fastfetch: polled records as chunks, without kafka-python's ConsumerRecords (private API).

The unit tests decode batches built by kafka-python's own encoder and compare with its own
decoder; the broker tests read the same topics through a plain KafkaConsumer and through
one with fastfetch installed (plain, compressed, keys and headers, a seek into the middle
of a compressed batch, transactions committed and aborted under read_committed) and
expect the same records (the chunks decoded) and the same positions, with no poll over
max_poll_records. An upgrade of kafka-python fails here
(and the router's start-up check, tsrouter.kafka_private, falls back to ConsumerRecords).
"""

from __future__ import annotations

import kafka
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.serializer import Deserializer
from kafka.structs import TopicPartition
from localinfra.proc import wait_for
from routerproc import new_topic, unique

from tsrouter import wire
from tsrouter.kafka_private import fastfetch

TS = 1_700_000_000_123
# The records below are stamped in 2023: under the broker's default time retention (7 days)
# its next retention check (30 s after start, then every 5 minutes) deletes them, and a
# consumer reading from offset 1001 gets OFFSET_OUT_OF_RANGE and resets to the end.
KEEP_OLD_RECORDS = {"retention.ms": "-1"}


def sample(n: int) -> list:
    """(timestamp, key, value, headers): null and long keys and values, headers, odd timestamps."""
    out = []
    for i in range(n):
        key = None if i % 3 else f"k{i}".encode() * (1 + i % 50)
        value = None if i % 17 == 5 else f"11/30/26 13:{i % 60:02d}:0{i % 10}".encode() * (1 + i % 9)
        headers = [] if i % 4 else [("trace-id", str(i).encode()), ("empty", None), ("\u00fc", b"x" * (i % 300))]
        out.append((TS + (i * 37 % 5000) - 2500, key, value, headers))
    return out


def built(recs, compression=0) -> bytes:
    b = MemoryRecordsBuilder(2, compression, 1 << 22)
    for off, (ts, key, value, headers) in enumerate(recs):
        assert b.append(ts, key, value, headers) is not None, off
    b.close()
    return bytes(b.buffer())


def ours(buf: bytes) -> list:
    batch = DefaultRecordBatch(buf)
    batch._maybe_uncompress()
    return [
        (o, ts, k, v, list(h))
        for o, ts, k, v, h in wire.decode_records(
            bytes(batch._buffer), batch._pos, batch._num_records, batch.base_offset, batch.first_timestamp, None
        )
    ]


def theirs(buf: bytes) -> list:
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for b in MemoryRecords(buf) for r in b]


@pytest.mark.parametrize("compression", [0, 1])  # none, gzip
def test_decodes_what_kafka_python_decodes(compression):
    buf = built(sample(3000), compression)
    assert ours(buf) == theirs(buf)
    assert len(ours(buf)) == 3000


def test_a_damaged_record_is_a_corrupt_record_error():
    buf = bytearray(built([(TS, None, b"12345", [])] * 3))
    header = DefaultRecordBatch.HEADER_STRUCT.size
    buf[header] = 0x7E  # the first record's length: 63 instead of its real size
    # The router's own decoder (tsrouter.wire) raises its own CorruptRecordError.
    with pytest.raises(wire.CorruptRecordError):
        ours(bytes(buf))
    with pytest.raises(wire.CorruptRecordError):
        ours(bytes(built([(TS, None, b"12345", [])] * 3))[:-2])  # truncated


def fetched(batches: list[list], base_offsets: list[int], fetch_offset: int) -> fastfetch.ChunkRecords:
    """What the fetcher builds for one partition's fetch response: these record batches, in order."""
    buf = b""
    for recs, base in zip(batches, base_offsets, strict=False):
        one = bytearray(built(recs))
        one[0:8] = base.to_bytes(8, "big")  # the broker assigns it (outside the CRC)
        buf += bytes(one)
    return fastfetch.ChunkRecords(fetch_offset, TopicPartition("t", 0), MemoryRecords(buf))


@pytest.mark.parametrize("n", [1, 7, 30, 31, 64, 100, 1000])
def test_take_splits_chunks_at_the_limit_and_moves_the_position(n):
    batches = [sample(30), sample(50), sample(20)]
    part = fetched(batches, [0, 30, 80], 0)
    got = []
    while part:
        taken = part.take(n)
        if not taken:
            break
        assert len(taken) == sum(c.count for c in taken) <= n
        got += [r[0] for c in taken for r in c.records()]
        assert part.next_fetch_offset == got[-1] + 1
    assert got == list(range(100)), n


def test_a_fetch_from_inside_a_batch_starts_at_the_position():
    batches = [sample(30), sample(50), sample(20)]
    part = fetched(batches, [0, 30, 80], 45)
    assert [r[0] for c in part.take(1000) for r in c.records()] == list(range(45, 100))


def test_an_error_after_some_records_is_raised_by_the_next_take():
    good = bytearray(built(sample(10)))
    bad = bytearray(built(sample(10)))
    bad[0:8] = (10).to_bytes(8, "big")
    bad[-3] ^= 0xFF  # the second batch's last record: its CRC no longer matches
    part = fastfetch.ChunkRecords(0, TopicPartition("t", 0), MemoryRecords(bytes(good + bad)), check_crcs=True)
    first = part.take(100)
    assert [r[0] for c in first for r in c.records()] == list(range(10)) and part.next_fetch_offset == 10
    with pytest.raises(CorruptRecordError):
        part.take(100)


def test_refuses_another_kafka_python(monkeypatch):
    fastfetch.check()
    monkeypatch.setattr(kafka, "__version__", "3.0.13")
    with pytest.raises(RuntimeError, match=r"internals changed.*3\.0\.13 installed.*tsrouter\.fast-fetch=false"):
        fastfetch.check()


def test_refuses_a_consumer_without_a_fetcher_or_with_deserializers():
    class NotAConsumer:
        pass

    with pytest.raises(RuntimeError, match=r"KafkaConsumer\._fetcher"):
        fastfetch.install(NotAConsumer())

    class Text(Deserializer):
        def deserialize(self, topic, headers, data):
            return data.decode()

    c = KafkaConsumer(bootstrap_servers="127.0.0.1:9", value_deserializer=Text(), api_version=(3, 0))
    try:
        with pytest.raises(RuntimeError, match="deserializers"):
            fastfetch.install(c)
    finally:
        c.close()


# ---------------------------------------------------------------- on the real broker


def _read(bootstrap: str, topic: str, fast: bool, isolation_level="read_uncommitted", start=None, partitions=1):
    """Everything up to the end offsets: ([(partition, record tuple)], {partition: position})."""
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        fetch_max_wait_ms=50,
        max_poll_records=700,
        max_partition_fetch_bytes=64 * 1024,
    )
    if fast:
        fastfetch.install(c)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    if start is None:
        c.seek_to_beginning()
    else:
        for tp in tps:
            c.seek(tp, start)
    out: list = []
    try:
        end = c.end_offsets(tps)

        def done():
            nonlocal out
            polled = c.poll(timeout_ms=300)
            if fast:
                # Chunks: max_poll_records still counts records.
                assert sum(chunk.count for chunks in polled.values() for chunk in chunks) <= 700
            for tp, items in polled.items():
                if fast:
                    recs = [r for chunk in items for r in chunk.records()]
                    assert len(recs) == sum(chunk.count for chunk in items)
                    assert items[0].first_offset == recs[0][0] and items[-1].next_offset >= recs[-1][0] + 1
                    out += [(tp.partition, (r[0], r[1], r[2], r[3], list(r[4]))) for r in recs]
                else:
                    out += [(tp.partition, (r.offset, r.timestamp, r.key, r.value, list(r.headers))) for r in items]
            return all(c.position(tp) >= end[tp] for tp in tps)

        wait_for(done, 60, f"{topic} read to its end")
        return out, {tp.partition: c.position(tp) for tp in tps}
    finally:
        c.close()


@pytest.mark.kafka
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_same_records_and_positions_as_kafka_python(kafka_bootstrap, compression):
    topic = new_topic(kafka_bootstrap, "fastfetch", 2, configs=KEEP_OLD_RECORDS)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type=compression, linger_ms=5, batch_size=8192)
    recs = sample(4000)
    try:
        for i, (ts, key, value, headers) in enumerate(recs):
            # kafka-python's send() refuses null header values (the unit tests above cover them)
            p.send(
                topic,
                key=key,
                value=value if value is not None else b"",
                partition=i % 2,
                timestamp_ms=ts,
                headers=[(k, b"" if v is None else v) for k, v in headers],
            )
        p.flush(timeout=30)
    finally:
        p.close()
    slow, slow_pos = _read(kafka_bootstrap, topic, False, partitions=2)
    fast, fast_pos = _read(kafka_bootstrap, topic, True, partitions=2)
    assert len(fast) == 4000
    assert fast == slow and fast_pos == slow_pos == {0: 2000, 1: 2000}
    # From the middle of a batch: the broker returns the whole batch, the records before
    # the position are skipped.
    slow, slow_pos = _read(kafka_bootstrap, topic, False, partitions=2, start=1001)
    fast, fast_pos = _read(kafka_bootstrap, topic, True, partitions=2, start=1001)
    assert fast == slow and fast_pos == slow_pos
    assert min(r[0] for _p, r in fast) == 1001 and len(fast) == 2 * 999


@pytest.mark.kafka
def test_read_committed_skips_aborted_transactions_and_markers(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, "fastfetch")
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    txn = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique("fastfetch"), linger_ms=0)
    try:
        txn.init_transactions()
        for round_ in range(3):
            txn.begin_transaction()
            for i in range(200):
                txn.send(topic, value=b"aborted-%d-%d" % (round_, i), partition=0)
            # plain records in between, from another producer, are not part of the transaction
            for i in range(50):
                plain.send(topic, value=b"plain-%d-%d" % (round_, i), partition=0)
            plain.flush(timeout=30)
            txn.flush(timeout=30)
            txn.abort_transaction()
            txn.begin_transaction()
            for i in range(100):
                txn.send(topic, value=b"kept-%d-%d" % (round_, i), partition=0)
            txn.commit_transaction()
    finally:
        txn.close()
        plain.close()
    slow, slow_pos = _read(kafka_bootstrap, topic, False, isolation_level="read_committed")
    fast, fast_pos = _read(kafka_bootstrap, topic, True, isolation_level="read_committed")
    values = [r[3] for _p, r in fast]
    assert fast == slow and fast_pos == slow_pos
    assert not any(v.startswith(b"aborted") for v in values)
    assert sum(v.startswith(b"kept") for v in values) == 300 and sum(v.startswith(b"plain") for v in values) == 150
    # read_uncommitted sees the aborted records too, never the markers
    fast_all, _ = _read(kafka_bootstrap, topic, True)
    slow_all, _ = _read(kafka_bootstrap, topic, False)
    assert fast_all == slow_all and len(fast_all) == 3 * (200 + 50 + 100)
