"""tsrouter.rawplan and tsrouter.chunks: still-encoded input records planned straight
into output records.

The tuple path (decode each record, tsrouter.batch.plan_groups, fastsend.build_batches)
is the reference: for record batches built by kafka-python's own encoder, with every kind
of record the router meets (keys, headers, null and empty values, JSON strings, non-ASCII,
values that do not end in a digit), planning the raw chunks must give the same output
bytes per output partition, the same counts, dead letters and oldest timestamp.
"""

from __future__ import annotations

import random

import pytest
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from tsrouter.batch import Topics, first_offsets, next_offsets, plan_groups, record_counts, records_of
from tsrouter.chunks import ListChunk, RawChunk
from tsrouter.kafka_private import fastsend
from tsrouter.rawplan import plan_chunks
from tsrouter.routing import Prefixes, output_headers
from tsrouter.wire import CorruptRecordError, encode_headers

TS = 1_700_000_000_123
TOPICS = Topics("ev", "od", "dlq")
DEFAULT_BLOCK = encode_headers(output_headers(None))


def values(i: int) -> tuple[bytes | None, bytes | None, list]:
    """(key, value, headers) for record i: mostly the common timestamp, every few records something else."""
    key = None if i % 3 else f"k{i}".encode() * (1 + i % 40)
    value: bytes | None = f"11/30/26 13:{i % 60:02d}:{i % 60:02d}".encode() * (1 + i % 11 // 10 * 30)
    odd = i % 23
    if odd == 1:
        value = None
    elif odd == 2:
        value = b""
    elif odd == 3:
        value = b'"11/30/26 13:00:07"'  # a JSON string: routed, unquoted
    elif odd == 4:
        value = "11/30/26 13:00:0\u0664".encode()  # ends in an Arabic-Indic digit: not ASCII
    elif odd == 5:
        value = b"no digit at the end"
    elif odd == 6:
        value = b"\xff\xfe1"  # not UTF-8
    headers = [] if i % 7 else [("trace-id", str(i).encode()), ("contentType", b"application/json")]
    return key, value, headers


def batch_bytes(first: int, n: int, base_offset: int = 0) -> bytes:
    b = MemoryRecordsBuilder(2, 0, 1 << 24)
    for i in range(first, first + n):
        key, value, headers = values(i)
        assert b.append(TS + (i * 37 % 9000), key, value, headers) is not None
    b.close()
    buf = bytearray(b.buffer())
    buf[0:8] = base_offset.to_bytes(8, "big")  # the batch's base offset, as the broker assigns it
    return bytes(buf)


def chunk_of(buf: bytes) -> RawChunk:
    """What fastfetch hands out for one whole uncompressed batch."""
    batch = DefaultRecordBatch(buf)
    data = bytes(batch._buffer)
    return RawChunk(
        data,
        batch._pos,
        len(data),
        batch._num_records,
        batch.base_offset,
        batch.first_timestamp,
        None,
        batch.base_offset,
        batch.next_offset,
    )


def encoded(groups: dict, builder) -> dict:
    out = {}
    for key, recs in groups.items():
        built = builder(recs)
        for b in built:
            b.close()
        out[key] = [bytes(b.buffer()) for b in built]
    return out


def both(batch: dict, out_partitions: dict, batch_size: int = 512 * 1024):
    """(raw path, tuple path): ({output partition: [batch bytes]}, counts, dead-letter offsets, oldest ts)."""
    raw = plan_chunks(batch, TOPICS, Prefixes(), out_partitions, DEFAULT_BLOCK)
    ref = plan_groups(records_of(batch), TOPICS, Prefixes(), out_partitions)
    assert raw.encoded and not ref.encoded
    got = encoded(raw.groups, lambda rs: fastsend.build_from_records(rs, batch_size, 0, TS))
    want = encoded(ref.groups, lambda rs: fastsend.build_batches(rs, DEFAULT_BLOCK, batch_size, 0, TS))

    def summary(p):
        return p.counts, [(o.source_partition, o.source_offset, o.reason) for o in p.dead], p.oldest_ts

    return (got, *summary(raw)), (want, *summary(ref))


@pytest.mark.parametrize("batch_size", [1024, 512 * 1024])
def test_raw_chunks_plan_to_the_same_bytes_as_the_tuple_path(batch_size):
    batch = {
        TopicPartition("in", 0): [chunk_of(batch_bytes(0, 700, 0)), chunk_of(batch_bytes(700, 300, 700))],
        TopicPartition("in", 1): [chunk_of(batch_bytes(5000, 900, 40))],
    }
    raw, ref = both(batch, {"ev": 2, "od": 2, "dlq": 1}, batch_size)
    assert raw == ref
    _got, counts, dead, _oldest = raw
    assert sum(counts.values()) == 1900 and counts["deadLetter"] > 0 and counts["even"] > 0 and counts["odd"] > 0
    # The sample holds every kind of dead letter the router writes.
    reasons = {r.split(" (")[0].split(":")[0] for _p, _o, r in dead}
    assert reasons == {"null value", "empty value", "undecodable value", "no trailing ASCII digit"}, reasons


def test_two_input_partitions_sharing_an_output_partition_keep_their_order():
    batch = {TopicPartition("in", p): [chunk_of(batch_bytes(p * 1000, 400, 0))] for p in range(3)}
    raw, ref = both(batch, {"ev": 1, "od": 1, "dlq": 1})
    assert raw == ref


@pytest.mark.parametrize("k", [1, 2, 17, 250, 499])
def test_split_and_trimmed_chunks_plan_like_the_whole(k):
    whole = chunk_of(batch_bytes(0, 500, 1000))
    records = whole.records()
    assert [r[0] for r in records] == list(range(1000, 1500))
    tp = TopicPartition("in", 0)
    head, tail = whole.split(k)
    assert head.records() + tail.records() == records
    assert (head.count, tail.count, head.first_offset, head.next_offset, tail.first_offset, tail.next_offset) == (
        k,
        500 - k,
        1000,
        1000 + k,
        1000 + k,
        1500,
    )
    assert (
        both({tp: [head, tail]}, {"ev": 3, "od": 3, "dlq": 1})[0][0]
        == both({tp: [whole]}, {"ev": 3, "od": 3, "dlq": 1})[0][0]
    )
    rest = whole.since(1000 + k)
    assert rest.records() == records[k:] and rest.first_offset == 1000 + k and rest.next_offset == 1500
    assert head.first_timestamp == records[0][1] and tail.first_timestamp == records[k][1]
    assert whole.since(1500) is None


def test_chunk_offsets_counts_and_decoded_records():
    a, b = chunk_of(batch_bytes(0, 10, 100)), chunk_of(batch_bytes(10, 5, 110))
    old = ListChunk([(7, TS, None, b"1", ()), (9, TS, None, b"2", ())])
    batch = {TopicPartition("in", 0): [a, b], TopicPartition("in", 1): [old]}
    assert first_offsets(batch) == {TopicPartition("in", 0): 100, TopicPartition("in", 1): 7}
    assert next_offsets(batch) == {TopicPartition("in", 0): 115, TopicPartition("in", 1): 10}
    assert record_counts(batch) == {TopicPartition("in", 0): 15, TopicPartition("in", 1): 2}
    assert [r[0] for r in records_of(batch)[TopicPartition("in", 0)]] == list(range(100, 115))
    # Old-format records (a ListChunk) are planned record by record, the same way.
    raw, ref = both(batch, {"ev": 1, "od": 1, "dlq": 1})
    assert raw == ref


def test_a_damaged_record_is_a_corrupt_record_error():
    buf = bytearray(batch_bytes(0, 3))
    header = DefaultRecordBatch.HEADER_STRUCT.size
    buf[header] = 0x7E  # the first record's length: 63 instead of its real size
    tp = TopicPartition("in", 0)
    with pytest.raises(CorruptRecordError):
        plan_chunks({tp: [chunk_of(bytes(buf))]}, TOPICS, Prefixes(), {"ev": 1, "od": 1, "dlq": 1}, DEFAULT_BLOCK)
    whole = chunk_of(batch_bytes(0, 3))
    truncated = RawChunk(whole.data[:-2], whole.pos, whole.end - 2, 3, 0, TS, None, 0, 3)
    with pytest.raises(CorruptRecordError):
        plan_chunks({tp: [truncated]}, TOPICS, Prefixes(), {"ev": 1, "od": 1, "dlq": 1}, DEFAULT_BLOCK)


def test_random_batches_agree():
    rng = random.Random(1)
    for _ in range(30):
        batch, offset = {}, 0
        for p in range(rng.randint(1, 3)):
            chunks = []
            for _c in range(rng.randint(1, 3)):
                n = rng.randint(1, 200)
                chunk = chunk_of(batch_bytes(rng.randint(0, 10_000), n, offset))
                offset += n
                if n > 1 and rng.random() < 0.5:
                    chunks += chunk.split(rng.randint(1, n - 1))
                else:
                    chunks.append(chunk)
            batch[TopicPartition("in", p)] = chunks
        parts = {"ev": rng.randint(1, 3), "od": rng.randint(1, 3), "dlq": rng.randint(1, 2)}
        raw, ref = both(batch, parts, rng.choice([700, 4096, 512 * 1024]))
        assert raw == ref
