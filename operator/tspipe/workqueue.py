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
  missed event); a key that is *settled* (its last pass wrote nothing,
  failed in nothing and asked for no timer but a recheck, which only refreshes what a
  phase caches) and that nothing enqueued since is answered
  by `unchanged` instead, without a pass, unless that last pass ran more than
  `reread_seconds` ago: a pass's cost would otherwise be paid N times per resync period
  while N pipelines converge, which made the operator's CPU per pipeline grow with N;
- while `standby` (a peer is active), the retry and resync timers enqueue nothing;
- at most `max_passes` passes run at once (the others wait their turn, each key still
  coalescing its events meanwhile).
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
    # When to run again only to refresh what a phase caches (the topics' check): a pass
    # before then reuses the cached result, so this timer does not unsettle the key.
    recheck_after: float | None = None
    # No pass ran: what it would read is what the last full pass read (controller.py).
    unchanged: bool = False

    @property
    def delay(self) -> float | None:
        """When to run again (None: not by itself)."""
        asked = [d for d in (self.retry_after, self.recheck_after) if d is not None]
        return min(asked) if asked else None


def settled(outcome: Outcome) -> bool:
    """A pass after which another, with nothing changed, would do the same: nothing (no
    writes, no error, no timer: every time-dependent step asks for one). A recheck timer
    (`recheck_after`) still fires, as a touch, so it need not unsettle the key."""
    return not outcome.writes and outcome.error is None and outcome.retry_after is None


def resync_may_skip(touched: bool, read_at: float | None, now: float, resync: float, reread: float) -> bool:
    """Whether a resync may answer a key without a pass: nothing enqueued it since its
    last pass began (`touched`), that pass was settled (`read_at`: when it began; None:
    not settled), and the next resync still comes within `reread` of that pass. So a
    settled key gets a whole pass at least every `reread` seconds, and at every resync
    when resync >= reread (the defaults)."""
    return not touched and read_at is not None and now - read_at < reread - resync


@dataclass
class Retry:
    """A key's retry timer and how many passes in a row failed (for the backoff)."""

    failures: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class WorkQueue:
    work: Callable[[Key], Awaitable[None]]  # one pass over a key; it calls schedule() with its outcome
    # A resync of a settled key that nothing touched: no pass, this instead (it logs).
    unchanged: Callable[[Key], None] = lambda key: None
    resync_seconds: float = defaults.RESYNC_SECONDS
    reread_seconds: float = defaults.REREAD_SECONDS
    backoff_base: float = defaults.BACKOFF_BASE
    backoff_max: float = defaults.BACKOFF_MAX
    debounce_seconds: float = defaults.DEBOUNCE_SECONDS
    max_passes: int = defaults.MAX_PASSES
    standby: bool = False
    known: set[Key] = field(default_factory=set)
    pending: set[Key] = field(default_factory=set)
    state: dict[Key, Retry] = field(default_factory=dict)
    _workers: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    _debounce: set[Key] = field(default_factory=set)
    _resync_task: asyncio.Task[None] | None = None
    # Keys enqueued by anything but the resync (an event, a retry) since their pass began.
    touched: set[Key] = field(default_factory=set)
    # Settled keys: when their last pass began (monotonic).
    settled_at: dict[Key, float] = field(default_factory=dict)
    _started: dict[Key, float] = field(default_factory=dict)
    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_passes)

    def enqueue(self, key: Key) -> None:
        self.touched.add(key)
        self._enqueue(key)

    def _enqueue(self, key: Key) -> None:
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
        self.touched.discard(key)
        self.settled_at.pop(key, None)
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
            delay = outcome.delay
        started = self._started.pop(key, None)
        if key not in self.known:
            # Forgotten (deleted) while its pass ran: keep nothing of it.
            self.state.pop(key, None)
            self.settled_at.pop(key, None)
            return
        if settled(outcome) and started is not None and key in self.known:
            self.settled_at[key] = started
        else:
            self.settled_at.pop(key, None)
        if delay is not None:
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
        try:
            while key in self.pending:
                # The key stays pending while it waits for a slot: its events coalesce.
                async with self._slots:
                    if key not in self.pending:
                        break  # forgotten meanwhile
                    self.pending.discard(key)
                    now = self.clock()
                    if self._skipped(key, now):
                        continue
                    # Anything that touches the key from here on makes the next pass a full one.
                    self.touched.discard(key)
                    self._started[key] = now
                    await self.work(key)
        finally:
            # Done (nothing pending): drop the finished worker, so the map holds running
            # ones only (a deleted pipeline's stayed forever). No await since the loop's
            # test, so no enqueue can have found this task still running.
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]

    def _retry(self, key: Key) -> None:
        if not self.standby:
            self.enqueue(key)

    async def _resync(self) -> None:
        # Costs reads only when nothing differs.
        while True:
            await asyncio.sleep(self.resync_seconds)
            if self.standby:
                continue  # kopf paused us: the active replica does the work
            self.resync_round()

    def resync_round(self) -> None:
        """Every known key runs again, unless it may skip (`resync_may_skip`)."""
        now = self.clock()
        for key in list(self.known):
            if not self._answer_unchanged(key, now):
                self._enqueue(key)

    def _answer_unchanged(self, key: Key, now: float) -> bool:
        """A resync of a key that no pass runs or waits for, and that may skip: answered
        here, without a task or a slot (at N=2,000 and a 10-second resync, 355k answers
        in one run; the task each made was most of their cost)."""
        if key in self.pending or key in self._workers:
            return False
        return self._skipped(key, now)

    def _skipped(self, key: Key, now: float) -> bool:
        """Answers the key without a pass if it may skip (`resync_may_skip`)."""
        if not resync_may_skip(
            key in self.touched, self.settled_at.get(key), now, self.resync_seconds, self.reread_seconds
        ):
            return False
        self.unchanged(key)
        return True
