"""Phase `rollout` (inside status, with spec.rollout.autoRollback): judge the rollout
by the data. rollback.py decides; this reads what it needs: the broker's offsets when a
window opens and ends, samples of the output topics, the records the router consumed,
or (with Kafka credentials the operator never reads) the router pods' own counters, at
their pod IPs or through the API server's pod proxy (`--router-metrics`).

Hands on status.rollout after this pass, and posts an Event when the verdict changes.
"""

from __future__ import annotations

import logging
import urllib.error
from typing import Any

import urllib3

from .. import podmetrics, rollback, shadow
from .. import topics as topics_mod
from ..clients import Clients, api_error
from ..components import ROUTER
from ..conditions import Condition
from ..kafka_admin import KafkaUnavailable
from ..kube import ApiException
from ..model import EXACTLY_ONCE, SHADOW, Pipeline
from ..names import OUTPUTS, ROUTED
from ..status import ready_pods
from ..status_fields import Key
from . import shadow as shadow_phase
from .context import RECHECK_CONFLICT, TOPIC_BACKOFF_BASE, Pass

log = logging.getLogger("tspipe.controller")


async def advance(
    ctx: Pass,
    clients: Clients,
    p: Pipeline,
    templates: str,
    status: dict[str, Any],
    router_changed: bool = False,
    actual: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """status.rollout after this pass: run a shadow release first when the strategy asks
    for one (the shadow phase), else advance the attempt, reading the broker when a
    window opens or ends; post an Event when the verdict changes."""
    prev = ctx.prev_status.get(Key.ROLLOUT)
    actual = actual or []
    held = await shadow_phase.advance(ctx, clients, p, templates, router_changed, actual)
    if held is not None:
        r = shadow_phase.superseded(prev, held)
    else:
        r = await _rolling(ctx, clients, p, templates, status, router_changed)
    r = await shadow_phase.cleanup(ctx, clients, p, r, actual)
    for ev in (shadow.starting_event(prev, r), shadow.event(prev, r)):
        if ev:
            log.info("%s/%s: shadow %s: %s", ctx.namespace, ctx.name, ev[1], ev[2])
            ctx.out.writes += await clients.event(ctx.resource, *ev)
    return r


async def _rolling(
    ctx: Pass, clients: Clients, p: Pipeline, templates: str, status: dict[str, Any], router_changed: bool
) -> dict[str, Any]:
    """The attempt as autoRollback judges it (also after a shadow was promoted)."""
    prev = ctx.prev_status.get(Key.ROLLOUT)
    ready: dict[str, Any] = next((c for c in status[Key.CONDITIONS] if c["type"] == Condition.READY), {})
    r, need = rollback.advance(
        prev,
        generation=ctx.resource["metadata"].get("generation"),
        templates=templates,
        spec=ctx.resource.get("spec") or {},
        phase=status[Key.PHASE],
        phase_reason=ready.get("reason", ""),
        now=clients.now(),
        verify_seconds=p.verify_seconds,
    )
    if (prev or {}).get("templates") != templates:
        if router_changed and p.rollout_strategy == SHADOW and p.kafka.credentials is not None:
            r = shadow.skipped(r, templates, r.get("generation"))
        elif router_changed and p.rollout_strategy == SHADOW and shadow.stable_group_unused(prev):
            r = shadow.skipped(r, templates, r.get("generation"), shadow.GROUP_UNUSED)
        r = shadow_phase.superseded(prev, r)
    try:
        if need == rollback.OPEN and p.kafka.credentials is not None:
            counters, _ = await router_counters(ctx, clients)
            r = rollback.opened(r, None, clients.now(), p.verify_seconds, counters=counters)
        elif need == rollback.OPEN and (why := shadow.judged_by_readiness(r)):
            spec = ctx.resource.get("spec") or {}
            r = rollback.judged(r, rollback.readiness_only(why), clients.now(), spec) | {"reason": shadow.GROUP_UNUSED}
        elif need == rollback.OPEN:
            start = await window_offsets(clients, p, commits_first=False)
            r = rollback.opened(r, start, clients.now(), p.verify_seconds, spec=ctx.resource.get("spec") or {})
        elif need == rollback.JUDGE:
            r = rollback.judged(r, await _judge(ctx, clients, p, r), clients.now(), ctx.resource.get("spec") or {})
    except KafkaUnavailable as exc:
        # The verdict waits for the broker (it needs its data): look again, not at once.
        log.warning("%s/%s: rollout check: broker unreachable: %s", ctx.namespace, ctx.name, exc)
        ctx.again_in(TOPIC_BACKOFF_BASE)
        return r
    left = rollback.window_left(r, clients.now(), p.verify_seconds)
    if left is not None:
        ctx.again_in(left + 0.5)
    elif r.get("reason") == rollback.WAITING_FOR_COMMITS:
        ctx.again_in(rollback.RECHECK_COMMITS_SECONDS)
    if r.get("verdict") == rollback.ROLLED_BACK and (prev or {}).get("verdict") != rollback.ROLLED_BACK:
        ctx.again_in(RECHECK_CONFLICT)  # the next pass renders the stable revision
    ev = rollback.event(prev, r) if r.get("verdict") != shadow.SHADOW_REJECTED else None
    if ev:
        log.info("%s/%s: rollout %s: %s", ctx.namespace, ctx.name, ev[1], ev[2])
        ctx.out.writes += await clients.event(ctx.resource, *ev)
    return r


async def window_offsets(clients: Clients, p: Pipeline, *, commits_first: bool) -> dict[str, list[int]]:
    names = {t.role: t.name for t in topics_mod.desired_topics(p)}
    outputs = {role: names[role] for role in OUTPUTS}
    result: dict[str, list[int]] = await clients.kafka(
        lambda: clients.admin.offsets(
            p.kafka.brokers,
            p.stream_name,
            names["input"],
            outputs,
            commits_first=commits_first,
            grace_s=rollback.COMMIT_GRACE_SECONDS,
        )
    )
    return result


async def router_counters(
    ctx: Pass, clients: Clients, suffix: str = ROUTER.suffix
) -> tuple[dict[str, dict[str, int]], list[rollback.Unread]]:
    """The Ready router pods' own counters by pod name (at their pod IPs, or through the
    API server's pod proxy), and why any could not be read; `suffix`: the shadow's pods."""
    pods = await clients.pods(ctx.namespace, ctx.name, fresh=True)  # the verdict reads them: not a cached copy
    by_name = {p["metadata"]["name"]: p for p in pods}
    out: dict[str, dict[str, int]] = {}
    problems = []
    path = f"/{podmetrics.METRICS_PATH}"
    for name in ready_pods(pods, ctx.name, suffix):
        try:
            out[name] = podmetrics.router_counters(await clients.router_metrics_text(by_name[name]))
        # A pod that answers without the counters runs another router image (404: no such path).
        except ApiException as exc:
            problems.append(rollback.Unread(name, api_error(exc), exc.status == 404))
        except podmetrics.NoCommittedCounter as exc:
            problems.append(rollback.Unread(name, str(exc), True))
        except urllib.error.HTTPError as exc:
            problems.append(rollback.Unread(name, f"{path} answered HTTP {exc.code}", exc.code == 404))
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            problems.append(rollback.Unread(name, str(exc)))
    if problems:
        how = podmetrics.path_description(clients.router_metrics)
        log.warning(
            "%s/%s: router counters (%s): %s",
            ctx.namespace,
            ctx.name,
            how,
            "; ".join(f"{u.pod}: {u.detail}" for u in problems),
        )
    return out, problems


async def _judge(ctx: Pass, clients: Clients, p: Pipeline, r: dict[str, Any]) -> rollback.Judgement:
    window = r.get("window") or {}
    if p.kafka.credentials is not None:
        counters, problems = await router_counters(ctx, clients)
        if not counters:
            how = podmetrics.path_description(clients.router_metrics)
            return rollback.counters_unreadable(problems, how, p.router.image)
        return rollback.judge_counters(window.get("counters") or {}, counters, p.max_dead_letter_ratio)
    start = window.get("start")
    if start is None:
        return rollback.readiness_only("the broker's offsets were not read when the window opened")
    end = await window_offsets(clients, p, commits_first=True)
    samples: dict[str, list[bytes]] = {}
    for parity in ROUTED:
        ranges = rollback.sample_ranges(start.get(parity, []), end.get(parity, []))
        values = await clients.kafka(
            clients.admin.read, p.kafka.brokers, p.kafka.topics.name(parity), ranges, clients.kafka_timeout
        )
        samples[parity] = [v for v in values if v is not None]
    consumed: int | None = None
    committed = rollback.commit_ranges(start, end)
    if committed is not None:
        # The records the router read: committed ones only when it reads that way (EOS).
        exactly_once = p.router.processing_guarantee == EXACTLY_ONCE
        records = await clients.kafka(
            clients.admin.read, p.kafka.brokers, p.kafka.topics.input, committed, clients.kafka_timeout, exactly_once
        )
        consumed = len(records)
    prefixes = {"even": p.router.even_prefix, "odd": p.router.odd_prefix}
    return rollback.judge(start, end, samples, prefixes, p.max_dead_letter_ratio, consumed)
