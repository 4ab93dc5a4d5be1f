"""The router's PodDisruptionBudget (pure): desired object and the write to converge.

With more than one router replica, a voluntary disruption (a node drain, a cluster
upgrade) may take at most one router pod at a time, so the consumer group keeps
members working while it rebalances. With one replica a budget of `maxUnavailable: 1`
protects nothing and `0` would block every drain, so then there is none. The replica
count is the one the Deployment is asked for now: a paused pipeline's router is at
zero and has no budget.
"""

from __future__ import annotations

import copy
from typing import Any

from .childdiff import CREATE, DELETE, UPDATE, Action, Plan, contains, controller_uid, ours, with_our_metadata
from .components import ROUTER
from .model import Pipeline
from .render import deployment_name, labels, owner_reference, selector_labels

KIND = "PodDisruptionBudget"
MAX_UNAVAILABLE = 1


def pdb_name(pipeline_name: str) -> str:
    """Named after the router's Deployment, whose pods it covers."""
    return deployment_name(pipeline_name, ROUTER)


def router_pdb(resource: dict[str, Any], p: Pipeline, router_replicas: int) -> dict[str, Any] | None:
    """The budget for `router_replicas` router pods (None: there should be none)."""
    if router_replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": KIND,
        "metadata": {
            "name": pdb_name(p.name),
            "namespace": p.namespace,
            "labels": labels(p.name, ROUTER),
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            "maxUnavailable": MAX_UNAVAILABLE,
            # The router Deployment's own pod selector: exactly its pods, no other app's.
            "selector": {"matchLabels": selector_labels(p.name, ROUTER)},
        },
    }


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def pdb_drift(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """The parts of `actual` that differ from `desired` (empty: in sync)."""
    out = []
    dm, am = _meta(desired), _meta(actual)
    if not contains(dm["labels"], am.get("labels") or {}):
        out.append("labels")
    if [r for r in am.get("ownerReferences") or [] if r.get("controller")] != dm["ownerReferences"]:
        out.append("ownerReferences")
    ds, as_ = desired["spec"], actual.get("spec") or {}
    # A hand-added minAvailable would change the budget (and both together are invalid).
    if any(as_.get(k) != ds.get(k) for k in ("maxUnavailable", "minAvailable", "selector")):
        out.append("spec")
    return out


def _merged(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """`actual` with the operator's fields replaced (a PUT body); labels others added and
    spec fields the operator does not set (unhealthyPodEvictionPolicy) are kept."""
    body = with_our_metadata(desired, actual)
    spec = {k: v for k, v in (body.get("spec") or {}).items() if k != "minAvailable"}
    body["spec"] = {**spec, **copy.deepcopy(desired["spec"])}
    return body


def plan_pdb(
    pipeline: dict[str, Any], name: str, desired: dict[str, Any] | None, actual: dict[str, Any] | None
) -> Plan:
    """The write that turns `actual` (the object named `name`, or None) into `desired`.

    Like the Deployments' plan: a budget of that name owned by someone else is never
    touched (blocked if we want one), one being deleted is waited for."""
    result = Plan()
    if actual is None:
        if desired is not None:
            n = desired["spec"]["maxUnavailable"]
            result.actions.append(
                Action(CREATE, name, desired, f"router has more than one replica, at most {n} down", kind=KIND)
            )
        return result
    am = _meta(actual)
    if am.get("deletionTimestamp"):
        if desired is not None:
            result.waiting.append(name)
        return result
    owner = controller_uid(actual)
    mine = owner == _meta(pipeline).get("uid") or (owner is None and ours(actual, _meta(pipeline).get("name")))
    if not mine:
        if desired is not None:
            who = "another owner" if owner else "no owner"
            result.blocked.append(f"{KIND} {name} already exists with {who}; not touching it")
        return result
    if desired is None:
        result.actions.append(
            Action(DELETE, name, None, "router has at most one replica", am.get("resourceVersion"), KIND)
        )
        return result
    parts = pdb_drift(desired, actual)
    if parts:
        result.actions.append(Action(UPDATE, name, _merged(desired, actual), "drift in " + ", ".join(parts), kind=KIND))
    return result
