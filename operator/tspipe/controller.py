"""The level-based reconcile loop: one pass per pipeline at a time, in phases.

Any event about a pipeline or one of its Deployments only marks the pipeline dirty in
the work queue (workqueue.py: coalescing, debounce, backoff, resync, standby); its
worker then runs one pass. A pass reads the pipeline and parses it once, then runs the
phases in order (each a module of phases/, over the one client adapter in clients.py),
each adding its writes, its problems and when it wants to run again (the pass runs
again after the lowest of those delays), and handing on what the next ones need:

  finalizer    the topics finalizer is present exactly when deleteOnRemoval asks for it;
  topics       ensure the Kafka topics (cached per spec, rechecked on a slow timer, in a
               separate thread pool with a short timeout);
  autoscale    with spec.router.autoscaling: measure the router group's lag, decide its
               replicas (autoscale.py) and, in Enforce mode, hand that count down;
  replay       a `tspipe.io/reset-offsets`: refuse it, or hold the router at zero until
               it stopped, set its group's offsets, consume the annotation (replay.py);
  children     work out the pause stage, plan the Deployments with the pure diff, write
               what differs (stamping the pod template of apps a `tspipe.io/restart` names);
  disruption   the router's PodDisruptionBudget exists exactly when it has > 1 replica;
  restart      consume the `tspipe.io/restart` annotation once its apps rolled (or
               refuse a bad one), with an Event;
  status       compute it; with spec.rollout.autoRollback, judge the rollout (the rollout
               phase: open its window, read the broker at the window's ends, give a
               verdict, roll back to the stable revision when it fails; with strategy
               Shadow, first run a change to the router as a shadow release and compare
               its output with the stable router's: the shadow phase, shadow.py); write
               the status if it changed, post the Events it deserves (status_policy.py);

then reports the problems (a condition, an Event once per distinct message, a retry
with exponential backoff; never a crash). A pipeline being deleted takes the other
path, `_reconcile_delete`: delete a shadow release's Deployment, group and topics if
one is on the broker and the pipeline's topics if asked, then remove the finalizer.
A pipeline annotated `tspipe.io/reconcile-paused: "true"` takes `_reconcile_held`: no
phase runs, only the ReconciliationPaused condition is written (deletion is not held:
the garbage collector removes the children anyway, and a held finalizer would block it).

Write budget: Deployments are written only when they differ; Events only for
failures and significant changes (a rollout, a child recreated or removed, a pause
or resume), not for the first creation; a status change that only moves counters
(same phase, same condition states) is not written by itself
(unless `progress_interval` > 0), so a creation costs one Progressing and one
Running patch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import urllib3

from . import defaults, status_policy
from .clients import Clients, api_error
from .kafka_admin import KafkaUnavailable, TopicAdmin
from .kube import ApiException, Kube
from .metrics import Metrics
from .model import Pipeline, PipelineError
from .phases import autoscale, children, disruption, finalizer, replay, restart, status, topics
from .phases.context import RECHECK_FINALIZE, Memory, Pass, ReadAgain, repeatable
from .replay import reset_request
from .status import RECONCILIATION_PAUSED, held_status
from .switches import reconcile_held, restart_request
from .watchcache import WatchCache, inputs
from .workqueue import Key, Outcome, WorkQueue

__all__ = ["Controller", "Outcome"]

log = logging.getLogger("tspipe.controller")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Controller:
    kube: Kube
    resync_seconds: float = defaults.RESYNC_SECONDS
    reread_seconds: float = defaults.REREAD_SECONDS  # a settled pipeline is looked at again this often
    backoff_base: float = defaults.BACKOFF_BASE
    backoff_max: float = defaults.BACKOFF_MAX
    # Counter-only status changes (same phase, conditions and rolling components) are
    # written with the next significant change, or after this many seconds; 0: never alone.
    progress_interval: float = defaults.PROGRESS_INTERVAL
    debounce_seconds: float = defaults.DEBOUNCE_SECONDS  # coalesce a burst of Deployment events per pipeline
    topic_recheck_seconds: float = defaults.TOPIC_RECHECK_SECONDS  # re-describe unchanged topics this often
    kafka_timeout: float = defaults.KAFKA_TIMEOUT
    router_metrics: str = defaults.ROUTER_METRICS  # how a router pod's counters are read (direct or proxy)
    admin: TopicAdmin | None = None
    # (namespace or None for cluster-wide, peering object name, our priority) when peered.
    peering: tuple[str | None, str, int] | None = None
    peering_check_seconds: float = defaults.PEERING_CHECK_SECONDS
    now: Callable[[], datetime] = _now
    monotonic: Callable[[], float] = time.monotonic
    metrics: Metrics = field(default_factory=Metrics)
    queue: WorkQueue = field(init=False)
    clients: Clients = field(init=False)
    # The Deployments and pods as the watches delivered them (handlers.py feeds it).
    cache: WatchCache = field(init=False)
    _memory: dict[Key, Memory] = field(default_factory=dict)
    _peering_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if self.admin is None:
            self.admin = TopicAdmin(self.kafka_timeout)
        self.cache = WatchCache(self.monotonic)
        self.clients = Clients(
            self.kube,
            self.admin,
            self.kafka_timeout,
            self.now,
            self.monotonic,
            self.metrics,
            cache=self.cache,
            router_metrics=self.router_metrics,
        )
        self.queue = WorkQueue(
            self._work,
            unchanged=self._unchanged,
            resync_seconds=self.resync_seconds,
            reread_seconds=self.reread_seconds,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            debounce_seconds=self.debounce_seconds,
        )

    @property
    def standby(self) -> bool:
        """A higher-priority peer is active: our own timers enqueue nothing."""
        return self.queue.standby

    @standby.setter
    def standby(self, value: bool) -> None:
        self.queue.standby = value

    # --- event entry points --------------------------------------------------------
    def enqueue(self, namespace: str, name: str) -> None:
        self.queue.enqueue((namespace, name))

    def enqueue_soon(self, namespace: str, name: str) -> None:
        self.queue.enqueue_soon((namespace, name))

    def listed(self, namespace: str, name: str) -> None:
        """The pipeline came in a listing (it existed before its watch began): its
        Deployments and pods may not be in the cache yet, so its next pass reads them
        from the API."""
        self._memory.setdefault((namespace, name), Memory()).read_fresh = True

    def forget(self, namespace: str, name: str) -> None:
        self.queue.forget((namespace, name))
        self._memory.pop((namespace, name), None)
        self.cache.forget(namespace, name)
        self.metrics.forget_pipeline(namespace, name)  # also on a DELETED event: its gauges stayed

    def start(self) -> None:
        self.queue.start()
        if self.peering:
            self._peering_task = asyncio.get_running_loop().create_task(self._watch_peers(), name="peers")

    async def stop(self) -> None:
        if self._peering_task:
            self._peering_task.cancel()
            await asyncio.gather(self._peering_task, return_exceptions=True)
        await self.queue.stop()
        self.clients.close()

    async def _watch_peers(self) -> None:
        from .peering import is_standby

        assert self.peering is not None  # start() only watches when peered
        ns, name, priority = self.peering
        while True:
            try:
                obj = await self.clients.call(self.kube.get_peering, ns, name)
                standby = is_standby(obj, priority, self.now())
                if standby != self.standby:
                    log.info("peering: %s", "standby (a higher-priority peer is active)" if standby else "active")
                self.standby = standby
            except Exception as exc:  # noqa: BLE001 - keep the last known role
                log.debug("peering check failed: %s", exc)
            await asyncio.sleep(self.peering_check_seconds)

    async def _work(self, key: Key) -> None:
        """One pass for the work queue: reconcile, log, count, schedule the next."""
        started = time.monotonic()
        try:
            outcome = await self.reconcile(*key)
        except asyncio.CancelledError:
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # API server unreachable (restarting, network): retry with backoff.
            log.warning("reconcile %s/%s: API server unreachable: %s", *key, exc)
            outcome = Outcome(error=f"API server unreachable: {exc}")
        except Exception as exc:
            log.exception("reconcile %s/%s crashed", *key)
            outcome = Outcome(error=f"internal error: {exc}")
        # Tests and humans read this line, one per pass, to know a pass finished and what it cost.
        if outcome.unchanged:
            log.debug("reconciled %s/%s: nothing it reads changed since the last pass: 0 writes", *key)
        else:
            log.log(
                logging.INFO if outcome.writes else logging.DEBUG,
                "reconciled %s/%s: %d writes%s",
                *key,
                outcome.writes,
                f", error: {outcome.error}" if outcome.error else "",
            )
        self.metrics.observe_reconcile(time.monotonic() - started, outcome.writes, outcome.error)
        self.queue.schedule(key, outcome)

    def _unchanged(self, key: Key) -> None:
        """A resync of a settled pipeline nothing touched since its last pass: that pass
        stands (it would do the same again). Logged like a pass, so a resync shows."""
        log.debug("reconciled %s/%s: nothing new since the last pass: 0 writes", *key)

    # --- one pass ------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        memory = self._memory.get(key)
        why = self._fresh(memory)
        fresh = why is not None
        if fresh:
            log.debug("reconcile %s/%s: reading from the API (%s)", *key, why)
        # The pipeline as its watch delivered it (or our last write's answer); from the
        # API on a fresh pass, or when the watch has not delivered it (yet).
        resource = None if fresh else self.cache.pipelines.get(namespace, name)
        if resource is not None:
            if memory is not None and memory.inputs is not None:
                now = self.cache.inputs(namespace, resource, with_pods=memory.inputs[2] is not None)
                if now == memory.inputs:
                    return Outcome(unchanged=True)
        else:
            resource = await self.clients.call(self.kube.get_pipeline, namespace, name)
            if resource is None:
                self.forget(namespace, name)  # deleted: the garbage collector removes the children
                return Outcome()
            self.cache.pipeline_written(resource)  # newer than the watch's copy, if it has one
        if resource["metadata"].get("deletionTimestamp"):
            return await self._reconcile_delete(resource)
        if reconcile_held(resource):
            return await self._reconcile_held(resource)
        return await self._reconcile_normal(resource, fresh)

    def _fresh(self, memory: Memory | None) -> str | None:
        """Why this pass reads from the API rather than the watch cache (None: it does
        not): a listed pipeline's first pass or after a write found the cache stale, or
        the first since a watch listed again (watchcache.py). A settled pipeline's
        periodic pass reads the cache, as client-go's resync does: reading the API
        instead cost a GET and two LISTs per pipeline every `reread_seconds`, paid by
        pipelines waiting for the control plane too (1,785 at N=1,000, issue 26)."""
        if memory is None:
            # Created since the watches began: its children come as events or as our
            # writes' answers (a listed one has a Memory: `listed`).
            return None
        if memory.read_fresh:
            return "listed, or the cache was stale"
        if memory.cache_epoch != self.cache.epoch:
            return "a watch listed again"
        return None

    async def _reconcile_held(self, resource: dict[str, Any]) -> Outcome:
        """Reconciliation held: say so in the status (and once in an Event); nothing else."""
        out = Outcome()
        meta = resource["metadata"]
        prev = resource.get("status") or {}
        if prev.get("phase"):
            self.metrics.set_phase(meta["namespace"], meta["name"], prev["phase"])
        new = held_status(resource, self.now())
        if new == prev:
            return out
        try:
            await self.clients.write_pipeline(self.kube.write_status, meta["namespace"], meta["name"], new)
            out.writes += 1
        except ApiException as exc:
            if exc.status != 404:
                out.error = f"write status: {api_error(exc)}"
                return out
        if not status_policy.held(prev):
            cond = next(c for c in new["conditions"] if c["type"] == RECONCILIATION_PAUSED)
            out.writes += await self.clients.event(resource, "Normal", RECONCILIATION_PAUSED, cond["message"])
        return out

    async def _reconcile_delete(self, resource: dict[str, Any]) -> Outcome:
        out = Outcome()
        try:
            await finalizer.remove(self.clients, resource, out)
        except KafkaUnavailable as exc:
            out.error = f"deleting topics: {exc}"
        except ApiException as exc:
            if exc.status not in (404, 409):
                out.error = f"removing finalizer: {api_error(exc)}"
            out.retry_after = RECHECK_FINALIZE
        return out

    async def _reconcile_normal(self, resource: dict[str, Any], fresh: bool = True) -> Outcome:
        meta = resource["metadata"]
        key = (meta["namespace"], meta["name"])
        memory = self._memory.setdefault(key, Memory())
        ctx = Pass(resource, memory, restart=restart_request(resource), reset=reset_request(resource))
        ctx.fresh = fresh
        memory.read_fresh, memory.cache_epoch, memory.inputs = False, self.cache.epoch, None
        p: Pipeline | None = None
        try:
            p = self._parsed(memory, resource)
        except PipelineError as exc:
            # Only possible if the CRD's validation is older than this operator.
            ctx.problems.append(f"invalid spec: {exc}")
        try:
            await self._phases(ctx, p)
        except ReadAgain as again:
            ctx.out.retry_after = again.delay
            return ctx.out
        await self._report(ctx)
        ctx.out.retry_after = ctx.requeue
        ctx.out.recheck_after = ctx.recheck
        if p is not None and self.cache.primed and repeatable(ctx, p):
            memory.inputs = inputs(ctx.written or resource, ctx.children or [], ctx.pods_read)
        return ctx.out

    @staticmethod
    def _parsed(memory: Memory, resource: dict[str, Any]) -> Pipeline:
        """The pipeline parsed, once per version of the resource: most passes are woken by
        their Deployments and read the same version again (Pipeline is frozen)."""
        meta = resource["metadata"]
        version = (meta.get("uid"), meta.get("resourceVersion"), meta.get("generation"))
        if memory.parsed is None or memory.parsed[0] != version or version[1] is None:
            memory.parsed = (version, Pipeline.from_resource(resource))
        return memory.parsed[1]

    async def _phases(self, ctx: Pass, p: Pipeline | None) -> None:
        """The phase list. Each phase takes what the earlier ones handed on: the topics
        and autoscale phases may change the pipeline the later ones render (grown
        partitions, the autoscaler's replicas), the children phase settles the replica
        counts and which restarts have rolled."""
        c = self.clients
        topics_report = autoscaling = None
        replayed = replay.Replay()
        if p is not None:
            await finalizer.sync(ctx, c, p)
            p, topics_report = await topics.ensure(ctx, c, p, self.topic_recheck_seconds)
            p, autoscaling = await autoscale.decide(ctx, c, p)
            p, replayed = await replay.advance(ctx, c, p)
        else:
            autoscale.stand_down(ctx)
        kids = await children.reconcile(ctx, c, p)
        ctx.children = kids.actual
        if p is not None and kids.pause is not None:
            await disruption.reconcile(ctx, c, p, kids.pause)
        restarted = await restart.consume(ctx, c, p, kids.restart_done)
        seen = status.Observed(kids, topics_report, autoscaling, restarted, replayed)
        await status.write(ctx, c, p, seen, self.progress_interval)

    async def _report(self, ctx: Pass) -> None:
        """The pass's problems: an error for the work queue, a Warning once per distinct message."""
        mem = ctx.memory
        if ctx.problems:
            ctx.out.error = "; ".join(ctx.problems)
            if ctx.out.error != mem.last_error:
                ctx.out.writes += await self.clients.event(ctx.resource, "Warning", "ReconcileFailed", ctx.out.error)
                log.warning("%s/%s: %s", ctx.namespace, ctx.name, ctx.out.error)
            mem.last_error = ctx.out.error
        else:
            if mem.last_error:
                log.info("%s/%s: recovered", ctx.namespace, ctx.name)
            mem.last_error = None
