"""Phase `autoscale`: with spec.router.autoscaling, measure the router group's lag,
decide its replicas (autoscale.py) and, in Enforce mode, hand that count down as if the
spec had asked for it (the spec itself is never written); grow the topics' partitions
when asked (the topics phase of the next pass does it).

Hands on the pipeline with the replicas to render and the report for status.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import autoscale
from ..clients import Clients
from ..kube import ApiException
from ..model import Pipeline
from ..names import API_GROUP, KIND, RESET_OFFSETS_ANNOTATION
from ..stamps import format_time
from ..status_fields import Key
from .context import RECHECK_NEW_TOPICS, Pass

AUTOSCALE_INTERVAL = 15.0  # how often lag is sampled for the autoscaler (the HPA's sync period)


async def decide(ctx: Pass, clients: Clients, p: Pipeline) -> tuple[Pipeline, dict[str, Any] | None]:
    a = p.router.autoscaling
    if a is None:
        ctx.memory.autoscale_samples = autoscale.Samples()
        return p, None
    prev = ctx.prev_status.get(Key.AUTOSCALING) or {}
    report: dict[str, Any] = {"mode": a.mode}

    aside = await _aside(ctx, clients, p)
    if aside:
        ctx.memory.autoscale_samples = autoscale.Samples()  # a gap: the windows start again
        report.update(active=False, reason=aside[0], message=aside[1])
        return p, report
    ctx.again_in(AUTOSCALE_INTERVAL)
    try:
        g = await clients.kafka(clients.admin.group_lag, p.kafka.brokers, p.stream_name, p.kafka.topics.input)
    except Exception as exc:  # noqa: BLE001 - any broker failure: keep the count, say why
        kept = int(prev.get("desiredReplicas", p.router.replicas))
        if a.enforce:
            p = replace(p, router=replace(p.router, replicas=kept))
        ctx.memory.autoscale_samples = autoscale.Samples()
        message = f"lag unknown, keeping {kept} replica(s): {exc}"
        report.update(desiredReplicas=kept, active=False, reason=autoscale.LAG_UNKNOWN, message=message)
        return p, report
    current = int(prev["desiredReplicas"]) if a.enforce and "desiredReplicas" in prev else p.router.replicas
    unused = autoscale.group_unused(g, p.stream_name, p.kafka.topics.input, current)
    if unused:
        if a.enforce:
            p = replace(p, router=replace(p.router, replicas=current))
        ctx.memory.autoscale_samples = autoscale.Samples()  # a gap: nothing to act on
        report.update(
            desiredReplicas=current,
            active=False,
            reason=autoscale.NO_GROUP_COMMITS,
            message=unused,
            source=autoscale.SOURCE_KAFKA,
            lag=g.lag,
            partitions=g.partitions,
        )
        return p, report
    lag, partitions = g.lag, g.partitions
    d = autoscale.decide(a, current, lag, partitions, clients.monotonic(), ctx.memory.autoscale_samples)
    ctx.memory.autoscale_samples = d.samples
    report.update(
        active=True,
        reason=autoscale.ENFORCING if a.enforce else autoscale.RECOMMENDING,
        message=d.reason,
        source=autoscale.SOURCE_KAFKA,
        lag=lag,
        partitions=partitions,
        recommendedReplicas=d.recommended,
        desiredReplicas=d.replicas,
        limitedByPartitions=d.limited_by_partitions,
    )
    scaled = replace(p, router=replace(p.router, replicas=d.replicas)) if a.enforce else p
    # An Event when the decision changes (in Recommend mode it may differ from the
    # spec for as long as the lag lasts: that is one Event, not one per pass).
    if d.replicas != prev.get("desiredReplicas", current):
        verb = "scaled" if a.enforce else "would scale"
        report["lastScale"] = {"time": format_time(clients.now()), "from": current, "to": d.replicas, "why": d.reason}
        ctx.out.writes += await clients.event(
            ctx.resource,
            "Normal",
            "Autoscaled" if a.enforce else "AutoscaleRecommended",
            f"router {verb} {current} -> {d.replicas}: {d.reason}",
        )
    elif prev.get("lastScale"):
        report["lastScale"] = prev["lastScale"]
    if prev.get("partitionsGrownTo"):
        report["partitionsGrownTo"] = prev["partitionsGrownTo"]
    if d.grow_partitions_to is not None:
        await _grow_partitions(ctx, clients, p, d.grow_partitions_to, report)
    return scaled, report


def stand_down(ctx: Pass) -> None:
    """No valid spec this pass: the stabilization windows start again once it parses."""
    ctx.memory.autoscale_samples = autoscale.Samples()


async def _grow_partitions(ctx: Pass, clients: Clients, p: Pipeline, to: int, report: dict[str, Any]) -> None:
    """Record the partition count the topics phase grows the topics to (next pass)."""
    if not p.kafka.topics.manage:
        report["message"] += " (but spec.kafka.topics.manage is false: the operator does not touch the topics)"
        return
    ctx.again_in(RECHECK_NEW_TOPICS)
    if report.get("partitionsGrownTo") == to:
        return  # asked for already (the topics phase retries a grow that failed)
    report["partitionsGrownTo"] = to
    message = f"growing the pipeline's topics to {to} partitions: {report['message']}"
    ctx.out.writes += await clients.event(ctx.resource, "Normal", "PartitionsGrown", message)


async def _aside(ctx: Pass, clients: Clients, p: Pipeline) -> tuple[str, str] | None:
    """Why the autoscaler must not act now (condition reason, message), if so."""
    if p.paused:
        return autoscale.PIPELINE_PAUSED, "the pipeline is paused"
    if ctx.reset is not None and not ctx.reset.problem:
        return (
            autoscale.OFFSET_RESET,
            f"{RESET_OFFSETS_ANNOTATION} is under way: the router is stopped for it and starts again at "
            "spec.router.replicas; the autoscaler stands aside until then",
        )
    hpa = await _external_autoscaler(clients, ctx.namespace, ctx.name)
    if hpa:
        return (
            autoscale.EXTERNAL_AUTOSCALER,
            f"HorizontalPodAutoscaler {hpa} scales this pipeline; the built-in autoscaler stands aside "
            "so that two controllers do not fight over the replicas",
        )
    if p.kafka.credentials is not None:
        return (
            autoscale.NO_CREDENTIALS_ACCESS,
            "the broker needs credentials and the operator never reads their Secret, so it cannot measure "
            "the lag; scale with spec.router.replicas or an HPA on the router's tsrouter_consumer_lag metric "
            "(this project's router image serves it; another router image needs a lag metric of its own)",
        )
    return None


async def _external_autoscaler(clients: Clients, namespace: str, name: str) -> str | None:
    """The name of an HPA whose target is this pipeline (KEDA's included), if any."""
    try:
        hpas = await clients.call(clients.kube.list_hpas, namespace)
    except ApiException as exc:
        if exc.status in (403, 404):  # not allowed or no autoscaling API: none can act on us
            return None
        raise
    for h in hpas:
        ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
        group = str(ref.get("apiVersion", "")).split("/")[0]
        if ref.get("kind") == KIND and ref.get("name") == name and group == API_GROUP:
            return str(h["metadata"]["name"])
    return None
