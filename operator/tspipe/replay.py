"""Replaying the input: the `tspipe.io/reset-offsets` annotation (pure).

The value says where the router's consumer group resumes on the input topic:

- `earliest`: every partition at its log start (everything still in the topic again);
- `latest`: every partition at its end (a backlog is skipped);
- an RFC 3339 time with a zone (`2026-12-05T09:00:00Z`, `...+01:00`, fractions
  allowed): each partition at its first record stamped at or after that time, or at
  its end when it has none;
- `partition:offset` pairs, comma-separated (`0:120,1:5`): those partitions at those
  offsets; partitions not named keep their committed offsets.

Like `tspipe.io/restart` it is an action, consumed once (switches.py says why an
annotation). Here: parsing the value, the plan (which offset each partition moves from
and to, or why the request is refused, naming the partition), telling the group's
members the operator owns (the router's pods) from others, and the texts. The phase
(phases/replay.py) reads the broker, stops the router, writes the offsets.

A request is refused, and nothing changed, when: the value is malformed; a partition
named does not exist; an offset is outside the partition's log start..end; a time lies
before the log start (the oldest record left is newer than the time and older records
were deleted, so the replay would silently start later than asked) or in the future (a
zone mistake more likely than a wish to skip everything); the group has members that
are not the router's pods; the broker needs credentials (the operator never reads
Secrets, so it cannot connect); a rollout is being verified (autoRollback reads the
group's offsets at both ends of its window); the router does not stop in time.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .names import RESET_OFFSETS_ANNOTATION

EARLIEST, LATEST, TIME, OFFSETS = "earliest", "latest", "time", "offsets"

# status.offsetReset.state
STOPPING = "StoppingRouter"  # the router is held at zero until its pods and members are gone
COMPLETED = "Completed"
REJECTED = "Rejected"
CANCELLED = "Cancelled"  # the annotation was removed before the offsets were written

# Reasons of the OffsetReset condition (besides STOPPING, COMPLETED and CANCELLED).
MALFORMED = "MalformedValue"
UNKNOWN_PARTITION = "UnknownPartition"
OUT_OF_RANGE = "OffsetOutOfRange"
BEFORE_LOG_START = "TimeBeforeLogStart"
IN_FUTURE = "TimeInFuture"
FOREIGN_MEMBERS = "GroupHasForeignMembers"
NO_INPUT_TOPIC = "InputTopicMissing"
CREDENTIALS_NOT_READABLE = "CredentialsNotReadable"
NOT_STOPPED = "RouterNotStopped"
ROLLOUT_VERIFYING = "RolloutVerifying"

NO_OFFSET = -1  # Kafka's "no committed offset", in status and history

_PAIR = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
# RFC 3339: date, T (or t, or a space), time, optional fraction, and a zone (Z or +hh:mm).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class ResetRequest:
    value: str  # the annotation as set (its removal is guarded by it)
    kind: str = ""  # EARLIEST, LATEST, TIME or OFFSETS; "" when malformed
    at_ms: int | None = None  # TIME: milliseconds since the epoch
    offsets: tuple[tuple[int, int], ...] = ()  # OFFSETS: (partition, offset), by partition
    problem: str = ""  # why the value is malformed ('' if it is not)

    @property
    def what(self) -> str:
        """The request in words, for messages."""
        return f"{RESET_OFFSETS_ANNOTATION}={self.value!r}"


def _malformed(value: str, why: str) -> ResetRequest:
    return ResetRequest(value, problem=f"{RESET_OFFSETS_ANNOTATION}={value!r}: {why}; nothing changed")


def parse_reset(value: str) -> ResetRequest:
    """The request a value asks for (`problem` says what is wrong with a malformed one)."""
    text = value.strip()
    low = text.lower()
    if low in (EARLIEST, LATEST):
        return ResetRequest(value, low)
    if not text:
        return _malformed(value, "empty (use earliest, latest, an RFC 3339 time or partition:offset pairs)")
    if _RFC3339.match(text):
        try:
            at = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError as exc:
            return _malformed(value, f"not a valid time ({exc})")
        return ResetRequest(value, TIME, at_ms=int(at.timestamp() * 1000))
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return _malformed(value, "a time needs seconds and a zone, e.g. 2026-12-05T09:00:00Z (RFC 3339)")
    if ":" in text:
        return _parse_pairs(value, text)
    return _malformed(
        value, "not earliest, latest, an RFC 3339 time (2026-12-05T09:00:00Z) or partition:offset pairs (0:120,1:5)"
    )


def _parse_pairs(value: str, text: str) -> ResetRequest:
    pairs: dict[int, int] = {}
    for item in text.split(","):
        m = _PAIR.match(item)
        if not m:
            return _malformed(value, f"{item.strip()!r} is not partition:offset (two whole numbers, e.g. 0:120)")
        partition, offset = int(m.group(1)), int(m.group(2))
        if partition in pairs:
            return _malformed(value, f"partition {partition} is named twice")
        pairs[partition] = offset
    return ResetRequest(value, OFFSETS, offsets=tuple(sorted(pairs.items())))


def reset_request(resource: dict[str, Any]) -> ResetRequest | None:
    """The pending reset (None: no annotation)."""
    value = ((resource.get("metadata") or {}).get("annotations") or {}).get(RESET_OFFSETS_ANNOTATION)
    return None if value is None else parse_reset(str(value))


@dataclass(frozen=True)
class PartitionState:
    """One input partition as the broker reports it."""

    partition: int
    start: int  # log start offset
    end: int  # log end offset (the next record's)
    committed: int | None  # the group's committed offset (None: none)
    at: int | None = None  # TIME: the first record stamped at or after the time (None: none)
    first_time: int | None = None  # TIME: the oldest record's timestamp in ms (None: empty partition)


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str
    partitions: tuple[int, ...] = ()  # of the input topic, as assigned


def owned(member: Member, router_deployment: str, pod_ips: Collection[str] = ()) -> bool:
    """A router pod's consumer: the router's client id is `tsrouter-<hostname>`, and a
    pod's hostname is its name, `<router Deployment>-<replica set hash>-<suffix>`; a
    router image of its own (another client id) is known by its pod's IP while the pod
    exists (the broker reports the member's host as `/<ip>`)."""
    if member.client_id.startswith(f"tsrouter-{router_deployment}-"):
        return True
    return member.host.lstrip("/") in pod_ips


@dataclass(frozen=True)
class Move:
    partition: int
    before: int  # NO_OFFSET: nothing was committed
    after: int


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...] = ()
    reason: str = ""  # why refused ('' : not refused)
    message: str = ""

    @property
    def refused(self) -> bool:
        return bool(self.reason)


def _refuse(r: ResetRequest, reason: str, why: str) -> Plan:
    return Plan(reason=reason, message=f"{r.what} refused: {why}; nothing changed")


def _time_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def plan(r: ResetRequest, topic: str, partitions: Sequence[PartitionState] | None, now_ms: int) -> Plan:
    """Where each partition of `topic` moves, or why the request is refused (the first
    partition at fault named). `partitions` None: the topic does not exist."""
    if r.problem:
        return Plan(reason=MALFORMED, message=r.problem)
    if partitions is None:
        return _refuse(r, NO_INPUT_TOPIC, f"the input topic {topic} does not exist")
    by_id = {s.partition: s for s in partitions}
    moves: list[Move] = []

    def move(s: PartitionState, to: int) -> None:
        moves.append(Move(s.partition, NO_OFFSET if s.committed is None else s.committed, to))

    if r.kind == OFFSETS:
        for partition, offset in r.offsets:
            s = by_id.get(partition)
            if s is None:
                known = f"0..{len(partitions) - 1}" if partitions else "none"
                return _refuse(
                    r, UNKNOWN_PARTITION, f"topic {topic} has no partition {partition} (partitions: {known})"
                )
            if not s.start <= offset <= s.end:
                return _refuse(
                    r,
                    OUT_OF_RANGE,
                    f"partition {partition} of {topic}: offset {offset} is outside {s.start}..{s.end} "
                    "(its log start..end)",
                )
            move(s, offset)
        return Plan(tuple(moves))
    if r.kind == TIME:
        assert r.at_ms is not None  # parse_reset sets it for TIME
        if r.at_ms > now_ms:
            return _refuse(r, IN_FUTURE, f"{_time_text(r.at_ms)} is in the future (now {_time_text(now_ms)})")
    for s in sorted(partitions, key=lambda s: s.partition):
        if r.kind == EARLIEST:
            move(s, s.start)
        elif r.kind == LATEST:
            move(s, s.end)
        else:
            assert r.at_ms is not None
            # Records before the log start were deleted: if the oldest one left is newer
            # than the time, some records from after the time may be gone.
            if s.start > 0 and s.first_time is not None and s.first_time > r.at_ms:
                return _refuse(
                    r,
                    BEFORE_LOG_START,
                    f"partition {s.partition} of {topic}: {_time_text(r.at_ms)} is before its log start "
                    f"(offset {s.start}, the oldest record left, is from {_time_text(s.first_time)}; "
                    "older records were deleted)",
                )
            move(s, s.end if s.at is None else s.at)
    return Plan(tuple(moves))


def refuse_members(r: ResetRequest, group: str, topic: str, foreign: Sequence[Member]) -> Plan:
    """The refusal for a group with members the operator does not own (they would keep
    committing over the reset, and the broker refuses offsets for a group with members)."""
    who = "; ".join(
        f"client {m.client_id} on {m.host}"
        + (f" holding partition(s) {', '.join(map(str, m.partitions))} of {topic}" if m.partitions else "")
        for m in foreign
    )
    return _refuse(
        r,
        FOREIGN_MEMBERS,
        f"consumer group {group} has {len(foreign)} member(s) that are not this pipeline's router: {who}; "
        "stop them first",
    )


def refuse_rollout(r: ResetRequest) -> Plan:
    """autoRollback's verification window reads the group's commits at both ends: moving
    them in between would read as records lost (or skipped)."""
    return _refuse(
        r,
        ROLLOUT_VERIFYING,
        "a rollout is being verified (spec.rollout.autoRollback reads the group's offsets at both ends of its "
        "window); ask again once status.rollout has its verdict",
    )


def refuse_credentials(r: ResetRequest) -> Plan:
    return _refuse(
        r,
        CREDENTIALS_NOT_READABLE,
        "the broker needs the credentials of spec.kafka.credentials and the operator never reads their Secret, "
        "so it cannot set the group's offsets; stop the router (spec.router.replicas: 0) and reset them with "
        "Kafka's kafka-consumer-groups.sh --reset-offsets",
    )


def moves_status(moves: Sequence[Move]) -> list[dict[str, int]]:
    """Per partition, from which offset to which (status and history)."""
    return [{"partition": m.partition, "from": m.before, "to": m.after} for m in moves]


def moves_text(moves: Sequence[Move]) -> str:
    if not moves:
        return "no partition"
    return ", ".join(
        f"partition {m.partition} {'none' if m.before == NO_OFFSET else m.before} -> {m.after}" for m in moves
    )
