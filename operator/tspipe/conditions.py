"""The status vocabulary, declared once: a pipeline's phases, its condition types and the
reasons of the conditions status.py computes, each with what it tells a user.

status.py and status_policy.py build and read the status with these names, metrics.py
labels phases with them, and the CRD's status schema (crd.py) takes its phase enum and
the descriptions from here; docs/operating.md explains them at length. Reasons that
belong to one feature stay with its pure module and are named there (topics.py,
pause.py, autoscale.py, rollback.py).
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """`status.phase`: the first that applies, in this order of precedence."""

    FAILED = "Failed"
    DEGRADED = "Degraded"
    PAUSED = "Paused"
    PROGRESSING = "Progressing"
    PENDING = "Pending"
    RUNNING = "Running"


PHASE_MEANING: dict[Phase, str] = {
    Phase.PENDING: "nothing created yet",
    Phase.PROGRESSING: "a rollout, a creation or a pause is under way (the message names the components)",
    Phase.RUNNING: "every component rolled out and available (condition Ready=True)",
    Phase.DEGRADED: "some replicas unavailable, a rollout past its progress deadline, or a release rolled back",
    Phase.PAUSED: "spec.paused and every app at zero",
    Phase.FAILED: "the spec cannot be rendered, or the operator hit an error it cannot fix by itself",
}
# The order Prometheus series and the CRD's enum list them in: a pipeline's life.
PHASES: tuple[Phase, ...] = (
    Phase.PENDING,
    Phase.PROGRESSING,
    Phase.RUNNING,
    Phase.DEGRADED,
    Phase.PAUSED,
    Phase.FAILED,
)


class Condition(StrEnum):
    """`status.conditions[].type`."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    TOPICS_READY = "TopicsReady"
    ROUTER_OVER_PROVISIONED = "RouterOverProvisioned"
    PODS_UNSCHEDULABLE = "PodsUnschedulable"
    RESTART_REJECTED = "RestartRejected"
    RECONCILIATION_PAUSED = "ReconciliationPaused"
    AUTOSCALING = "Autoscaling"
    SCALING_LIMITED = "ScalingLimitedByPartitions"
    ROLLOUT_VERIFIED = "RolloutVerified"
    SHADOW_RELEASE = "ShadowRelease"
    OFFSET_RESET = "OffsetReset"


CONDITION_MEANING: dict[Condition, str] = {
    Condition.READY: "the phase is Running",
    Condition.PROGRESSING: "a creation, rollout or pause is under way",
    Condition.DEGRADED: "the phase is Degraded or Failed",
    Condition.TOPICS_READY: "spec.kafka.topics.manage: the topics exist as the spec asks",
    Condition.ROUTER_OVER_PROVISIONED: "more router replicas than input partitions (some sit idle)",
    Condition.PODS_UNSCHEDULABLE: "a component's pods cannot be placed (the scheduler's reason)",
    Condition.RESTART_REJECTED: "the last tspipe.io/restart named no app of the pipeline",
    Condition.RECONCILIATION_PAUSED: "tspipe.io/reconcile-paused holds every write to the children",
    Condition.AUTOSCALING: "spec.router.autoscaling: the autoscaler decides, or why it stands aside",
    Condition.SCALING_LIMITED: "more replicas would help but the input topic has no more partitions",
    Condition.ROLLOUT_VERIFIED: "spec.rollout.autoRollback: the last rollout passed its data checks",
    Condition.SHADOW_RELEASE: "spec.rollout.strategy Shadow: the last change to the router was run as a shadow and "
    "promoted (False while it runs, when it was rejected, or when it could not run: the reason says which)",
    Condition.OFFSET_RESET: "the last tspipe.io/reset-offsets: True while under way (the router stopped for it), "
    "False once done or refused (the reason says which, the message names the partition)",
}


class Reason(StrEnum):
    """Reasons of the conditions status.py computes itself."""

    INVALID_SPEC = "InvalidSpec"
    RECONCILE_FAILED = "ReconcileFailed"
    CREATING = "Creating"
    ALL_COMPONENTS_READY = "AllComponentsReady"
    ROLLING_OUT = "RollingOut"
    COMPONENTS_UNAVAILABLE = "ComponentsUnavailable"
    ROLLOUT_COMPLETE = "RolloutComplete"
    AS_EXPECTED = "AsExpected"  # a False Degraded or ScalingLimitedByPartitions: nothing wrong
    PAUSED = "Paused"
    MORE_REPLICAS_THAN_PARTITIONS = "MoreReplicasThanPartitions"
    UNKNOWN_APP = "UnknownApp"
    AT_PARTITION_COUNT = "AtPartitionCount"
    UNSCHEDULABLE = "Unschedulable"  # the scheduler's own, when a pod's condition gives none


def conditions_description() -> str:
    """The condition types and what each says, for the CRD's schema."""
    return "Condition types: " + "; ".join(f"{c.value}: {CONDITION_MEANING[c]}" for c in Condition) + "."


def phase_description() -> str:
    return "; ".join(f"{p.value}: {PHASE_MEANING[p]}" for p in PHASES) + "."
