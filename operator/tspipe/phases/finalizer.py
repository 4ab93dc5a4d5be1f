"""Phase `finalizer`: the topics finalizer is present exactly when the operator has
topics to delete with the pipeline: its own with deleteOnRemoval, or a shadow release's
(spec.rollout.strategy Shadow: created by the operator, whatever deleteOnRemoval says);
and the delete path's half: delete those topics, then let the pipeline go.

Only such pipelines carry a finalizer: deleting any other pipeline never waits for this
operator.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import shadow
from .. import topics as topics_mod
from ..clients import Clients, api_error
from ..kube import ApiException
from ..model import Pipeline, PipelineError
from ..names import FINALIZER, LABEL_COMPONENT
from ..stamps import parse_time
from ..status_fields import Key
from ..workqueue import Outcome
from .context import RECHECK_FINALIZER_CONFLICT, Pass, ReadAgain

log = logging.getLogger("tspipe.controller")


def _wanted(p: Pipeline, status: dict[str, Any] | None = None) -> bool:
    own = p.kafka.topics.manage and p.kafka.topics.delete_on_removal
    return own or shadow.on_broker((status or {}).get(Key.ROLLOUT)) is not None


async def sync(ctx: Pass, clients: Clients, p: Pipeline) -> None:
    await _set(ctx, clients, _wanted(p, ctx.prev_status))


async def before_shadow_topics(ctx: Pass, clients: Clients) -> bool:
    """A shadow release is about to create its topics: the finalizer first (this pass's
    sync ran before the shadow started), so that deleting the pipeline deletes them.
    False when it could not be added in this pass (the next one tries again)."""
    if FINALIZER in (ctx.resource["metadata"].get("finalizers") or []):
        return True
    try:
        await _set(ctx, clients, True)
    except ReadAgain:
        return False
    return FINALIZER in (ctx.resource["metadata"].get("finalizers") or [])


async def _set(ctx: Pass, clients: Clients, want: bool) -> None:
    meta = ctx.resource["metadata"]
    current = meta.get("finalizers") or []
    if want == (FINALIZER in current):
        return
    new = current + [FINALIZER] if want else [f for f in current if f != FINALIZER]
    try:
        await clients.write_pipeline(clients.kube.set_finalizers, ctx.namespace, ctx.name, new, meta["resourceVersion"])
    except ApiException as exc:
        if exc.status in (404, 409):
            raise ReadAgain(RECHECK_FINALIZER_CONFLICT) from exc  # changed meanwhile: read again
        ctx.problems.append(f"finalizer: {api_error(exc)}")
        return
    meta["finalizers"] = new  # this pass's copy, read from the API for it alone
    ctx.out.writes += 1


async def remove(clients: Clients, resource: dict[str, Any], out: Outcome) -> None:
    """The pipeline is being deleted: delete a shadow release's Deployment, group and
    topics if it has one on the broker, its own topics if asked, then remove our
    finalizer. Adds its writes to `out`, and `out.retry_after` while the shadow's pods or
    consumers are still going (raises KafkaUnavailable or ApiException to retry)."""
    meta = resource["metadata"]
    if FINALIZER not in (meta.get("finalizers") or []):
        return
    try:
        p = Pipeline.from_resource(resource)
    except PipelineError:
        p = None
    if p is not None:
        if not await _remove_shadow(clients, resource, p, out):
            return
        if _wanted(p):
            names = [t.name for t in topics_mod.desired_topics(p)]
            await clients.kafka(clients.admin.delete, p.kafka.brokers, names)
            log.info("%s/%s: deleted topics %s", meta["namespace"], meta["name"], ", ".join(names))
    await clients.write_pipeline(
        clients.kube.set_finalizers,
        meta["namespace"],
        meta["name"],
        [f for f in meta.get("finalizers") or [] if f != FINALIZER],
        meta["resourceVersion"],
    )
    out.writes += 1


async def _remove_shadow(clients: Clients, resource: dict[str, Any], p: Pipeline, out: Outcome) -> bool:
    """A shadow release caught by the deletion: its Deployment goes first (the garbage
    collector would remove it only after the pipeline is gone), then, once its pods are
    gone and its group has no members, the group and the topics, as after a verdict. A
    node that never confirms a pod's deletion holds them REMOVE_WAIT_SECONDS at most."""
    sh = shadow.on_broker((resource.get("status") or {}).get(Key.ROLLOUT))
    if sh is None:
        return True
    meta = resource["metadata"]
    ns, name = meta["namespace"], meta["name"]
    deleted = parse_time(meta["deletionTimestamp"]) if meta.get("deletionTimestamp") else clients.now()
    overdue = (clients.now() - deleted).total_seconds() > shadow.REMOVE_WAIT_SECONDS
    dep = sh.get("deployment")
    if dep:
        found = await clients.call(clients.kube.get_deployment, ns, dep)
        if found is not None and not found["metadata"].get("deletionTimestamp"):
            await clients.call(clients.kube.delete_deployment, ns, dep, None)
            log.info("%s/%s: deleted the shadow Deployment %s (the pipeline is being deleted)", ns, name, dep)
            out.writes += 1
        pods = await clients.pods(ns, name, fresh=True)
        left = [x for x in pods if (x["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == shadow.SUFFIX]
        if (found is not None or left) and not overdue:
            out.retry_after = shadow.RECHECK_SECONDS
            return False
    topics, groups = shadow.to_delete(sh)
    # The groups first: the broker refuses to delete one with members (see phases/shadow.py).
    busy = [g for g in groups if not await clients.kafka(clients.admin.delete_group, p.kafka.brokers, g)]
    if busy and not overdue:
        out.retry_after = shadow.RECHECK_SECONDS
        return False
    await clients.kafka(clients.admin.delete, p.kafka.brokers, topics)
    log.info("%s/%s: deleted the shadow's topics %s and groups %s", ns, name, topics, groups)
    return True
