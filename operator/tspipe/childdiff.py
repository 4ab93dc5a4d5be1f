"""Desired vs actual Deployments -> the writes needed to converge (pure).

Only the fields the operator sets are compared, so values the API server defaults
(terminationMessagePath, strategy, ...) or other controllers add never cause a write.
Lists are compared element-wise and by length, so an env var or argument added by
hand counts as drift; quantities are compared by value ("0.5" == "500m").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from .names import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, POD_ANNOTATIONS_ANNOTATION

CREATE, UPDATE, DELETE, RECREATE = "create", "update", "delete", "recreate"


@dataclass(frozen=True)
class Action:
    verb: str  # create | update | delete | recreate
    name: str
    body: dict[str, Any] | None = None  # full object for create/update
    reason: str = ""  # short, for the Event and the log
    resource_version: str | None = None  # delete/recreate precondition
    kind: str = "Deployment"  # or PodDisruptionBudget (disruption.py)


@dataclass(frozen=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    # Problems the operator will not fix by itself (e.g. a name taken by a Deployment
    # that belongs to someone else); they become a Failed condition.
    blocked: list[str] = field(default_factory=list)
    # Children being deleted: wait for them, then create.
    waiting: list[str] = field(default_factory=list)


_EMPTY = ("", None)


def _is_empty(v: object) -> bool:
    return v in _EMPTY or v == [] or v == {}


_SUFFIX: dict[str, int | Decimal] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def quantity(v: object) -> Decimal | None:
    """Kubernetes quantity -> Decimal; None if it is not one."""
    s = str(v).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and s.endswith(suffix):
            num, mult = s[: -len(suffix)], _SUFFIX[suffix]
            break
    else:
        num, mult = s, 1
    try:
        return Decimal(num) * Decimal(mult)
    except InvalidOperation:
        return None


def contains(desired: object, actual: object, path: tuple[str | int, ...] = ()) -> bool:
    """True if every field set in `desired` has the same value in `actual`."""
    if desired == actual:
        return True  # most subtrees: one comparison in C instead of a walk (issue 26)
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return _is_empty(desired) and actual is None
        for k, v in desired.items():
            if k not in actual:
                if _is_empty(v):
                    continue  # the API server drops empty values
                return False
            if not contains(v, actual[k], path + (k,)):
                return False
        return True
    if isinstance(desired, list):
        if actual is None:
            return desired == []
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(contains(d, a, path + (i,)) for i, (d, a) in enumerate(zip(desired, actual, strict=True)))
    if len(path) >= 2 and path[-2] in ("limits", "requests") and "resources" in path:
        qd, qa = quantity(desired), quantity(actual)
        return qd is not None and qd == qa
    if path and path[-1] == "sizeLimit":
        return quantity(desired) == quantity(actual)
    return desired == actual


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return cast("str | None", ref.get("uid"))
    return None


def drift(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """The top-level parts of `actual` that differ from `desired` (empty: in sync)."""
    out = []
    dm, am = _meta(desired), _meta(actual)
    if not contains(dm.get("labels") or {}, am.get("labels") or {}):
        out.append("labels")
    if not contains(dm.get("annotations") or {}, am.get("annotations") or {}):
        out.append("annotations")
    if [r for r in am.get("ownerReferences") or [] if r.get("controller")] != dm.get("ownerReferences"):
        out.append("ownerReferences")
    ds, as_ = desired["spec"], actual.get("spec") or {}
    if ds["replicas"] != as_.get("replicas", 1):
        out.append("replicas")
    if ds.get("progressDeadlineSeconds") != as_.get("progressDeadlineSeconds", 600):
        out.append("progressDeadlineSeconds")
    if not contains(ds["template"], as_.get("template") or {}):
        out.append("template")
    return out


def with_our_metadata(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """A copy of `actual` fit for a PUT, with the operator's metadata from `desired`:
    its labels and annotations win over others' (which stay), its controller reference
    replaces any other controller (other owners stay)."""
    body = copy.deepcopy(actual)
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    meta.pop("managedFields", None)
    dm = _meta(desired)
    for key in ("labels", "annotations"):
        if dm.get(key):
            meta[key] = {**(meta.get(key) or {}), **dm[key]}
    others = [r for r in meta.get("ownerReferences") or [] if not r.get("controller")]
    meta["ownerReferences"] = dm["ownerReferences"] + others
    return body


def merged_for_update(desired: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """`actual` with the operator's fields replaced by `desired` (a PUT body).

    The pod template is replaced whole (hand-added containers/env/volumes go away);
    labels and annotations others added are kept, as are template annotations such
    as `kubectl rollout restart`'s, except those a podTemplate set before and no longer
    sets (the Deployment's `tspipe.io/pod-annotations` lists them).
    """
    am = _meta(actual)
    previous = set(filter(None, (am.get("annotations") or {}).get(POD_ANNOTATIONS_ANNOTATION, "").split(",")))
    body = with_our_metadata(desired, actual)
    meta = body["metadata"]
    if POD_ANNOTATIONS_ANNOTATION not in (_meta(desired).get("annotations") or {}):
        (meta.get("annotations") or {}).pop(POD_ANNOTATIONS_ANNOTATION, None)
    spec = body.setdefault("spec", {})
    spec["replicas"] = desired["spec"]["replicas"]
    spec["progressDeadlineSeconds"] = desired["spec"]["progressDeadlineSeconds"]
    template = copy.deepcopy(desired["spec"]["template"])
    kept = ((actual.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    kept = {k: v for k, v in kept.items() if k not in previous}
    if kept:
        template["metadata"]["annotations"] = {**kept, **(template["metadata"].get("annotations") or {})}
    spec["template"] = template
    return body


def ours(obj: dict[str, Any], pipeline_name: str | None) -> bool:
    """Labelled as this operator's child of that pipeline."""
    lbl = _meta(obj).get("labels") or {}
    return lbl.get(LABEL_MANAGED_BY) == MANAGER and lbl.get(LABEL_INSTANCE) == pipeline_name


def plan(pipeline: dict[str, Any], desired: list[dict[str, Any]], actual: list[dict[str, Any]]) -> Plan:
    """Writes that turn `actual` into `desired` for one pipeline.

    `actual`: the Deployments carrying this pipeline's labels plus any Deployment that
    has one of the desired names.
    """
    uid = _meta(pipeline).get("uid")
    name = _meta(pipeline).get("name")
    result = Plan()
    by_name = {_meta(a).get("name"): a for a in actual}
    wanted = set()
    for d in desired:
        dname = _meta(d)["name"]
        wanted.add(dname)
        a = by_name.get(dname)
        if a is None:
            result.actions.append(Action(CREATE, dname, d, "missing"))
            continue
        if _meta(a).get("deletionTimestamp"):
            result.waiting.append(dname)
            continue
        owner = controller_uid(a)
        if owner is None and ours(a, name):
            pass  # our labels but the owner reference was removed: adopt it back
        elif owner != uid:
            who = "another owner" if owner else "no owner"
            result.blocked.append(f"Deployment {dname} already exists with {who}; not touching it")
            continue
        if (a.get("spec") or {}).get("selector") != d["spec"]["selector"]:
            # The selector is immutable: replace the Deployment.
            result.actions.append(Action(RECREATE, dname, d, "selector changed", _meta(a).get("resourceVersion")))
            continue
        parts = drift(d, a)
        if parts:
            result.actions.append(Action(UPDATE, dname, merged_for_update(d, a), "drift in " + ", ".join(parts)))
    for a in actual:
        aname = _meta(a).get("name")
        if aname in wanted or not ours(a, name) or _meta(a).get("deletionTimestamp"):
            continue
        if controller_uid(a) in (None, uid):
            result.actions.append(Action(DELETE, str(aname), None, "not desired", _meta(a).get("resourceVersion")))
    return result
