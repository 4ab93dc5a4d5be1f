"""The pipeline's status, computed from its Deployments (pure).

Phases: Pending (nothing created yet), Progressing (a rollout, a creation or a pause
is under way; the message names the components), Running (every component rolled
out and available: condition Ready=True), Degraded (some replicas unavailable, or a
rollout exceeded its progress deadline: reason ProgressDeadlineExceeded naming the
component, while the old pods keep serving), Paused (spec.paused and every app at
zero), Failed (the spec cannot be rendered, or the operator hit an error it cannot
fix by itself).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .history import next_history
from .model import Pipeline, PipelineError
from .pause import PAUSED, RUNNING, PauseState
from .render import COMPONENTS, app_spec, deployment_name, image_of, router_selector, spec_replicas
from .topics import input_partitions

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


def _ts(now: datetime | str) -> str:
    if isinstance(now, str):
        return now
    return now.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    progressing = conds.get("Progressing") or {}
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


def _condition(
    type_: str, status: bool, reason: str, message: str, generation: int | None, previous: dict[str, Any], now: str
) -> dict[str, Any]:
    value = "True" if status else "False"
    prev = previous.get(type_)
    since = (
        prev["lastTransitionTime"] if prev and prev.get("status") == value and prev.get("lastTransitionTime") else now
    )
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def _rolling_message(comps: dict[str, Any]) -> str:
    parts = [
        f"{k} ({c['updatedReplicas']}/{c['desiredReplicas']} updated, "
        f"{c['availableReplicas']}/{c['desiredReplicas']} available)"
        for k, c in comps.items()
        if not c["ready"]
    ]
    return "rolling out " + ", ".join(parts)


def compute_status(  # noqa: C901 - to be split (issue 12)
    resource: dict[str, Any],
    deployments: list[dict[str, Any]],
    now: datetime | str,
    *,
    error: str | None = None,
    topics: dict[str, Any] | None = None,
    pause: PauseState | None = None,
) -> dict[str, Any]:
    """Status for `resource` given its actual Deployments.

    `error`: a reconcile failure the operator cannot fix by itself (forbidden, a name
    taken by someone else's Deployment, ...); it makes the phase Failed.
    `topics`: the topic check's result (topics.topic_status), None when not managed.
    `pause`: the pause stage (pause.pause_state); None means the spec's replica counts.
    """
    now_s = _ts(now)
    meta = resource.get("metadata") or {}
    name = meta.get("name", "")
    generation = meta.get("generation")
    by_name = {(d.get("metadata") or {}).get("name"): d for d in deployments}
    p, invalid = _parse(resource)
    if pause is not None:
        desired = dict(pause.replicas)
    elif p is not None:
        desired = {c.spec_field: spec_replicas(p, c) for c in COMPONENTS}
    else:
        desired = {c.spec_field: (0 if c.router else 1) for c in COMPONENTS}
    stage = pause.stage if pause is not None else RUNNING
    pause_message = pause.message if pause is not None else ""

    comps = {}
    for c in COMPONENTS:
        dname = deployment_name(name, c)
        comps[c.spec_field] = _component(dname, desired[c.spec_field], by_name.get(dname))

    ready_n = sum(1 for c in comps.values() if c["ready"])
    not_ready = [
        f"{k} {c['availableReplicas']}/{c['desiredReplicas']} available" for k, c in comps.items() if not c["ready"]
    ]
    failed = [k for k, c in comps.items() if c["_failed"]]

    if invalid or error:
        phase = "Failed"
        reason = "InvalidSpec" if invalid else "ReconcileFailed"
        message = invalid or error or ""
    elif failed:
        # The old ReplicaSet keeps serving: degraded, not failed. Fix or roll back the spec.
        phase, reason = "Degraded", "ProgressDeadlineExceeded"
        deadline = p.progress_deadline_seconds if p else 600
        message = (
            f"rollout of {', '.join(failed)} made no progress within {deadline}s "
            f"(spec.rollout.progressDeadlineSeconds): " + ", ".join(not_ready)
        )
    elif stage == PAUSED and ready_n == len(comps):
        phase, reason, message = "Paused", "Paused", pause_message
    elif stage != RUNNING:
        # The stage as the reason: each step of a pause is a status change of its own.
        phase, reason, message = "Progressing", stage, pause_message
    elif not any(c["_exists"] for c in comps.values()):
        phase, reason, message = "Pending", "Creating", "no component created yet"
    elif ready_n == len(comps):
        phase, reason, message = "Running", "AllComponentsReady", "all components rolled out and available"
    elif any(c["_rolling"] for c in comps.values()):
        phase, reason = "Progressing", "RollingOut"
        message = _rolling_message(comps)
    else:
        phase, reason = "Degraded", "ComponentsUnavailable"
        message = "unavailable: " + ", ".join(not_ready)

    previous = {c.get("type"): c for c in ((resource.get("status") or {}).get("conditions") or [])}
    progressing = phase in ("Pending", "Progressing")
    if progressing or phase == "Failed" or reason == "ProgressDeadlineExceeded":
        p_reason = reason
    else:
        p_reason = {"Running": "RolloutComplete", "Degraded": "RolloutComplete", "Paused": "Paused"}[phase]
    conditions = [
        _condition("Ready", phase == "Running", reason, message, generation, previous, now_s),
        _condition(
            "Progressing",
            progressing,
            p_reason,
            "rollout complete" if phase == "Running" else message,
            generation,
            previous,
            now_s,
        ),
        _condition(
            "Degraded",
            phase in ("Degraded", "Failed"),
            reason if phase in ("Degraded", "Failed") else "AsExpected",
            message if phase in ("Degraded", "Failed") else "",
            generation,
            previous,
            now_s,
        ),
    ]
    if p is not None and not p.paused:
        parts = input_partitions(topics, p)
        if p.router.replicas > parts:
            conditions.append(
                _condition(
                    "RouterOverProvisioned",
                    True,
                    "MoreReplicasThanPartitions",
                    f"router has {p.router.replicas} replicas but input topic {p.kafka.topics.input} has {parts} "
                    f"partition(s): {p.router.replicas - parts} consumer(s) of the group sit idle",
                    generation,
                    previous,
                    now_s,
                )
            )
    if topics is not None:
        conditions.append(
            _condition("TopicsReady", topics["ready"], topics["reason"], topics["message"], generation, previous, now_s)
        )

    router = comps["router"]
    out = {
        "observedGeneration": generation,
        "phase": phase,
        "readyComponents": f"{ready_n}/{len(comps)}",
        # The scale subresource: replicas the router has, and how to find its pods.
        "replicas": (by_name.get(router["deployment"]) or {}).get("status", {}).get("replicas", 0),
        "selector": router_selector(name),
        "conditions": conditions,
        "components": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in comps.items()},
    }
    if topics is not None:
        out["topics"] = topics["topics"]
    if pause is not None and pause.source_stopped_at:
        out["pause"] = {"sourceStoppedAt": pause.source_stopped_at}
    if p is not None:
        images = {c.spec_field: app_spec(p, c).image for c in COMPONENTS}
        out["history"], out["specDigest"] = next_history(resource, images, now_s)
    else:
        prev = resource.get("status") or {}
        for key in ("history", "specDigest"):
            if key in prev:
                out[key] = prev[key]
    return out
