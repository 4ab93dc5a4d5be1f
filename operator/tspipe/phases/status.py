"""Phase `status`: compute the status from the children and what the earlier phases
handed on (status.py), judge the rollout when autoRollback asks (the rollout phase),
write it when the change is significant (status_policy.py), and post the Events it
deserves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import status_policy
from ..clients import Clients, api_error
from ..kube import ApiException
from ..model import Pipeline
from ..pause import PauseState
from ..status import compute_status, needs_pods, pods_recheck_after
from ..status_fields import Key
from . import rollout
from .children import Children
from .context import Pass
from .replay import Replay
from .restart import Restarted


@dataclass
class Observed:
    """What the earlier phases handed on for status to report."""

    children: Children
    topics: dict[str, Any] | None  # None: topics not managed (or the spec is invalid)
    autoscaling: dict[str, Any] | None  # None: no autoscaling
    restarted: Restarted
    replay: Replay = field(default_factory=Replay)  # a tspipe.io/reset-offsets under way or done


async def write(ctx: Pass, clients: Clients, p: Pipeline | None, seen: Observed, progress_interval: float) -> None:
    # An invalid spec is reported by compute_status itself, not as a reconcile error.
    error = ("; ".join(ctx.problems) or None) if p is not None else None
    pause: PauseState | None = seen.children.pause

    def compute(pods: list[dict[str, Any]], rollout_status: dict[str, Any] | None = None) -> dict[str, Any]:
        return compute_status(
            ctx.resource,
            seen.children.actual,
            clients.now(),
            error=error,
            topics=seen.topics,
            pause=pause,
            pipeline=p,
            restarted=seen.restarted.apps,
            restart_rejected=seen.restarted.rejected,
            pods=pods,
            autoscaling=seen.autoscaling,
            rollout=rollout_status,
            offset_reset=seen.replay.report,
            offset_reset_entry=seen.replay.entry,
        )

    pods: list[dict[str, Any]] = []
    status = compute(pods)
    if needs_pods(status):
        pods = await clients.pods(ctx.namespace, ctx.name, fresh=ctx.fresh)
        ctx.pods_read = pods
        status = compute(pods)
        ctx.again_in(pods_recheck_after(p, ctx.name, pods, clients.now()))
    templates = seen.children.templates
    if p is not None and p.auto_rollback and templates is not None:
        # The verdict needs the phase (are the new pods available?) and changes it.
        r = await rollout.advance(
            ctx, clients, p, templates, status, seen.children.router_changed, seen.children.actual
        )
        status = compute(pods, r)
    clients.metrics.set_phase(ctx.namespace, ctx.name, status[Key.PHASE])
    prev = ctx.prev_status
    if status == prev:
        return
    mem = ctx.memory
    wait = mem.last_status_write + progress_interval - clients.monotonic()
    counters_only = bool(prev) and status_policy.significant(status) == status_policy.significant(prev)
    if counters_only and progress_interval <= 0:
        return  # they go out with the next significant change
    if counters_only and wait > 0:
        ctx.again_in(wait)  # only counters moved: write them a little later, together
        return
    try:
        written = await clients.write_pipeline(clients.kube.write_status, ctx.namespace, ctx.name, status)
        ctx.out.writes += 1
        if isinstance(written, dict):
            ctx.written = written
        mem.last_status_write = clients.monotonic()
    except ApiException as exc:
        if exc.status != 404:
            ctx.problems.append(f"write status: {api_error(exc)}")
    for event in status_policy.events(prev, status, spec_valid=p is not None):
        ctx.out.writes += await clients.event(ctx.resource, *event)
