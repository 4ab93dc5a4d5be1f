"""The pipeline's status, computed from its Deployments (pure).

Phases: Pending (nothing created yet), Progressing (a rollout, a creation or a pause
is under way; the message names the components), Running (every component rolled
out and available: condition Ready=True), Degraded (some replicas unavailable, or a
rollout exceeded its progress deadline: reason ProgressDeadlineExceeded naming the
component, while the old pods keep serving), Paused (spec.paused and every app at
zero), Failed (the spec cannot be rendered, or the operator hit an error it cannot
fix by itself).

Pods are read only when some component is not ready: a pod the scheduler cannot place
(its condition PodScheduled=False, e.g. reason Unschedulable when no node matches a
podTemplate's nodeSelector) is named in `status.components.<app>.unschedulable`, in
the condition PodsUnschedulable (the component and the scheduler's reason and message)
and in the Progressing/Degraded message.

With spec.rollout.autoRollback, `status.rollout` is the last attempt's verdict
(rollback.py) and the condition RolloutVerified says it: True once the data checks
passed, False while verifying or after a failure. A rollback makes a Running pipeline
Degraded with reason RolledBack (the message names the stable generation and the check
that failed): it runs, but not the spec it was given.

Two conditions come from the annotation switches (switches.py): ReconciliationPaused
(held; the rest of the status is left as it was last reconciled, `observedGeneration`
included, so it says which spec is applied) and RestartRejected (the last
`tspipe.io/restart` named no app of the pipeline; kept until the next restart or spec
change). A third, OffsetReset, follows `tspipe.io/reset-offsets` (replay.py): True
while the router is held at zero for a reset (the phase is then Progressing with reason
StoppingRouter), False once it is done or refused; `status.offsetReset` keeps the last
request's outcome (per partition, from which offset to which).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import podhealth, replay, shadow
from .components import COMPONENTS, ROUTER
from .conditions import Condition, Phase, Reason
from .history import next_history
from .model import Pipeline, PipelineError
from .names import RECONCILE_PAUSED_ANNOTATION
from .pause import PAUSED, RUNNING, PauseState
from .render import SERVER_PORT, deployment_name, image_of, router_selector, spec_replicas
from .rollback import DEADLINE, FAILED, ROLLED_BACK, STABLE
from .stamps import format_time, parse_time
from .status_fields import Key
from .topics import input_partitions


def _component(name: str, desired: int, d: dict[str, Any] | None) -> dict[str, Any]:
    if d is None:
        return {
            "deployment": name,
            "desiredReplicas": desired,
            "updatedReplicas": 0,
            "readyReplicas": 0,
            "availableReplicas": 0,
            "ready": False,
            "_rolling": True,
            "_failed": False,
            "_exists": False,
        }
    spec_replicas = (d.get("spec") or {}).get("replicas", 1)
    st = d.get("status") or {}
    generation = (d.get("metadata") or {}).get("generation", 0)
    updated = st.get("updatedReplicas", 0)
    total = st.get("replicas", 0)
    available = st.get("availableReplicas", 0)
    observed = st.get("observedGeneration", 0) >= generation
    # `kubectl rollout status`'s test, plus: the Deployment asks for what we want.
    updated_all = observed and spec_replicas == desired and updated == desired and total == updated
    complete = updated_all and available == updated
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    progressing = conds.get("Progressing") or {}  # the Deployment's own condition
    failed = progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded"
    # Once a rollout finished, the Deployment keeps reason NewReplicaSetAvailable: pods
    # missing after that are a degradation, not a rollout.
    was_complete = progressing.get("reason") == "NewReplicaSetAvailable"
    out = {
        "deployment": name,
        "desiredReplicas": desired,
        "updatedReplicas": updated,
        "readyReplicas": st.get("readyReplicas", 0),
        "availableReplicas": available,
        "ready": complete,
        "_rolling": not complete and not (updated_all and was_complete),
        "_failed": failed,
        "_exists": True,
    }
    image = image_of(d)
    if image:
        out["image"] = image
    return out


def _parse(resource: dict[str, Any]) -> tuple[Pipeline | None, str | None]:
    try:
        return Pipeline.from_resource(resource), None
    except PipelineError as exc:
        return None, str(exc)


@dataclass(frozen=True)
class _Conditions:
    """Makes conditions for one status: a condition keeps its lastTransitionTime while
    its status stays the same."""

    generation: int | None
    previous: dict[str, Any]  # the current status's conditions by type
    now: str

    def __call__(self, type_: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        value = "True" if status else "False"
        prev = self.previous.get(type_)
        same = prev and prev.get("status") == value and prev.get("lastTransitionTime")
        return {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": prev["lastTransitionTime"] if prev and same else self.now,
            "observedGeneration": self.generation,
        }


RECONCILIATION_PAUSED = Condition.RECONCILIATION_PAUSED
RESTART_REJECTED = Condition.RESTART_REJECTED
PODS_UNSCHEDULABLE = Condition.PODS_UNSCHEDULABLE


def _live_pods(pods: Sequence[dict[str, Any]], pipeline_name: str, suffix: str) -> list[tuple[str, list[Any]]]:
    """(name, conditions) of a component's pods that are not being deleted."""
    return [
        (str((pod.get("metadata") or {}).get("name", "")), (pod.get("status") or {}).get("conditions") or [])
        for pod in podhealth.live_pods(pods, pipeline_name, suffix)
    ]


def unscheduled(pods: Sequence[dict[str, Any]], pipeline_name: str, suffix: str) -> dict[str, Any] | None:
    """Why a component's pods are not placed: {pods, reason, message} from the scheduler's
    PodScheduled=False condition (of the first such pod by name), or None."""
    found = [
        (name, cond)
        for name, conds in _live_pods(pods, pipeline_name, suffix)
        for cond in conds
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False"
    ]
    if not found:
        return None
    _, cond = min(found, key=lambda f: f[0])
    return {
        "pods": len(found),
        "reason": cond.get("reason") or Reason.UNSCHEDULABLE,
        "message": cond.get("message") or "",
    }


def ready_pods(pods: Sequence[dict[str, Any]], pipeline_name: str, suffix: str) -> list[str]:
    """Names of a component's pods that are Ready and not being deleted."""
    return sorted(
        name
        for name, conds in _live_pods(pods, pipeline_name, suffix)
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)  # the pod's condition
    )


def _unscheduled_message(comps: dict[str, Any]) -> str:
    return "; ".join(
        f"{k}: {u['pods']} pod(s) not scheduled ({u['reason']}): {u['message']}"
        for k, c in comps.items()
        if (u := c.get("unschedulable"))
    )


def _not_ready_message(comps: dict[str, Any]) -> str:
    return "; ".join(
        f"{k}: {n['pods']} pod(s) not ready ({n['reason']}): {n['message']}"
        for k, c in comps.items()
        if (n := c.get("notReady"))
    )


def _as_time(now: datetime | str) -> datetime:
    return parse_time(now) if isinstance(now, str) else now


def pods_recheck_after(p: Pipeline | None, name: str, pods: Sequence[dict[str, Any]], now: datetime) -> float | None:
    """When to look at the pods again: a running, unready pod's readiness probe will
    have had its full chance then (see podhealth)."""
    if p is None:
        return None
    waits = [podhealth.recheck_after(pods, name, c.suffix, p.app(c).probes.readiness, now) for c in COMPONENTS]
    return min((w for w in waits if w is not None), default=None)


def _rolling_message(comps: dict[str, Any]) -> str:
    parts = [
        f"{k} ({c['updatedReplicas']}/{c['desiredReplicas']} updated, "
        f"{c['availableReplicas']}/{c['desiredReplicas']} available)"
        for k, c in comps.items()
        if not c["ready"]
    ]
    return "rolling out " + ", ".join(parts)


def _desired_replicas(p: Pipeline | None, pause: PauseState | None) -> dict[str, int]:
    if pause is not None:
        return dict(pause.replicas)
    if p is not None:
        return {c.spec_field: spec_replicas(p, c) for c in COMPONENTS}
    return {c.spec_field: (0 if c.scalable else 1) for c in COMPONENTS}


def _phase(
    comps: dict[str, Any], p: Pipeline | None, problem: str | None, invalid: bool, pause: PauseState | None
) -> tuple[str, str, str]:
    """(phase, reason, message), the first that applies of the module docstring's phases."""
    ready_n = sum(1 for c in comps.values() if c["ready"])
    not_ready = [
        f"{k} {c['availableReplicas']}/{c['desiredReplicas']} available" for k, c in comps.items() if not c["ready"]
    ]
    failed = [k for k, c in comps.items() if c["_failed"]]
    stage = pause.stage if pause is not None else RUNNING
    pause_message = pause.message if pause is not None else ""
    if problem:
        return Phase.FAILED, Reason.INVALID_SPEC if invalid else Reason.RECONCILE_FAILED, problem
    if failed:
        # The old ReplicaSet keeps serving: degraded, not failed. Fix or roll back the spec.
        deadline = p.progress_deadline_seconds if p else 600
        return (
            Phase.DEGRADED,
            DEADLINE,
            f"rollout of {', '.join(failed)} made no progress within {deadline}s "
            f"(spec.rollout.progressDeadlineSeconds): " + ", ".join(not_ready),
        )
    if stage == PAUSED and ready_n == len(comps):
        return Phase.PAUSED, Reason.PAUSED, pause_message
    if stage != RUNNING:
        # The stage as the reason: each step of a pause is a status change of its own.
        return Phase.PROGRESSING, stage, pause_message
    if not any(c["_exists"] for c in comps.values()):
        return Phase.PENDING, Reason.CREATING, "no component created yet"
    if ready_n == len(comps):
        return Phase.RUNNING, Reason.ALL_COMPONENTS_READY, "all components rolled out and available"
    if any(c["_rolling"] for c in comps.values()):
        return Phase.PROGRESSING, Reason.ROLLING_OUT, _rolling_message(comps)
    return Phase.DEGRADED, Reason.COMPONENTS_UNAVAILABLE, "unavailable: " + ", ".join(not_ready)


def _conditions(
    cond: _Conditions, phase: str, reason: str, message: str, p: Pipeline | None, topics: dict[str, Any] | None
) -> list[dict[str, Any]]:
    progressing = phase in (Phase.PENDING, Phase.PROGRESSING)
    bad = phase in (Phase.DEGRADED, Phase.FAILED)
    if progressing or phase == Phase.FAILED or reason == DEADLINE:
        p_reason = reason
    else:
        p_reason = {
            Phase.RUNNING: Reason.ROLLOUT_COMPLETE,
            Phase.DEGRADED: Reason.ROLLOUT_COMPLETE,
            Phase.PAUSED: Reason.PAUSED,
        }[Phase(phase)]
    conditions = [
        cond(Condition.READY, phase == Phase.RUNNING, reason, message),
        cond(Condition.PROGRESSING, progressing, p_reason, "rollout complete" if phase == Phase.RUNNING else message),
        cond(Condition.DEGRADED, bad, reason if bad else Reason.AS_EXPECTED, message if bad else ""),
    ]
    if p is not None and not p.paused:
        parts = input_partitions(topics, p)
        if p.router.replicas > parts:
            conditions.append(
                cond(
                    Condition.ROUTER_OVER_PROVISIONED,
                    True,
                    Reason.MORE_REPLICAS_THAN_PARTITIONS,
                    f"router has {p.router.replicas} replicas but input topic {p.kafka.topics.input} has {parts} "
                    f"partition(s): {p.router.replicas - parts} consumer(s) of the group sit idle",
                )
            )
    if topics is not None:
        conditions.append(cond(Condition.TOPICS_READY, topics["ready"], topics["reason"], topics["message"]))
    return conditions


def _components(
    name: str,
    desired: dict[str, int],
    by_name: dict[Any, dict[str, Any]],
    p: Pipeline | None,
    pods: Sequence[dict[str, Any]],
    now: datetime | str,
) -> dict[str, dict[str, Any]]:
    """Each component's status; for one not ready, why its pods are not (if read)."""
    comps = {}
    for c in COMPONENTS:
        dname = deployment_name(name, c)
        comp = comps[c.spec_field] = _component(dname, desired[c.spec_field], by_name.get(dname))
        if comp["ready"] or not pods:
            continue
        u = unscheduled(pods, name, c.suffix)
        if u:
            comp["unschedulable"] = u
            continue
        probe = p.app(c).probes.readiness if p is not None else c.readiness
        nr = podhealth.not_ready(pods, name, c.suffix, probe, SERVER_PORT, _as_time(now))
        if nr:
            comp["notReady"] = nr
    return comps


def compute_status(
    resource: dict[str, Any],
    deployments: list[dict[str, Any]],
    now: datetime | str,
    *,
    error: str | None = None,
    topics: dict[str, Any] | None = None,
    pause: PauseState | None = None,
    pipeline: Pipeline | None = None,
    restarted: Sequence[str] = (),
    restart_rejected: str | None = None,
    autoscaling: dict[str, Any] | None = None,
    pods: Sequence[dict[str, Any]] = (),
    rollout: dict[str, Any] | None = None,
    offset_reset: dict[str, Any] | None = None,
    offset_reset_entry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Status for `resource` given its actual Deployments (and their pods, if read).

    `error`: a reconcile failure the operator cannot fix by itself (forbidden, a name
    taken by someone else's Deployment, ...); it makes the phase Failed.
    `topics`: the topic check's result (topics.topic_status), None when not managed.
    `pause`: the pause stage (pause.pause_state); None means the spec's replica counts.
    `pipeline`: `resource` already parsed; None parses it here (and reports it if invalid).
    `restarted`: apps restarted in this pass (a history entry); `restart_rejected`: why a
    restart request was refused in this pass (the RestartRejected condition).
    `autoscaling`: the autoscaler's report in this pass (status.autoscaling and the
    Autoscaling and ScalingLimitedByPartitions conditions); None when not configured.
    `pods`: the pipeline's pods (read when some component is not ready; see `needs_pods`).
    `rollout`: the rollout's verdict (rollback.py; status.rollout), None without autoRollback.
    `offset_reset`: a tspipe.io/reset-offsets under way, done or refused in this pass
    (status.offsetReset and the OffsetReset condition; None: the previous ones are kept);
    `offset_reset_entry`: the history entry of a reset done in this pass.
    """
    now_s = now if isinstance(now, str) else format_time(now)
    meta = resource.get("metadata") or {}
    name = meta.get("name", "")
    generation = meta.get("generation")
    by_name = {(d.get("metadata") or {}).get("name"): d for d in deployments}
    p, invalid = (pipeline, None) if pipeline is not None else _parse(resource)
    desired = _desired_replicas(p, pause)
    comps = _components(name, desired, by_name, p, pods, now)

    phase, reason, message = _phase(comps, p, invalid or error, invalid is not None, pause)
    phase, reason, message = _rollout_phase(phase, reason, message, rollout)
    reset: dict[str, Any] = offset_reset or (resource.get("status") or {}).get(Key.OFFSET_RESET) or {}
    phase, reason, message = _reset_phase(phase, reason, message, reset)
    stuck = _unscheduled_message(comps)
    unready = _not_ready_message(comps)
    if phase in (Phase.PROGRESSING, Phase.DEGRADED):
        message = "; ".join(m for m in (message, stuck, unready) if m)
    previous = {c.get("type"): c for c in ((resource.get("status") or {}).get(Key.CONDITIONS) or [])}
    router = comps[ROUTER.spec_field]
    cond = _Conditions(generation, previous, now_s)
    conditions = _conditions(cond, phase, reason, message, p, topics)
    if stuck:
        first = next(c["unschedulable"] for c in comps.values() if c.get("unschedulable"))
        conditions.append(cond(PODS_UNSCHEDULABLE, True, first["reason"], stuck))
    rejected = _restart_rejected(cond, previous.get(RESTART_REJECTED), restarted, restart_rejected)
    if rejected:
        conditions.append(rejected)
    conditions += _feature_conditions(cond, autoscaling, rollout)
    reset_condition = _offset_reset(cond, previous.get(OFFSET_RESET), offset_reset)
    if reset_condition:
        conditions.append(reset_condition)
    out: dict[str, Any] = {
        Key.OBSERVED_GENERATION: generation,
        Key.PHASE: phase,
        Key.READY_COMPONENTS: f"{sum(1 for c in comps.values() if c['ready'])}/{len(comps)}",
        # The scale subresource: replicas the router has, and how to find its pods.
        Key.REPLICAS: (by_name.get(router["deployment"]) or {}).get("status", {}).get("replicas", 0),
        Key.SELECTOR: router_selector(name),
        Key.CONDITIONS: conditions,
        Key.COMPONENTS: {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in comps.items()},
    }
    if topics is not None:
        out[Key.TOPICS] = topics["topics"]
    if pause is not None and pause.source_stopped_at:
        out[Key.PAUSE] = {"sourceStoppedAt": pause.source_stopped_at}
        if pause.drain:
            out[Key.PAUSE]["drain"] = pause.drain
        if pause.records_left is not None:
            out[Key.PAUSE]["recordsLeft"] = pause.records_left
    if autoscaling is not None:
        out[Key.AUTOSCALING] = {k: v for k, v in autoscaling.items() if k not in _CONDITION_ONLY}
    if rollout is not None:
        out[Key.ROLLOUT] = rollout
    if reset:
        out[Key.OFFSET_RESET] = reset
    if p is not None:
        images = {c.spec_field: p.app(c).image for c in COMPONENTS}
        out[Key.HISTORY], out[Key.SPEC_DIGEST] = next_history(
            resource,
            images,
            now_s,
            restarted=restarted,
            offset_reset=offset_reset_entry,
            shadow=shadow.history_entry((resource.get("status") or {}).get(Key.ROLLOUT), rollout),
        )
    else:
        prev = resource.get("status") or {}
        for key in (Key.HISTORY, Key.SPEC_DIGEST):
            if key in prev:
                out[key] = prev[key]
    return out


ROLLOUT_VERIFIED = Condition.ROLLOUT_VERIFIED
SHADOW_RELEASE = Condition.SHADOW_RELEASE


def _feature_conditions(
    cond: _Conditions, autoscaling: dict[str, Any] | None, rollout: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The conditions of the features a spec turned on (autoscaling, autoRollback)."""
    out = _autoscaling_conditions(cond, autoscaling) if autoscaling is not None else []
    if rollout is not None:
        verified = rollout.get("verdict") == STABLE
        out.append(cond(ROLLOUT_VERIFIED, verified, rollout.get("reason", ""), rollout.get("message", "")))
        sh = rollout.get("shadow")
        if sh:
            # The last router change's shadow: promoted, under way (the rollout's message
            # says where), rejected, or not run and why (the rolling strategy instead).
            verdict = sh.get("verdict")
            reason = sh.get("reason") or (shadow.SHADOWING if verdict is None else verdict)
            message = sh.get("message") or rollout.get("message", "")
            out.append(cond(SHADOW_RELEASE, verdict == shadow.PROMOTED, reason, message))
    return out


def _rollout_phase(phase: str, reason: str, message: str, rollout: dict[str, Any] | None) -> tuple[str, str, str]:
    """A failed attempt makes a Running pipeline Degraded: RolledBack (it runs the stable
    revision) or the failed check's reason (nothing to return to)."""
    verdict = (rollout or {}).get("verdict")
    if rollout is None or verdict not in (ROLLED_BACK, FAILED, shadow.SHADOW_REJECTED):
        return phase, reason, message
    why = f"{rollout.get('message', '')} [check: {rollout.get('reason', '')}]"
    if verdict == shadow.SHADOW_REJECTED:
        return (Phase.DEGRADED, shadow.SHADOW_REJECTED, why) if phase == Phase.RUNNING else (phase, reason, message)
    if phase == Phase.RUNNING:
        return Phase.DEGRADED, ROLLED_BACK if verdict == ROLLED_BACK else str(rollout.get("reason")), why
    if phase == Phase.PROGRESSING and verdict == ROLLED_BACK:
        return phase, reason, f"rolling back: {message}; {why}"
    return phase, reason, message


AUTOSCALING, SCALING_LIMITED = Condition.AUTOSCALING, Condition.SCALING_LIMITED
_CONDITION_ONLY = ("active", "reason", "message", "limitedByPartitions")


def _autoscaling_conditions(cond: _Conditions, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Autoscaling: True while the autoscaler decides (reason Enforcing or Recommending),
    False with the reason it stands aside. ScalingLimitedByPartitions: True while more
    replicas would help but the input topic has no more partitions for them."""
    out = [cond(AUTOSCALING, bool(report.get("active")), report["reason"], report.get("message", ""))]
    if report.get("active"):
        limited = bool(report.get("limitedByPartitions"))
        message = (
            f"lag {report.get('lag')} asks for more replicas than the input topic's {report.get('partitions')} "
            "partition(s); add partitions to scale further"
            if limited
            else ""
        )
        out.append(
            cond(SCALING_LIMITED, limited, Reason.AT_PARTITION_COUNT if limited else Reason.AS_EXPECTED, message)
        )
    return out


def _restart_rejected(
    cond: _Conditions, prev: dict[str, Any] | None, restarted: Sequence[str], rejected: str | None
) -> dict[str, Any] | None:
    """RestartRejected: set by a refused request; kept until a restart succeeds or the spec changes."""
    if rejected:
        return cond(RESTART_REJECTED, True, Reason.UNKNOWN_APP, rejected)
    if prev and not restarted and prev.get("observedGeneration") == cond.generation:
        return prev
    return None


OFFSET_RESET = Condition.OFFSET_RESET


def _reset_phase(phase: str, reason: str, message: str, reset: dict[str, Any]) -> tuple[str, str, str]:
    """While a reset holds the router at zero on purpose: Progressing, not Running, saying why."""
    if reset.get("state") == replay.STOPPING and phase in (Phase.RUNNING, Phase.PROGRESSING):
        return Phase.PROGRESSING, replay.STOPPING, str(reset.get("message", ""))
    return phase, reason, message


def _offset_reset(
    cond: _Conditions, prev: dict[str, Any] | None, report: dict[str, Any] | None
) -> dict[str, Any] | None:
    """OffsetReset: True while a reset is under way, False once done or refused; kept
    until the next request or spec change."""
    if report:
        under_way = report.get("state") == replay.STOPPING
        return cond(OFFSET_RESET, under_way, str(report.get("reason", "")), str(report.get("message", "")))
    if prev and prev.get("observedGeneration") == cond.generation:
        return prev
    return None


def needs_pods(status: dict[str, Any]) -> bool:
    """Whether a status computed without pods would say more with them (a component not ready)."""
    return any(not c.get("ready") for c in (status.get(Key.COMPONENTS) or {}).values())


def held_status(resource: dict[str, Any], now: datetime | str) -> dict[str, Any]:
    """Status while reconciliation is held: the last reconciled status, untouched (its
    observedGeneration says which spec the children have), plus ReconciliationPaused."""
    now_s = now if isinstance(now, str) else format_time(now)
    meta = resource.get("metadata") or {}
    prev = dict(resource.get("status") or {})
    previous = {c.get("type"): c for c in prev.get("conditions") or []}
    paused = _Conditions(meta.get("generation"), previous, now_s)(
        RECONCILIATION_PAUSED,
        True,
        RECONCILIATION_PAUSED,
        f'annotation {RECONCILE_PAUSED_ANNOTATION}="true": the operator writes nothing to the children '
        f"(spec changes, drift and restarts wait); remove it to catch up",
    )
    others = [c for c in prev.get("conditions") or [] if c.get("type") != RECONCILIATION_PAUSED]
    prev["conditions"] = others + [paused]
    return prev
