"""Every use of kafka-python's private API, behind one start-up check and one switch per path.

The router reads or patches kafka-python's internals in four places, each here:

  fastfetch  polled records as chunks of still-encoded record batches (tsrouter.fast-fetch);
             public alternative: kafka-python's ConsumerRecords
  fastsend   whole record batches into the producer's accumulator (tsrouter.batch-send);
             public alternative: KafkaProducer.send() per record
  probe      whether a broker connection is up (readiness); public alternative: ask the
             broker for an end offset every few seconds
  txn        exactly-once's transactional calls with a bound on their wait; public
             alternative: KafkaProducer's own calls, which wait without one
  fixes      two bug fixes of kafka-python 3.0.12 (a lost rejoin, a lost last response);
             no alternative: without them the router refuses to run, as before

`check()` is the one start-up check of all of them: the pinned kafka-python version, the
attributes, methods and code each relies on, and the behaviour (fast fetch and batch send
run once on batches built in memory and must give what kafka-python's own code gives).
`Fence` applies it: a path whose check fails is logged as a warning naming what is missing
and replaced by its public alternative for the life of the process; nothing is swallowed.
The switches are the router's keys tsrouter.fast-fetch and tsrouter.batch-send (false: the
public path, whatever the check says). Nothing outside this package touches a private name
of kafka-python (tsrouter.wire and tsrouter.chunks hold the record format, which is Kafka's
public protocol).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kafka

from . import fastfetch, fastsend, fixes, probe, txn
from .pin import PINNED_KAFKA_PYTHON

__all__ = [
    "BATCH_SEND",
    "BOUNDED_TXN",
    "CONNECTION_PROBE",
    "FAST_FETCH",
    "FIXES",
    "PINNED_KAFKA_PYTHON",
    "Fence",
    "check",
]

log = logging.getLogger("tsrouter")

# The parts check() reports on, by the name a reader of the log looks for.
FAST_FETCH = "tsrouter.fast-fetch"
BATCH_SEND = "tsrouter.batch-send"
CONNECTION_PROBE = "connection probe"
BOUNDED_TXN = "bounded transactional calls"
FIXES = "kafka-python fixes"

# What replaces each optional part when its check fails, and the module to review then.
_PUBLIC = {
    FAST_FETCH: ("kafka-python's ConsumerRecords, as with tsrouter.fast-fetch=false", "fastfetch"),
    BATCH_SEND: ("KafkaProducer.send() per record, as with tsrouter.batch-send=false", "fastsend"),
    CONNECTION_PROBE: ("an end-offset request to the broker every few seconds", "probe"),
    BOUNDED_TXN: ("KafkaProducer's own transactional calls, which wait without a bound", "txn"),
}


def check(producer: Any = None, consumer: Any = None) -> dict[str, list[str]]:
    """{part: what is missing or behaves otherwise} for every private use of kafka-python
    (an empty list: the part may run). Without clients it checks the installed kafka-python;
    given the router's producer and consumer, also what those instances hold."""
    return {
        FAST_FETCH: fastfetch.problems(consumer) + (fastfetch.behaviour_problems() if consumer is None else []),
        BATCH_SEND: fastsend.problems(producer) + (fastsend.behaviour_problems() if producer is None else []),
        CONNECTION_PROBE: probe.problems(consumer),
        # A producer without transactions has no transaction manager to check.
        BOUNDED_TXN: txn.problems(producer if producer is not None and _transactional(producer) else None),
        FIXES: fixes.problems(),
    }


class Fence:
    """Which of kafka-python's private API this router process uses: check() at start-up,
    completed by the clients' own part when they exist (attach)."""

    def __init__(self, fast_fetch: bool, batch_send: bool, transactional: bool = False):
        found = check()
        self.fixes_missing = found[FIXES]
        self.fast_fetch = fast_fetch and self._usable(FAST_FETCH, found)
        self.batch_send = batch_send and self._usable(BATCH_SEND, found)
        self.private_probe = self._usable(CONNECTION_PROBE, found)
        # Only an exactly-once router makes transactional calls: no other names the part.
        self.bounded_txn = transactional and self._usable(BOUNDED_TXN, found)
        if self.fixes_missing:
            log.error("kafka-python %s lacks what the router's fixes need: %s", kafka.__version__, self.fixes_missing)
        on = {
            FAST_FETCH: self.fast_fetch,
            BATCH_SEND: self.batch_send,
            CONNECTION_PROBE: self.private_probe,
            BOUNDED_TXN: self.bounded_txn,
            FIXES: not self.fixes_missing,
        }
        used = ", ".join(part for part, yes in on.items() if yes) or "none"
        log.info("kafka-python %s: private API in use: %s", kafka.__version__, used)
        self.connected: Callable[[], bool] = _never
        self.txn: txn.Bounded | txn.Public | None = None  # exactly-once's calls, once a producer exists

    @staticmethod
    def _usable(part: str, found: dict[str, list[str]]) -> bool:
        if not found[part]:
            return True
        public, module = _PUBLIC[part]
        log.warning(
            "kafka-python %s is not what tsrouter.kafka_private.%s relies on (%s): %s uses %s instead",
            kafka.__version__,
            module,
            "; ".join(found[part]),
            part,
            public,
        )
        return False

    def install_fixes(self) -> None:
        """Before any client exists (tsrouter.kafka_private.fixes says why); raises when the
        check found them impossible, and the router retries and reports it as a Kafka error."""
        fixes.install()

    def attach(self, producer: Any, consumer: Any, batch_size: int, input_topic: str) -> fastsend.FastSender | None:
        """Put the fast paths on these new clients (before the consumer subscribes) and point
        `connected` at them; returns the batch sender, None for KafkaProducer.send()."""
        found = check(producer, consumer)
        self.fast_fetch = self.fast_fetch and self._usable(FAST_FETCH, found)
        self.batch_send = self.batch_send and self._usable(BATCH_SEND, found)
        self.private_probe = self.private_probe and self._usable(CONNECTION_PROBE, found)
        if _transactional(producer):
            self.bounded_txn = self.bounded_txn and self._usable(BOUNDED_TXN, found)
            self.txn = txn.Bounded(producer) if self.bounded_txn else txn.Public(producer)
        if self.fast_fetch:
            fastfetch.install(consumer)  # poll() hands out chunks of still-encoded records
        self.connected = (
            probe.PrivateProbe(consumer) if self.private_probe else probe.PublicProbe(consumer, input_topic)
        )
        return fastsend.FastSender(producer, batch_size) if self.batch_send else None


def _transactional(producer: Any) -> bool:
    return bool(getattr(producer, "config", {}).get("transactional_id"))


def _never() -> bool:
    return False  # no consumer yet
