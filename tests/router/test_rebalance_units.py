"""What the router keeps across a rebalance (no broker: the hooks' bookkeeping alone)."""

from __future__ import annotations

import threading

from kafka import TopicPartition as TP

from tsrouter.actuator import HealthState
from tsrouter.app import Runner
from tsrouter.config import RouterConfig
from tsrouter.metrics import Metrics


def runner() -> Runner:
    return Runner(RouterConfig(transactional_id=None), HealthState(), Metrics(), threading.Event())


def test_a_partition_that_moved_away_is_not_committed_later_by_its_old_owner():
    # The revoke commit failed (a broker went away): offsets 120 of partition 0 and 70 of
    # partition 1 were acknowledged but not committed. Partition 1 went to another member,
    # which routes again from the group's offset; the periodic commit here must not later
    # move that member's committed offset back to 70.
    r = runner()
    p0, p1 = TP("in", 0), TP("in", 1)
    r.pending = {p0: 120, p1: 70}
    r._committed = {p0: 100, p1: 50}
    r.ledger.acknowledged({p0: 20, p1: 20}, {p0: 120, p1: 70})
    r.on_assigned({p0})
    assert r._uncommitted() == {p0: 120}
    assert r.ledger.committed(p1, 70) == 0  # its acknowledged records are not counted as committed here
    assert r.ledger.committed(p0, 120) == 20
    assert r.metrics.registry.get_sample_value("tsrouter_assigned_partitions") == 1


def test_a_partition_assigned_again_keeps_what_is_acknowledged_for_it():
    # Eager rebalancing revokes everything; a partition that comes back was nobody else's
    # meanwhile, so its acknowledged offset is still the one to commit.
    r = runner()
    p0 = TP("in", 0)
    r.pending = {p0: 120}
    r.on_assigned({p0})
    assert r._uncommitted() == {p0: 120}
