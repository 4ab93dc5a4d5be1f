"""Polled records as plain tuples: kafka-python's fetcher without a ConsumerRecord per record.

Why: with whole batches on the produce side (tsrouter.fastsend), most of the router's main
thread went to kafka-python's consumer decode path (bench/results/router.md): per record a
`DefaultRecord` (seven varint decodes through a function call each, two byte copies, an
empty headers list), then a 13-field `ConsumerRecord` with its key, value and header sizes
computed. Here each record batch of a fetch response is decoded in one tight loop into
`(offset, timestamp, key, value, headers)` tuples (headers: a shared empty tuple when the
record has none), which is all tsrouter.batch needs.

Only the per-record loop is replaced: kafka-python still fetches, checks each batch's CRC
(check_crcs), decompresses, skips control batches and, under read_committed, the batches
of aborted transactions (with its own helpers), keeps `next_fetch_offset` per record, and
its `_append` moves the position exactly as for ConsumerRecords. The consumer's position,
commits, seeks and rebalances are untouched.

It is installed on one consumer (its fetcher's `PartitionRecords`, an instance attribute),
never globally. This is private API of kafka-python 3.0.12 (pinned in router/pyproject.toml):
`check()` refuses another version, or one whose fetcher lacks what this relies on, with an
error naming tsrouter.fast-fetch=false; tests/router/test_fastfetch.py compares the tuples
with kafka-python's own ConsumerRecords on the real broker (plain, compressed, headers,
transactions committed and aborted).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import kafka
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

__all__ = ["PINNED_KAFKA_PYTHON", "TupleRecords", "check", "decode_records", "install"]

PINNED_KAFKA_PYTHON = "3.0.12"

# One polled record: (offset, timestamp, key, value, headers).
Record = tuple[int, int, bytes | None, bytes | None, Any]

_NO_HEADERS: tuple[()] = ()
_BASE = Fetcher.PartitionRecords
_BATCH_FIELDS = {"_buffer", "_pos", "_num_records"}
_BASE_METHODS = (
    "_consume_aborted_transactions_up_to",
    "_is_batch_aborted",
    "_contains_abort_marker",
    "_maybe_skip_record",
    "_unpack_records",
    "drain",
    "take",
)
_BASE_FIELDS = ("fetch_offset", "next_fetch_offset", "isolation_level", "check_crcs", "leader_epoch")


def check(consumer: Any = None) -> None:
    """Raise unless this kafka-python is the one TupleRecords was written against."""
    problems = []
    if kafka.__version__ != PINNED_KAFKA_PYTHON:
        problems.append(f"kafka-python {kafka.__version__} installed, {PINNED_KAFKA_PYTHON} expected")
    problems += [f"PartitionRecords.{m}" for m in _BASE_METHODS if not callable(getattr(_BASE, m, None))]
    if not set(DefaultRecordBatch.__slots__) >= _BATCH_FIELDS or not callable(
        getattr(DefaultRecordBatch, "_maybe_uncompress", None)
    ):
        problems.append("DefaultRecordBatch fields")
    try:
        init_src = inspect.getsource(_BASE.__init__)
        parse_src = inspect.getsource(Fetcher._parse_fetched_data)
    except (OSError, TypeError):
        init_src = parse_src = ""
    if "self.PartitionRecords(" not in parse_src:
        problems.append("Fetcher._parse_fetched_data no longer builds self.PartitionRecords")
    problems += [f"PartitionRecords.{f}" for f in _BASE_FIELDS if f"self.{f} =" not in init_src]
    if consumer is not None:
        fetcher = getattr(consumer, "_fetcher", None)
        if not isinstance(fetcher, Fetcher):
            problems.append("KafkaConsumer._fetcher")
        else:
            conf = fetcher.config
            if conf.get("key_deserializer") is not None or conf.get("value_deserializer") is not None:
                problems.append("deserializers set (the tuples carry raw bytes)")
    if problems:
        raise RuntimeError(
            "kafka-python's fetcher internals changed (" + "; ".join(problems) + "): review "
            "tsrouter.fastfetch against the installed kafka-python, or set tsrouter.fast-fetch=false"
        )


def install(consumer: Any) -> None:
    """Make this consumer's poll() return (offset, timestamp, key, value, headers) tuples."""
    check(consumer)
    consumer._fetcher.PartitionRecords = TupleRecords


def decode_records(
    data: bytes, pos: int, count: int, base_offset: int, first_ts: int, fixed_ts: int | None
) -> Iterator[Record]:
    """The records of one uncompressed v2 record batch body, data[pos:], in order.

    fixed_ts: the batch's max timestamp when its timestamp type is log-append time (every
    record then carries it), else None (first_ts + each record's delta)."""
    end = len(data)
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
                headers: Any = _NO_HEADERS
                pos += 1
            else:
                headers, pos = _decode_headers(data, pos)
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


def _decode_headers(data: bytes, pos: int) -> tuple[list[tuple[str, bytes | None]], int]:
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


class TupleRecords(Fetcher.PartitionRecords):  # kafka-python: untyped base
    """kafka-python's PartitionRecords, yielding Record tuples instead of ConsumerRecords."""

    def _maybe_skip_record(self, record: Record) -> bool:
        # A fetch from the middle of a (compressed) batch returns the whole batch.
        return record[0] < self.fetch_offset

    def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Iterator[Any]:
        read_committed = self.isolation_level == IsolationLevel.READ_COMMITTED
        last_batch = None
        batch = records.next_batch()
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise CorruptRecordError(
                    f"Record batch for partition {self.topic_partition} at offset {batch.base_offset} failed crc check"
                )
            if batch.magic != 2:
                # Message formats v0/v1 (old data only): kafka-python's own records.
                for r in batch:
                    if self.check_crcs and not r.validate_crc():
                        raise CorruptRecordError(
                            f"Record for partition {self.topic_partition} at offset {r.offset} failed crc check"
                        )
                    self.records_read += 1
                    self.bytes_read += r.size_in_bytes
                    self.next_fetch_offset = r.offset + 1
                    yield (r.offset, r.timestamp, r.key, r.value, r.headers or _NO_HEADERS)
                batch = records.next_batch()
                continue
            self.leader_epoch = batch.leader_epoch
            if read_committed and batch.has_producer_id():
                self._consume_aborted_transactions_up_to(batch.last_offset)
                if self._contains_abort_marker(batch):
                    self.aborted_producer_ids.discard(batch.producer_id)
                elif self._is_batch_aborted(batch):
                    # An aborted transaction's records are never handed out.
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
            if batch.is_control_batch:
                # Commit/abort markers: not records for the application.
                self.next_fetch_offset = batch.next_offset
                batch = records.next_batch()
                continue
            batch._maybe_uncompress()
            fixed_ts = batch.max_timestamp if batch.timestamp_type == DefaultRecordBatch.LOG_APPEND_TIME else None
            n = batch._num_records
            self.bytes_read += batch.size_in_bytes
            self.records_read += n
            for rec in decode_records(
                bytes(batch._buffer), batch._pos, n, batch.base_offset, batch.first_timestamp, fixed_ts
            ):
                self.next_fetch_offset = rec[0] + 1
                yield rec
            batch = records.next_batch()
        # v2 keeps a batch's last offset even when compaction removed its last records:
        # continue after it, not inside it (else the same batch is fetched again and again).
        if last_batch is not None and last_batch.magic == 2:
            self.next_fetch_offset = last_batch.next_offset
        self.drain()
