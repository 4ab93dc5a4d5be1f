"""Where a consumer group's offsets move for a `tspipe.io/reset-offsets` request (pure,
standard library only).

Two programs carry out a reset and both plan it here: the operator (tspipe.replay,
phases/replay.py) when it can reach the broker itself, and the router image's
`tsp-router reset-offsets` (tsrouter.resetoffsets), which the operator runs as a Job
when the broker needs the pipeline's credentials (the operator never reads Secrets).
The operator and the router are separate distributions that import nothing from each
other (.importlinter), so this file exists twice, byte for byte:
operator/tspipe/offsetplan.py is the source and router/tsrouter/offsetplan.py its copy
(`make offsetplan` copies it; tests/operator/test_offsetplan_copy_unit.py checks they
are the same). It imports nothing but the standard library so that the copy works as is.

The value says where the group resumes on the input topic:

- `earliest`: every partition at its log start (everything still in the topic again);
- `latest`: every partition at its end (a backlog is skipped);
- an RFC 3339 time with a zone (`2026-12-05T09:00:00Z`, `...+01:00`, fractions
  allowed): each partition at its first record stamped at or after that time, or at
  its end when it has none;
- `partition:offset` pairs, comma-separated (`0:120,1:5`): those partitions at those
  offsets; partitions not named keep their committed offsets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ANNOTATION = "tspipe.io/reset-offsets"  # tspipe.names.RESET_OFFSETS_ANNOTATION (a unit test keeps them equal)
RESET_OFFSETS_ANNOTATION = ANNOTATION

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
    pod's hostname is its name, `<router Deployment>-<replica set hash>-<suffix>`; any
    other consumer of the pipeline's (a router image of its own, a log sink) is known by
    its pod's IP while the pod exists (the broker reports the member's host as `/<ip>`)."""
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


def refuse(r: ResetRequest, reason: str, why: str) -> Plan:
    return Plan(reason=reason, message=f"{r.what} refused: {why}; nothing changed")


def _time_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def plan(r: ResetRequest, topic: str, partitions: Sequence[PartitionState] | None, now_ms: int) -> Plan:
    """Where each partition of `topic` moves, or why the request is refused (the first
    partition at fault named). `partitions` None: the topic does not exist."""
    if r.problem:
        return Plan(reason=MALFORMED, message=r.problem)
    if partitions is None:
        return refuse(r, NO_INPUT_TOPIC, f"the input topic {topic} does not exist")
    by_id = {s.partition: s for s in partitions}
    moves: list[Move] = []

    def move(s: PartitionState, to: int) -> None:
        moves.append(Move(s.partition, NO_OFFSET if s.committed is None else s.committed, to))

    if r.kind == OFFSETS:
        for partition, offset in r.offsets:
            s = by_id.get(partition)
            if s is None:
                known = f"0..{len(partitions) - 1}" if partitions else "none"
                return refuse(r, UNKNOWN_PARTITION, f"topic {topic} has no partition {partition} (partitions: {known})")
            if not s.start <= offset <= s.end:
                return refuse(
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
            return refuse(r, IN_FUTURE, f"{_time_text(r.at_ms)} is in the future (now {_time_text(now_ms)})")
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
                return refuse(
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
    return refuse(
        r,
        FOREIGN_MEMBERS,
        f"consumer group {group} has {len(foreign)} member(s) that are not this pipeline's router or log sinks: {who}; "
        "stop them first",
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


# The result of a reset run elsewhere (the Job's `tsp-router reset-offsets`), as one JSON
# object in its container's termination message, which Kubernetes keeps to 4096 bytes.
RESULT_LIMIT = 4096


def result_document(group: str, topic: str, result: Plan, committed: bool) -> str:
    """The result as the Job writes it: per partition from -> to, or the refusal.
    `committed`: the offsets were written (the Job exits 0 only then). Partitions that
    do not fit the termination message are left out, saying how many."""
    doc: dict[str, object] = {"group": group, "topic": topic, "committed": committed}
    if result.refused:
        doc.update(reason=result.reason, message=result.message[:2000])
        return json.dumps(doc, separators=(",", ":"))
    moves = [[m.partition, m.before, m.after] for m in result.moves]
    doc["moves"] = moves
    text = json.dumps(doc, separators=(",", ":"))
    while len(text.encode()) > RESULT_LIMIT - 64 and moves:
        moves = moves[: len(moves) // 2]
        doc.update(moves=moves, left_out=len(result.moves) - len(moves))
        text = json.dumps(doc, separators=(",", ":"))
    return text


@dataclass(frozen=True)
class Result:
    """A reset's result as read back from the termination message."""

    committed: bool
    moves: tuple[Move, ...] = ()
    left_out: int = 0  # partitions moved but not listed (the message's size limit)
    reason: str = ""
    message: str = ""
    group: str = ""
    topic: str = ""


def parse_result(text: str) -> Result | None:
    """The result in a termination message (None: not one, e.g. a crash's last words)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("committed"), bool):
        return None
    try:
        moves = tuple(Move(int(p), int(b), int(a)) for p, b, a in doc.get("moves") or ())
        left_out = int(doc.get("left_out") or 0)
    except (TypeError, ValueError):
        return None
    return Result(
        committed=doc["committed"],
        moves=moves,
        left_out=left_out,
        reason=str(doc.get("reason") or ""),
        message=str(doc.get("message") or ""),
        group=str(doc.get("group") or ""),
        topic=str(doc.get("topic") or ""),
    )
