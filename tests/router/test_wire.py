"""tsrouter.wire: Kafka's record format v2, pure, against kafka-python's own encoder and decoder.

No broker: the bytes are built or read by kafka-python's public record classes
(MemoryRecordsBuilder, MemoryRecords) and compared with what tsrouter.wire writes or reads.
"""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.record.util import decode_varint, encode_varint

from tsrouter import wire

TS = 1_700_000_000_123
# Around each boundary of the varint encoding (1, 2 and 3 bytes, the lookup table's end)
# and far beyond it, negative too.
VARINTS = (-1, 0, 1, 63, 64, 8191, 8192, 16383, 16384, 2**31, -(2**20), 2**62, -(2**63))


@pytest.mark.parametrize("n", [-1, 0, 1, 63, 64, 8191, 8192, 16383, 16384, 2**31, -(2**20)])
def test_varint_matches_kafka_python(n):
    buf = bytearray()
    encode_varint(n, buf.append)
    assert wire.varint(n) == bytes(buf)


@pytest.mark.parametrize("n", VARINTS)
def test_varints_decode_as_kafka_python_decodes_them(n):
    encoded = b"\x07" + wire.varint(n) + b"\x09"  # inside other bytes: the position is what counts
    assert wire.decode_varint(encoded, 1) == decode_varint(encoded, 1) == (n, 1 + len(wire.varint(n)))


def test_a_varint_cut_short_or_too_long_does_not_decode():
    with pytest.raises(IndexError):
        wire.decode_varint(wire.varint(2**40)[:-1], 0)
    with pytest.raises(ValueError, match="int64"):
        wire.decode_varint(b"\xff" * 11, 0)


def test_the_batch_header_size_is_kafka_pythons():
    assert DefaultRecordBatchBuilder.HEADER_STRUCT.size == wire.BATCH_HEADER_SIZE


def records(n: int) -> list[tuple[bytes | None, bytes | None, list]]:
    """(key, value, headers): null and long keys, null and long values, null header values."""
    out = []
    for i in range(n):
        key = None if i % 3 else f"k{i}".encode() * (1 + i % 40)
        value = None if i % 17 == 5 else f"05/17/19 17:56:{i % 60:02d}".encode() * (1 + i % 9 * 20)
        headers = [] if i % 4 else [("trace-id", str(i).encode()), ("empty", None), ("\u00fc", b"x" * (i % 300))]
        out.append((key, value, headers))
    return out


def kafka_batch(recs, timestamps=None) -> DefaultRecordBatch:
    b = MemoryRecordsBuilder(2, 0, 1 << 24)
    for i, (key, value, headers) in enumerate(recs):
        ts = TS if timestamps is None else timestamps[i]
        assert b.append(ts, key, value, headers) is not None
    b.close()
    return DefaultRecordBatch(bytes(b.buffer()))


def test_decoded_records_are_what_kafka_python_decodes():
    recs = records(2000)
    stamps = [TS + (i * 37 % 9000) - 4500 for i in range(len(recs))]  # deltas of 1, 2 and 3 bytes
    batch = kafka_batch(recs, stamps)
    data = bytes(batch._buffer)  # the batch's records, after its header
    ours = [
        (o, ts, k, v, list(h))
        for o, ts, k, v, h in wire.decode_records(data, batch._pos, len(recs), 0, batch.first_timestamp, None)
    ]
    theirs = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in kafka_batch(recs, stamps)]
    assert ours == theirs
    # Log-append time: every record carries the batch's timestamp.
    fixed = {r[1] for r in wire.decode_records(data, batch._pos, len(recs), 0, batch.first_timestamp, 42)}
    assert fixed == {42}


def test_record_head_gives_each_records_end_and_deltas():
    recs = records(300)
    stamps = [TS + 3 * i for i in range(len(recs))]
    batch = kafka_batch(recs, stamps)
    data, pos = bytes(batch._buffer), batch._pos
    for i in range(len(recs)):
        end, ts_delta, off_delta = wire.record_head(data, pos)
        assert (ts_delta, off_delta) == (3 * i, i)
        assert [r[0] for r in wire.decode_records(data, pos, 1, 0, TS, None, end)] == [i]
        pos = end
    assert pos == len(data)
    with pytest.raises(wire.CorruptRecordError):
        wire.record_head(data[: batch._pos + 1], batch._pos)


def test_encoded_records_decode_to_their_fields():
    recs = [(k, v, h) for k, v, h in records(500) if v is not None]
    encoded = [
        wire.encode_record(i, wire.encode_tail(k, v, wire.encode_headers(h))) for i, (k, v, h) in enumerate(recs)
    ]
    got = list(wire.decode_records(b"".join(encoded), 0, len(recs), 1000, TS, None))
    assert [(o, ts, k, v, list(h)) for o, ts, k, v, h in got] == [
        (1000 + i, TS, k, v, h) for i, (k, v, h) in enumerate(recs)
    ]
    assert [wire.tail_of(r) for r in encoded] == [wire.encode_tail(k, v, wire.encode_headers(h)) for k, v, h in recs]


def test_headers_round_trip():
    headers = [("a", b"1"), ("null", None), ("\u00fc" * 70, b"v" * 9000), ("", b"")]
    block = wire.encode_headers(headers)
    assert wire.decode_headers(b"\x00" + block + b"\x01", 1) == (headers, 1 + len(block))
    assert wire.encode_headers([]) == b"\x00"


def reference(recs, batch_size: int) -> list[bytes]:
    """kafka-python's own builder: each batch's records (after the header), split where it splits."""
    out, b = [], MemoryRecordsBuilder(2, 0, batch_size)
    for key, value, headers in recs:
        if b.append(TS, key, value, headers) is None:
            b.close()
            out.append(bytes(b.buffer()))
            b = MemoryRecordsBuilder(2, 0, batch_size)
            assert b.append(TS, key, value, headers) is not None
    b.close()
    return [buf[wire.BATCH_HEADER_SIZE :] for buf in out + [bytes(b.buffer())]]


@pytest.mark.parametrize("batch_size", [1024, 16384, 512 * 1024])
def test_batches_split_and_encode_as_kafka_python_does(batch_size):
    recs = [(k, v, h) for k, v, h in records(3000) if v is not None]
    tails = [wire.encode_tail(k, v, wire.encode_headers(h)) for k, v, h in recs]
    batches = wire.batch_records(tails, batch_size)
    assert [b"".join(b) for b in batches] == reference(recs, batch_size)
    assert all(b and (len(b) == 1 or wire.BATCH_HEADER_SIZE + sum(map(len, b)) <= batch_size) for b in batches)
    # Whole records (as tsrouter.rawplan writes them, one batch's offset deltas) split the same way.
    whole = [wire.encode_record(i, t) for i, t in enumerate(tails)]
    assert wire.rebatch_records(whole, batch_size) == batches


def test_records_that_fit_are_one_batch_as_they_are():
    whole = [wire.encode_record(i, wire.encode_tail(None, b"%d" % i, b"\x00")) for i in range(10)]
    assert wire.rebatch_records(whole, 16384) == [whole]
    assert wire.rebatch_records(whole[:1], 1) == [whole[:1]]  # one record: its own batch, whatever its size


@pytest.mark.parametrize("damage", ["length", "truncated", "trailing", "header count"])
def test_damaged_bytes_are_a_corrupt_record_error(damage):
    one = wire.encode_record(0, wire.encode_tail(b"k", b"12345", wire.encode_headers([("h", b"v")])))
    data = {
        "length": b"\x7e" + one[1:],  # the record's length: 63 instead of its real size
        "truncated": one[:-2],
        "trailing": one + b"\x00",
        "header count": one[: one.index(b"12345") + 5] + wire.varint(-2),
    }[damage]
    with pytest.raises(wire.CorruptRecordError):
        list(wire.decode_records(data, 0, 1, 0, TS, None))
