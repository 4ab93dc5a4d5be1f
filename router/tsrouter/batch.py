"""Pure planning of one polled batch: what to send where, and which offsets it settles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .routing import Prefixes, Rejected, Routed, dead_letter_headers, output_headers, route


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[Any]
    partition: int | None  # None: let the producer's partitioner pick
    source_partition: int
    source_offset: int
    source_timestamp_ms: int | None
    channel: str  # "even", "odd" or "dlq"
    reason: str | None = None


@dataclass(frozen=True)
class Topics:
    even: str
    odd: str
    dead_letter: str


def plan_record(rec: Any, topics: Topics, prefixes: Prefixes, out_partitions: Mapping[str, int]) -> Outgoing:
    """One consumed record -> one outgoing record.

    The output partition follows the input partition (modulo the output's partition
    count), so records of one input partition stay in order downstream.
    """
    decision = route(rec.value, prefixes)
    ts = rec.timestamp if rec.timestamp is not None and rec.timestamp >= 0 else None
    if isinstance(decision, Routed):
        topic = topics.even if decision.channel == "even" else topics.odd
        n = out_partitions.get(topic)
        return Outgoing(
            topic,
            rec.key,
            decision.payload,
            output_headers(rec.headers),
            rec.partition % n if n else None,
            rec.partition,
            rec.offset,
            ts,
            decision.channel,
        )
    assert isinstance(decision, Rejected)
    n = out_partitions.get(topics.dead_letter)
    headers = dead_letter_headers(
        rec.headers, rec.topic, rec.partition, rec.offset, decision.reason, value_was_null=rec.value is None
    )
    # kafka-python refuses a record with neither key nor value; keep the DLQ record sendable.
    value = rec.value if rec.value is not None else b""
    return Outgoing(
        topics.dead_letter,
        rec.key,
        value,
        headers,
        rec.partition % n if n else None,
        rec.partition,
        rec.offset,
        ts,
        "dlq",
        decision.reason,
    )


def plan_batch(
    batch: Mapping[Any, Any], topics: Topics, prefixes: Prefixes, out_partitions: Mapping[str, int]
) -> list[Outgoing]:
    """{TopicPartition: [records]} -> outgoing records in input order per partition."""
    out = []
    for _tp, records in batch.items():
        for rec in records:
            out.append(plan_record(rec, topics, prefixes, out_partitions))
    return out


def next_offsets(batch: Mapping[Any, Any]) -> dict[Any, int]:
    """{TopicPartition: offset of the next record to read} for every partition in the batch."""
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}


def first_offsets(batch: Mapping[Any, Any]) -> dict[Any, int]:
    """{TopicPartition: first offset in the batch}: where to seek back to retry it."""
    return {tp: records[0].offset for tp, records in batch.items() if records}


def merge_offsets(pending: dict[Any, int], new: Mapping[Any, int]) -> dict[Any, int]:
    out = dict(pending)
    for tp, off in dict(new).items():
        if off > out.get(tp, -1):
            out[tp] = off
    return out


@dataclass
class Sent:
    """One batch whose records were handed to the producer and may still be in flight."""

    next_offsets: dict[Any, int]
    first_offsets: dict[Any, int]
    plan: list[Any]
    futures: list[Any]  # objects with .is_done, .succeeded(), .exception


def settle(inflight: list[Sent]) -> tuple[int, int | None]:
    """(number of leading batches fully acknowledged, index of the first failed batch or None).

    Batches settle strictly in order, so an offset is committable only when every earlier
    record was acknowledged too.
    """
    ok = 0
    while ok < len(inflight) and all(f.is_done and f.succeeded() for f in inflight[ok].futures):
        ok += 1
    failed = next(
        (i for i in range(ok, len(inflight)) if any(f.is_done and not f.succeeded() for f in inflight[i].futures)), None
    )
    return ok, failed


def rewind_offsets(batches: list[Sent]) -> dict[Any, int]:
    """Where to seek to replay every not-yet-acknowledged batch: the earliest first offset per partition."""
    out: dict[Any, int] = {}
    for s in batches:
        for tp, off in s.first_offsets.items():
            if tp not in out or off < out[tp]:
                out[tp] = off
    return out
