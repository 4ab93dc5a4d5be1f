"""Phase `finalizer`: the topics finalizer is present exactly when deleteOnRemoval asks
for it; and the delete path's half: delete the topics if asked, then let the pipeline go.

Only pipelines that delete their topics carry a finalizer: deleting any other pipeline
never waits for this operator.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import topics as topics_mod
from ..clients import Clients, api_error
from ..kube import ApiException
from ..model import Pipeline, PipelineError
from ..names import FINALIZER
from .context import RECHECK_FINALIZER_CONFLICT, Pass, ReadAgain

log = logging.getLogger("tspipe.controller")


def _wanted(p: Pipeline) -> bool:
    return p.kafka.topics.manage and p.kafka.topics.delete_on_removal


async def sync(ctx: Pass, clients: Clients, p: Pipeline) -> None:
    meta = ctx.resource["metadata"]
    current = meta.get("finalizers") or []
    want = _wanted(p)
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
    ctx.out.writes += 1


async def remove(clients: Clients, resource: dict[str, Any]) -> int:
    """The pipeline is being deleted: delete its topics if asked, then remove our
    finalizer. The writes it made (raises KafkaUnavailable or ApiException to retry)."""
    meta = resource["metadata"]
    if FINALIZER not in (meta.get("finalizers") or []):
        return 0
    try:
        p = Pipeline.from_resource(resource)
        if _wanted(p):
            names = [t.name for t in topics_mod.desired_topics(p)]
            await clients.kafka(clients.admin.delete, p.kafka.brokers, names)
            log.info("%s/%s: deleted topics %s", meta["namespace"], meta["name"], ", ".join(names))
    except PipelineError:
        pass
    await clients.write_pipeline(
        clients.kube.set_finalizers,
        meta["namespace"],
        meta["name"],
        [f for f in meta.get("finalizers") or [] if f != FINALIZER],
        meta["resourceVersion"],
    )
    return 1
