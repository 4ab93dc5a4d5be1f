"""The pipeline's Kafka topics (pure): what should exist, what to change, what to report.

Kafka can add partitions to a topic but never remove them, and this operator does
not reassign replicas; so a topic with more partitions than the spec asks for, or
another replication factor, is reported (with the reason) and left alone. The
topic-level settings the spec names (spec.kafka.topics.config) are set at creation and
put back when they drift; settings it does not name are the broker's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import Pipeline
from .names import OUTPUTS

ROLES = ("input", *OUTPUTS)

# Per-topic states in status.topics[].state.
READY, CREATED, GROWN, SHRINK_REFUSED, RF_MISMATCH, UNKNOWN = (
    "Ready",
    "Created",
    "Grown",
    "ShrinkRefused",
    "ReplicationFactorMismatch",
    "Unknown",
)
RECONFIGURED = "Reconfigured"  # settings had drifted from the spec and were put back in this pass
# Reasons of the TopicsReady condition.
TOPICS_READY = "TopicsReady"
TOPIC_CHANGE_FAILED = "TopicChangeFailed"
PARTITION_SHRINK_REFUSED = "PartitionShrinkRefused"
REPLICATION_FACTOR_MISMATCH = "ReplicationFactorMismatch"
BROKER_UNREACHABLE = "BrokerUnreachable"
TOPIC_CHECK_FAILED = "TopicCheckFailed"  # the broker answered but refused (auth, policy)


@dataclass(frozen=True)
class DesiredTopic:
    role: str
    name: str
    partitions: int
    replication_factor: int
    config: tuple[tuple[str, str], ...] = ()  # (setting, broker value), as the spec asks


@dataclass(frozen=True)
class TopicPlan:
    create: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (partitions, rf)
    grow: dict[str, int] = field(default_factory=dict)  # name -> new total partitions
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (state, why)
    # name -> settings to set: all the spec's for a topic to create, the drifted ones of another
    configure: dict[str, dict[str, str]] = field(default_factory=dict)


def desired_topics(p: Pipeline) -> list[DesiredTopic]:
    t = p.kafka.topics
    names = {role: t.name(role) for role in ROLES[:-1]} | {"deadLetter": t.dead_letter(p.stream_name)}
    return [DesiredTopic(role, names[role], t.partitions, t.replication_factor, t.config) for role in ROLES]


def fingerprint(p: Pipeline) -> tuple[Any, ...]:
    """Everything the topic work depends on: unchanged fingerprint, nothing to redo."""
    return (p.kafka.brokers, tuple(desired_topics(p)))


def plan_topics(
    desired: list[DesiredTopic],
    actual: dict[str, tuple[int, int] | None],
    configs: dict[str, dict[str, str]] | None = None,
) -> TopicPlan:
    """`actual`: name -> (partitions, replication factor), or None when it does not exist;
    `configs`: name -> the broker's values of the settings the spec names (None: not read,
    nothing to put back)."""
    out = TopicPlan()
    for d in desired:
        a = actual.get(d.name)
        if a is None:
            out.create[d.name] = (d.partitions, d.replication_factor)
            if d.config:
                out.configure[d.name] = dict(d.config)
            continue
        if configs is not None:
            have = configs.get(d.name) or {}
            drifted = {k: v for k, v in d.config if have.get(k) != v}
            if drifted:
                out.configure[d.name] = drifted
        parts, rf = a
        if parts > d.partitions:
            out.refused[d.name] = (
                SHRINK_REFUSED,
                f"has {parts} partitions, the spec asks for {d.partitions}: Kafka cannot "
                "remove partitions (raise spec.kafka.topics.partitions to match, or recreate "
                "the topic by hand)",
            )
        elif parts < d.partitions:
            out.grow[d.name] = d.partitions
        if rf != d.replication_factor:
            out.refused.setdefault(
                d.name,
                (
                    RF_MISMATCH,
                    f"has replication factor {rf}, the spec asks for "
                    f"{d.replication_factor}: changing it needs a partition "
                    "reassignment, which this operator does not do",
                ),
            )
    return out


def topic_status(
    desired: list[DesiredTopic],
    actual: dict[str, tuple[int, int] | None],
    plan: TopicPlan,
    failed: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Status after applying `plan` (`failed`: name -> error of a create/grow that failed).

    Returns {"ready", "reason", "message", "topics": [...]} for status.topics and the
    TopicsReady condition."""
    failed = failed or {}
    entries, problems = [], []
    for d in desired:
        a = actual.get(d.name)
        entry: dict[str, Any] = {"role": d.role, "name": d.name}
        if d.name in failed:
            state, why = UNKNOWN, failed[d.name]
            entry.update(state=state, message=why)
            problems.append(f"{d.name}: {why}")
        elif d.name in plan.create:
            entry.update(state=CREATED, partitions=d.partitions, replicationFactor=d.replication_factor)
        else:
            assert a is not None  # neither created nor failed: it exists
            parts, rf = a
            if d.name in plan.grow:
                parts = plan.grow[d.name]
            entry.update(partitions=parts, replicationFactor=rf)
            if d.name in plan.refused:
                state, why = plan.refused[d.name]
                entry.update(state=state, message=why)
                problems.append(f"{d.name} {why}")
            elif d.name in plan.configure:
                put_back = ", ".join(f"{k}={v}" for k, v in sorted(plan.configure[d.name].items()))
                entry.update(state=RECONFIGURED, message=f"settings put back as the spec asks: {put_back}")
            else:
                entry["state"] = GROWN if d.name in plan.grow else READY
        entries.append(entry)
    if failed:
        reason = TOPIC_CHANGE_FAILED
    elif any(e["state"] == SHRINK_REFUSED for e in entries):
        reason = PARTITION_SHRINK_REFUSED
    elif problems:
        reason = REPLICATION_FACTOR_MISMATCH
    else:
        reason = TOPICS_READY
    return {
        "ready": not problems,
        "reason": reason,
        "message": "; ".join(problems) if problems else "all topics exist as declared",
        "topics": entries,
    }


def unreachable_status(desired: list[DesiredTopic], brokers: tuple[str, ...], error: str) -> dict[str, Any]:
    # The message stays the same between retries (no timestamps, no attempt counts),
    # so retrying against a dead broker does not rewrite the status.
    return {
        "ready": False,
        "reason": BROKER_UNREACHABLE,
        "message": f"Kafka at {','.join(brokers)} did not answer: {error}",
        "topics": [{"role": d.role, "name": d.name, "state": UNKNOWN} for d in desired],
    }


def input_partitions(topics: dict[str, Any] | None, p: Pipeline) -> int:
    """Partitions of the input topic: as seen on the broker if known, else as declared."""
    for e in (topics or {}).get("topics") or []:
        if e["role"] == "input" and e.get("partitions"):
            return int(e["partitions"])
    return p.kafka.topics.partitions
