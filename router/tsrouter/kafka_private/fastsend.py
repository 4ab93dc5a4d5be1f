"""Whole record batches into kafka-python's accumulator: one lock and one future per batch.

Why: `KafkaProducer.send()` was the router's largest cost (bench/results/router.md): per
record it validates, looks up metadata, takes the partition's lock, runs kafka-python's
generic record encoder and makes a future. Here the records of one poll that go to one
output partition are encoded (Kafka's record format v2, tsrouter.wire) into as few record
batches as `batch_size` allows, and each batch is handed to the accumulator whole. The sender thread
then sends them exactly as it sends its own (idempotence, transactions, retries and
delivery timeouts included), and each batch's one future settles all of its records.

This uses private API of kafka-python 3.0.12 (pinned in router/pyproject.toml): the
accumulator's `_batches`, `_tp_lock`, `_incomplete` and `_appends_in_progress`,
`ProducerBatch`, `MemoryRecordsBuilder._builder`/`_next_offset` and the fields of
`DefaultRecordBatchBuilder`. `problems()` and `behaviour_problems()` are its part of the
router's start-up check (tsrouter.kafka_private.check: another version, a field missing or
other bytes than kafka-python's own builder writes, and the router sends with
`KafkaProducer.send()` instead); `FastSender` refuses such a producer;
tests/router/test_fastsend.py compares the bytes with kafka-python's own encoder and
round-trips them through the real broker, so an upgrade that changes them fails loudly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kafka.producer.producer_batch import ProducerBatch
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder

from ..wire import BATCH_HEADER_SIZE, batch_records, encode_headers, encode_tail, rebatch_records
from .pin import version_problems

__all__ = [
    "BatchAck",
    "FastSender",
    "behaviour_problems",
    "build_batches",
    "build_from_records",
    "build_from_tails",
    "check",
    "problems",
]

# The broker refuses a batch larger than its message.max.bytes (1 MiB by default), and
# kafka-python would then split the batch by its per-record futures, which these batches
# do not have: stay well below.
MAX_BATCH_SIZE = 512 * 1024

_BUILDER_FIELDS = {"_buffer", "_first_timestamp", "_max_timestamp", "_num_records", "_last_offset"}
_ACCUMULATOR_FIELDS = ("_batches", "_tp_lock", "_incomplete", "_appends_in_progress", "_closed", "config")


def problems(producer: Any = None) -> list[str]:
    """What this kafka-python lacks of what FastSender relies on (empty: nothing); with a
    producer, also what that producer lacks."""
    missing = version_problems()
    if not set(DefaultRecordBatchBuilder.__slots__) >= _BUILDER_FIELDS:
        missing.append("DefaultRecordBatchBuilder fields")
    if not {"_builder", "_next_offset"} <= set(MemoryRecordsBuilder.__slots__):
        missing.append("MemoryRecordsBuilder fields")
    if DefaultRecordBatchBuilder.HEADER_STRUCT.size != BATCH_HEADER_SIZE:
        missing.append("DefaultRecordBatchBuilder.HEADER_STRUCT size")
    if producer is None:
        return missing
    acc = getattr(producer, "_accumulator", None)
    missing += [f for f in _ACCUMULATOR_FIELDS if acc is None or not hasattr(acc, f)]
    for name in ("_sender", "_transaction_manager"):
        if not hasattr(producer, name):
            missing.append(f"KafkaProducer.{name}")
    if acc is not None and getattr(acc, "config", {}).get("message_version") != 2:
        missing.append("record format v2")
    return missing


def behaviour_problems() -> list[str]:
    """Whether batches built here are byte for byte what kafka-python's own builder writes
    (its close() fills the batch header from the private fields set here; empty: they are)."""
    ts = 1_700_000_000_000
    records = [(None, b"0", []), (b"k", b"1" * 300, [("h", b"v"), ("null", None)])]
    try:
        ours = build_from_tails([encode_tail(k, v, encode_headers(h)) for k, v, h in records], 16384, 0, ts)
        for b in ours:
            b.close()
        theirs = MemoryRecordsBuilder(2, 0, 16384)
        for k, v, h in records:
            theirs.append(ts, k, v, h)
        theirs.close()
        same = [bytes(b.buffer()) for b in ours] == [bytes(theirs.buffer())]
    except Exception as exc:  # noqa: BLE001 - any failure is the finding, reported by the caller
        return [f"building a batch through MemoryRecordsBuilder's fields fails: {exc!r}"]
    return [] if same else ["batches built through MemoryRecordsBuilder's fields differ from its own"]


def check(producer: Any) -> None:
    """Raise unless this kafka-python has everything FastSender relies on."""
    missing = problems(producer)
    if missing:
        raise RuntimeError(
            "kafka-python's producer internals changed (" + ", ".join(missing) + "): review "
            "tsrouter.kafka_private.fastsend against the installed kafka-python, or set tsrouter.batch-send=false"
        )


def build_from_records(
    records: Sequence[bytes], batch_size: int, compression: int, ts: int
) -> list[MemoryRecordsBuilder]:
    """Whole records encoded as one batch's (tsrouter.wire.encode_record, index 0 on) -> open
    record batches (tsrouter.wire.rebatch_records)."""
    return [_builder(parts, batch_size, compression, ts) for parts in rebatch_records(records, batch_size)]


def build_batches(
    records: Sequence[tuple[bytes | None, bytes, list[Any] | None]],
    default_headers: bytes,
    batch_size: int,
    compression: int,
    ts: int,
) -> list[MemoryRecordsBuilder]:
    """records: (key, value, headers or None for default_headers, an encoded header block),
    in order -> open record batches (see build_from_tails)."""
    return build_from_tails(
        [
            encode_tail(key, value, default_headers if headers is None else encode_headers(headers))
            for key, value, headers in records
        ],
        batch_size,
        compression,
        ts,
    )


def build_from_tails(tails: Sequence[bytes], batch_size: int, compression: int, ts: int) -> list[MemoryRecordsBuilder]:
    """Records given by their tails (tsrouter.wire.encode_tail), in order -> open record
    batches of at most batch_size bytes (tsrouter.wire.batch_records), exactly as
    kafka-python's own builder writes them. One timestamp for all."""
    return [_builder(parts, batch_size, compression, ts) for parts in batch_records(tails, batch_size)]


def _builder(parts: list[bytes], batch_size: int, compression: int, ts: int) -> MemoryRecordsBuilder:
    # kafka-python's builder, filled behind its back: the records as encoded, and the
    # fields its close() writes into the batch header.
    builder = MemoryRecordsBuilder(2, compression, batch_size)
    inner = builder._builder
    inner._buffer += b"".join(parts)
    inner._first_timestamp = ts
    inner._max_timestamp = ts
    inner._num_records = len(parts)
    inner._last_offset = len(parts) - 1
    builder._next_offset = len(parts)
    return builder


class BatchAck:
    """The settlement of one produced batch: what the loop checks before committing.

    kafka-python completes a failed or aborted batch's future *successfully* with a
    function giving each record's error, so success means: done, and no such function."""

    __slots__ = ("_f", "records")

    def __init__(self, produce_future: Any, records: int):
        self._f = produce_future
        self.records = records

    @property
    def is_done(self) -> bool:
        return bool(self._f.is_done)

    def succeeded(self) -> bool:
        f = self._f
        return bool(f.is_done and f.succeeded() and f.value[2] is None)

    @property
    def exception(self) -> BaseException | None:
        f = self._f
        if not f.is_done:
            return None
        if f.failed():
            return f.exception
        fn = f.value[2]
        return fn(0) if fn is not None else None

    def get(self, timeout: float | None = None) -> None:
        self._f.wait(timeout)


class FastSender:
    """Encodes and enqueues whole batches on a KafkaProducer (see the module's note)."""

    def __init__(self, producer: Any, batch_size: int):
        check(producer)
        self._producer = producer
        self._acc = producer._accumulator
        self._batch_size = min(batch_size, MAX_BATCH_SIZE)
        self._compression = self._acc.config["compression_attrs"]
        self._topics: set[str] = set()

    def send(
        self, tp: Any, records: Sequence[tuple[bytes | None, bytes, list[Any] | None]], default_headers: bytes
    ) -> list[BatchAck]:
        """Enqueue one output partition's records (see build_batches); one BatchAck per batch."""
        tails = [encode_tail(k, v, default_headers if h is None else encode_headers(h)) for k, v, h in records]
        return self._send(tp, tails, build_from_tails)

    def send_records(self, tp: Any, records: Sequence[bytes]) -> list[BatchAck]:
        """Enqueue one output partition's whole records (encode_record, index 0 on)."""
        return self._send(tp, records, build_from_records)

    def _send(self, tp: Any, encoded: Sequence[bytes], build: Any) -> list[BatchAck]:
        if tp.topic not in self._topics:
            # The sender finds leaders only for topics the producer's metadata tracks, and
            # only send()/partitions_for() add them (kafka-python never drops one again).
            self._producer.partitions_for(tp.topic)
            self._topics.add(tp.topic)
        tm = self._producer._transaction_manager
        if tm is not None and tm.is_transactional():
            tm.maybe_add_partition_to_transaction(tp)
        ts = int(time.time() * 1000)
        builders = build(encoded, self._batch_size, self._compression, ts)
        return self._enqueue(tp, [ProducerBatch(tp, b) for b in builders])

    def _enqueue(self, tp: Any, batches: list[Any]) -> list[BatchAck]:
        acc = self._acc
        acc._appends_in_progress.increment()
        try:
            # Whole batches only: the sender thread never sees one still being filled.
            with acc._tp_lock(tp):
                if acc._closed:
                    raise RuntimeError("producer closed")
                dq = acc._batches[tp]
                for b in batches:
                    dq.append(b)
                    acc._incomplete.add(b)
        finally:
            acc._appends_in_progress.decrement()
        self._producer._sender.wakeup()
        return [BatchAck(b.produce_future, b.record_count) for b in batches]
