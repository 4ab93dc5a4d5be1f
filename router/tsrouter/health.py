"""Health state shared by the consume loop (writer) and the actuator (reader).

The loop reports facts (Kafka reachable, partitions assigned, loop ticked); the
probes are computed from them at request time, so a stalled loop shows as down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    kafka_up: bool
    assigned: int
    last_tick: float | None
    started: bool
    stopping: bool
    detail: str
    joined: bool = False  # a member of the consumer group: an assignment arrived, maybe empty


def liveness(s: Snapshot, now: float, stall_s: float) -> bool:
    """Alive unless the loop started and then stopped ticking for stall_s."""
    if s.last_tick is None:
        return True  # still starting up (connecting to the broker ticks too)
    return (now - s.last_tick) <= stall_s


def readiness(s: Snapshot) -> bool:
    # A group member without partitions is ready too: it takes over at the next rebalance.
    # Requiring partitions deadlocks a rolling update (the old pod keeps the only partition,
    # the new one never gets Ready, the old one is never stopped) and keeps replicas beyond
    # the partition count unready forever.
    return s.kafka_up and s.joined and not s.stopping


def health_body(s: Snapshot, now: float, stall_s: float) -> tuple[dict, bool]:
    live = liveness(s, now, stall_s)
    ready = readiness(s)
    up = live and s.kafka_up and not s.stopping
    body = {
        "status": "UP" if up else "DOWN",
        "components": {
            "kafka": {
                "status": "UP" if s.kafka_up else "DOWN",
                "details": {"assignedPartitions": s.assigned, "state": s.detail},
            },
            "livenessState": {"status": "UP" if live else "DOWN"},
            "readinessState": {"status": "UP" if ready else "DOWN"},
        },
    }
    return body, up


class HealthState:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._kafka_up = False
        self._assigned = 0
        self._joined = False
        self._last_tick: float | None = None
        self._started = False
        self._stopping = False
        self._detail = "starting"

    def tick(self) -> None:
        with self._lock:
            self._last_tick = self._clock()

    def set_kafka(self, up: bool, detail: str) -> None:
        with self._lock:
            self._kafka_up = up
            self._detail = detail
            self._last_tick = self._clock()

    def set_assigned(self, n: int) -> None:
        """An assignment arrived (n partitions, possibly none): the router is a group member."""
        with self._lock:
            self._assigned = n
            self._joined = True
            self._started = True

    def set_left(self) -> None:
        """The consumer is closed: no partitions, no longer a group member."""
        with self._lock:
            self._assigned = 0
            self._joined = False

    def set_stopping(self) -> None:
        with self._lock:
            self._stopping = True
            self._detail = "stopping"

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self._kafka_up,
                self._assigned,
                self._last_tick,
                self._started,
                self._stopping,
                self._detail,
                self._joined,
            )

    def now(self) -> float:
        return self._clock()
