"""Kafka's record format v2 as the router reads and writes it: bytes in, bytes out, no I/O.

Why here: the fast paths (tsrouter.kafka_private.fastfetch, .fastsend) and the planner
(tsrouter.rawplan) read and write records themselves instead of through kafka-python's
per-record objects. The format is Kafka's public protocol, so it lives apart from the
private kafka-python API those modules touch, is typed strictly and tested without a
broker (tests/router/test_wire.py, against kafka-python's own encoder and decoder).

A record (inside a record batch, after the batch's 61-byte header):
  length (varint), attributes (int8, unused: 0), timestamp delta (varlong),
  offset delta (varint), key length (varint, -1: null) and key, value length and value,
  header count (varint), then per header: key length and key (UTF-8), value length
  (-1: null) and value.
Every varint is zig-zag encoded, seven bits a byte, least significant group first.

The hot loops decode a one- or two-byte varint inline (most lengths and deltas are that
short) and call decode_varint for the rest: a function call per field was most of the
cost of decoding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "BATCH_HEADER_SIZE",
    "NULL",
    "SMALL_VARINTS",
    "CorruptRecordError",
    "Record",
    "batch_records",
    "decode_headers",
    "decode_records",
    "decode_varint",
    "encode_headers",
    "encode_record",
    "encode_tail",
    "rebatch_records",
    "record_head",
    "tail_of",
    "varint",
]

# A v2 record batch's header before its first record: base offset (8), batch length (4),
# partition leader epoch (4), magic (1), CRC (4), attributes (2), last offset delta (4),
# first and max timestamp (8 each), producer id (8), producer epoch (2), base sequence (4),
# record count (4). Batch sizes count it.
BATCH_HEADER_SIZE = 61

# Zig-zag varints of 0..16383 (two bytes at most) are looked up rather than computed:
# offset deltas of a batch and the lengths of most records and values fall in that range.
SMALL_VARINT_LIMIT = 16384

# decode_varint gives up past this shift, as Kafka's own clients do (64-bit values).
_MAX_VARINT_SHIFT = 64

# One decoded record: (offset, timestamp, key, value, headers); headers is a shared empty
# tuple when the record has none, else a list of (key, value or None).
Record = tuple[int, int, bytes | None, bytes | None, Any]

_NO_HEADERS: tuple[()] = ()


class CorruptRecordError(Exception):
    """Record bytes that do not parse as format v2 (a length, count or varint out of place):
    what kafka-python's CorruptRecordError says for its own decoder."""


def _zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


SMALL_VARINTS = [_zigzag_varint(i) for i in range(SMALL_VARINT_LIMIT)]
NULL = _zigzag_varint(-1)  # the length of a null key, value or header value


def varint(n: int) -> bytes:
    """Kafka's zig-zag varint of n (record lengths, deltas, counts)."""
    return SMALL_VARINTS[n] if 0 <= n < SMALL_VARINT_LIMIT else _zigzag_varint(n)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at data[pos] -> (value, position after it); IndexError when data
    ends inside it, ValueError past 64 bits."""
    result = data[pos]
    if not result & 0x80:
        return (result >> 1) ^ -(result & 1), pos + 1
    result &= 0x7F
    pos += 1
    shift = 7
    while True:
        b = data[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift >= _MAX_VARINT_SHIFT:
            raise ValueError("Out of int64 range")


def encode_headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """A record's header block: count, then each key and value, length-prefixed."""
    out = [varint(len(headers))]
    for k, v in headers:
        kb = k.encode("utf-8")
        out += [varint(len(kb)), kb]
        out += [NULL] if v is None else [varint(len(v)), v]
    return b"".join(out)


def encode_tail(key: bytes | None, value: bytes, header_block: bytes) -> bytes:
    """A record's fields after its offset delta: key, value (length-prefixed) and an
    encoded header block (encode_headers)."""
    return (NULL if key is None else varint(len(key)) + key) + varint(len(value)) + value + header_block


def encode_record(index: int, tail: bytes) -> bytes:
    """A whole record at `index` of its batch (its offset delta), timestamp delta 0."""
    body = b"\x00\x00" + varint(index) + tail
    return varint(len(body)) + body


def tail_of(record: bytes) -> bytes:
    """encode_record's tail back: after the length, attributes, timestamp delta and offset delta."""
    _length, pos = decode_varint(record, 0)
    return record[decode_varint(record, pos + 2)[1] :]


def batch_records(tails: Sequence[bytes], batch_size: int) -> list[list[bytes]]:
    """Records given by their tails (encode_tail), in order -> whole records (encode_record,
    offset deltas from 0 in each batch) in batches of at most batch_size bytes with the
    batch header (at least one record each), split where kafka-python's builder splits.
    Every record's timestamp delta is 0: one timestamp for the batch."""
    small = SMALL_VARINTS
    out = []
    parts: list[bytes] = []
    size = BATCH_HEADER_SIZE
    for tail in tails:
        n = len(parts)
        body = b"\x00\x00" + (small[n] if n < SMALL_VARINT_LIMIT else varint(n)) + tail  # attributes, deltas
        blen = len(body)
        rec = (small[blen] if blen < SMALL_VARINT_LIMIT else varint(blen)) + body
        if parts and size + len(rec) > batch_size:
            out.append(parts)
            parts, size = [], BATCH_HEADER_SIZE
            body = b"\x00\x00\x00" + tail
            rec = varint(len(body)) + body
        parts.append(rec)
        size += len(rec)
    if parts:
        out.append(parts)
    return out


def rebatch_records(records: Sequence[bytes], batch_size: int) -> list[list[bytes]]:
    """Whole records encoded as one batch's (encode_record, index 0 on) -> batches as
    batch_records makes them: these records as they are when they fit in batch_size (a
    poll's share of a partition does, at the default size), else split anew."""
    if BATCH_HEADER_SIZE + sum(map(len, records)) <= batch_size or len(records) == 1:
        return [list(records)]
    return batch_records([tail_of(r) for r in records], batch_size)


def decode_records(
    data: bytes, pos: int, count: int, base_offset: int, first_ts: int, fixed_ts: int | None, end: int = -1
) -> Iterator[Record]:
    """The records of one uncompressed v2 record batch body, data[pos:end], in order.

    fixed_ts: the batch's max timestamp when its timestamp type is log-append time (every
    record then carries it), else None (first_ts + each record's delta). end: where the
    last of the `count` records ends (-1: the end of data)."""
    end = len(data) if end < 0 else end
    key: bytes | None
    value: bytes | None
    headers: Any
    try:
        for _ in range(count):
            # Length (varint), attributes (int8), timestamp delta (varlong), offset delta
            # (varint), key, value (varint length, -1 for null), header count, headers.
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                length, pos = decode_varint(data, pos)
            start = pos
            pos += 1  # attributes: unused in v2 records
            b = data[pos]
            if b < 0x80:
                ts_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:  # two bytes: deltas up to 4 s
                b = (b & 0x7F) | (data[pos + 1] << 7)
                ts_delta = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                ts_delta, pos = decode_varint(data, pos)
            b = data[pos]
            if b < 0x80:
                off_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:  # two bytes: offset deltas 64..8191, most of a batch
                b = (b & 0x7F) | (data[pos + 1] << 7)
                off_delta = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                off_delta, pos = decode_varint(data, pos)
            b = data[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                n, pos = decode_varint(data, pos)
            if n < 0:
                key = None
            else:
                key = data[pos : pos + n]
                pos += n
            b = data[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                n, pos = decode_varint(data, pos)
            if n < 0:
                value = None
            else:
                value = data[pos : pos + n]
                pos += n
            b = data[pos]
            if b == 0:
                headers = _NO_HEADERS
                pos += 1
            else:
                headers, pos = decode_headers(data, pos)
            if pos - start != length or pos > end:
                raise CorruptRecordError(
                    f"Invalid record size: expected to read {length} bytes in record payload, but instead read "
                    f"{pos - start}"
                )
            yield (
                base_offset + off_delta,
                first_ts + ts_delta if fixed_ts is None else fixed_ts,
                key,
                value,
                headers,
            )
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptRecordError(f"Found invalid record structure: {exc!r}") from exc
    if pos != end:
        raise CorruptRecordError(f"{end - pos} unconsumed bytes after all records consumed")


def decode_headers(data: bytes, pos: int) -> tuple[list[tuple[str, bytes | None]], int]:
    """A record's header block at data[pos:] -> ([(key, value or None)], position after it)."""
    count, pos = decode_varint(data, pos)
    if count < 0:
        raise CorruptRecordError(f"Found invalid number of record headers {count}")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        n, pos = decode_varint(data, pos)
        if n < 0:
            raise CorruptRecordError(f"Invalid negative header key size {n}")
        key = data[pos : pos + n].decode("utf-8")
        pos += n
        n, pos = decode_varint(data, pos)
        if n < 0:
            headers.append((key, None))
        else:
            headers.append((key, data[pos : pos + n]))
            pos += n
    return headers, pos


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    return decode_varint(data, pos)


def record_head(data: bytes, pos: int) -> tuple[int, int, int]:
    """(where it ends, timestamp delta, offset delta) of the v2 record at data[pos]."""
    try:
        length, p = _varint_at(data, pos)
        ts_delta, q = _varint_at(data, p + 1)  # after the attributes byte
        off_delta, _ = _varint_at(data, q)
    except (IndexError, ValueError) as exc:
        raise CorruptRecordError(f"Found invalid record structure: {exc!r}") from exc
    return p + length, ts_delta, off_delta
