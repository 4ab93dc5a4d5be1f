"""Prometheus metrics of one router instance (own registry, so tests can make many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .routing import ROUTED


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Registered first, so a scrape reads it before the routed and dead-lettered counts:
        # every record it counts was counted there before, so committed <= routed +
        # dead-lettered holds in every scrape of a correct router (the operator's rollout
        # check for brokers it cannot read relies on that).
        self.committed = Counter(
            "tsrouter_records_committed",
            "Records whose input offsets are committed (each acknowledged on an output first)",
            registry=r,
        )
        self.consumed = Counter("tsrouter_records_consumed", "Records read from the input topic", registry=r)
        self.routed = Counter(
            "tsrouter_records_routed", "Records routed and acknowledged, per channel", ["channel"], registry=r
        )
        self.dead_lettered = Counter(
            "tsrouter_records_dead_lettered", "Records sent to the dead-letter topic", registry=r
        )
        self.send_errors = Counter("tsrouter_send_errors", "Sends the broker did not acknowledge", registry=r)
        self.commits = Counter("tsrouter_offset_commits", "Offset commits (or committed transactions)", registry=r)
        self.rebalances = Counter("tsrouter_rebalances", "Partition revocations and assignments", ["kind"], registry=r)
        self.lag = Gauge(
            "tsrouter_consumer_lag", "Records behind the partition's high watermark", ["topic", "partition"], registry=r
        )
        self.assigned = Gauge("tsrouter_assigned_partitions", "Input partitions assigned", registry=r)
        # From the input record's timestamp to the broker's acknowledgement of the routed record.
        self.latency = Histogram(
            "tsrouter_end_to_end_latency_seconds",
            "Input record timestamp to routed record acknowledged",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        for ch in ROUTED:
            self.routed.labels(ch)
        for kind in ("assigned", "revoked", "lost"):
            self.rebalances.labels(kind)
