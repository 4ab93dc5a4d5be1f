"""What a poll hands the router per partition: chunks of records, each still encoded or decoded.

A chunk has `count` records from `first_offset` on, the next read starts at `next_offset`,
`first_timestamp` is its first record's, and `records()` gives its records as tuples
(tsrouter.wire.Record). tsrouter.kafka_private.fastfetch makes RawChunks straight from the
fetched record batches; on the public path (tsrouter.fast-fetch off) the loop wraps
kafka-python's ConsumerRecords in a ListChunk. Pure: no I/O, no kafka-python.
"""

from __future__ import annotations

from .wire import Record, decode_records, record_head

__all__ = ["Chunk", "ListChunk", "RawChunk", "Record"]


class RawChunk:
    """`count` consecutive records of one v2 record batch, still encoded: data[pos:end].

    What a poll hands out per record batch: the router's planner reads the records straight
    into output batches (tsrouter.rawplan.plan_chunks) without a tuple per record; records()
    decodes them for everything else. first_offset/next_offset: the first record's offset
    and where the next read starts (after the batch's last offset for its last chunk, as
    kafka-python moves the position)."""

    __slots__ = ("base_offset", "count", "data", "end", "first_offset", "first_ts", "fixed_ts", "next_offset", "pos")

    def __init__(
        self,
        data: bytes,
        pos: int,
        end: int,
        count: int,
        base_offset: int,
        first_ts: int,
        fixed_ts: int | None,
        first_offset: int,
        next_offset: int,
    ):
        self.data, self.pos, self.end, self.count = data, pos, end, count
        self.base_offset, self.first_ts, self.fixed_ts = base_offset, first_ts, fixed_ts
        self.first_offset, self.next_offset = first_offset, next_offset

    def _at(self, pos: int, count: int, first_offset: int, next_offset: int) -> RawChunk:
        return RawChunk(
            self.data, pos, self.end, count, self.base_offset, self.first_ts, self.fixed_ts, first_offset, next_offset
        )

    def records(self) -> list[Record]:
        return list(
            decode_records(self.data, self.pos, self.count, self.base_offset, self.first_ts, self.fixed_ts, self.end)
        )

    @property
    def first_timestamp(self) -> int:
        if self.fixed_ts is not None:
            return self.fixed_ts
        return self.first_ts + record_head(self.data, self.pos)[1]

    def split(self, k: int) -> tuple[RawChunk, RawChunk]:
        """Its first k records (0 < k < count) and the rest."""
        data, pos = self.data, self.pos
        for _ in range(k):
            pos = record_head(data, pos)[0]
        mid = self.base_offset + record_head(data, pos)[2]
        head = self._at(self.pos, k, self.first_offset, mid)
        head.end = pos
        return head, self._at(pos, self.count - k, mid, self.next_offset)

    def since(self, offset: int) -> RawChunk | None:
        """Its records from `offset` on (None: none): a fetch from inside a batch returns it whole."""
        pos = self.pos
        for n in range(self.count):
            end, _ts, off_delta = record_head(self.data, pos)
            if self.base_offset + off_delta >= offset:
                return self._at(pos, self.count - n, self.base_offset + off_delta, self.next_offset)
            pos = end
        return None


class ListChunk:
    """Records already decoded (message formats v0/v1, or kafka-python's ConsumerRecords as
    tuples when tsrouter.fast-fetch is off), with RawChunk's interface."""

    __slots__ = ("_records", "count", "first_offset", "next_offset")

    def __init__(self, records: list[Record]):
        self._records = records
        self.count = len(records)
        self.first_offset = records[0][0]
        self.next_offset = records[-1][0] + 1

    def records(self) -> list[Record]:
        return self._records

    @property
    def first_timestamp(self) -> int:
        return self._records[0][1]

    def split(self, k: int) -> tuple[ListChunk, ListChunk]:
        return ListChunk(self._records[:k]), ListChunk(self._records[k:])

    def since(self, offset: int) -> ListChunk | None:
        rest = [r for r in self._records if r[0] >= offset]
        return ListChunk(rest) if rest else None


Chunk = RawChunk | ListChunk
