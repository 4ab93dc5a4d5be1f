"""Pure planning of one polled batch: what to send where, and which offsets it settles.

A polled batch is {TopicPartition: [chunk]} (tsrouter.chunks), in offset order per
partition: what tsrouter.kafka_private.fastfetch hands out (the loop wraps kafka-python's
ConsumerRecords in one chunk when it is off). A chunk has `count` records from `first_offset` on, the next read starts
at `next_offset`, and `records()` gives its records as tuples
(offset, timestamp, key, value, headers); headers may be an empty tuple.
tsrouter.rawplan plans still-encoded chunks directly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .routing import (
    DEAD_LETTER,
    EVEN,
    ODD,
    Prefixes,
    Rejected,
    Routed,
    dead_letter_headers,
    output_headers,
    route,
)


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
    channel: str  # EVEN, ODD or DEAD_LETTER
    reason: str | None = None


class InRecord(NamedTuple):
    """One consumed record with its source, for the general (slow) path and dead letters."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: Any


@dataclass(frozen=True)
class Topics:
    even: str
    odd: str
    dead_letter: str


def plan_record(rec: InRecord, topics: Topics, prefixes: Prefixes, out_partitions: Mapping[str, int]) -> Outgoing:
    """One consumed record -> one outgoing record.

    The output partition follows the input partition (modulo the output's partition
    count), so records of one input partition stay in order downstream.
    """
    decision = route(rec.value, prefixes)
    ts = rec.timestamp if rec.timestamp is not None and rec.timestamp >= 0 else None
    if isinstance(decision, Routed):
        topic = topics.even if decision.channel == EVEN else topics.odd
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
        DEAD_LETTER,
        decision.reason,
    )


def plan_batch(
    batch: Mapping[Any, Any], topics: Topics, prefixes: Prefixes, out_partitions: Mapping[str, int]
) -> list[Outgoing]:
    """{TopicPartition: [record tuples]} -> outgoing records in input order per partition."""
    out = []
    for tp, records in batch.items():
        for rec in records:
            out.append(plan_record(InRecord(tp.topic, tp.partition, *rec), topics, prefixes, out_partitions))
    return out


def records_of(batch: Mapping[Any, Any]) -> dict[Any, list[Any]]:
    """{TopicPartition: [chunk]} -> {TopicPartition: [record tuple]}."""
    return {tp: [r for c in chunks for r in c.records()] for tp, chunks in batch.items() if chunks}


def next_offsets(batch: Mapping[Any, Any]) -> dict[Any, int]:
    """{TopicPartition: offset of the next record to read} for every partition in the batch."""
    return {tp: chunks[-1].next_offset for tp, chunks in batch.items() if chunks}


def first_offsets(batch: Mapping[Any, Any]) -> dict[Any, int]:
    """{TopicPartition: first offset in the batch}: where to seek back to retry it."""
    return {tp: chunks[0].first_offset for tp, chunks in batch.items() if chunks}


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
    plan: Any  # Planned (or a list of Outgoing in tests)
    futures: list[Any]  # objects with .is_done, .succeeded(), .exception
    records: dict[Any, int] = field(default_factory=dict)  # {TopicPartition: records in the batch}


def record_counts(batch: Mapping[Any, Any]) -> dict[Any, int]:
    """{TopicPartition: number of records} of a polled batch (offsets would also count the
    commit markers of a transactional input, which are no records)."""
    return {tp: sum(c.count for c in chunks) for tp, chunks in batch.items() if chunks}


class CommitLedger:
    """Acknowledged records per input partition, until a commit covers their offsets.

    It feeds tsrouter_records_committed: only records the broker acknowledged (routed or
    dead-lettered, and counted as such first) ever enter it, so for a correct router
    committed <= routed + dead-lettered holds at every instant; a release that commits
    what it never delivered shows as the difference."""

    def __init__(self) -> None:
        self._open: dict[Any, deque[tuple[int, int]]] = {}

    def acknowledged(self, records: Mapping[Any, int], next_offsets: Mapping[Any, int]) -> None:
        for tp, n in records.items():
            self._open.setdefault(tp, deque()).append((next_offsets[tp], n))

    def committed(self, tp: Any, offset: int) -> int:
        """Records of `tp` whose offsets a commit up to `offset` (exclusive) covers; they leave."""
        segments = self._open.get(tp)
        n = 0
        while segments and segments[0][0] <= offset:
            n += segments.popleft()[1]
        return n

    def forget(self, tps: Iterable[Any] | None = None) -> None:
        """Partitions whose acknowledged offsets will not be committed here (lost to another
        member); None: all of them."""
        if tps is None:
            self._open.clear()
        for tp in tps or ():
            self._open.pop(tp, None)


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


ASCII_DIGITS = frozenset(b"0123456789")


class Planned:
    """One polled batch, planned for sending by output partition.

    groups: {(topic, partition or None): [(key, value, headers)]} in input order per
    partition; headers None means the shared default (contentType: text/plain), so a
    record without input headers costs no header objects of its own. When `encoded`
    (tsrouter.rawplan), each record is encoded whole instead, as its partition's one output
    batch would hold it (tsrouter.wire.encode_record), and every partition is known."""

    __slots__ = ("counts", "dead", "encoded", "groups", "oldest_ts")

    def __init__(self, encoded: bool = False) -> None:
        self.encoded = encoded
        self.groups: dict[tuple[str, int | None], list[Any]] = {}
        self.counts = {EVEN: 0, ODD: 0, DEAD_LETTER: 0}
        self.dead: list[Outgoing] = []
        self.oldest_ts: int | None = None


def plan_groups(
    batch: Mapping[Any, Any], topics: Topics, prefixes: Prefixes, out_partitions: Mapping[str, int]
) -> Planned:
    """Like plan_batch ({TopicPartition: [record tuple]}), grouped by output partition, with
    a fast path for the common value.

    A value that is ASCII, has no headers and ends in an ASCII digit is routed on its raw
    bytes: route() would decode it, find no JSON quotes (it ends in a digit) and judge the
    same last character; anything else goes through plan_record()."""
    p = Planned()
    groups = p.groups
    even_t, odd_t = topics.even, topics.odd
    n_even, n_odd = out_partitions.get(even_t), out_partitions.get(odd_t)
    pe, po = prefixes.even, prefixes.odd
    digits = ASCII_DIGITS
    n_e = n_o = 0
    oldest: int | None = None
    for tp, records in batch.items():
        if not records:
            continue
        ts0 = records[0][1]
        if ts0 is not None and ts0 >= 0 and (oldest is None or ts0 < oldest):
            oldest = ts0
        part = tp.partition
        even_list = groups.setdefault((even_t, part % n_even if n_even else None), [])
        odd_list = groups.setdefault((odd_t, part % n_odd if n_odd else None), [])
        for rec in records:
            _off, _ts, key, v, headers = rec
            if v and v[-1] in digits and not headers and v.isascii():
                if v[-1] & 1:
                    odd_list.append((key, po + v, None))
                    n_o += 1
                else:
                    even_list.append((key, pe + v, None))
                    n_e += 1
                continue
            o = plan_record(InRecord(tp.topic, part, *rec), topics, prefixes, out_partitions)
            groups.setdefault((o.topic, o.partition), []).append((o.key, o.value, o.headers))
            p.counts[o.channel] += 1
            if o.channel == DEAD_LETTER:
                p.dead.append(o)
    p.counts[EVEN] += n_e
    p.counts[ODD] += n_o
    p.oldest_ts = oldest
    for k in [k for k, v in groups.items() if not v]:
        del groups[k]
    return p
