"""The level-based reconcile loop: one pass per pipeline at a time, in phases.

Any event about a pipeline or one of its Deployments only marks the pipeline dirty in
the work queue (workqueue.py: coalescing, debounce, backoff, resync, standby); its
worker then runs one pass. A pass reads the pipeline and parses it once, then runs the
phases in order, each adding its writes, its problems and when it wants to run again
(the pass runs again after the lowest of those delays):

  finalizer    the topics finalizer is present exactly when deleteOnRemoval asks for it;
  topics       ensure the Kafka topics (cached per spec, rechecked on a slow timer, in a
               separate thread pool with a short timeout);
  autoscale    with spec.router.autoscaling: measure the router group's lag, decide its
               replicas (autoscale.py) and, in Enforce mode, hand that count down;
  deployments  work out the pause stage, plan with the pure diff, write what differs
               (stamping the pod template of apps a `tspipe.io/restart` names);
  disruption   the router's PodDisruptionBudget exists exactly when it has > 1 replica;
  restart      consume the `tspipe.io/restart` annotation once its apps rolled (or
               refuse a bad one), with an Event;
  status       compute it; with spec.rollout.autoRollback, judge the rollout (rollback.py:
               open its window, read the broker at the window's ends, give a verdict, and
               roll back to the stable revision when it fails); write the status if it
               changed, post the Events it deserves;

then reports the problems (a condition, an Event once per distinct message, a retry
with exponential backoff; never a crash). A pipeline being deleted takes the other
path, `_reconcile_delete`: delete its topics if asked, then remove the finalizer.
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
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import urllib3

from . import autoscale, podmetrics, rollback
from . import topics as topics_mod
from .api import API_GROUP, FINALIZER, KIND, RESTART_ANNOTATION
from .components import COMPONENTS, ROUTER
from .disruption import pdb_name, plan_pdb, router_pdb
from .kafka_admin import KafkaUnavailable, TopicAdmin
from .kube import ApiException, Kube
from .metrics import Metrics
from .model import EXACTLY_ONCE, Pipeline, PipelineError
from .pause import PauseState, pause_state
from .reconcile import CREATE, DELETE, RECREATE, UPDATE, Action, plan
from .render import (
    SERVER_PORT,
    deployment_name,
    owned_selector,
    render_deployments,
    restarted_at,
    with_restart,
)
from .stamps import format_time
from .status import RECONCILIATION_PAUSED, compute_status, held_status, needs_pods, ready_pods
from .switches import RestartRequest, reconcile_held, restart_request
from .workqueue import Key, Outcome, WorkQueue

__all__ = ["Controller", "Outcome"]

log = logging.getLogger("tspipe.controller")

# When to look again, in seconds (each the delay a pass asks the work queue for):
RECHECK_DELETED_CHILD = 2.0  # a child is being deleted (or was, to recreate it): create it once it is gone
RECHECK_CONFLICT = 1.0  # a write raced with someone (409/404): read again soon
RECHECK_FINALIZER_CONFLICT = 0.5  # the finalizer patch lost a race: the object changed, read it again
RECHECK_FINALIZE = 1.0  # a deleted pipeline's finalizer could not be removed yet
RECHECK_NEW_TOPICS = 2.0  # topics created or grown just now: describe them again to see them as they are
TOPIC_BACKOFF_BASE = 5.0  # first retry of an unreachable broker; doubles up to topic_recheck_seconds
KAFKA_THREADS = 4  # the Kafka admin pool (a slow broker must not starve the Kubernetes calls)
AUTOSCALE_INTERVAL = 15.0  # how often lag is sampled for the autoscaler (the HPA's sync period)


def _now() -> datetime:
    return datetime.now(UTC)


def _api_error(exc: ApiException) -> str:
    msg = exc.reason or ""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):  # the body is not always JSON
        body = None
    if isinstance(body, dict):
        msg = body.get("message", msg)
    return f"{exc.status} {msg}".strip()


def lowest_delay(*delays: float | None) -> float | None:
    """The soonest of the requeue delays the phases asked for (None: no requeue)."""
    asked = [d for d in delays if d is not None]
    return min(asked) if asked else None


@dataclass
class _State:
    """What the controller remembers about a pipeline between passes."""

    last_error: str | None = None
    last_status_write: float = float("-inf")  # monotonic
    # Topics: the fingerprint last ensured, its result, when to check again.
    topics_key: tuple[Any, ...] | None = None
    topics_result: dict[str, Any] | None = None
    topics_due: float = 0.0
    topics_failures: int = 0
    # The router's PodDisruptionBudget is known to be absent (none wanted, none found or
    # ours deleted): a one-replica router then costs no GET per pass.
    pdb_absent: bool = False
    # The autoscaler's recommendations so far (its stabilization windows).
    autoscale_samples: autoscale.Samples = field(default_factory=autoscale.Samples)


@dataclass
class _Pass:
    """One reconcile pass over one pipeline: what the phases read and what they add up."""

    pipeline: dict[str, Any]  # as read from the API server
    p: Pipeline | None  # parsed once; None if invalid (then only status runs)
    state: _State
    out: Outcome = field(default_factory=Outcome)
    problems: list[str] = field(default_factory=list)
    requeue: float | None = None
    topics: dict[str, Any] | None = None  # the topics phase's result for status
    pause: PauseState | None = None
    actual: list[dict[str, Any]] = field(default_factory=list)  # the pipeline's Deployments
    restart: RestartRequest | None = None  # the tspipe.io/restart annotation, parsed
    restart_done: set[str] = field(default_factory=set)  # Deployments whose template has this pass's stamp
    restarted: list[str] = field(default_factory=list)  # apps restarted (the request consumed)
    restart_rejected: str | None = None  # why a request was refused (consumed too)
    autoscaling: dict[str, Any] | None = None  # the autoscale phase's report for status
    templates: str | None = None  # autoRollback: digest of the pod templates the spec asks for

    @property
    def namespace(self) -> str:
        return str(self.pipeline["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.pipeline["metadata"]["name"])

    @property
    def prev_status(self) -> dict[str, Any]:
        return self.pipeline.get("status") or {}

    def again_in(self, delay: float | None) -> None:
        self.requeue = lowest_delay(self.requeue, delay)


class _Restart(Exception):
    """End the pass now and run it again after `delay` (the object changed under us)."""

    def __init__(self, delay: float):
        super().__init__(delay)
        self.delay = delay


def _significant(status: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a status change worth writing at once: phase and condition states."""
    return (
        status.get("phase"),
        status.get("observedGeneration"),
        tuple((c["type"], c["status"], c["reason"]) for c in status.get("conditions") or []),
        tuple((t.get("name"), t.get("state"), t.get("partitions")) for t in status.get("topics") or []),
        len(status.get("history") or []),
        (status.get("pause") or {}).get("sourceStoppedAt"),
        (status.get("autoscaling") or {}).get("desiredReplicas"),
        tuple((status.get("rollout") or {}).get(k) for k in ("generation", "verdict", "reason")),
        ((status.get("rollout") or {}).get("window") or {}).get("opened"),
    )


def _held(status: dict[str, Any]) -> bool:
    """The status says reconciliation is held (the ReconciliationPaused condition is True)."""
    return any(
        c.get("type") == RECONCILIATION_PAUSED and c.get("status") == "True" for c in status.get("conditions") or []
    )


@dataclass
class Controller:
    kube: Kube
    resync_seconds: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    # Counter-only status changes (same phase, conditions and rolling components) are
    # written with the next significant change, or after this many seconds; 0: never alone.
    progress_interval: float = 0.0
    debounce_seconds: float = 1.0  # coalesce a burst of Deployment events per pipeline
    topic_recheck_seconds: float = 300.0  # re-describe unchanged topics this often
    kafka_timeout: float = 5.0
    admin: TopicAdmin | None = None
    # (namespace or None for cluster-wide, peering object name, our priority) when peered.
    peering: tuple[str | None, str, int] | None = None
    peering_check_seconds: float = 10.0
    now: Callable[[], datetime] = _now
    monotonic: Callable[[], float] = time.monotonic
    metrics: Metrics = field(default_factory=Metrics)
    queue: WorkQueue = field(init=False)
    _state: dict[Key, _State] = field(default_factory=dict)
    _peering_task: asyncio.Task[None] | None = None
    _kafka_pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if self.admin is None:
            self.admin = TopicAdmin(self.kafka_timeout)
        self.queue = WorkQueue(
            self._work,
            resync_seconds=self.resync_seconds,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            debounce_seconds=self.debounce_seconds,
        )

    @property
    def _admin(self) -> TopicAdmin:
        assert self.admin is not None  # set in __post_init__
        return self.admin

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

    def forget(self, namespace: str, name: str) -> None:
        self.queue.forget((namespace, name))
        self._state.pop((namespace, name), None)

    def start(self) -> None:
        self.queue.start()
        if self.peering:
            self._peering_task = asyncio.get_running_loop().create_task(self._watch_peers(), name="peers")

    async def stop(self) -> None:
        if self._peering_task:
            self._peering_task.cancel()
            await asyncio.gather(self._peering_task, return_exceptions=True)
        await self.queue.stop()
        if self._kafka_pool:
            self._kafka_pool.shutdown(wait=False, cancel_futures=True)

    async def _watch_peers(self) -> None:
        from .peering import is_standby

        assert self.peering is not None  # start() only watches when peered
        ns, name, priority = self.peering
        while True:
            try:
                obj = await self._call(self.kube.get_peering, ns, name)
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
        # Tests and humans read this line to know a pass finished and what it cost.
        log.log(
            logging.INFO if outcome.writes else logging.DEBUG,
            "reconciled %s/%s: %d writes%s",
            *key,
            outcome.writes,
            f", error: {outcome.error}" if outcome.error else "",
        )
        self.metrics.observe_reconcile(time.monotonic() - started, outcome.writes, outcome.error)
        self.queue.schedule(key, outcome)

    # --- calls ---------------------------------------------------------------------
    async def _call(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def _kafka(self, fn, *args):
        """A Kafka admin call in its own small pool (a slow broker must not starve the
        Kubernetes calls), bounded on this side too."""
        if self._kafka_pool is None:
            self._kafka_pool = concurrent.futures.ThreadPoolExecutor(KAFKA_THREADS, thread_name_prefix="kafka")
        fut = asyncio.get_running_loop().run_in_executor(self._kafka_pool, fn, *args)
        try:
            # The admin client's own timeouts bound each of its (up to three) round trips.
            return await asyncio.wait_for(fut, self.kafka_timeout * 3 + 2)
        except TimeoutError as exc:
            raise KafkaUnavailable("no answer in time") from exc

    async def _actual(self, namespace: str, name: str) -> list[dict]:
        found = await self._call(self.kube.list_deployments, namespace, owned_selector(name))
        names = {d["metadata"]["name"] for d in found}
        # A child whose labels were edited away is not in the labelled list; look it up by name.
        for c in COMPONENTS:
            dname = deployment_name(name, c)
            if dname not in names:
                d = await self._call(self.kube.get_deployment, namespace, dname)
                if d is not None:
                    found.append(d)
        return found

    async def _event(self, pipeline: dict, type_: str, reason: str, message: str) -> int:
        try:
            await self._call(self.kube.post_event, pipeline, type_, reason, message, self.now())
            return 1
        except ApiException as exc:
            log.warning("could not post event %s: %s", reason, _api_error(exc))
            return 0

    async def _apply(self, namespace: str, action: Action) -> None:
        if action.kind != "Deployment":
            await self._apply_pdb(namespace, action)
        elif action.verb == CREATE:
            await self._call(self.kube.create_deployment, namespace, action.body)
        elif action.verb == UPDATE:
            await self._call(self.kube.replace_deployment, namespace, action.name, action.body)
        elif action.verb in (DELETE, RECREATE):
            await self._call(self.kube.delete_deployment, namespace, action.name, action.resource_version)
        else:
            raise ValueError(action.verb)

    async def _apply_pdb(self, namespace: str, action: Action) -> None:
        if action.verb == CREATE:
            await self._call(self.kube.create_pdb, namespace, action.body)
        elif action.verb == UPDATE:
            await self._call(self.kube.replace_pdb, namespace, action.name, action.body)
        elif action.verb == DELETE:
            await self._call(self.kube.delete_pdb, namespace, action.name, action.resource_version)
        else:
            raise ValueError(f"{action.verb} {action.kind}")

    # --- topics ----------------------------------------------------------------------
    async def _topics(self, st: _State, p: Pipeline) -> tuple[dict | None, float | None]:
        """The topic check's result for status (None: not managed) and when to look again.

        Calls the broker only when the spec's topics changed, after a failure's
        backoff, or every `topic_recheck_seconds`; otherwise the cached result."""
        if not p.kafka.topics.manage:
            st.topics_key = st.topics_result = None
            return None, None
        key = topics_mod.fingerprint(p)
        now = self.monotonic()
        if st.topics_key == key and now < st.topics_due:
            return st.topics_result, st.topics_due - now
        desired = topics_mod.desired_topics(p)
        try:
            actual, tplan, failed = await self._kafka(
                self._admin.ensure, p.kafka.brokers, desired, topics_mod.plan_topics
            )
            result = topics_mod.topic_status(desired, actual, tplan, failed)
            self.metrics.kafka_calls.labels("ok").inc()
        except KafkaUnavailable as exc:
            result = topics_mod.unreachable_status(desired, p.kafka.brokers, "no broker answered")
            log.warning("topics of %s/%s: %s", p.namespace, p.name, exc)
            self.metrics.kafka_calls.labels("unreachable").inc()
        except Exception as exc:  # noqa: BLE001 - a broker-side refusal (auth, policy): a condition
            result = topics_mod.unreachable_status(desired, p.kafka.brokers, str(exc)[:200])
            result["reason"] = "TopicCheckFailed"
            log.warning("topics of %s/%s failed: %s", p.namespace, p.name, exc)
            self.metrics.kafka_calls.labels("error").inc()
        if (
            result["ready"]
            and result["reason"] == "TopicsReady"
            and all(t["state"] == topics_mod.READY for t in result["topics"])
        ):
            st.topics_failures = 0
            delay = self.topic_recheck_seconds
        elif result["reason"] in ("PartitionShrinkRefused", "ReplicationFactorMismatch") or result["ready"]:
            # Created or grown just now (check again soon to see them), or refused: slow.
            st.topics_failures = 0
            delay = RECHECK_NEW_TOPICS if result["ready"] else self.topic_recheck_seconds
        else:
            delay = min(self.topic_recheck_seconds, TOPIC_BACKOFF_BASE * (2**st.topics_failures))
            st.topics_failures += 1
        st.topics_key, st.topics_result, st.topics_due = key, result, self.monotonic() + delay
        return result, delay

    async def _router_lag(self, p: Pipeline) -> int | None:
        try:
            return await self._kafka(self._admin.lag, p.kafka.brokers, p.stream_name, p.kafka.topics.input)
        except Exception as exc:  # noqa: BLE001 - unknown lag: the drain bound decides
            log.info("%s/%s: router lag unknown: %s", p.namespace, p.name, exc)
            return None

    async def _finalize(self, pipeline: dict) -> int:
        """The pipeline is being deleted: delete its topics if asked, then let it go."""
        meta = pipeline["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return 0
        try:
            p = Pipeline.from_resource(pipeline)
            if p.kafka.topics.manage and p.kafka.topics.delete_on_removal:
                names = [t.name for t in topics_mod.desired_topics(p)]
                await self._kafka(self._admin.delete, p.kafka.brokers, names)
                log.info("%s/%s: deleted topics %s", meta["namespace"], meta["name"], ", ".join(names))
        except PipelineError:
            pass
        await self._call(
            self.kube.set_finalizers,
            meta["namespace"],
            meta["name"],
            [f for f in meta.get("finalizers") or [] if f != FINALIZER],
            meta["resourceVersion"],
        )
        return 1

    async def _sync_finalizer(self, pipeline: dict, p: Pipeline) -> int:
        # Only pipelines that delete their topics carry a finalizer: deleting any other
        # pipeline never waits for this operator.
        meta = pipeline["metadata"]
        current = meta.get("finalizers") or []
        want = p.kafka.topics.manage and p.kafka.topics.delete_on_removal
        if want == (FINALIZER in current):
            return 0
        new = current + [FINALIZER] if want else [f for f in current if f != FINALIZER]
        await self._call(self.kube.set_finalizers, meta["namespace"], meta["name"], new, meta["resourceVersion"])
        return 1

    # --- one pass ------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> Outcome:
        pipeline = await self._call(self.kube.get_pipeline, namespace, name)
        if pipeline is None:
            self.forget(namespace, name)  # deleted: the garbage collector removes the children
            self.metrics.forget_pipeline(namespace, name)
            return Outcome()
        if pipeline["metadata"].get("deletionTimestamp"):
            return await self._reconcile_delete(pipeline)
        if reconcile_held(pipeline):
            return await self._reconcile_held(pipeline)
        return await self._reconcile_normal(pipeline)

    async def _reconcile_held(self, pipeline: dict[str, Any]) -> Outcome:
        """Reconciliation held: say so in the status (and once in an Event); nothing else."""
        out = Outcome()
        meta = pipeline["metadata"]
        prev = pipeline.get("status") or {}
        if prev.get("phase"):
            self.metrics.set_phase(meta["namespace"], meta["name"], prev["phase"])
        status = held_status(pipeline, self.now())
        if status == prev:
            return out
        try:
            await self._call(self.kube.write_status, meta["namespace"], meta["name"], status)
            out.writes += 1
        except ApiException as exc:
            if exc.status != 404:
                out.error = f"write status: {_api_error(exc)}"
                return out
        if not _held(prev):
            cond = next(c for c in status["conditions"] if c["type"] == RECONCILIATION_PAUSED)
            out.writes += await self._event(pipeline, "Normal", RECONCILIATION_PAUSED, cond["message"])
        return out

    async def _reconcile_delete(self, pipeline: dict[str, Any]) -> Outcome:
        out = Outcome()
        try:
            out.writes += await self._finalize(pipeline)
        except KafkaUnavailable as exc:
            out.error = f"deleting topics: {exc}"
        except ApiException as exc:
            if exc.status not in (404, 409):
                out.error = f"removing finalizer: {_api_error(exc)}"
            out.retry_after = RECHECK_FINALIZE
        return out

    async def _reconcile_normal(self, pipeline: dict[str, Any]) -> Outcome:
        meta = pipeline["metadata"]
        key = (meta["namespace"], meta["name"])
        ctx = _Pass(pipeline, None, self._state.setdefault(key, _State()), restart=restart_request(pipeline))
        try:
            ctx.p = Pipeline.from_resource(pipeline)
        except PipelineError as exc:
            # Only possible if the CRD's validation is older than this operator.
            ctx.problems.append(f"invalid spec: {exc}")
        try:
            for phase in (
                self._phase_finalizer,
                self._phase_topics,
                self._phase_autoscale,
                self._phase_deployments,
                self._phase_disruption,
                self._phase_restart,
                self._phase_status,
            ):
                await phase(ctx)
        except _Restart as restart:
            ctx.out.retry_after = restart.delay
            return ctx.out
        await self._report(ctx)
        ctx.out.retry_after = ctx.requeue
        return ctx.out

    async def _phase_finalizer(self, ctx: _Pass) -> None:
        if ctx.p is None:
            return
        try:
            ctx.out.writes += await self._sync_finalizer(ctx.pipeline, ctx.p)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise _Restart(RECHECK_FINALIZER_CONFLICT) from exc  # changed meanwhile: read again
            ctx.problems.append(f"finalizer: {_api_error(exc)}")

    async def _phase_topics(self, ctx: _Pass) -> None:
        if ctx.p is None:
            return
        # Topics the autoscaler grew (growPartitions) stay grown: the spec's count is a floor.
        grown = (ctx.prev_status.get("autoscaling") or {}).get("partitionsGrownTo")
        t = ctx.p.kafka.topics
        if ctx.p.router.autoscaling is not None and isinstance(grown, int) and grown > t.partitions:
            ctx.p = replace(ctx.p, kafka=replace(ctx.p.kafka, topics=replace(t, partitions=grown)))
        ctx.topics, delay = await self._topics(ctx.state, ctx.p)
        ctx.again_in(delay)

    async def _phase_autoscale(self, ctx: _Pass) -> None:
        """Decide the router's replicas from its lag; in Enforce mode the rest of the pass
        sees that count as if the spec had asked for it (the spec itself is not written)."""
        p = ctx.p
        a = p.router.autoscaling if p is not None else None
        if p is None or a is None:
            ctx.state.autoscale_samples = autoscale.Samples()
            return
        prev = ctx.prev_status.get("autoscaling") or {}
        report: dict[str, Any] = {"mode": a.mode}
        ctx.autoscaling = report

        aside = await self._autoscaler_aside(ctx, p)
        if aside:
            ctx.state.autoscale_samples = autoscale.Samples()  # a gap: the windows start again
            report.update(active=False, reason=aside[0], message=aside[1])
            return
        ctx.again_in(AUTOSCALE_INTERVAL)
        try:
            lag, partitions = await self._kafka(
                self._admin.lag_and_partitions, p.kafka.brokers, p.stream_name, p.kafka.topics.input
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure: keep the count, say why
            kept = int(prev.get("desiredReplicas", p.router.replicas))
            if a.enforce:
                ctx.p = replace(p, router=replace(p.router, replicas=kept))
            ctx.state.autoscale_samples = autoscale.Samples()
            message = f"lag unknown, keeping {kept} replica(s): {exc}"
            report.update(desiredReplicas=kept, active=False, reason=autoscale.LAG_UNKNOWN, message=message)
            return
        current = int(prev["desiredReplicas"]) if a.enforce and "desiredReplicas" in prev else p.router.replicas
        d = autoscale.decide(a, current, lag, partitions, self.monotonic(), ctx.state.autoscale_samples)
        ctx.state.autoscale_samples = d.samples
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
        if a.enforce:
            ctx.p = replace(p, router=replace(p.router, replicas=d.replicas))
        # An Event when the decision changes (in Recommend mode it may differ from the
        # spec for as long as the lag lasts: that is one Event, not one per pass).
        if d.replicas != prev.get("desiredReplicas", current):
            verb = "scaled" if a.enforce else "would scale"
            report["lastScale"] = {"time": format_time(self.now()), "from": current, "to": d.replicas, "why": d.reason}
            ctx.out.writes += await self._event(
                ctx.pipeline,
                "Normal",
                "Autoscaled" if a.enforce else "AutoscaleRecommended",
                f"router {verb} {current} -> {d.replicas}: {d.reason}",
            )
        elif prev.get("lastScale"):
            report["lastScale"] = prev["lastScale"]
        if prev.get("partitionsGrownTo"):
            report["partitionsGrownTo"] = prev["partitionsGrownTo"]
        if d.grow_partitions_to is not None:
            await self._grow_partitions(ctx, p, d.grow_partitions_to, report)

    async def _grow_partitions(self, ctx: _Pass, p: Pipeline, to: int, report: dict[str, Any]) -> None:
        """Record the partition count the topics phase grows the topics to (next pass)."""
        if not p.kafka.topics.manage:
            report["message"] += " (but spec.kafka.topics.manage is false: the operator does not touch the topics)"
            return
        ctx.again_in(RECHECK_NEW_TOPICS)
        if report.get("partitionsGrownTo") == to:
            return  # asked for already (the topics phase retries a grow that failed)
        report["partitionsGrownTo"] = to
        message = f"growing the pipeline's topics to {to} partitions: {report['message']}"
        ctx.out.writes += await self._event(ctx.pipeline, "Normal", "PartitionsGrown", message)

    async def _autoscaler_aside(self, ctx: _Pass, p: Pipeline) -> tuple[str, str] | None:
        """Why the autoscaler must not act now (condition reason, message), if so."""
        if p.paused:
            return autoscale.PIPELINE_PAUSED, "the pipeline is paused"
        hpa = await self._external_autoscaler(ctx.namespace, ctx.name)
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
                "the lag; scale with spec.router.replicas or an HPA on the router's tsrouter_consumer_lag metric",
            )
        return None

    async def _external_autoscaler(self, namespace: str, name: str) -> str | None:
        """The name of an HPA whose target is this pipeline (KEDA's included), if any."""
        try:
            hpas = await self._call(self.kube.list_hpas, namespace)
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

    async def _phase_deployments(self, ctx: _Pass) -> None:
        ctx.actual = await self._actual(ctx.namespace, ctx.name)
        p = ctx.p
        if p is None:
            return
        by_field = self._by_field(ctx.name, ctx.actual)
        prev = ctx.prev_status.get("pause") or {}
        stopped_at = prev.get("sourceStoppedAt")
        drain = (prev["drain"], prev.get("recordsLeft")) if prev.get("drain") else None
        ctx.pause = pause_state(p, by_field, self.now(), source_stopped_at=stopped_at, drain=drain)
        if ctx.pause.needs_lag:
            lag = await self._router_lag(p)
            ctx.pause = pause_state(p, by_field, self.now(), source_stopped_at=stopped_at, lag=lag, drain=drain)
        ctx.again_in(ctx.pause.recheck_after)
        desired = render_deployments(ctx.pipeline, ctx.pause.replicas, pipeline=p)
        if p.auto_rollback:
            ctx.templates = rollback.templates_digest(desired)
            desired = self._rolled_back(ctx, desired)
        r = ctx.restart
        targets = {deployment_name(ctx.name, c) for c in r.apps} if r and not r.problem() else set()
        stamp = format_time(self.now())
        # A restart is a new pod template: the diff sees it as drift and updates (or creates) it.
        desired = [with_restart(d, stamp) if d["metadata"]["name"] in targets else d for d in desired]
        dplan = plan(ctx.pipeline, desired, ctx.actual)
        ctx.problems.extend(dplan.blocked)
        if dplan.waiting:
            ctx.again_in(RECHECK_DELETED_CHILD)
        for action in dplan.actions:
            restart = action.name in targets and action.verb in (CREATE, UPDATE)
            await self._write_child(
                ctx, replace(action, reason=f"restart ({RESTART_ANNOTATION})") if restart else action
            )
        if dplan.actions:
            ctx.actual = await self._actual(ctx.namespace, ctx.name)
        by_name = {d["metadata"]["name"]: d for d in ctx.actual}
        ctx.restart_done = {t for t in targets if restarted_at(by_name.get(t)) == stamp}

    def _rolled_back(self, ctx: _Pass, desired: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """While a rollback holds, the stable revision's Deployments (with this pass's
        replica counts, so scaling and pausing still work), else `desired`."""
        assert ctx.templates is not None and ctx.pause is not None
        spec = rollback.rollback_spec(ctx.prev_status.get("rollout"), ctx.templates)
        if spec is None:
            return desired
        resource = {**ctx.pipeline, "spec": spec}
        try:
            stable = Pipeline.from_resource(resource)
        except PipelineError as exc:  # a stable spec this operator version no longer accepts
            ctx.problems.append(f"cannot roll back to the stable revision: {exc}")
            return desired
        return render_deployments(resource, ctx.pause.replicas, pipeline=stable)

    async def _phase_disruption(self, ctx: _Pass) -> None:
        if ctx.p is None or ctx.pause is None:
            return
        name = pdb_name(ctx.name)
        desired = router_pdb(ctx.pipeline, ctx.p, ctx.pause.replicas[ROUTER.spec_field])
        if desired is None and ctx.state.pdb_absent:
            return
        actual = await self._call(self.kube.get_pdb, ctx.namespace, name)
        pplan = plan_pdb(ctx.pipeline, name, desired, actual)
        ctx.problems.extend(pplan.blocked)
        if pplan.waiting:
            ctx.again_in(RECHECK_DELETED_CHILD)
        written = [await self._write_child(ctx, action) for action in pplan.actions]
        # Absent: none found, or ours deleted just now. One being deleted or owned by
        # someone else is looked at again (it may go, or become ours to delete).
        deleted = [a.verb for a in pplan.actions] == [DELETE] and all(written)
        ctx.state.pdb_absent = desired is None and (actual is None or deleted)

    async def _phase_restart(self, ctx: _Pass) -> None:
        """Consume the restart annotation: refused at once if it names an unknown app,
        else once every app it names has rolled (until then it stays, and the next pass
        tries again)."""
        r = ctx.restart
        if r is None:
            return
        problem = r.problem()
        if problem:
            if await self._consume_restart(ctx, r):
                ctx.restart_rejected = problem
                log.warning("%s/%s: %s", ctx.namespace, ctx.name, problem)
                ctx.out.writes += await self._event(ctx.pipeline, "Warning", "RestartRejected", problem)
            return
        if ctx.p is None or any(deployment_name(ctx.name, c) not in ctx.restart_done for c in r.apps):
            return
        if await self._consume_restart(ctx, r):
            ctx.restarted = r.labels
            names = ", ".join(deployment_name(ctx.name, c) for c in r.apps)
            message = f"restarted {', '.join(r.labels)} ({RESTART_ANNOTATION}): rolling Deployment {names}"
            log.info("%s/%s: %s", ctx.namespace, ctx.name, message)
            ctx.out.writes += await self._event(ctx.pipeline, "Normal", "Restarted", message)

    async def _consume_restart(self, ctx: _Pass, r: RestartRequest) -> bool:
        try:
            await self._call(self.kube.remove_annotation, ctx.namespace, ctx.name, RESTART_ANNOTATION, r.value)
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                raise _Restart(RECHECK_CONFLICT) from exc  # the annotation changed meanwhile: read again
            ctx.problems.append(f"removing annotation {RESTART_ANNOTATION}: {_api_error(exc)}")
            return False
        ctx.out.writes += 1
        return True

    async def _write_child(self, ctx: _Pass, action: Action) -> bool:
        """Make one write; False if it failed (reported in the pass, retried by the next)."""
        try:
            await self._apply(ctx.namespace, action)
        except ApiException as exc:
            if exc.status in (409, 404):
                ctx.again_in(RECHECK_CONFLICT)  # raced with someone (or our own stale read)
            else:
                ctx.problems.append(f"{action.verb} {action.kind} {action.name}: {_api_error(exc)}")
            return False
        ctx.out.writes += 1
        verb = {CREATE: "Created", UPDATE: "Updated", DELETE: "Deleted", RECREATE: "Deleted"}[action.verb]
        what = f"{action.kind} {action.name}"
        log.info("%s/%s: %s %s (%s)", ctx.namespace, ctx.name, verb.lower(), what, action.reason)
        if not (action.verb == CREATE and not ctx.prev_status):  # no Event for the first creation
            ctx.out.writes += await self._event(
                ctx.pipeline, "Normal", f"{verb}{action.kind}", f"{verb} {what}: {action.reason}"
            )
        if action.verb == RECREATE:
            ctx.again_in(RECHECK_DELETED_CHILD)
        return True

    async def _pods(self, ctx: _Pass) -> list[dict[str, Any]]:
        """The pipeline's pods (why a component is not ready); none if the operator may not list them."""
        try:
            return await self._call(self.kube.list_pods, ctx.namespace, owned_selector(ctx.name))
        except ApiException as exc:
            if exc.status != 403:
                raise
            # An RBAC from before pods were read: the status just says less.
            log.warning("%s/%s: cannot list pods (%s)", ctx.namespace, ctx.name, _api_error(exc))
            return []

    async def _phase_status(self, ctx: _Pass) -> None:
        # An invalid spec is reported by compute_status itself, not as a reconcile error.
        error = ("; ".join(ctx.problems) or None) if ctx.p is not None else None

        def compute(pods: list[dict[str, Any]], rollout: dict[str, Any] | None = None) -> dict[str, Any]:
            return compute_status(
                ctx.pipeline,
                ctx.actual,
                self.now(),
                error=error,
                topics=ctx.topics,
                pause=ctx.pause,
                pipeline=ctx.p,
                restarted=ctx.restarted,
                restart_rejected=ctx.restart_rejected,
                pods=pods,
                autoscaling=ctx.autoscaling,
                rollout=rollout,
            )

        pods: list[dict[str, Any]] = []
        status = compute(pods)
        if needs_pods(status):
            pods = await self._pods(ctx)
            status = compute(pods)
        if ctx.p is not None and ctx.p.auto_rollback and ctx.templates is not None:
            # The verdict needs the phase (are the new pods available?) and changes it.
            status = compute(pods, await self._rollout(ctx, ctx.p, status))
        self.metrics.set_phase(ctx.namespace, ctx.name, status["phase"])
        prev = ctx.prev_status
        if status == prev:
            return
        wait = ctx.state.last_status_write + self.progress_interval - self.monotonic()
        counters_only = bool(prev) and _significant(status) == _significant(prev)
        if counters_only and self.progress_interval <= 0:
            return  # they go out with the next significant change
        if counters_only and wait > 0:
            ctx.again_in(wait)  # only counters moved: write them a little later, together
            return
        try:
            await self._call(self.kube.write_status, ctx.namespace, ctx.name, status)
            ctx.out.writes += 1
            ctx.state.last_status_write = self.monotonic()
        except ApiException as exc:
            if exc.status != 404:
                ctx.problems.append(f"write status: {_api_error(exc)}")
        if _held(prev):
            ctx.out.writes += await self._event(
                ctx.pipeline, "Normal", "ReconciliationResumed", "reconciling again: catching up with the spec"
            )
        if prev and ctx.p is not None:
            ctx.out.writes += await self._transition_event(ctx.pipeline, prev, status)
        ctx.out.writes += await self._topics_event(ctx.pipeline, prev, status)

    async def _rollout(self, ctx: _Pass, p: Pipeline, status: dict[str, Any]) -> dict[str, Any]:
        """status.rollout after this pass: advance the attempt, reading the broker when a
        window opens or ends, and post an Event when the verdict changes."""
        assert ctx.templates is not None
        prev = ctx.prev_status.get("rollout")
        ready: dict[str, Any] = next((c for c in status["conditions"] if c["type"] == "Ready"), {})
        now = self.now()
        r, need = rollback.advance(
            prev,
            generation=ctx.pipeline["metadata"].get("generation"),
            templates=ctx.templates,
            spec=ctx.pipeline.get("spec") or {},
            phase=status["phase"],
            phase_reason=ready.get("reason", ""),
            now=now,
            verify_seconds=p.verify_seconds,
        )
        try:
            if need == rollback.OPEN and p.kafka.credentials is not None:
                counters, _ = await self._router_counters(ctx)
                r = rollback.opened(r, None, self.now(), p.verify_seconds, counters=counters)
            elif need == rollback.OPEN:
                start = await self._window_offsets(p, commits_first=False)
                r = rollback.opened(r, start, self.now(), p.verify_seconds)
            elif need == rollback.JUDGE:
                r = rollback.judged(r, await self._judge(ctx, p, r), self.now(), ctx.pipeline.get("spec") or {})
        except KafkaUnavailable as exc:
            # The verdict waits for the broker (it needs its data): look again, not at once.
            log.warning("%s/%s: rollout check: broker unreachable: %s", ctx.namespace, ctx.name, exc)
            ctx.again_in(TOPIC_BACKOFF_BASE)
            return r
        left = rollback.window_left(r, self.now(), p.verify_seconds)
        if left is not None:
            ctx.again_in(left + 0.5)
        elif r.get("reason") == rollback.WAITING_FOR_COMMITS:
            ctx.again_in(rollback.RECHECK_COMMITS_SECONDS)
        if r.get("verdict") == rollback.ROLLED_BACK and (prev or {}).get("verdict") != rollback.ROLLED_BACK:
            ctx.again_in(RECHECK_CONFLICT)  # the next pass renders the stable revision
        ev = rollback.event(prev, r)
        if ev:
            log.info("%s/%s: rollout %s: %s", ctx.namespace, ctx.name, ev[1], ev[2])
            ctx.out.writes += await self._event(ctx.pipeline, *ev)
        return r

    async def _window_offsets(self, p: Pipeline, *, commits_first: bool) -> dict[str, list[int]]:
        names = {t.role: t.name for t in topics_mod.desired_topics(p)}
        outputs = {role: names[role] for role in rollback.OUTPUTS}
        result: dict[str, list[int]] = await self._kafka(
            lambda: self._admin.offsets(
                p.kafka.brokers,
                p.stream_name,
                names["input"],
                outputs,
                commits_first=commits_first,
                grace_s=rollback.COMMIT_GRACE_SECONDS,
            )
        )
        return result

    async def _router_counters(self, ctx: _Pass) -> tuple[dict[str, dict[str, int]], list[str]]:
        """The Ready router pods' own counters by pod name (through the API server's pod
        proxy), and why any could not be read."""
        pods = await self._pods(ctx)
        out: dict[str, dict[str, int]] = {}
        problems = []
        for name in ready_pods(pods, ctx.name, ROUTER.suffix):
            try:
                text = await self._call(
                    self.kube.pod_proxy_text, ctx.namespace, name, SERVER_PORT, podmetrics.METRICS_PATH
                )
                out[name] = podmetrics.router_counters(text)
            except ApiException as exc:
                problems.append(f"{name}: {_api_error(exc)}")
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            log.warning("%s/%s: router counters: %s", ctx.namespace, ctx.name, "; ".join(problems))
        return out, problems

    async def _judge(self, ctx: _Pass, p: Pipeline, r: dict[str, Any]) -> rollback.Judgement:
        window = r.get("window") or {}
        if p.kafka.credentials is not None:
            counters, problems = await self._router_counters(ctx)
            if not counters:
                why = "; ".join(problems) or "no router pod is Ready"
                return rollback.readiness_only(
                    f"the broker needs credentials (the operator never reads their Secret) and the router pods' "
                    f"counters could not be read ({why})"
                )
            return rollback.judge_counters(window.get("counters") or {}, counters, p.max_dead_letter_ratio)
        start = window.get("start")
        if start is None:
            return rollback.readiness_only("the broker's offsets were not read when the window opened")
        end = await self._window_offsets(p, commits_first=True)
        samples: dict[str, list[bytes]] = {}
        for parity in ("even", "odd"):
            ranges = rollback.sample_ranges(start.get(parity, []), end.get(parity, []))
            values = await self._kafka(
                self._admin.read, p.kafka.brokers, p.kafka.topics.name(parity), ranges, self.kafka_timeout
            )
            samples[parity] = [v for v in values if v is not None]
        consumed: int | None = None
        committed = rollback.commit_ranges(start, end)
        if committed is not None:
            # The records the router read: committed ones only when it reads that way (EOS).
            exactly_once = p.router.processing_guarantee == EXACTLY_ONCE
            records = await self._kafka(
                self._admin.read, p.kafka.brokers, p.kafka.topics.input, committed, self.kafka_timeout, exactly_once
            )
            consumed = len(records)
        prefixes = {"even": p.router.even_prefix, "odd": p.router.odd_prefix}
        return rollback.judge(start, end, samples, prefixes, p.max_dead_letter_ratio, consumed)

    async def _report(self, ctx: _Pass) -> None:
        """The pass's problems: an error for the work queue, a Warning once per distinct message."""
        st = ctx.state
        if ctx.problems:
            ctx.out.error = "; ".join(ctx.problems)
            if ctx.out.error != st.last_error:
                ctx.out.writes += await self._event(ctx.pipeline, "Warning", "ReconcileFailed", ctx.out.error)
                log.warning("%s/%s: %s", ctx.namespace, ctx.name, ctx.out.error)
            st.last_error = ctx.out.error
        else:
            if st.last_error:
                log.info("%s/%s: recovered", ctx.namespace, ctx.name)
            st.last_error = None

    @staticmethod
    def _by_field(name: str, actual: list[dict]) -> dict[str, dict | None]:
        by_name = {d["metadata"]["name"]: d for d in actual}
        return {c.spec_field: by_name.get(deployment_name(name, c)) for c in COMPONENTS}

    async def _topics_event(self, pipeline: dict, old: dict, new: dict) -> int:
        """A Warning when the topics turn not ready (or for a new reason)."""

        def cond(st):
            return next((c for c in st.get("conditions") or [] if c["type"] == "TopicsReady"), None)

        before, after = cond(old), cond(new)
        if after is None or after["status"] == "True":
            return 0
        if before and (before["status"], before["reason"], before["message"]) == (
            after["status"],
            after["reason"],
            after["message"],
        ):
            return 0
        return await self._event(pipeline, "Warning", after["reason"], after["message"])

    async def _transition_event(self, pipeline: dict, old: dict, new: dict) -> int:
        """One Event for a phase change a user would want to hear about."""
        before, after = old.get("phase"), new.get("phase")
        if before == after:
            return 0
        conds = {c["type"]: c for c in new.get("conditions") or []}
        if after == "Degraded":
            d = conds.get("Degraded") or {}
            return await self._event(pipeline, "Warning", d.get("reason", "Degraded"), d.get("message", ""))
        if after == "Paused":
            return await self._event(pipeline, "Normal", "Paused", "every app scaled to zero")
        if before == "Paused" and after != "Paused":
            return await self._event(pipeline, "Normal", "Resumed", "replica counts restored from the spec")
        return 0
