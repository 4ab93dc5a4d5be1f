"""Phase `shadow` (inside the rollout phase, with `spec.rollout.strategy: Shadow`): run a
change to the router as a shadow release first. shadow.py decides; this reads and
writes the broker: it creates the shadow topics and gives the shadow group the stable
group's offsets, reads the offsets when the window opens and ends, reads both routers'
output for the same input offsets, and deletes the topics and group once the shadow's
pods are gone. The children phase keeps the pipeline at the stable revision while the
shadow runs (or was rejected) and renders the shadow Deployment while it is Running.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import rollback, shadow
from ..clients import Clients
from ..components import ROUTER
from ..kafka_admin import KafkaUnavailable
from ..model import EXACTLY_ONCE, Pipeline, PipelineError
from ..names import DEAD_LETTER, LABEL_COMPONENT
from ..status_fields import Key
from . import finalizer
from .context import RECHECK_FINALIZER_CONFLICT, RECHECK_SHADOW_STARTING, TOPIC_BACKOFF_BASE, Pass

log = logging.getLogger("tspipe.controller")


async def advance(
    ctx: Pass, clients: Clients, p: Pipeline, templates: str, router_changed: bool, actual: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """status.rollout while this attempt's shadow has no verdict yet (or gets one in this
    pass); None when the shadow has nothing to say (the rollout goes on as usual)."""
    prev = ctx.prev_status.get(Key.ROLLOUT)
    gen = int(ctx.resource["metadata"].get("generation") or 0)
    readable = p.kafka.credentials is None
    if shadow.starts(prev, templates, p.rollout_strategy, router_changed, readable):
        r = shadow.start(prev, gen, templates, shadow.names(p, gen), clients.now())
        log.info("%s/%s: %s", ctx.namespace, ctx.name, r["message"])
        # The status names the shadow's topics and group before the next pass creates them:
        # a pipeline deleted after they exist (the status write lost, the operator stopped
        # mid-pass) still finds them in its status, and its delete path deletes them.
        ctx.again_in(RECHECK_SHADOW_STARTING)
        return r
    sh = shadow.current(prev, templates)
    if sh is None or sh.get("verdict") is not None or sh.get("state") == shadow.SKIPPED:
        return None
    r = dict(prev or {})
    try:
        r = await _step(ctx, clients, p, r, actual)
    except KafkaUnavailable as exc:
        log.warning("%s/%s: shadow: broker unreachable: %s", ctx.namespace, ctx.name, exc)
        ctx.again_in(TOPIC_BACKOFF_BASE)
    return r


async def _step(
    ctx: Pass, clients: Clients, p: Pipeline, r: dict[str, Any], actual: list[dict[str, Any]]
) -> dict[str, Any]:
    sh = r["shadow"]
    n = shadow.names(p, int(sh["generation"]))
    now = clients.now()
    if sh["state"] == shadow.STARTING:
        if not await finalizer.before_shadow_topics(ctx, clients):
            ctx.again_in(RECHECK_FINALIZER_CONFLICT)
            return r
        t = p.kafka.topics
        start, failed = await clients.kafka(
            clients.admin.shadow_start,
            p.kafka.brokers,
            p.stream_name,
            n.group,
            t.input,
            t.name("even"),
            n.topics,
            t.replication_factor,
        )
        if failed:
            ctx.problems.append(f"starting the shadow: {failed}")
            ctx.again_in(TOPIC_BACKOFF_BASE)
            return r
        ctx.again_in(shadow.RECHECK_SECONDS)  # the next pass's children phase creates its Deployment
        return shadow.started(r, start, now)
    dep = next((d for d in actual if d["metadata"]["name"] == n.deployment), None)
    up, held = shadow.available(dep), shadow.held_reason(dep, p.paused)
    why = ""
    if not up and not held and shadow.past_deadline(r, now, p.progress_deadline_seconds):
        # Rejected in this pass: say what its pods say (a crash loop, say), read fresh.
        pods = await clients.pods(ctx.namespace, ctx.name, fresh=True)
        why = shadow.unavailable_why(pods, ctx.name, p.app(ROUTER).probes.readiness, now)
    r, need = shadow.step(r, up, now, p.verify_seconds, p.progress_deadline_seconds, held=held, why=why)
    if need == shadow.WAIT_PROGRESS:
        t = p.kafka.topics
        committed = await clients.kafka(clients.admin.committed, p.kafka.brokers, n.group, t.input)
        ends = (await clients.kafka(clients.admin.ends, p.kafka.brokers, [t.input]))[t.input]
        if shadow.moved(r["shadow"].get("start") or [], committed, ends):
            # As for the stable router: its outputs' ends first, its commits after the
            # stable snapshot's grace, so every output of a later offset is past those ends.
            shadow_ends = await clients.kafka(clients.admin.ends, p.kafka.brokers, n.topics)
            stable = _stable(ctx, r) or p
            snapshot = await _offsets(clients, stable, commits_first=False)
            shadow_committed = await clients.kafka(clients.admin.committed, p.kafka.brokers, n.group, t.input)
            snapshot |= shadow.shadow_snapshot(n, shadow_ends, shadow_committed)
            r = shadow.opened(r, snapshot, clients.now(), p.verify_seconds)
        else:
            written = await clients.kafka(clients.admin.ends, p.kafka.brokers, n.topics)
            outputs = sum(sum(e) for e in written.values())
            counters = shadow.COUNTERS_UNREAD
            if shadow.suspect_foreign(r, now, p.verify_seconds, outputs):
                counters = await _which_router(ctx, clients)
            r = shadow.not_moving(r, now, p.verify_seconds, outputs, counters)
    elif need == shadow.JUDGE:
        r = await _judge(ctx, clients, p, r, n)
    window = r["shadow"].get("window")
    if window is not None and r["shadow"].get("verdict") is None:
        left = rollback.window_left({"verdict": rollback.VERIFYING, "window": window}, clients.now(), p.verify_seconds)
        ctx.again_in((left or 0.0) + 0.5)
    elif r["shadow"].get("verdict") is None and not held:  # held: the router's own changes bring the next pass
        ctx.again_in(shadow.RECHECK_SECONDS)
    return r


async def _which_router(ctx: Pass, clients: Clients) -> str:
    """What the shadow's Ready pods' counters say: this project's router, another one
    (no tsrouter_* counters served), or not read (the path failed)."""
    from .rollout import router_counters

    counters, unread = await router_counters(ctx, clients, shadow.SUFFIX)
    if counters:
        return shadow.COUNTERS_OURS
    if unread and all(u.not_served for u in unread):
        return shadow.COUNTERS_FOREIGN
    return shadow.COUNTERS_UNREAD


def _stable(ctx: Pass, r: dict[str, Any]) -> Pipeline | None:
    """The stable revision as a pipeline (its topics, group and prefixes)."""
    spec = rollback.stable_spec(r)
    if spec is None:
        return None
    try:
        return Pipeline.from_resource({**ctx.resource, "spec": spec})
    except PipelineError:
        return None


async def _offsets(clients: Clients, p: Pipeline, *, commits_first: bool) -> dict[str, list[int]]:
    from .rollout import window_offsets

    return await window_offsets(clients, p, commits_first=commits_first)


async def _judge(ctx: Pass, clients: Clients, p: Pipeline, r: dict[str, Any], n: shadow.Names) -> dict[str, Any]:
    sh = r["shadow"]
    start = sh["window"]["start"]
    sp = _stable(ctx, r) or p
    end = await _offsets(clients, sp, commits_first=True)
    brokers, timeout = p.kafka.brokers, clients.kafka_timeout
    shadow_committed = await clients.kafka(clients.admin.committed, brokers, n.group, p.kafka.topics.input)
    ranges, stable_moved = shadow.compare_ranges(start, end, shadow_committed)
    eos = p.router.processing_guarantee == EXACTLY_ONCE
    inputs = await clients.kafka(clients.admin.read_records, brokers, sp.kafka.topics.input, ranges, timeout, eos)
    real = {"even": sp.kafka.topics.name("even"), "odd": sp.kafka.topics.name("odd")}
    real[DEAD_LETTER] = sp.kafka.topics.dead_letter(sp.stream_name)
    stable_out = {}
    for side, topic in real.items():
        rng = shadow.output_ranges(start.get(side, []), end.get(side, []))
        stable_out[side] = await clients.kafka(clients.admin.read_records, brokers, topic, rng, timeout, eos)
    ours = dict(zip(shadow.SIDES, n.topics, strict=True))
    ends = await clients.kafka(clients.admin.ends, brokers, n.topics)
    shadow_out = {}
    for side, topic in ours.items():
        rng = shadow.output_ranges(start.get(shadow.SHADOW_KEYS[side], []), ends.get(topic, []))
        shadow_out[side] = await clients.kafka(clients.admin.read_records, brokers, topic, rng, timeout, eos)
    prefixes = {"even": sp.router.even_prefix, "odd": sp.router.odd_prefix}
    new_prefixes = {"even": p.router.even_prefix, "odd": p.router.odd_prefix}
    c = shadow.compare(inputs, stable_out, shadow_out, prefixes, new_prefixes)
    first = sh.get("start") or []
    shadow_moved = any(h > max(first[i] if i < len(first) else 0, 0) for i, h in enumerate(shadow_committed))
    read = len(inputs) + sum(len(v) for v in stable_out.values()) + sum(len(v) for v in shadow_out.values())
    cost = shadow.load(first, shadow_committed, ends, read)
    written = shadow.written_in_window(r, ends, n)
    counters = shadow.COUNTERS_UNREAD
    if shadow.judge_suspects_foreign(c, stable_moved, shadow_moved, written):
        counters = await _which_router(ctx, clients)
    return shadow.judged(r, c, stable_moved, shadow_moved, clients.now(), cost, written, counters)


async def cleanup(
    ctx: Pass, clients: Clients, p: Pipeline, r: dict[str, Any], actual: list[dict[str, Any]]
) -> dict[str, Any]:
    """A shadow with a verdict (or superseded): once its Deployment and pods are gone
    (the children phase no longer renders it), delete its topics and consumer group."""
    sh = r.get("shadow") or {}
    if sh.get("state") != shadow.REMOVING:
        return r
    if any(d["metadata"]["name"] == sh.get("deployment") for d in actual):
        ctx.again_in(shadow.RECHECK_SECONDS)
        return r
    pods = await clients.pods(ctx.namespace, ctx.name)
    left = [pod for pod in pods if (pod["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == shadow.SUFFIX]
    if left and not shadow.removal_overdue(sh, clients.now()):
        ctx.again_in(shadow.RECHECK_SECONDS)
        return r
    topics, groups = shadow.to_delete(sh)
    try:
        # The groups first: the broker refuses to delete one with members, so a shadow
        # consumer still running (a pod not yet gone) keeps its topics, which its
        # producer could otherwise create again on a broker that auto-creates topics.
        busy = [g for g in groups if not await clients.kafka(clients.admin.delete_group, p.kafka.brokers, g)]
        if busy and not shadow.removal_overdue(sh, clients.now()):
            log.info("%s/%s: the shadow's group %s still has members", ctx.namespace, ctx.name, ", ".join(busy))
            ctx.again_in(shadow.RECHECK_SECONDS)
            return r
        await clients.kafka(clients.admin.delete, p.kafka.brokers, topics)
    except Exception as exc:  # noqa: BLE001 - try again later; the verdict stands
        ctx.problems.append(f"removing the shadow's topics and group: {exc}")
        ctx.again_in(TOPIC_BACKOFF_BASE)
        return r
    log.info("%s/%s: removed the shadow's topics %s and groups %s", ctx.namespace, ctx.name, topics, groups)
    ctx.again_in(shadow.RECHECK_SECONDS)  # the next pass's finalizer phase: nothing of the shadow left to delete
    return shadow.removed(r)


def superseded(prev: dict[str, Any] | None, r: dict[str, Any]) -> dict[str, Any]:
    """`r` carrying an earlier attempt's unfinished shadow (the spec changed meanwhile)
    to removal, when `r` has none of its own: its topics and group must still go."""
    old = (prev or {}).get("shadow") or {}
    if old.get("state") not in (shadow.STARTING, shadow.RUNNING, shadow.REMOVING) or r.get("shadow"):
        return r
    gone = {k: v for k, v in old.items() if k != "window"}
    gone["state"] = shadow.REMOVING
    gone.setdefault("verdict", shadow.SUPERSEDED)
    if gone["verdict"] is None:
        gone["verdict"] = shadow.SUPERSEDED
    return {**r, "shadow": gone}
