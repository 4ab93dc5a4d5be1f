"""Phase `restart`: consume the `tspipe.io/restart` annotation: refused at once if it
names an unknown app, else once every app it names has rolled (the children phase
stamped their pod templates; until they carry the stamp the annotation stays, and the
next pass tries again). Posts an Event either way.

Hands on what status reports: the apps restarted, or why the request was refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..clients import Clients, api_error
from ..kube import ApiException
from ..model import Pipeline
from ..names import RESTART_ANNOTATION
from ..render import deployment_name
from ..switches import RestartRequest
from .context import RECHECK_CONFLICT, Pass, ReadAgain

log = logging.getLogger("tspipe.controller")


@dataclass
class Restarted:
    apps: list[str] = field(default_factory=list)  # apps restarted (the request consumed)
    rejected: str | None = None  # why a request was refused (consumed too)


async def consume(ctx: Pass, clients: Clients, p: Pipeline | None, rolled: set[str]) -> Restarted:
    r = ctx.restart
    if r is None:
        return Restarted()
    problem = r.problem()
    if problem:
        if await _remove_annotation(ctx, clients, r):
            log.warning("%s/%s: %s", ctx.namespace, ctx.name, problem)
            ctx.out.writes += await clients.event(ctx.resource, "Warning", "RestartRejected", problem)
            return Restarted(rejected=problem)
        return Restarted()
    if p is None or any(deployment_name(ctx.name, c) not in rolled for c in r.apps):
        return Restarted()
    if not await _remove_annotation(ctx, clients, r):
        return Restarted()
    names = ", ".join(deployment_name(ctx.name, c) for c in r.apps)
    message = f"restarted {', '.join(r.labels)} ({RESTART_ANNOTATION}): rolling Deployment {names}"
    log.info("%s/%s: %s", ctx.namespace, ctx.name, message)
    ctx.out.writes += await clients.event(ctx.resource, "Normal", "Restarted", message)
    return Restarted(apps=r.labels)


async def _remove_annotation(ctx: Pass, clients: Clients, r: RestartRequest) -> bool:
    try:
        await clients.write_pipeline(
            clients.kube.remove_annotation, ctx.namespace, ctx.name, RESTART_ANNOTATION, r.value
        )
    except ApiException as exc:
        if exc.status in (404, 409, 422):
            raise ReadAgain(RECHECK_CONFLICT) from exc  # the annotation changed meanwhile: read again
        ctx.problems.append(f"removing annotation {RESTART_ANNOTATION}: {api_error(exc)}")
        return False
    ctx.out.writes += 1
    return True
