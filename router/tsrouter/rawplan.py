"""Still-encoded input records planned straight into encoded output records.

Why: decoding a polled batch into tuples (tsrouter.chunks), planning the tuples
(tsrouter.batch.plan_groups) and encoding the output (tsrouter.kafka_private.fastsend) were
three passes with objects per record, and together most of the router's main thread. Here
one pass over each input record batch's bytes writes each output record (tsrouter.wire) for
its output partition. Pure: no I/O, no kafka-python.

The common record, a value that is ASCII and ends in a digit and no headers, is handled
here, by the rule plan_groups applies to it: its key field is copied as encoded, its value
gets the channel's prefix and the default header block. Its timestamp and offset deltas are
skipped (an output record gets its own; the chunk knows its offsets). Any other record
(headers, another value, a null value, message formats v0/v1) is decoded and planned by
tsrouter.batch.plan_record, as on the tuple path. tests/router/test_rawplan.py checks that
both paths give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .batch import ASCII_DIGITS, InRecord, Planned, Topics, plan_record
from .chunks import RawChunk
from .routing import DEAD_LETTER, EVEN, ODD, Prefixes
from .wire import (
    SMALL_VARINTS,
    CorruptRecordError,
    Record,
    decode_records,
    decode_varint,
    encode_headers,
    encode_record,
    encode_tail,
    varint,
)

__all__ = ["plan_chunks"]


def plan_chunks(
    batch: Mapping[Any, Any],
    topics: Topics,
    prefixes: Prefixes,
    out_partitions: Mapping[str, int],
    default_headers: bytes,
) -> Planned:
    """{TopicPartition: [chunk]} -> Planned with encoded tails, grouped by output partition
    in input order; out_partitions must know the even, odd and dead-letter topics."""
    p = Planned(encoded=True)
    groups = p.groups
    n_even, n_odd = out_partitions[topics.even], out_partitions[topics.odd]
    for tp, chunks in batch.items():
        if not chunks:
            continue
        ts0 = chunks[0].first_timestamp
        if ts0 is not None and ts0 >= 0 and (p.oldest_ts is None or ts0 < p.oldest_ts):
            p.oldest_ts = ts0
        even = groups.setdefault((topics.even, tp.partition % n_even), [])
        odd = groups.setdefault((topics.odd, tp.partition % n_odd), [])
        for chunk in chunks:
            if isinstance(chunk, RawChunk):
                _plan_raw(chunk, tp, even, odd, p, topics, prefixes, out_partitions, default_headers)
            else:
                for rec in chunk.records():
                    _plan_other(rec, tp, p, topics, prefixes, out_partitions)
    for k in [k for k, v in groups.items() if not v]:
        del groups[k]
    return p


def _plan_other(
    rec: Record, tp: Any, p: Planned, topics: Topics, prefixes: Prefixes, out_partitions: Mapping[str, int]
) -> None:
    o = plan_record(InRecord(tp.topic, tp.partition, *rec), topics, prefixes, out_partitions)
    records = p.groups.setdefault((o.topic, o.partition), [])
    records.append(encode_record(len(records), encode_tail(o.key, o.value, encode_headers(o.headers))))
    p.counts[o.channel] += 1
    if o.channel == DEAD_LETTER:
        p.dead.append(o)


def _plan_raw(
    chunk: RawChunk,
    tp: Any,
    even: list[bytes],
    odd: list[bytes],
    p: Planned,
    topics: Topics,
    prefixes: Prefixes,
    out_partitions: Mapping[str, int],
    default_headers: bytes,
) -> None:
    """One chunk's records: the common ones onto `even`/`odd`, the rest via _plan_other."""
    data, pos, end = chunk.data, chunk.pos, chunk.end
    pe, po = prefixes.even, prefixes.odd
    lpe, lpo = len(pe), len(po)
    small, digits = SMALL_VARINTS, ASCII_DIGITS
    n_e = n_o = 0
    try:
        for _ in range(chunk.count):
            # Length, attributes, timestamp delta, offset delta, key, value, header count
            # (zig-zag varints; lengths -1 for null).
            start = pos
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                length, pos = decode_varint(data, pos)
            rec_end = pos + length
            q = pos + 1
            # Timestamp and offset deltas: skipped.
            if data[q] < 0x80:
                q += 1
            elif data[q + 1] < 0x80:
                q += 2
            else:
                q = decode_varint(data, q)[1]
            if data[q] < 0x80:
                q += 1
            elif data[q + 1] < 0x80:
                q += 2
            else:
                q = decode_varint(data, q)[1]
            key_start = q
            b = data[q]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                q += 1
            else:
                n, q = decode_varint(data, q)
            if n > 0:
                q += n
            key_field = data[key_start:q]
            b = data[q]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                q += 1
            else:
                n, q = decode_varint(data, q)
            if n > 0 and q + n + 1 == rec_end and data[q + n] == 0:
                v = data[q : q + n]
                if v[-1] in digits and v.isascii():
                    # attributes, timestamp delta 0, offset delta (its index), key, value, headers
                    if v[-1] & 1:
                        k, n = len(odd), n + lpo
                        body = (
                            b"\x00\x00"
                            + (small[k] if k < 16384 else varint(k))
                            + key_field
                            + (small[n] if n < 16384 else varint(n))
                            + po
                            + v
                            + default_headers
                        )
                        k = len(body)
                        odd.append((small[k] if k < 16384 else varint(k)) + body)
                        n_o += 1
                    else:
                        k, n = len(even), n + lpe
                        body = (
                            b"\x00\x00"
                            + (small[k] if k < 16384 else varint(k))
                            + key_field
                            + (small[n] if n < 16384 else varint(n))
                            + pe
                            + v
                            + default_headers
                        )
                        k = len(body)
                        even.append((small[k] if k < 16384 else varint(k)) + body)
                        n_e += 1
                    pos = rec_end
                    continue
            rec = next(decode_records(data, start, 1, chunk.base_offset, chunk.first_ts, chunk.fixed_ts, rec_end))
            _plan_other(rec, tp, p, topics, prefixes, out_partitions)
            pos = rec_end
    except (IndexError, ValueError) as exc:
        raise CorruptRecordError(f"Found invalid record structure: {exc!r}") from exc
    if pos != end:
        raise CorruptRecordError(f"{end - pos} unconsumed bytes after all records consumed")
    p.counts[EVEN] += n_e
    p.counts[ODD] += n_o
