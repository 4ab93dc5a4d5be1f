"""The pipeline's status, computed from its Deployments (pure).

Phases: Pending (nothing created yet), Progressing (a rollout or creation is under
way), Running (every component rolled out and available), Degraded (rolled out but
some replicas unavailable), Failed (a rollout exceeded its progress deadline, the
spec cannot be rendered, or the operator hit an error it cannot fix by itself).
"""
from __future__ import annotations

from datetime import datetime, timezone

from .model import Pipeline, PipelineError
from .render import COMPONENTS, deployment_name, image_of

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


def _ts(now: datetime | str) -> str:
    if isinstance(now, str):
        return now
    return now.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _component(name: str, desired: int, d: dict | None) -> dict:
    if d is None:
        return {"deployment": name, "desiredReplicas": desired, "updatedReplicas": 0, "readyReplicas": 0,
                "availableReplicas": 0, "ready": False, "_rolling": True, "_failed": False, "_exists": False}
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


def _desired_replicas(resource: dict) -> tuple[dict[str, int], str | None]:
    try:
        p = Pipeline.from_resource(resource)
    except PipelineError as exc:
        return {c.spec_field: (0 if c.router else 1) for c in COMPONENTS}, str(exc)
    return {c.spec_field: (p.router.replicas if c.router else 1) for c in COMPONENTS}, None


def _condition(type_: str, status: bool, reason: str, message: str, generation, previous: dict, now: str) -> dict:
    value = "True" if status else "False"
    prev = previous.get(type_)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == value and prev.get("lastTransitionTime") else now
    return {"type": type_, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def compute_status(resource: dict, deployments: list[dict], now: datetime | str, *,
                   error: str | None = None) -> dict:
    """Status for `resource` given its actual Deployments.

    `error`: a reconcile failure the operator cannot fix by itself (forbidden, a name
    taken by someone else's Deployment, ...); it makes the phase Failed.
    """
    now_s = _ts(now)
    meta = resource.get("metadata") or {}
    name = meta.get("name", "")
    generation = meta.get("generation")
    by_name = {(d.get("metadata") or {}).get("name"): d for d in deployments}
    desired, invalid = _desired_replicas(resource)

    comps = {}
    for c in COMPONENTS:
        dname = deployment_name(name, c)
        comps[c.spec_field] = _component(dname, desired[c.spec_field], by_name.get(dname))

    ready_n = sum(1 for c in comps.values() if c["ready"])
    not_ready = [f"{k} {c['availableReplicas']}/{c['desiredReplicas']} available"
                 for k, c in comps.items() if not c["ready"]]
    failed = [k for k, c in comps.items() if c["_failed"]]

    if invalid or error:
        phase = "Failed"
        reason = "InvalidSpec" if invalid else "ReconcileFailed"
        message = invalid or error
    elif failed:
        phase, reason = "Failed", "ProgressDeadlineExceeded"
        message = "rollout exceeded its progress deadline: " + ", ".join(failed)
    elif not any(c["_exists"] for c in comps.values()):
        phase, reason, message = "Pending", "Creating", "no component created yet"
    elif ready_n == len(comps):
        phase, reason, message = "Running", "AllComponentsReady", "all components rolled out and available"
    elif any(c["_rolling"] for c in comps.values()):
        phase, reason = "Progressing", "RollingOut"
        message = "rolling out: " + ", ".join(not_ready)
    else:
        phase, reason = "Degraded", "ComponentsUnavailable"
        message = "unavailable: " + ", ".join(not_ready)

    previous = {c.get("type"): c for c in ((resource.get("status") or {}).get("conditions") or [])}
    conditions = [
        _condition("Ready", phase == "Running", reason, message, generation, previous, now_s),
        _condition("Progressing", phase in ("Pending", "Progressing"),
                   reason if phase in ("Pending", "Progressing") else
                   ("RolloutComplete" if phase in ("Running", "Degraded") else reason),
                   message if phase != "Running" else "rollout complete",
                   generation, previous, now_s),
        _condition("Degraded", phase in ("Degraded", "Failed"),
                   reason if phase in ("Degraded", "Failed") else "AsExpected",
                   message if phase in ("Degraded", "Failed") else "",
                   generation, previous, now_s),
    ]
    return {
        "observedGeneration": generation,
        "phase": phase,
        "readyComponents": f"{ready_n}/{len(comps)}",
        "conditions": conditions,
        "components": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in comps.items()},
    }
