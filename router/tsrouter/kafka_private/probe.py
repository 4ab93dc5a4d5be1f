"""Whether the router's consumer holds a live broker connection (readiness, /actuator/health).

kafka-python 3.0.12 has no public way to ask: `KafkaConsumer.bootstrap_connected()` is true
only while a bootstrap is under way (its `KafkaNetClient.bootstrap_connected()` reads "the
bootstrap future exists and is not done"), so once connected it says False. Hence the
private way, the client's connections (`KafkaConsumer._client._manager._conns`, each with
`connected`), read without a lock and without a request. When the start-up check finds
them changed, the router asks the broker instead (`PublicProbe`): one end offset, through
public API, at most every PUBLIC_PROBE_INTERVAL_S.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka.consumer.group import KafkaConsumer
from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient
from kafka.net.connection import KafkaConnection
from kafka.net.manager import KafkaConnectionManager
from kafka.structs import TopicPartition

from .pin import source_of, version_problems

__all__ = ["PUBLIC_PROBE_INTERVAL_S", "PUBLIC_PROBE_TIMEOUT_MS", "PrivateProbe", "PublicProbe", "problems"]

log = logging.getLogger("tsrouter")

# The public probe is a request to the broker: often enough that readiness follows a lost
# broker within seconds (the private probe sees it at once), rarely enough to cost nothing
# next to the records; its timeout is the router's bootstrap timeout (a slow broker is not
# an unreachable one), and the loop waits for it only when the broker does not answer.
PUBLIC_PROBE_INTERVAL_S = 2.0
PUBLIC_PROBE_TIMEOUT_MS = 5_000

# Where each private name is assigned, as the probe reads them.
_ASSIGNED = (
    (KafkaConsumer.__init__, "self._client ="),
    (KafkaNetClient.__init__, "self._manager ="),
    (KafkaConnectionManager.__init__, "self._conns ="),
    (KafkaConnection.__init__, "self.connected ="),
)


def problems(consumer: Any = None) -> list[str]:
    """What this kafka-python (and this consumer, given one) lacks of what PrivateProbe reads."""
    found = version_problems()
    for fn, assignment in _ASSIGNED:
        if assignment not in source_of(fn):
            found.append(f"{fn.__qualname__.split('.')[0]}.{assignment.split('=')[0].strip()[5:]}")
    # PrivateProbe keeps the dict itself: it must be the manager's for good.
    if source_of(KafkaConnectionManager).count("self._conns =") != 1:
        found.append("KafkaConnectionManager._conns is not assigned once")
    if consumer is not None:
        conns = getattr(getattr(getattr(consumer, "_client", None), "_manager", None), "_conns", None)
        if not isinstance(conns, dict):
            found.append("KafkaConsumer._client._manager._conns")
    return found


class PrivateProbe:
    """Connected when any of the consumer's broker connections is (see the module's note)."""

    def __init__(self, consumer: Any):
        self._conns = consumer._client._manager._conns  # the dict itself: connections come and go in it

    def __call__(self) -> bool:
        return any(c.connected for c in list(self._conns.values()))


class PublicProbe:
    """Connected when the broker answered an end-offset request at most
    PUBLIC_PROBE_INTERVAL_S ago (for a partition the consumer owns, else partition 0 of
    its input topic); a failed request means unreachable until one succeeds again."""

    def __init__(self, consumer: Any, topic: str, clock: Any = time.monotonic):
        self._consumer, self._topic, self._clock = consumer, topic, clock
        self._asked: float | None = None
        self._up = False

    def __call__(self) -> bool:
        now = self._clock()
        if self._asked is not None and now - self._asked < PUBLIC_PROBE_INTERVAL_S:
            return self._up
        self._asked = now
        tp = min(self._consumer.assignment() or [TopicPartition(self._topic, 0)])
        try:
            self._consumer.end_offsets([tp], timeout_ms=PUBLIC_PROBE_TIMEOUT_MS)
        except KafkaError as exc:
            if self._up:
                log.warning("broker unreachable: end offset of %s-%d not answered: %s", tp.topic, tp.partition, exc)
            self._up = False
        else:
            self._up = True
        return self._up
