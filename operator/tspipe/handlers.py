"""kopf wiring: events in, `Controller.enqueue` out, and the watch cache fed.

Only `@kopf.on.event` handlers: kopf's change-detecting handlers (create/update/
resume) store progress, finalizers and last-handled annotations on the object, which
would make every restart write to every pipeline. Nothing here writes by itself.

The Deployments' and pods' events also feed the controller's watch cache
(watchcache.py), which the passes read instead of LISTing: from `@kopf.index` handlers
(kopf runs them for every event but a deletion, before any event handler, and holds
every event handler until they have seen each indexed kind's initial list: so when the
first event handler runs, the cache is primed), and the deletions from the event
handlers. The index handlers return nothing: kopf's own index stays empty. The
pipelines' events feed it too, so a pass reads its pipeline without a GET.
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
    memo.controller.start()


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_) -> None:
    await memo.controller.stop()
    memo.controller.kube.close()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def _pipeline_event(type, body, name, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    cache = memo.controller.cache
    cache.primed = True  # kopf ran the index handlers over the initial lists first
    if type == "DELETED":
        cache.pipelines.delete(body)
        memo.controller.forget(namespace, name)
        return
    if type is None and cache.pipelines.get(namespace, name) is not None:
        cache.relisted()  # listed again: a pipeline deleted meanwhile is still cached
    cache.pipelines.upsert(body)  # the passes read it from here (watchcache.py)
    memo.controller.enqueue(namespace, name)


@kopf.index("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGER})
async def _deployment_index(body, memo: kopf.Memo, **_) -> None:
    memo.controller.cache.deployments.upsert(body)


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGER})
async def _deployment_event(type, body, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    if type == "DELETED":
        memo.controller.cache.deployments.delete(body)
    elif type is None:
        memo.controller.cache.relisted()
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


@kopf.index("v1", "pods", labels={LABEL_MANAGED_BY: MANAGER})
async def _pod_index(body, memo: kopf.Memo, **_) -> None:
    memo.controller.cache.pods.upsert(body)


@kopf.on.event("v1", "pods", labels={LABEL_MANAGED_BY: MANAGER})
async def _pod_event(type, body, namespace, memo: kopf.Memo, **_) -> None:  # noqa: A002
    if type == "DELETED":
        memo.controller.cache.pods.delete(body)
    elif type is None:
        memo.controller.cache.relisted()
    # Status names why an app's pods do not run (the scheduler's PodScheduled=False);
    # the scheduler's verdict can come after the last Deployment event.
    owner = ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_INSTANCE)
    if owner and pod_matters(body):
        memo.controller.enqueue_soon(namespace, owner)
