"""The one adapter every reconcile phase talks to the outside world through.

The Kubernetes client and the Kafka admin client are synchronous; this runs their calls
off the event loop (Kubernetes in asyncio's default threads, Kafka in a small pool of
its own, so a slow broker cannot starve the Kubernetes calls), bounds the Kafka ones,
and keeps the few compound reads and writes the phases share: a pipeline's
Deployments, its pods, one child write, one Event.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from . import defaults, podmetrics
from .childdiff import CREATE, DELETE, RECREATE, UPDATE, Action
from .components import COMPONENTS
from .kafka_admin import KafkaUnavailable, TopicAdmin
from .kube import ApiException, Kube
from .metrics import Metrics
from .render import SERVER_PORT, deployment_name, owned_selector
from .watchcache import WatchCache

__all__ = ["Clients", "api_error"]

log = logging.getLogger("tspipe.controller")

KAFKA_THREADS = 4  # the Kafka admin pool (a slow broker must not starve the Kubernetes calls)

T = TypeVar("T")


def api_error(exc: ApiException) -> str:
    """An API error as one line: the status and the server's message."""
    msg = exc.reason or ""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):  # the body is not always JSON
        body = None
    if isinstance(body, dict):
        msg = body.get("message", msg)
    return f"{exc.status} {msg}".strip()


@dataclass
class Clients:
    kube: Kube
    admin: TopicAdmin
    kafka_timeout: float
    now: Callable[[], datetime]
    monotonic: Callable[[], float]
    metrics: Metrics
    # The Deployments and pods as the watches delivered them (watchcache.py).
    cache: WatchCache = field(default_factory=WatchCache)
    # How a router pod's counters are read: at its pod IP, or through the API server's
    # pod proxy (defaults.ROUTER_METRICS; `--router-metrics`).
    router_metrics: str = defaults.ROUTER_METRICS
    _kafka_pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, init=False)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """A Kubernetes call, in a thread."""
        return await asyncio.to_thread(fn, *args)

    async def write_pipeline(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A write of the pipeline (its status, finalizers, an annotation) whose answer
        goes into the watch cache (read-your-writes); the answer."""
        written = await self.call(fn, *args)
        self.cache.pipeline_written(written)
        return written

    async def kafka(self, fn: Callable[..., T], *args: Any) -> T:
        """A Kafka admin call in its own small pool, bounded on this side too."""
        if self._kafka_pool is None:
            self._kafka_pool = concurrent.futures.ThreadPoolExecutor(KAFKA_THREADS, thread_name_prefix="kafka")
        fut = asyncio.get_running_loop().run_in_executor(self._kafka_pool, fn, *args)
        try:
            # The admin client's own timeouts bound each of its (up to three) round trips.
            return await asyncio.wait_for(fut, self.kafka_timeout * 3 + 2)
        except TimeoutError as exc:
            raise KafkaUnavailable("no answer in time") from exc

    def close(self) -> None:
        if self._kafka_pool:
            self._kafka_pool.shutdown(wait=False, cancel_futures=True)

    async def deployments(self, namespace: str, name: str, fresh: bool = False) -> list[dict[str, Any]]:
        """The pipeline's Deployments: those labelled as its children, and any child
        whose labels were edited away (looked up by name).

        From the watch cache once it is primed (read only: the cache's own objects),
        looking up by name only a child the cache saw and lost (edited labels take it
        out of the watch); from the API until then, or when `fresh` (the pass's last
        write found the cache stale, or a watch listed again), which
        also brings the cache's copy of the pipeline's children up to date."""
        cache = self.cache.deployments
        if fresh or not self.cache.primed:
            found = await self.call(self.kube.list_deployments, namespace, owned_selector(name))
            cache.refresh(namespace, name, found)
            lookup = {deployment_name(name, c) for c in COMPONENTS}
        else:
            found = cache.group(namespace, name)
            lookup = cache.seen(namespace, name) & {deployment_name(name, c) for c in COMPONENTS}
        names = {d["metadata"]["name"] for d in found}
        for c in COMPONENTS:
            dname = deployment_name(name, c)
            if dname not in names and dname in lookup:
                d = await self.call(self.kube.get_deployment, namespace, dname)
                if d is not None:
                    found.append(d)
                    cache.saw(namespace, name, dname)
        return found

    async def pods(self, namespace: str, name: str, fresh: bool = False) -> list[dict[str, Any]]:
        """The pipeline's pods (why a component is not ready); none if the operator may
        not list them. From the watch cache once primed (read only), as `deployments`."""
        if self.cache.primed and not fresh:
            return self.cache.pods.group(namespace, name)
        try:
            found = await self.call(self.kube.list_pods, namespace, owned_selector(name))
        except ApiException as exc:
            if exc.status != 403:
                raise
            # An RBAC from before pods were read: the status just says less.
            log.warning("%s/%s: cannot list pods (%s)", namespace, name, api_error(exc))
            return []
        self.cache.pods.refresh(namespace, name, found)
        return found

    async def router_metrics_text(self, pod: dict[str, Any]) -> str:
        """One router pod's /actuator/prometheus, by the path the operator was given.
        Raises ApiException (the proxy), OSError or ValueError (the direct read)."""
        if self.router_metrics == defaults.ROUTER_METRICS_PROXY:
            meta = pod["metadata"]
            return await self.call(
                self.kube.pod_proxy_text, meta["namespace"], meta["name"], SERVER_PORT, podmetrics.METRICS_PATH
            )
        return await asyncio.to_thread(podmetrics.read_direct, pod, SERVER_PORT, defaults.ROUTER_METRICS_TIMEOUT)

    async def event(self, pipeline: dict[str, Any], type_: str, reason: str, message: str) -> int:
        """Post an Event about the pipeline; the writes it cost (0 if refused: Events are best effort)."""
        try:
            await self.call(self.kube.post_event, pipeline, type_, reason, message, self.now())
            return 1
        except ApiException as exc:
            log.warning("could not post event %s: %s", reason, api_error(exc))
            return 0

    async def apply(self, namespace: str, action: Action) -> None:
        """One planned write of a child (a Deployment or the router's PodDisruptionBudget).
        A Deployment's answer goes into the watch cache (read-your-writes: the next
        pass must not see the copy from before the write, whatever the watch's lag)."""
        kube = self.kube
        deployment = action.kind == "Deployment"
        if deployment:
            create, replace, delete = kube.create_deployment, kube.replace_deployment, kube.delete_deployment
        else:
            create, replace, delete = kube.create_pdb, kube.replace_pdb, kube.delete_pdb
        if action.verb == CREATE:
            written = await self.call(create, namespace, action.body)
        elif action.verb == UPDATE:
            written = await self.call(replace, namespace, action.name, action.body)
        elif action.verb == DELETE or (action.verb == RECREATE and deployment):
            await self.call(delete, namespace, action.name, action.resource_version)
            if deployment:
                # Gone as of the version deleted (a preconditioned delete: the one the
                # cache had); a later copy (say, with a deletionTimestamp while
                # finalizers hold it) still comes in by the watch.
                meta = {"namespace": namespace, "name": action.name, "resourceVersion": action.resource_version}
                self.cache.deployments.delete({"metadata": meta})
            return
        else:
            raise ValueError(f"{action.verb} {action.kind}")
        if deployment and isinstance(written, dict):
            self.cache.deployments.upsert(written)
