"""Polled records as chunks of still-encoded record batches: kafka-python's fetcher without
a ConsumerRecord, or any object, per record.

Why: with whole batches on the produce side (tsrouter.kafka_private.fastsend), most of the router's main
thread went to kafka-python's consumer decode path (bench/results/router.md): per record a
`DefaultRecord` (seven varint decodes through a function call each, two byte copies, an
empty headers list), then a 13-field `ConsumerRecord`. Decoding into tuples instead still
left a third of the main thread in decoding. Now a poll hands out, per partition, chunks:
a `RawChunk` (tsrouter.chunks) is consecutive records of one record batch, its bytes
untouched, which the planner (tsrouter.rawplan.plan_chunks) reads straight into output
records; `records()` decodes one into `(offset, timestamp, key, value, headers)` tuples
(headers: a shared empty tuple when the record has none) for every other use. The record
format itself is tsrouter.wire's; this module holds only what touches kafka-python.

Only the per-record path is replaced: kafka-python still fetches, checks each batch's CRC
(check_crcs), decompresses, skips control batches and, under read_committed, the batches
of aborted transactions (with its own helpers). `take(n)` hands out whole chunks, splitting
the one that crosses max_poll_records, and moves `next_fetch_offset` past them, so its
`_append` moves the position exactly as for ConsumerRecords; the consumer's position,
commits, seeks and rebalances are untouched.

It is installed on one consumer (its fetcher's `PartitionRecords`, an instance attribute),
never globally. This is private API of kafka-python 3.0.12 (pinned in router/pyproject.toml):
`problems()` and `behaviour_problems()` are its part of the router's start-up check
(tsrouter.kafka_private.check: another version, a fetcher without what this relies on, or
other records than kafka-python's own, and the router uses ConsumerRecords instead);
`install()` refuses such a kafka-python; tests/router/test_fastfetch.py compares the decoded
chunks with kafka-python's own ConsumerRecords on the real broker (plain, compressed,
headers, a seek into a batch, transactions committed and aborted), and the positions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

from ..chunks import Chunk, ListChunk, RawChunk, Record
from ..wire import record_head
from .pin import version_problems

__all__ = [
    "ChunkRecords",
    "behaviour_problems",
    "check",
    "install",
    "problems",
]

_NO_HEADERS: tuple[()] = ()
_BASE = Fetcher.PartitionRecords
_BATCH_FIELDS = {"_buffer", "_pos", "_num_records"}
_BASE_METHODS = (
    "_consume_aborted_transactions_up_to",
    "_is_batch_aborted",
    "_contains_abort_marker",
    "_maybe_skip_record",
    "_unpack_records",
    "_maybe_raise_next_inline_exception",
    "drain",
    "take",
)
_BASE_FIELDS = (
    "fetch_offset",
    "next_fetch_offset",
    "isolation_level",
    "check_crcs",
    "leader_epoch",
    "record_iterator",
    "_next_inline_exception",
)


def problems(consumer: Any = None) -> list[str]:
    """What this kafka-python lacks of what ChunkRecords relies on (empty: nothing); with a
    consumer, also what that consumer lacks."""
    problems = version_problems()
    problems += [f"PartitionRecords.{m}" for m in _BASE_METHODS if not callable(getattr(_BASE, m, None))]
    if not set(DefaultRecordBatch.__slots__) >= _BATCH_FIELDS or not callable(
        getattr(DefaultRecordBatch, "_maybe_uncompress", None)
    ):
        problems.append("DefaultRecordBatch fields")
    try:
        init_src = inspect.getsource(_BASE.__init__)
        parse_src = inspect.getsource(Fetcher._parse_fetched_data)
        append_src = inspect.getsource(Fetcher._append)
    except (OSError, TypeError):
        init_src = parse_src = append_src = ""
    if "self.PartitionRecords(" not in parse_src:
        problems.append("Fetcher._parse_fetched_data no longer builds self.PartitionRecords")
    # take()'s chunks count as their records only through len(); the position is next_fetch_offset.
    if not all(x in append_src for x in ("part.take(max_records)", "len(part_records)", "part.next_fetch_offset")):
        problems.append("Fetcher._append no longer counts take()'s result by len()")
    problems += [f"PartitionRecords.{f}" for f in _BASE_FIELDS if f"self.{f} =" not in init_src]
    if consumer is not None:
        fetcher = getattr(consumer, "_fetcher", None)
        if not isinstance(fetcher, Fetcher):
            problems.append("KafkaConsumer._fetcher")
        else:
            conf = fetcher.config
            if conf.get("key_deserializer") is not None or conf.get("value_deserializer") is not None:
                problems.append("deserializers set (the tuples carry raw bytes)")
    return problems


def behaviour_problems() -> list[str]:
    """Whether ChunkRecords, on this kafka-python's PartitionRecords, hands out what kafka-python
    itself decodes from two record batches, fetched from inside the first, with take() split
    at a limit and the position moved past each take (empty: it does)."""
    tp = TopicPartition("tsrouter-check", 0)
    buf, want = b"", []
    for base in (0, 3):
        builder = MemoryRecordsBuilder(2, 0, 1 << 16)
        for i in range(3):
            builder.append(1000 + base + i, b"k" if i else None, b"%d" % (base + i), [("h", b"v")] if i == 2 else [])
        builder.close()
        batch = bytearray(builder.buffer())
        batch[0:8] = base.to_bytes(8, "big")  # the base offset, as the broker assigns it (outside the CRC)
        buf += bytes(batch)
    want = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for b in MemoryRecords(buf) for r in b][1:]
    try:
        part = ChunkRecords(1, tp, MemoryRecords(buf), check_crcs=True)
        first = part.take(2)
        after_first = part.next_fetch_offset
        rest = part.take(10)
        got = [(o, ts, k, v, list(h)) for c in [*first, *rest] for o, ts, k, v, h in c.records()]
        counted = (len(first), after_first, len(rest), part.next_fetch_offset)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding, reported by the caller
        return [f"ChunkRecords on PartitionRecords fails: {exc!r}"]
    if got != want or counted != (2, 3, 3, 6):
        return ["ChunkRecords on PartitionRecords hands out other records or positions than kafka-python's own"]
    return []


def check(consumer: Any = None) -> None:
    """Raise unless this kafka-python is the one ChunkRecords was written against."""
    found = problems(consumer)
    if found:
        raise RuntimeError(
            "kafka-python's fetcher internals changed (" + "; ".join(found) + "): review "
            "tsrouter.kafka_private.fastfetch against the installed kafka-python, or set tsrouter.fast-fetch=false"
        )


def install(consumer: Any) -> None:
    """Make this consumer's poll() return {TopicPartition: [chunk of records]}."""
    check(consumer)
    consumer._fetcher.PartitionRecords = ChunkRecords


class Taken(list[Any]):
    """What take() returns: chunks, whose len() is their number of records, because that is
    what kafka-python's fetcher counts against max_poll_records (list.extend still copies
    the chunks themselves)."""

    records = 0

    def __len__(self) -> int:
        return self.records


class ChunkRecords(Fetcher.PartitionRecords):  # kafka-python: untyped base
    """kafka-python's PartitionRecords, handing out chunks of records instead of ConsumerRecords."""

    _held: Chunk | None = None  # the rest of a chunk that a take() split

    def _maybe_skip_record(self, chunk: Chunk) -> bool:
        return False  # _unpack_records trims a chunk that starts before fetch_offset

    def take(self, n: int | None = None) -> Taken:
        """Chunks holding up to n records (a chunk is split at the limit), moving
        next_fetch_offset past them; an error after some records is raised by the next call."""
        self._maybe_raise_next_inline_exception()
        out = Taken()
        budget = n if n is not None else 1 << 62
        try:
            while budget > 0 and self.record_iterator is not None:
                chunk = self._held
                if chunk is None:
                    chunk = next(self.record_iterator, None)
                    if chunk is None:
                        break
                self._held = None
                if chunk.count > budget:
                    chunk, self._held = chunk.split(budget)
                out.append(chunk)
                out.records += chunk.count
                budget -= chunk.count
                self.next_fetch_offset = chunk.next_offset
        except Exception as e:  # as kafka-python's take(): the records first, the error next time
            if not out:
                raise
            self._next_inline_exception = e
        return out

    def _old_format(self, batch: Any) -> list[Record]:
        """Message formats v0/v1 (old data only): kafka-python's own records, as tuples."""
        out = []
        for r in batch:
            if self.check_crcs and not r.validate_crc():
                raise CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset {r.offset} failed crc check"
                )
            self.records_read += 1
            self.bytes_read += r.size_in_bytes
            if r.offset >= self.fetch_offset:
                out.append((r.offset, r.timestamp, r.key, r.value, r.headers or _NO_HEADERS))
        return out

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
                old = self._old_format(batch)
                if old:
                    yield ListChunk(old)
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
            data = bytes(batch._buffer)
            if n:
                first = batch.base_offset + record_head(data, batch._pos)[2]  # compaction may remove the first
                raw = RawChunk(
                    data,
                    batch._pos,
                    len(data),
                    n,
                    batch.base_offset,
                    batch.first_timestamp,
                    fixed_ts,
                    first,
                    batch.next_offset,
                )
                # A fetch from inside a batch returns it whole: start at the position.
                chunk = raw if first >= self.fetch_offset else raw.since(self.fetch_offset)
                if chunk is not None:
                    yield chunk
            batch = records.next_batch()
        # v2 keeps a batch's last offset even when compaction removed its last records:
        # continue after it, not inside it (else the same batch is fetched again and again).
        if last_batch is not None and last_batch.magic == 2:
            self.next_fetch_offset = last_batch.next_offset
        self.drain()
