"""Phase `topics`: ensure the pipeline's Kafka topics (topics.py plans; the broker is
called only when the spec's topics changed, after a failure's backoff, or every
`recheck_seconds`; otherwise the cached result stands).

Hands on the pipeline with the partition count the topics really have a floor of (the
autoscaler may have grown them) and the topics' report for status.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from .. import topics as topics_mod
from ..clients import Clients
from ..kafka_admin import KafkaUnavailable
from ..model import Pipeline
from ..status_fields import Key
from .context import RECHECK_NEW_TOPICS, TOPIC_BACKOFF_BASE, Memory, Pass

log = logging.getLogger("tspipe.controller")


async def ensure(
    ctx: Pass, clients: Clients, p: Pipeline, recheck_seconds: float
) -> tuple[Pipeline, dict[str, Any] | None]:
    # Topics the autoscaler grew (growPartitions) stay grown: the spec's count is a floor.
    grown = (ctx.prev_status.get(Key.AUTOSCALING) or {}).get("partitionsGrownTo")
    t = p.kafka.topics
    if p.router.autoscaling is not None and isinstance(grown, int) and grown > t.partitions:
        p = replace(p, kafka=replace(p.kafka, topics=replace(t, partitions=grown)))
    result, delay = await _check(ctx.memory, clients, p, recheck_seconds)
    # Until then a pass reuses the cached result: a timer that lets the pipeline settle.
    ctx.recheck_in(delay)
    return p, result


async def _check(
    mem: Memory, clients: Clients, p: Pipeline, recheck_seconds: float
) -> tuple[dict[str, Any] | None, float | None]:
    """The topic check's result for status (None: not managed) and when to look again."""
    if not p.kafka.topics.manage:
        mem.topics_key = mem.topics_result = None
        return None, None
    key = topics_mod.fingerprint(p)
    now = clients.monotonic()
    if mem.topics_key == key and now < mem.topics_due:
        return mem.topics_result, mem.topics_due - now
    desired = topics_mod.desired_topics(p)
    try:
        actual, tplan, failed = await clients.kafka(
            clients.admin.ensure, p.kafka.brokers, desired, topics_mod.plan_topics
        )
        result = topics_mod.topic_status(desired, actual, tplan, failed)
        clients.metrics.kafka_calls.labels("ok").inc()
    except KafkaUnavailable as exc:
        result = topics_mod.unreachable_status(desired, p.kafka.brokers, "no broker answered")
        log.warning("topics of %s/%s: %s", p.namespace, p.name, exc)
        clients.metrics.kafka_calls.labels("unreachable").inc()
    except Exception as exc:  # noqa: BLE001 - a broker-side refusal (auth, policy): a condition
        result = topics_mod.unreachable_status(desired, p.kafka.brokers, str(exc)[:200])
        result["reason"] = topics_mod.TOPIC_CHECK_FAILED
        log.warning("topics of %s/%s failed: %s", p.namespace, p.name, exc)
        clients.metrics.kafka_calls.labels("error").inc()
    if (
        result["ready"]
        and result["reason"] == topics_mod.TOPICS_READY
        and all(t["state"] == topics_mod.READY for t in result["topics"])
    ):
        mem.topics_failures = 0
        delay = recheck_seconds
    elif (
        result["reason"] in (topics_mod.PARTITION_SHRINK_REFUSED, topics_mod.REPLICATION_FACTOR_MISMATCH)
        or result["ready"]
    ):
        # Created or grown just now (check again soon to see them), or refused: slow.
        mem.topics_failures = 0
        delay = RECHECK_NEW_TOPICS if result["ready"] else recheck_seconds
    else:
        delay = min(recheck_seconds, TOPIC_BACKOFF_BASE * (2**mem.topics_failures))
        mem.topics_failures += 1
    mem.topics_key, mem.topics_result, mem.topics_due = key, result, clients.monotonic() + delay
    return result, delay
