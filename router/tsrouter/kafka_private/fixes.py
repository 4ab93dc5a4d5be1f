"""Two fixes for kafka-python 3.0.12 that the router cannot work without.

1. The lost rejoin: `ConsumerCoordinator.poll` drives a rebalance only while
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

2. The lost last response: `KafkaTCPTransport._read_from_sock` drops every byte of a
read that ends at the peer's close. A broker rejecting SASL credentials sends its
SaslAuthenticate error and closes the connection right after it (Kafka delays both by
`connection.failed.authentication.delay.ms`), so on a busy machine the error and the
close arrive in one read (here: every time): the client then sees only "socket
disconnected", and the router could not tell wrong credentials from a broker that is
down. The fix hands those bytes to the connection and lets the request waiting for them
run before the close is processed.
tests/credentials/test_router_sasl.py shows it on the real broker's SASL listener.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import errors as kafka_errors
from kafka.coordinator.base import BaseCoordinator
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.net.transport import KafkaTCPTransport

_MARK = "_tsrouter_fix"


def _join_pending(coordinator: Any) -> bool:
    return getattr(coordinator, "_join_task", None) is not None


# What each fix's replacement uses of the original's names: when kafka-python changes
# them, the replacement no longer matches the code it replaces.
_REJOIN_NAMES = {"_join_task"}  # set by BaseCoordinator.__init__
_READ_NAMES = {"_sock_recv", "abort", "data_received", "wait_read"}  # used by _read_from_sock


def problems() -> list[str]:
    """What this kafka-python lacks of what the fixes rely on (empty: nothing). Unlike the
    fast paths these have no public alternative: the router refuses to run without them."""
    found = []
    if _REJOIN_NAMES - set(BaseCoordinator.__init__.__code__.co_names):
        found.append("kafka-python's BaseCoordinator has no _join_task")
    if _READ_NAMES - set(_unfixed(KafkaTCPTransport._read_from_sock).__code__.co_names):
        found.append("kafka-python's KafkaTCPTransport._read_from_sock changed")
    return found


def _unfixed(fn: Any) -> Any:
    return fn.__wrapped__ if getattr(fn, _MARK, False) else fn


def install() -> None:
    """Install both fixes (idempotent); raise if kafka-python no longer has what they
    rely on, rather than silently running unfixed."""
    found = problems()
    if found:
        raise RuntimeError(
            "; ".join(found) + ": review tsrouter.kafka_private.fixes against the installed kafka-python "
            "before running the router"
        )
    _install_rejoin_fix()
    _install_read_fix()


def uninstall() -> None:
    """Undo `install()` (tests use it to show the bugs the fixes remove)."""
    for owner, name in ((ConsumerCoordinator, "need_rejoin"), (KafkaTCPTransport, "_read_from_sock")):
        current = getattr(owner, name)
        if getattr(current, _MARK, False):
            setattr(owner, name, current.__wrapped__)


def _install_rejoin_fix() -> None:
    original = ConsumerCoordinator.need_rejoin
    if getattr(original, _MARK, False):
        return

    def need_rejoin(self: ConsumerCoordinator) -> bool:
        # Manual assignment never joins; otherwise a pending join must be driven to its end.
        if self._subscription.partitions_auto_assigned() and _join_pending(self):
            return True
        return bool(original(self))

    setattr(need_rejoin, _MARK, True)
    need_rejoin.__wrapped__ = original  # type: ignore[attr-defined]
    ConsumerCoordinator.need_rejoin = need_rejoin


def _install_read_fix() -> None:
    original = KafkaTCPTransport._read_from_sock
    if getattr(original, _MARK, False):
        return

    async def _read_from_sock(self: Any) -> None:
        # The original loop, but bytes read together with the close reach the protocol.
        while self._read and not self._closed:
            await self._net.wait_read(self._sock)
            data, err = self._sock_recv()
            if data:
                self.last_read = time.monotonic()
                if self._protocol and self._protocol._sensors:
                    self._protocol._sensors.bytes_received.record(len(data))
                try:
                    self._protocol.data_received(data)
                except kafka_errors.KafkaProtocolError as exc:
                    self.abort(error=exc)
                    return
            if err:
                if data:
                    # Let the request's waiter see its response before the close fails it.
                    await self._net.sleep(0)
                self.abort(error=err)
                return

    setattr(_read_from_sock, _MARK, True)
    _read_from_sock.__wrapped__ = original  # type: ignore[attr-defined]
    KafkaTCPTransport._read_from_sock = _read_from_sock
