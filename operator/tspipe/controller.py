"""The level-based reconcile loop: one worker per pipeline, coalescing its events.

Any event about a pipeline or one of its Deployments only marks the pipeline dirty;
its worker then reads the current state, ensures the Kafka topics (cached per spec,
rechecked on a slow timer, in a separate thread pool with a short timeout), works
out the pause stage, plans with the pure diff, writes what differs, and writes the
status if it changed. Errors become a condition, an Event (once per distinct
message) and a retry with exponential backoff, never a crash.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime

import urllib3

from . import metrics
from . import topics as topics_mod
from .api import FINALIZER
from .components import COMPONENTS
from .kafka_admin import KafkaUnavailable, TopicAdmin
from .kube import ApiException, Kube
from .model import Pipeline, PipelineError
from .pause import PauseState, pause_state
from .reconcile import CREATE, DELETE, RECREATE, UPDATE, Action, plan
from .render import deployment_name, owned_selector, render_deployments
from .status import compute_status

log = logging.getLogger("tspipe.controller")

Key = tuple[str, str]  # (namespace, name)


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


@dataclass
class Outcome:
    writes: int = 0
    retry_after: float | None = None
    error: str | None = None


@dataclass
class _State:
    failures: int = 0
    last_error: str | None = None
    timer: asyncio.TimerHandle | None = None
    last_status_write: float = float("-inf")  # monotonic
    # Topics: the fingerprint last ensured, its result, when to check again.
    topics_key: tuple | None = None
    topics_result: dict | None = None
    topics_due: float = 0.0
    topics_failures: int = 0


def _significant(status: dict) -> tuple:
    """What makes a status change worth writing at once: phase and condition states."""
    return (
        status.get("phase"),
        status.get("observedGeneration"),
        tuple((c["type"], c["status"], c["reason"]) for c in status.get("conditions") or []),
        tuple((t.get("name"), t.get("state"), t.get("partitions")) for t in status.get("topics") or []),
        len(status.get("history") or []),
        (status.get("pause") or {}).get("sourceStoppedAt"),
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
    standby: bool = False
    now: Callable[[], datetime] = _now
    monotonic: Callable[[], float] = time.monotonic
    _pending: set = field(default_factory=set)
    _workers: dict = field(default_factory=dict)
    _state: dict = field(default_factory=dict)
    _known: set = field(default_factory=set)
    _debounce: set = field(default_factory=set)
    _resync_task: asyncio.Task | None = None
    _peering_task: asyncio.Task | None = None
    _kafka_pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __post_init__(self):
        if self.admin is None:
            self.admin = TopicAdmin(self.kafka_timeout)

    @property
    def _admin(self) -> TopicAdmin:
        assert self.admin is not None  # set in __post_init__
        return self.admin

    # --- event entry points --------------------------------------------------------
    def enqueue(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._known.add(key)
        self._pending.add(key)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key), name=f"reconcile {key}")

    def enqueue_soon(self, namespace: str, name: str) -> None:
        """Reconcile after `debounce_seconds`: the Deployment controller updates the four
        children in bursts; one pass after the burst sees them all."""
        key = (namespace, name)
        if self.debounce_seconds <= 0:
            self.enqueue(namespace, name)
            return
        if key in self._debounce:
            return

        def fire():
            self._debounce.discard(key)
            self.enqueue(namespace, name)

        self._debounce.add(key)
        asyncio.get_running_loop().call_later(self.debounce_seconds, fire)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._known.discard(key)
        self._pending.discard(key)
        st = self._state.pop(key, None)
        if st and st.timer:
            st.timer.cancel()

    def start(self) -> None:
        self._resync_task = asyncio.get_running_loop().create_task(self._resync(), name="resync")
        if self.peering:
            self._peering_task = asyncio.get_running_loop().create_task(self._watch_peers(), name="peers")

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

    async def stop(self) -> None:
        tasks = [t for t in self._workers.values() if not t.done()]
        tasks += [t for t in (self._resync_task, self._peering_task) if t]
        for st in self._state.values():
            if st.timer:
                st.timer.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._kafka_pool:
            self._kafka_pool.shutdown(wait=False, cancel_futures=True)

    async def _resync(self) -> None:
        # Level-based safety net: re-check every known pipeline now and then, in case
        # an event was missed. Costs reads only when nothing differs.
        while True:
            await asyncio.sleep(self.resync_seconds)
            if self.standby:
                continue  # kopf paused us: the active replica does the work
            for ns, name in list(self._known):
                self.enqueue(ns, name)

    async def _work(self, key: Key) -> None:
        while key in self._pending:
            self._pending.discard(key)
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
            metrics.observe_reconcile(time.monotonic() - started, outcome.writes, outcome.error)
            self._schedule(key, outcome)

    def _schedule(self, key: Key, outcome: Outcome) -> None:
        st = self._state.setdefault(key, _State())
        if st.timer:
            st.timer.cancel()
            st.timer = None
        if outcome.error:
            delay = min(self.backoff_max, self.backoff_base * (2**st.failures))
            st.failures += 1
        else:
            st.failures = 0
            delay = outcome.retry_after
        if delay is not None and key in self._known:
            st.timer = asyncio.get_running_loop().call_later(delay, self._retry, *key)

    def _retry(self, namespace: str, name: str) -> None:
        if not self.standby:
            self.enqueue(namespace, name)

    # --- one reconcile -------------------------------------------------------------
    async def _call(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def _kafka(self, fn, *args):
        """A Kafka admin call in its own small pool (a slow broker must not starve the
        Kubernetes calls), bounded on this side too."""
        if self._kafka_pool is None:
            self._kafka_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="kafka")
        fut = asyncio.get_running_loop().run_in_executor(self._kafka_pool, fn, *args)
        try:
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
        if action.verb == CREATE:
            await self._call(self.kube.create_deployment, namespace, action.body)
        elif action.verb == UPDATE:
            await self._call(self.kube.replace_deployment, namespace, action.name, action.body)
        elif action.verb in (DELETE, RECREATE):
            await self._call(self.kube.delete_deployment, namespace, action.name, action.resource_version)
        else:
            raise ValueError(action.verb)

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
            metrics.KAFKA_CALLS.labels("ok").inc()
        except KafkaUnavailable as exc:
            result = topics_mod.unreachable_status(desired, p.kafka.brokers, "no broker answered")
            log.warning("topics of %s/%s: %s", p.namespace, p.name, exc)
            metrics.KAFKA_CALLS.labels("unreachable").inc()
        except Exception as exc:  # noqa: BLE001 - a broker-side refusal (auth, policy): a condition
            result = topics_mod.unreachable_status(desired, p.kafka.brokers, str(exc)[:200])
            result["reason"] = "TopicCheckFailed"
            log.warning("topics of %s/%s failed: %s", p.namespace, p.name, exc)
            metrics.KAFKA_CALLS.labels("error").inc()
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
            delay = 2.0 if result["ready"] else self.topic_recheck_seconds
        else:
            delay = min(self.topic_recheck_seconds, 5.0 * (2**st.topics_failures))
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

    # --- one reconcile -------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> Outcome:  # noqa: C901 - to be split (issue 12)
        out = Outcome()
        key = (namespace, name)
        pipeline = await self._call(self.kube.get_pipeline, namespace, name)
        if pipeline is None:
            self.forget(namespace, name)  # deleted: the garbage collector removes the children
            metrics.forget_pipeline(namespace, name)
            return out
        if pipeline["metadata"].get("deletionTimestamp"):
            try:
                out.writes += await self._finalize(pipeline)
            except KafkaUnavailable as exc:
                out.error = f"deleting topics: {exc}"
            except ApiException as exc:
                if exc.status not in (404, 409):
                    out.error = f"removing finalizer: {_api_error(exc)}"
                out.retry_after = 1.0
            return out
        st = self._state.setdefault(key, _State())
        prev_status = pipeline.get("status") or {}
        retry_after: float | None = None

        def soon(delay: float | None) -> None:
            nonlocal retry_after
            if delay is not None:
                retry_after = delay if retry_after is None else min(retry_after, delay)

        problems: list[str] = []
        p: Pipeline | None = None
        try:
            p = Pipeline.from_resource(pipeline)
        except PipelineError as exc:
            # Only possible if the CRD's validation is older than this operator.
            problems.append(f"invalid spec: {exc}")

        topic_result = None
        if p is not None:
            try:
                out.writes += await self._sync_finalizer(pipeline, p)
            except ApiException as exc:
                if exc.status in (404, 409):
                    out.retry_after = 0.5
                    return out  # changed meanwhile: read again
                problems.append(f"finalizer: {_api_error(exc)}")
            topic_result, delay = await self._topics(st, p)
            soon(delay)

        actual = await self._actual(namespace, name)
        pstate: PauseState | None = None
        if p is not None:
            by_field = self._by_field(name, actual)
            stopped_at = (prev_status.get("pause") or {}).get("sourceStoppedAt")
            pstate = pause_state(p, by_field, self.now(), source_stopped_at=stopped_at)
            if pstate.needs_lag:
                lag = await self._router_lag(p)
                pstate = pause_state(p, by_field, self.now(), source_stopped_at=stopped_at, lag=lag)
            soon(pstate.recheck_after)
            desired = render_deployments(pipeline, pstate.replicas, pipeline=p)
            dplan = plan(pipeline, desired, actual)
            problems.extend(dplan.blocked)
            if dplan.waiting:
                soon(2.0)  # a child is being deleted; create it again once it is gone
            first_creation = not prev_status
            for action in dplan.actions:
                try:
                    await self._apply(namespace, action)
                    out.writes += 1
                    verb = {CREATE: "Created", UPDATE: "Updated", DELETE: "Deleted", RECREATE: "Deleted"}[action.verb]
                    log.info("%s/%s: %s Deployment %s (%s)", namespace, name, verb.lower(), action.name, action.reason)
                    if not (action.verb == CREATE and first_creation):
                        out.writes += await self._event(
                            pipeline, "Normal", f"{verb}Deployment", f"{verb} Deployment {action.name}: {action.reason}"
                        )
                    if action.verb == RECREATE:
                        soon(2.0)
                except ApiException as exc:
                    if exc.status in (409, 404):
                        # Raced with someone (or our own stale read): read again soon.
                        soon(1.0)
                        continue
                    problems.append(f"{action.verb} Deployment {action.name}: {_api_error(exc)}")
            if dplan.actions:
                actual = await self._actual(namespace, name)

        error = "; ".join(problems) or None
        if p is None:
            error = None  # compute_status reports the invalid spec itself
        status = compute_status(
            pipeline, actual, self.now(), error=error, topics=topic_result, pause=pstate, pipeline=p
        )
        metrics.set_phase(namespace, name, status["phase"])
        if status != prev_status:
            wait = st.last_status_write + self.progress_interval - self.monotonic()
            counters_only = bool(prev_status) and _significant(status) == _significant(prev_status)
            if counters_only and self.progress_interval <= 0:
                pass  # they go out with the next significant change
            elif counters_only and wait > 0:
                soon(wait)  # only counters moved: write them a little later, together
            else:
                try:
                    await self._call(self.kube.write_status, namespace, name, status)
                    out.writes += 1
                    st.last_status_write = self.monotonic()
                except ApiException as exc:
                    if exc.status != 404:
                        problems.append(f"write status: {_api_error(exc)}")
                if prev_status and p is not None:
                    out.writes += await self._transition_event(pipeline, prev_status, status)
                out.writes += await self._topics_event(pipeline, prev_status, status)

        if problems:
            out.error = "; ".join(problems)
            if out.error != st.last_error:
                out.writes += await self._event(pipeline, "Warning", "ReconcileFailed", out.error)
                log.warning("%s/%s: %s", namespace, name, out.error)
            st.last_error = out.error
        else:
            if st.last_error:
                log.info("%s/%s: recovered", namespace, name)
            st.last_error = None
        out.retry_after = retry_after
        return out

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
