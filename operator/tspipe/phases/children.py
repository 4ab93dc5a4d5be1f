"""Phase `children`: the pipeline's Deployments as the spec asks for them. Works out the
pause stage (pause.py), renders (render.py; the stable revision's while a rollback holds,
rollback.py), stamps the pod template of the apps a `tspipe.io/restart` names, plans with
the pure diff (childdiff.py) and writes what differs.

Hands on the Deployments as they are after the writes, the pause state (the replica
counts every later phase uses), the digest of the pod templates the spec asks for
(autoRollback's rollout judge) and which restarts have rolled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from .. import rollback, shadow
from ..childdiff import CREATE, DELETE, RECREATE, UPDATE, Action, plan
from ..clients import Clients, api_error
from ..components import COMPONENTS, ROUTER
from ..kube import ApiException
from ..model import SHADOW, Pipeline, PipelineError
from ..names import HASH_ANNOTATION, RESTART_ANNOTATION
from ..pause import PauseState, pause_state
from ..render import deployment_name, render_deployments, restarted_at, with_restart
from ..stamps import format_time
from ..status_fields import Key
from .context import RECHECK_CONFLICT, RECHECK_DELETED_CHILD, Pass

log = logging.getLogger("tspipe.controller")


@dataclass
class Children:
    actual: list[dict[str, Any]]  # the pipeline's Deployments after this pass's writes
    pause: PauseState | None = None  # None: the spec is invalid, nothing was planned
    templates: str | None = None  # autoRollback: digest of the pod templates the spec asks for
    restart_done: set[str] = field(default_factory=set)  # Deployments whose template has this pass's stamp
    # autoRollback, strategy Shadow, a new attempt: the router's pod template differs from
    # the stable revision's (such a change runs as a shadow first; shadow.py).
    router_changed: bool = False


async def reconcile(ctx: Pass, clients: Clients, p: Pipeline | None) -> Children:
    actual = await clients.deployments(ctx.namespace, ctx.name, fresh=ctx.fresh)
    if p is None:
        return Children(actual)
    by_field = _by_field(ctx.name, actual)
    prev = ctx.prev_status.get(Key.PAUSE) or {}
    stopped_at = prev.get("sourceStoppedAt")
    drain = (prev["drain"], prev.get("recordsLeft")) if prev.get("drain") else None
    pause = pause_state(p, by_field, clients.now(), source_stopped_at=stopped_at, drain=drain)
    if pause.needs_lag:
        lag = await _router_lag(clients, p)
        pause = pause_state(p, by_field, clients.now(), source_stopped_at=stopped_at, lag=lag, drain=drain)
    ctx.again_in(pause.recheck_after)
    desired = _render(ctx, p, pause.replicas)
    templates = None
    router_changed = False
    if p.auto_rollback:
        templates = rollback.templates_digest(desired)
        prev_rollout = ctx.prev_status.get(Key.ROLLOUT)
        router_changed = _router_changed(ctx, p, prev_rollout, templates, desired, pause)
        readable = p.kafka.credentials is None
        hold = shadow.starts(prev_rollout, templates, p.rollout_strategy, router_changed, readable) or shadow.holds(
            prev_rollout, templates
        )
        wanted = shadow.current(prev_rollout, templates) if shadow.wants_deployment(prev_rollout, templates) else None
        desired = _rolled_back(ctx, pause, templates, desired, hold)
        if wanted is not None:
            # The real router's count this pass: the autoscaler's, zero once a pause stopped it.
            n = shadow.names(p, int(wanted["generation"]))
            desired.append(shadow.render(ctx.resource, p, n, pause.replicas[ROUTER.spec_field]))
    r = ctx.restart
    targets = {deployment_name(ctx.name, c) for c in r.apps} if r and not r.problem() else set()
    stamp = format_time(clients.now())
    # A restart is a new pod template: the diff sees it as drift and updates (or creates) it.
    desired = [with_restart(d, stamp) if d["metadata"]["name"] in targets else d for d in desired]
    dplan = plan(ctx.resource, desired, actual)
    ctx.problems.extend(dplan.blocked)
    if dplan.waiting:
        ctx.again_in(RECHECK_DELETED_CHILD)
    for action in dplan.actions:
        restart = action.name in targets and action.verb in (CREATE, UPDATE)
        await write_child(
            ctx, clients, replace(action, reason=f"restart ({RESTART_ANNOTATION})") if restart else action
        )
    if dplan.actions:
        # The writes' answers are in the watch cache; after a conflict, from the API.
        actual = await clients.deployments(ctx.namespace, ctx.name, fresh=ctx.fresh or ctx.memory.read_fresh)
    by_name = {d["metadata"]["name"]: d for d in actual}
    done = {t for t in targets if restarted_at(by_name.get(t)) == stamp}
    return Children(actual, pause, templates, done, router_changed)


def _render(ctx: Pass, p: Pipeline, replicas: dict[str, int]) -> list[dict[str, Any]]:
    """render_deployments, with the spec hashes of the last render when it rendered the
    same: most passes are woken by their Deployments' status and would hash the same four
    again (a JSON dump each). What the hashes cover: the parsed pipeline and the
    resource's name and uid (the owner reference), not the replicas. Only the hashes are
    kept: the Deployments would cost 70 kB per pipeline."""
    meta = ctx.resource["metadata"]
    key = (meta.get("name"), meta.get("uid"))
    memo = ctx.memory.rendered
    known = memo[2] if memo is not None and memo[0] == key and memo[1] == p else None
    desired = render_deployments(ctx.resource, replicas, pipeline=p, spec_hashes=known)
    if known is None:
        ctx.memory.rendered = (key, p, [d["metadata"]["annotations"][HASH_ANNOTATION] for d in desired])
    return desired


async def write_child(ctx: Pass, clients: Clients, action: Action) -> bool:
    """Make one write; False if it failed (reported in the pass, retried by the next)."""
    try:
        await clients.apply(ctx.namespace, action)
    except ApiException as exc:
        if exc.status in (409, 404):
            ctx.again_in(RECHECK_CONFLICT)  # raced with someone (or our own stale read)
            ctx.memory.read_fresh = True  # the cache was behind: read from the API until the next pass
        else:
            ctx.problems.append(f"{action.verb} {action.kind} {action.name}: {api_error(exc)}")
        return False
    ctx.out.writes += 1
    verb = {CREATE: "Created", UPDATE: "Updated", DELETE: "Deleted", RECREATE: "Deleted"}[action.verb]
    what = f"{action.kind} {action.name}"
    log.info("%s/%s: %s %s (%s)", ctx.namespace, ctx.name, verb.lower(), what, action.reason)
    if not (action.verb == CREATE and not ctx.prev_status):  # no Event for the first creation
        ctx.out.writes += await clients.event(
            ctx.resource, "Normal", f"{verb}{action.kind}", f"{verb} {what}: {action.reason}"
        )
    if action.verb == RECREATE:
        ctx.again_in(RECHECK_DELETED_CHILD)
    return True


def _rolled_back(
    ctx: Pass, pause: PauseState, templates: str, desired: list[dict[str, Any]], shadow_holds: bool = False
) -> list[dict[str, Any]]:
    """While a rollback holds, or a shadow release has not been promoted, the stable
    revision's Deployments (with this pass's replica counts, so scaling and pausing
    still work), else `desired`."""
    prev = ctx.prev_status.get(Key.ROLLOUT)
    spec = rollback.rollback_spec(prev, templates)
    if spec is None and shadow_holds:
        spec = rollback.stable_spec(prev)
    if spec is None:
        return desired
    rendered = _render_stable(ctx, spec, pause)
    return desired if rendered is None else rendered


def _render_stable(ctx: Pass, spec: dict[str, Any], pause: PauseState) -> list[dict[str, Any]] | None:
    resource = {**ctx.resource, "spec": spec}
    try:
        stable = Pipeline.from_resource(resource)
    except PipelineError as exc:  # a stable spec this operator version no longer accepts
        ctx.problems.append(f"cannot roll back to the stable revision: {exc}")
        return None
    return render_deployments(resource, pause.replicas, pipeline=stable)


def _router_changed(
    ctx: Pass,
    p: Pipeline,
    prev: dict[str, Any] | None,
    templates: str,
    desired: list[dict[str, Any]],
    pause: PauseState,
) -> bool:
    """Strategy Shadow, a new attempt: does the router's pod template differ from the
    stable revision's? (Only then is there a shadow to run.)"""
    if p.rollout_strategy != SHADOW or (prev or {}).get("templates") == templates:
        return False
    spec = rollback.stable_spec(prev)
    if spec is None:
        return False
    stable = _render_stable(ctx, spec, pause)
    return stable is not None and shadow.router_template(stable) != shadow.router_template(desired)


async def _router_lag(clients: Clients, p: Pipeline) -> int | None:
    try:
        return await clients.kafka(clients.admin.lag, p.kafka.brokers, p.stream_name, p.kafka.topics.input)
    except Exception as exc:  # noqa: BLE001 - unknown lag: the drain bound decides
        log.info("%s/%s: router lag unknown: %s", p.namespace, p.name, exc)
        return None


def _by_field(name: str, actual: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    by_name = {d["metadata"]["name"]: d for d in actual}
    return {c.spec_field: by_name.get(deployment_name(name, c)) for c in COMPONENTS}
