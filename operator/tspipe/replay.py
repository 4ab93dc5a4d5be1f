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
annotation). When the broker needs the pipeline's credentials the operator cannot read
it (it never reads Secrets): the same plan then runs in a one-shot Job of the router's
image (`tsp-router reset-offsets`, rendered by resetjob.py), which writes its result to
its termination message. Here (most of it in offsetplan.py): parsing the value, the
plan (which offset each partition moves from and to, or why the request is refused,
naming the partition), telling the group's members the operator owns (the router's
pods) from others, and the texts. The phase (phases/replay.py) reads the broker, stops the router, writes the offsets.

A request is refused, and nothing changed, when: the value is malformed; a partition
named does not exist; an offset is outside the partition's log start..end; a time lies
before the log start (the oldest record left is newer than the time and older records
were deleted, so the replay would silently start later than asked) or in the future (a
zone mistake more likely than a wish to skip everything); the group has members that
are not the router's pods; a rollout is being verified (autoRollback reads the
group's offsets at both ends of its window); the router does not stop in time.
"""

from __future__ import annotations

from typing import Any

from .names import RESET_OFFSETS_ANNOTATION

# The plan itself is shared with the router image's `tsp-router reset-offsets`
# (offsetplan.py says why it lives there); re-exported so the operator reads replay.X.
from .offsetplan import (
    BEFORE_LOG_START,
    CANCELLED,
    COMPLETED,
    CREDENTIALS_NOT_READABLE,
    EARLIEST,
    FOREIGN_MEMBERS,
    IN_FUTURE,
    LATEST,
    MALFORMED,
    NO_INPUT_TOPIC,
    NO_OFFSET,
    NOT_STOPPED,
    OFFSETS,
    OUT_OF_RANGE,
    REJECTED,
    ROLLOUT_VERIFYING,
    STOPPING,
    TIME,
    UNKNOWN_PARTITION,
    Member,
    Move,
    PartitionState,
    Plan,
    ResetRequest,
    Result,
    moves_status,
    moves_text,
    owned,
    parse_reset,
    parse_result,
    plan,
    refuse,
    refuse_members,
    result_document,
)

__all__ = [
    "BEFORE_LOG_START",
    "CANCELLED",
    "COMPLETED",
    "CREDENTIALS_NOT_READABLE",
    "EARLIEST",
    "FOREIGN_MEMBERS",
    "IN_FUTURE",
    "LATEST",
    "MALFORMED",
    "NOT_STOPPED",
    "NO_INPUT_TOPIC",
    "NO_OFFSET",
    "OFFSETS",
    "OUT_OF_RANGE",
    "REJECTED",
    "ROLLOUT_VERIFYING",
    "STOPPING",
    "TIME",
    "UNKNOWN_PARTITION",
    "Member",
    "Move",
    "PartitionState",
    "Plan",
    "ResetRequest",
    "Result",
    "moves_status",
    "moves_text",
    "owned",
    "parse_reset",
    "parse_result",
    "plan",
    "refuse",
    "refuse_credentials",
    "refuse_members",
    "refuse_rollout",
    "reset_request",
    "result_document",
]


def reset_request(resource: dict[str, Any]) -> ResetRequest | None:
    """The pending reset (None: no annotation)."""
    value = ((resource.get("metadata") or {}).get("annotations") or {}).get(RESET_OFFSETS_ANNOTATION)
    return None if value is None else parse_reset(str(value))


def refuse_rollout(r: ResetRequest) -> Plan:
    """autoRollback's verification window reads the group's commits at both ends: moving
    them in between would read as records lost (or skipped)."""
    return refuse(
        r,
        ROLLOUT_VERIFYING,
        "a rollout is being verified (spec.rollout.autoRollback reads the group's offsets at both ends of its "
        "window); ask again once status.rollout has its verdict",
    )


def refuse_credentials(r: ResetRequest) -> Plan:
    return refuse(
        r,
        CREDENTIALS_NOT_READABLE,
        "the broker needs the credentials of spec.kafka.credentials and the operator never reads their Secret, "
        "so it cannot set the group's offsets; stop the router (spec.router.replicas: 0) and reset them with "
        "Kafka's kafka-consumer-groups.sh --reset-offsets",
    )
