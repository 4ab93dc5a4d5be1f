"""A fix for kafka-python 3.0.12's group coordinator that the router cannot work without.

The lost rejoin: `ConsumerCoordinator.poll` drives a rebalance only while
`need_rejoin()` is true. A group leader rejoins when the metadata it assigned with has
changed (a member subscribed to a topic the leader had no metadata for: in this
pipeline, the log sinks share the stream's group with the router and read other
topics). Its `_perform_assignment`, which runs inside the in-flight join task, resets
that snapshot, so `need_rejoin()` turns false while the task still waits for SyncGroup.
If `poll()`'s timer expires in that window (the router polls every 5-200 ms), no later
poll awaits the task again: the assignment is never applied, the rebalance listener
never runs, heartbeats stay disabled, the broker expels the member after its session
timeout and nothing ever rejoins. The router then stays alive and routes nothing.

Java's client keeps driving a join while one is pending (`rejoinNeededOrPending()` is
`rejoinNeeded || joinFuture != null`); `install()` gives kafka-python the same rule.
tests/router/test_kafka_rejoin.py shows the bug on the real broker without the fix and
its absence with it; it fails when an upgrade changes what this relies on.
"""

from __future__ import annotations

from typing import Any

from kafka.coordinator.base import BaseCoordinator
from kafka.coordinator.consumer import ConsumerCoordinator

_MARK = "_tsrouter_join_pending_fix"


def _join_pending(coordinator: Any) -> bool:
    return getattr(coordinator, "_join_task", None) is not None


def install() -> None:
    """Patch `ConsumerCoordinator.need_rejoin` (idempotent); raise if kafka-python no
    longer has what the patch relies on, rather than silently running unfixed."""
    original = ConsumerCoordinator.need_rejoin
    if getattr(original, _MARK, False):
        return
    probe = BaseCoordinator.__init__.__code__.co_names
    if "_join_task" not in probe:
        raise RuntimeError(
            "kafka-python's BaseCoordinator has no _join_task: review tsrouter.kafka_fixes "
            "against the installed kafka-python before running the router"
        )

    def need_rejoin(self: ConsumerCoordinator) -> bool:
        # Manual assignment never joins; otherwise a pending join must be driven to its end.
        if self._subscription.partitions_auto_assigned() and _join_pending(self):
            return True
        return bool(original(self))

    setattr(need_rejoin, _MARK, True)
    need_rejoin.__wrapped__ = original  # type: ignore[attr-defined]
    ConsumerCoordinator.need_rejoin = need_rejoin


def uninstall() -> None:
    """Undo `install()` (tests use it to show the bug the fix removes)."""
    current = ConsumerCoordinator.need_rejoin
    if getattr(current, _MARK, False):
        ConsumerCoordinator.need_rejoin = current.__wrapped__
