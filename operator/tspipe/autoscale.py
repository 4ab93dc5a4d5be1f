"""Scaling the router on its consumer group's lag (pure).

The recommendation is the HPA's rule for a value metric: `ceil(lag / target)` replicas,
within `minReplicas`..`maxReplicas` and never above the input topic's partition count (a
consumer beyond it would sit idle). Like the HPA, a recommendation is acted on only once
it is stable: up to the lowest count recommended over the scale-up window, down to the
highest over the scale-down window. The samples live in the operator's memory; after a
restart (or a gap: paused, broker down, an HPA in charge) nothing scales until a whole
window has been seen again, never on less evidence than the window asks for.

Only the decision is here; the controller measures the lag, finds external autoscalers,
applies the count (Enforce) and reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .model import Autoscaling

# status.autoscaling.source: where the lag came from.
SOURCE_KAFKA = "Kafka"

# Reasons of the Autoscaling condition.
ENFORCING, RECOMMENDING = "Enforcing", "Recommending"
EXTERNAL_AUTOSCALER = "ExternalAutoscaler"  # an HPA (or KEDA's) targets the pipeline
LAG_UNKNOWN = "LagUnknown"  # the broker did not answer
NO_CREDENTIALS_ACCESS = "LagNotReadable"  # a SASL broker: the operator never reads the Secret
PIPELINE_PAUSED = "PipelinePaused"
# The router group has no commit on the input: its lag is no router's backlog (a router
# that does not use the group it is given, as the seed recipe's, or one not committed yet).
NO_GROUP_COMMITS = "NoGroupCommits"
OFFSET_RESET = "OffsetReset"  # tspipe.io/reset-offsets holds the router at zero meanwhile


@dataclass(frozen=True)
class GroupLag:
    """The router group on the input topic, as the broker reports it."""

    lag: int  # records not committed (from the log start where the group has no commit)
    partitions: int
    committed: int  # partitions with a commit of the group


def group_unused(g: GroupLag, group: str, topic: str, keep: int) -> str | None:
    """Why the lag must not set the replicas, if so: records wait but the group has
    committed on no partition, so nothing consumes in it. A router that does not use the
    group it is given would be scaled on a backlog that only grows, and every replica of
    such a router reads the whole input (the recipe's writes every record once per
    replica). Only a group that commits somewhere is scaled on."""
    if g.committed or not g.lag:
        return None
    return (
        f"consumer group {group} has no committed offset on {topic} ({g.lag} records there): the router has not "
        "committed yet, or it does not use the consumer group it is given (the seed recipe's router has none), "
        f"and then the group's lag is no measure of its work; keeping {keep} replica(s)"
    )


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    replicas: int  # the recommendation then


@dataclass(frozen=True)
class Samples:
    """The recommendations seen, and since when they have been collected without a gap."""

    since: float | None = None
    items: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class Decision:
    replicas: int  # what the router should have now
    recommended: int  # what this lag alone asks for
    limited_by_partitions: bool  # more replicas would help but the input has no more partitions
    reason: str  # why `replicas`, for status and Events
    samples: Samples  # to hand to the next decision
    grow_partitions_to: int | None = None  # growPartitions: the input should get this many


def recommend(a: Autoscaling, lag: int, partitions: int) -> tuple[int, bool]:
    """Replicas for `lag` records over `partitions` input partitions, and whether the
    partition count is what holds it down."""
    need = math.ceil(lag / a.target_lag_per_replica)
    upper = max(a.min_replicas, min(a.max_replicas, partitions))
    limited = need > upper and partitions < a.max_replicas
    return max(a.min_replicas, min(need, upper)), limited


def decide(a: Autoscaling, current: int, lag: int, partitions: int, now: float, samples: Samples) -> Decision:
    """The router's replica count given its `current` count and the lag measured `now`."""
    rec, limited = recommend(a, lag, partitions)
    window = max(a.scale_up_stabilization_seconds, a.scale_down_stabilization_seconds)
    kept = tuple(s for s in samples.items if now - s.at <= window) + (Sample(now, rec),)
    since = samples.since if samples.since is not None else now
    up_to = min(s.replicas for s in kept if now - s.at <= a.scale_up_stabilization_seconds)
    down_to = max(s.replicas for s in kept if now - s.at <= a.scale_down_stabilization_seconds)
    seen = now - since  # how long the samples have been collected without a gap
    upper = max(a.min_replicas, min(a.max_replicas, partitions))
    wanted = f"lag {lag} over {partitions} partition(s), target {a.target_lag_per_replica} per replica"
    if current < a.min_replicas or current > upper:
        replicas = max(a.min_replicas, min(current, upper))
        reason = f"{current} is outside {a.min_replicas}..{upper} (min, max and partitions)"
    elif current < up_to and seen >= a.scale_up_stabilization_seconds:
        replicas, reason = up_to, f"{wanted}: {rec} recommended"
    elif current > down_to and seen >= a.scale_down_stabilization_seconds:
        replicas = down_to
        reason = f"{wanted}: {down_to} at most over the last {a.scale_down_stabilization_seconds}s"
    else:
        replicas = current
        if rec > current:
            reason = f"{wanted}: {rec} recommended, waiting for {a.scale_up_stabilization_seconds}s of agreement"
        elif rec < current:
            reason = f"{wanted}: {rec} recommended, waiting out the {a.scale_down_stabilization_seconds}s window"
        else:
            reason = f"{wanted}: {rec} is right"
    # Partitions cannot be taken back: grow only when the router already has one replica
    # per partition and every sample over the scale-up window asked for more.
    grow = None
    if (
        a.grow_partitions
        and limited
        and replicas == upper
        and up_to >= upper
        and seen >= a.scale_up_stabilization_seconds
    ):
        grow = grown_partitions(a, partitions)
        reason = f"{wanted}: {partitions} partition(s) are too few; growing the topics to {grow}"
    return Decision(replicas, rec, limited, reason, Samples(since, kept), grow)


def grown_partitions(a: Autoscaling, partitions: int) -> int:
    """The next partition count: doubled (a bounded step: the key-to-partition mapping
    changes once per step), never beyond what maxReplicas can use."""
    return max(partitions + 1, min(a.max_replicas, partitions * 2))
