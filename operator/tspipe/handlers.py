"""kopf wiring: events in, `Controller.enqueue` out, and the watch cache fed.

Only `@kopf.on.event` handlers: kopf's change-detecting handlers (create/update/
resume) store progress, finalizers and last-handled annotations on the object, which
would make every restart write to every pipeline. Nothing here writes by itself.

The events also feed the controller's watch cache (watchcache.py), which the passes
read instead of GETting the pipeline and LISTing its Deployments and pods. No
`@kopf.index` handlers: kopf would hold the event handlers until each indexed kind was
listed, but ran its handler machinery twice per event for it (the largest cost in the
profile, issue 26). Instead the cache is primed at startup, before kopf starts the
watches, and every listed object (kopf's event type None: the first listing and any
after a broken watch) starts a new epoch, so each pipeline's next pass reads from the
API once: what a listing delivers after a pass began, or no longer delivers, is caught
by that read.
"""

from __future__ import annotations

import kopf

from .names import API_GROUP, API_VERSION, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_SELECTOR, MANAGER, PLURAL
from .watchcache import owner_of

__all__ = ["configure", "owner_of", "pod_matters"]


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
    # kopf starts the watches after this: every object they list from now on is an
    # object of a listing (a relist: see the module's docstring).
    memo.controller.cache.primed = True
    memo.controller.start()


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_) -> None:
    await memo.controller.stop()
    memo.controller.kube.close()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def _pipeline_event(type, body, name, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    cache = memo.controller.cache
    if type == "DELETED":
        cache.pipelines.delete(body)
        memo.controller.forget(namespace, name)
        return
    if type is None:
        if cache.pipelines.get(namespace, name) is not None:
            cache.relisted()  # listed again: a pipeline deleted meanwhile is still cached
        memo.controller.listed(namespace, name)
    cache.pipelines.upsert(body)  # the passes read it from here (watchcache.py)
    memo.controller.enqueue(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGER})
async def _deployment_event(type, body, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    cache = memo.controller.cache
    if type == "DELETED":
        cache.deployments.delete(body)
    else:
        if type is None:
            cache.relisted()
        cache.deployments.upsert(body)
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
async def _pod_event(type, body, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    cache = memo.controller.cache
    if type == "DELETED":
        cache.pods.delete(body)
    else:
        if type is None:
            cache.relisted()
        cache.pods.upsert(body)
    # Status names why an app's pods do not run (the scheduler's PodScheduled=False);
    # the scheduler's verdict can come after the last Deployment event.
    owner = ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_INSTANCE)
    if owner and pod_matters(body):
        memo.controller.enqueue_soon(namespace, owner)
