"""kopf wiring: events in, `Controller.enqueue` out.

Only `@kopf.on.event` handlers: kopf's change-detecting handlers (create/update/
resume) store progress, finalizers and last-handled annotations on the object, which
would make every restart write to every pipeline. Nothing here writes by itself.
"""

from __future__ import annotations

import kopf

from .names import API_GROUP, API_VERSION, KIND, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_SELECTOR, MANAGER, PLURAL


def owner_of(deployment_body) -> str | None:
    """The pipeline a Deployment belongs to: its controller reference, else its labels."""
    meta = deployment_body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(API_GROUP + "/"):
            return ref.get("name")
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGER:
        return labels.get(LABEL_INSTANCE)
    return None


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the whole object) for every watch event, for
    change-detecting handlers; with only `on.event` handlers nothing reads it. At N=500 it
    was half of kopf's own CPU (the Deployments' and pods' events)."""

    def build(self, *, body, extra_fields=None):
        return kopf.BodyEssence()


def configure(settings: kopf.OperatorSettings, *, inactivity_timeout: float, server_timeout: int) -> None:
    # Our own Events only (kopf would post one per log line otherwise).
    settings.posting.enabled = False
    # Watches can stall silently; reconnect if nothing (not even a bookmark) arrives.
    settings.watching.inactivity_timeout = inactivity_timeout
    settings.watching.server_timeout = server_timeout
    # Watch only our Deployments and their pods, filtered by the API server.
    settings.watching.label_selectors["apps", "v1", "deployments"] = MANAGED_SELECTOR
    settings.watching.label_selectors["v1", "pods"] = MANAGED_SELECTOR
    settings.networking.request_timeout = 60
    settings.persistence.diffbase_storage = NoDiffBase()


@kopf.on.startup()
async def _startup(memo: kopf.Memo, **_) -> None:
    memo.controller.start()


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_) -> None:
    await memo.controller.stop()
    memo.controller.kube.close()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def _pipeline_event(type, name, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    if type == "DELETED":
        memo.controller.forget(namespace, name)
    else:
        memo.controller.enqueue(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGER})
async def _deployment_event(body, namespace, memo: kopf.Memo, **_) -> None:
    owner = owner_of(body)
    if owner:
        memo.controller.enqueue_soon(namespace, owner)


def pod_matters(body) -> bool:
    """A pod event worth a pass: the pod is not Ready (pending, unschedulable, starting).
    A pod turning Ready changes its Deployment's status, which is an event already."""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (body.get("status") or {}).get("conditions") or []
    return not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


@kopf.on.event("v1", "pods", labels={LABEL_MANAGED_BY: MANAGER})
async def _pod_event(body, namespace, memo: kopf.Memo, **_) -> None:
    # Status names why an app's pods do not run (the scheduler's PodScheduled=False);
    # the scheduler's verdict can come after the last Deployment event.
    owner = ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_INSTANCE)
    if owner and pod_matters(body):
        memo.controller.enqueue_soon(namespace, owner)
