"""Exactly-once: the producer's transactional calls with a bound on how long they wait.

kafka-python 3.0.12's `send_offsets_to_transaction`, `commit_transaction` and
`abort_transaction` each hand a request to the sender thread and then wait on its
result with no timeout (`TransactionalRequestResult.wait()`). Java's producer bounds the
same calls by max.block.ms. On a three-broker cluster, after kill -9 of a partition's
leader, the wait never ended: the router's loop hung while its probes said UP
(tests/router/test_router_cluster.py found it, 3 runs in 7). `Bounded` makes the same
calls as kafka-python does (the transaction manager's request, then waking the sender)
and waits at most `timeout_s`; a call still waiting then raises, and the router rebuilds
its clients: the new producer's init fences this one and aborts its transaction, and the
records are read again from the committed offsets. When the start-up check finds these
internals changed, `Public` calls kafka-python's own methods (unbounded, as before).
"""

from __future__ import annotations

import inspect
from typing import Any

from kafka.errors import KafkaTimeoutError
from kafka.producer.kafka import KafkaProducer
from kafka.producer.transaction_manager import TransactionalRequestResult, TransactionManager

from .pin import source_of, version_problems

__all__ = ["TXN_CALL_TIMEOUT_S", "Bounded", "Public", "problems"]

# The router's transactions time out on the broker after 15 s (its transaction_timeout_ms),
# which then aborts them: a transactional call still waiting after twice that will not
# complete. Java's producer gives up after max.block.ms (60 s).
TXN_CALL_TIMEOUT_S = 30.0

# What kafka-python's public methods do before their unbounded wait, as Bounded repeats it.
_CALLS = (
    (KafkaProducer.send_offsets_to_transaction, "self._transaction_manager.send_offsets_to_transaction("),
    (KafkaProducer.commit_transaction, "self._transaction_manager.begin_commit()"),
    (KafkaProducer.abort_transaction, "self._transaction_manager.begin_abort()"),
)


def problems(producer: Any = None) -> list[str]:
    """What this kafka-python (and this producer, given one) lacks of what Bounded calls."""
    found = version_problems()
    for fn, call in _CALLS:
        source = source_of(fn)
        if call not in source or "self._sender.wakeup()" not in source:
            found.append(f"KafkaProducer.{fn.__name__} no longer calls {call.split('(')[0]}")
    for name in ("send_offsets_to_transaction", "begin_commit", "begin_abort"):
        if not callable(getattr(TransactionManager, name, None)):
            found.append(f"TransactionManager.{name}")
    if "timeout_ms" not in inspect.signature(TransactionalRequestResult.wait).parameters:
        found.append("TransactionalRequestResult.wait(timeout_ms)")
    if producer is not None:
        if getattr(producer, "_transaction_manager", None) is None:
            found.append("KafkaProducer._transaction_manager (a transactional producer's)")
        if not callable(getattr(getattr(producer, "_sender", None), "wakeup", None)):
            found.append("KafkaProducer._sender.wakeup")
    return found


class Bounded:
    """The transactional calls of `producer`, each waiting at most `timeout_s`."""

    def __init__(self, producer: Any, timeout_s: float = TXN_CALL_TIMEOUT_S):
        self._producer = producer
        self._timeout_ms = int(timeout_s * 1000)

    def _wait(self, result: Any, what: str) -> None:
        self._producer._sender.wakeup()
        if not result.wait(timeout_ms=self._timeout_ms):  # raises the request's own error, if any
            raise KafkaTimeoutError(f"{what} not done after {self._timeout_ms / 1000:.0f}s")

    def send_offsets(self, offsets: Any, group_metadata: Any) -> None:
        tm = self._producer._transaction_manager
        self._wait(tm.send_offsets_to_transaction(offsets, group_metadata), "sending the offsets to the transaction")

    def commit(self) -> None:
        self._wait(self._producer._transaction_manager.begin_commit(), "the transaction's commit")

    def abort(self) -> None:
        self._wait(self._producer._transaction_manager.begin_abort(), "the transaction's abort")


class Public:
    """kafka-python's own transactional calls (they wait without a bound)."""

    def __init__(self, producer: Any):
        self._producer = producer

    def send_offsets(self, offsets: Any, group_metadata: Any) -> None:
        self._producer.send_offsets_to_transaction(offsets, group_metadata)

    def commit(self) -> None:
        self._producer.commit_transaction()

    def abort(self) -> None:
        self._producer.abort_transaction()
