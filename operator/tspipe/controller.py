"""The level-based reconcile loop: one worker per pipeline, coalescing its events.

Any event about a pipeline or one of its Deployments only marks the pipeline dirty;
its worker then reads the current state, plans with the pure diff, writes what
differs, and writes the status if it changed. Errors become a condition, an Event
(once per distinct message) and a retry with exponential backoff, never a crash.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import urllib3

from .kube import ApiException, Kube
from .model import PipelineError
from .reconcile import CREATE, DELETE, RECREATE, UPDATE, Action, plan
from .render import COMPONENTS, deployment_name, owned_selector, render_deployments
from .status import compute_status

log = logging.getLogger("tspipe.controller")

Key = tuple[str, str]  # (namespace, name)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _api_error(exc: ApiException) -> str:
    msg = exc.reason or ""
    try:
        import json

        msg = json.loads(exc.body).get("message", msg)
    except Exception:  # noqa: BLE001 - the body is not always JSON
        pass
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


@dataclass
class Controller:
    kube: Kube
    resync_seconds: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    now: Callable[[], datetime] = _now
    _pending: set = field(default_factory=set)
    _workers: dict = field(default_factory=dict)
    _state: dict = field(default_factory=dict)
    _known: set = field(default_factory=set)
    _resync_task: asyncio.Task | None = None

    # --- event entry points --------------------------------------------------------
    def enqueue(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._known.add(key)
        self._pending.add(key)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key), name=f"reconcile {key}")

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._known.discard(key)
        self._pending.discard(key)
        st = self._state.pop(key, None)
        if st and st.timer:
            st.timer.cancel()

    def start(self) -> None:
        self._resync_task = asyncio.get_running_loop().create_task(self._resync(), name="resync")

    async def stop(self) -> None:
        tasks = [t for t in self._workers.values() if not t.done()]
        if self._resync_task:
            tasks.append(self._resync_task)
        for st in self._state.values():
            if st.timer:
                st.timer.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _resync(self) -> None:
        # Level-based safety net: re-check every known pipeline now and then, in case
        # an event was missed. Costs reads only when nothing differs.
        while True:
            await asyncio.sleep(self.resync_seconds)
            for ns, name in list(self._known):
                self.enqueue(ns, name)

    async def _work(self, key: Key) -> None:
        while key in self._pending:
            self._pending.discard(key)
            try:
                outcome = await self.reconcile(*key)
            except asyncio.CancelledError:
                raise
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                # API server unreachable (restarting, network): retry with backoff.
                log.warning("reconcile %s/%s: API server unreachable: %s", *key, exc)
                outcome = Outcome(error=f"API server unreachable: {exc}")
            except Exception as exc:  # noqa: BLE001 - never let one pipeline kill the operator
                log.exception("reconcile %s/%s crashed", *key)
                outcome = Outcome(error=f"internal error: {exc}")
            # Tests and humans read this line to know a pass finished and what it cost.
            log.log(logging.INFO if outcome.writes else logging.DEBUG,
                    "reconciled %s/%s: %d writes%s", *key, outcome.writes,
                    f", error: {outcome.error}" if outcome.error else "")
            self._schedule(key, outcome)

    def _schedule(self, key: Key, outcome: Outcome) -> None:
        st = self._state.setdefault(key, _State())
        if st.timer:
            st.timer.cancel()
            st.timer = None
        if outcome.error:
            delay = min(self.backoff_max, self.backoff_base * (2 ** st.failures))
            st.failures += 1
        else:
            st.failures = 0
            delay = outcome.retry_after
        if delay is not None and key in self._known:
            st.timer = asyncio.get_running_loop().call_later(delay, self.enqueue, *key)

    # --- one reconcile -------------------------------------------------------------
    async def _call(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

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

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        out = Outcome()
        key = (namespace, name)
        pipeline = await self._call(self.kube.get_pipeline, namespace, name)
        if pipeline is None:
            self.forget(namespace, name)  # deleted: the garbage collector removes the children
            return out
        if pipeline["metadata"].get("deletionTimestamp"):
            return out
        st = self._state.setdefault(key, _State())

        problems: list[str] = []
        try:
            desired = render_deployments(pipeline)
        except PipelineError as exc:
            # Only possible if the CRD's validation is older than this operator.
            desired = None
            problems.append(f"invalid spec: {exc}")

        actual = await self._actual(namespace, name)
        retry_after = None
        if desired is not None:
            p = plan(pipeline, desired, actual)
            problems.extend(p.blocked)
            if p.waiting:
                retry_after = 2.0  # a child is being deleted; create it again once it is gone
            for action in p.actions:
                try:
                    await self._apply(namespace, action)
                    out.writes += 1
                    verb = {CREATE: "Created", UPDATE: "Updated", DELETE: "Deleted", RECREATE: "Deleted"}[action.verb]
                    log.info("%s/%s: %s Deployment %s (%s)", namespace, name, verb.lower(), action.name, action.reason)
                    out.writes += await self._event(pipeline, "Normal", f"{verb}Deployment",
                                                    f"{verb} Deployment {action.name}: {action.reason}")
                    if action.verb == RECREATE:
                        retry_after = 2.0
                except ApiException as exc:
                    if exc.status in (409, 404):
                        # Raced with someone (or our own stale read): read again soon.
                        retry_after = 1.0
                        continue
                    problems.append(f"{action.verb} Deployment {action.name}: {_api_error(exc)}")
            if p.actions:
                actual = await self._actual(namespace, name)

        error = "; ".join(problems) or None
        if desired is None:
            # compute_status reports the invalid spec itself.
            error = None
        status = compute_status(pipeline, actual, self.now(), error=error)
        if status != pipeline.get("status"):
            try:
                await self._call(self.kube.write_status, namespace, name, status)
                out.writes += 1
            except ApiException as exc:
                if exc.status != 404:
                    problems.append(f"write status: {_api_error(exc)}")

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
