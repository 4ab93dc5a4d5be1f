"""The controller's work queue: one worker per key, coalescing, with retries and a resync.

Like client-go's rate-limited work queue, in one asyncio loop:
- `enqueue(key)` marks a key dirty; its worker (at most one per key) runs the work
  function until the key is no longer dirty, so a burst of events costs one or two
  passes, never concurrent ones for the same key;
- `enqueue_soon(key)` waits `debounce_seconds` first (the Deployment controller updates
  the four children in bursts; one pass after the burst sees them all);
- a pass that failed is retried with exponential backoff, a pass that asks for it
  (`Outcome.retry_after`) runs again after that delay;
- every known key runs again every `resync_seconds` (the level-based safety net for a
  missed event);
- while `standby` (a peer is active), the retry and resync timers enqueue nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import defaults

Key = tuple[str, str]  # (namespace, name)

log = logging.getLogger("tspipe.controller")


@dataclass
class Outcome:
    """What one pass did: its API writes, when to run again, the error that ended it."""

    writes: int = 0
    retry_after: float | None = None
    error: str | None = None


@dataclass
class Retry:
    """A key's retry timer and how many passes in a row failed (for the backoff)."""

    failures: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class WorkQueue:
    work: Callable[[Key], Awaitable[None]]  # one pass over a key; it calls schedule() with its outcome
    resync_seconds: float = defaults.RESYNC_SECONDS
    backoff_base: float = defaults.BACKOFF_BASE
    backoff_max: float = defaults.BACKOFF_MAX
    debounce_seconds: float = defaults.DEBOUNCE_SECONDS
    standby: bool = False
    known: set[Key] = field(default_factory=set)
    pending: set[Key] = field(default_factory=set)
    state: dict[Key, Retry] = field(default_factory=dict)
    _workers: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    _debounce: set[Key] = field(default_factory=set)
    _resync_task: asyncio.Task[None] | None = None

    def enqueue(self, key: Key) -> None:
        self.known.add(key)
        self.pending.add(key)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.get_running_loop().create_task(self._drain(key), name=f"reconcile {key}")

    def enqueue_soon(self, key: Key) -> None:
        if self.debounce_seconds <= 0:
            self.enqueue(key)
            return
        if key in self._debounce:
            return

        def fire() -> None:
            self._debounce.discard(key)
            self.enqueue(key)

        self._debounce.add(key)
        asyncio.get_running_loop().call_later(self.debounce_seconds, fire)

    def forget(self, key: Key) -> None:
        self.known.discard(key)
        self.pending.discard(key)
        retry = self.state.pop(key, None)
        if retry and retry.timer:
            retry.timer.cancel()

    def schedule(self, key: Key, outcome: Outcome) -> None:
        """After a pass: back off after an error, else run again when the pass asked to."""
        retry = self.state.setdefault(key, Retry())
        if retry.timer:
            retry.timer.cancel()
            retry.timer = None
        if outcome.error:
            delay: float | None = min(self.backoff_max, self.backoff_base * (2**retry.failures))
            retry.failures += 1
        else:
            retry.failures = 0
            delay = outcome.retry_after
        if delay is not None and key in self.known:
            retry.timer = asyncio.get_running_loop().call_later(delay, self._retry, key)

    def start(self) -> None:
        self._resync_task = asyncio.get_running_loop().create_task(self._resync(), name="resync")

    async def stop(self) -> None:
        tasks = [t for t in self._workers.values() if not t.done()]
        if self._resync_task:
            tasks.append(self._resync_task)
        for retry in self.state.values():
            if retry.timer:
                retry.timer.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, key: Key) -> None:
        while key in self.pending:
            self.pending.discard(key)
            await self.work(key)

    def _retry(self, key: Key) -> None:
        if not self.standby:
            self.enqueue(key)

    async def _resync(self) -> None:
        # Costs reads only when nothing differs.
        while True:
            await asyncio.sleep(self.resync_seconds)
            if self.standby:
                continue  # kopf paused us: the active replica does the work
            for key in list(self.known):
                self.enqueue(key)
