"""Rollouts of a pipeline whose broker needs credentials are judged by the router pods'
own counters (pure: the parsing of a pod's exposition and the verdict; the real node
shows the whole path in tests/node/test_node_rollback.py)."""

from __future__ import annotations

import pytest

from tspipe import podmetrics, rollback
from tspipe.rollback import judge_counters


def pod(committed, even, odd, dead=0, lag=0):
    return {"committed": committed, "even": even, "odd": odd, "deadLetter": dead, "lag": lag}


# --- reading a pod's /actuator/prometheus --------------------------------------------------

EXPOSITION = """\
# HELP tsrouter_records_committed_total Records whose input offsets are committed
# TYPE tsrouter_records_committed_total counter
tsrouter_records_committed_total 120.0
# HELP tsrouter_records_consumed_total Records read from the input topic
# TYPE tsrouter_records_consumed_total counter
tsrouter_records_consumed_total 140.0
# HELP tsrouter_records_routed_total Records routed and acknowledged, per channel
# TYPE tsrouter_records_routed_total counter
tsrouter_records_routed_total{channel="even"} 70.0
tsrouter_records_routed_total{channel="odd"} 55.0
# HELP tsrouter_records_dead_lettered_total Records sent to the dead-letter topic
# TYPE tsrouter_records_dead_lettered_total counter
tsrouter_records_dead_lettered_total 1.0
# HELP tsrouter_consumer_lag Records behind the partition's high watermark
# TYPE tsrouter_consumer_lag gauge
tsrouter_consumer_lag{partition="0",topic="in"} 3.0
tsrouter_consumer_lag{partition="1",topic="in"} 4.0
"""


def test_a_router_pods_exposition_gives_its_counters():
    assert podmetrics.router_counters(EXPOSITION) == pod(120, 70, 55, 1, 7)


def test_a_router_without_the_committed_counter_cannot_be_judged():
    older = "\n".join(ln for ln in EXPOSITION.splitlines() if "committed" not in ln) + "\n"
    with pytest.raises(podmetrics.NoCommittedCounter, match="tsrouter_records_committed_total"):
        podmetrics.router_counters(older)


# --- the verdict ----------------------------------------------------------------------------


def test_a_window_where_every_committed_record_was_routed_is_stable_and_says_what_was_not_checked():
    j = judge_counters({"r-a": pod(100, 50, 50)}, {"r-a": pod(160, 82, 80)}, 0.05)
    assert j.ok and j.reason == rollback.CHECKS_PASSED
    assert j.checks == {
        "source": "routerCounters",
        "pods": 1,
        "consumed": 60,
        "routedEven": 32,
        "routedOdd": 30,
        "deadLettered": 0,
        "lost": 0,
        "lag": 0,
        "deadLetterRatio": 0.0,
    }
    assert "misrouting was not checked" in j.message


def test_records_committed_but_never_routed_are_lost_over_the_pods_life():
    # In the window the deltas balance (60 committed, 60 routed); the loss is older, in this process.
    j = judge_counters({"r-a": pod(100, 40, 40)}, {"r-a": pod(160, 70, 70)}, 0.05)
    assert not j.ok and j.reason == rollback.LOST and j.checks["lost"] == 20
    assert "20 records counted committed" in j.message


def test_records_in_flight_are_not_lost():
    # Routed but not yet committed: committed < routed is what a correct router shows.
    j = judge_counters({}, {"r-a": pod(90, 50, 50)}, 0.05)
    assert j.ok and j.checks["lost"] == 0


def test_a_jump_in_dead_letters_fails_the_rollout():
    j = judge_counters({"r-a": pod(0, 0, 0)}, {"r-a": pod(100, 40, 40, dead=20)}, 0.05)
    assert not j.ok and j.reason == rollback.DEAD_LETTERS and j.checks["deadLetterRatio"] == 0.2
    assert "20 of 100 records dead-lettered" in j.message


def test_a_router_that_commits_nothing_while_its_pods_report_lag_is_not_consuming():
    j = judge_counters({"r-a": pod(10, 5, 5)}, {"r-a": pod(10, 5, 5, lag=300)}, 0.05)
    assert not j.ok and j.reason == rollback.NOT_CONSUMING and "300 records of lag" in j.message


def test_no_traffic_and_no_lag_is_stable_by_readiness():
    j = judge_counters({"r-a": pod(10, 5, 5)}, {"r-a": pod(10, 5, 5)}, 0.05)
    assert j.ok and j.reason == rollback.NO_TRAFFIC


def test_a_pod_that_restarted_or_is_new_counts_from_zero_and_a_gone_one_drops_out():
    start = {"r-a": pod(500, 250, 250), "r-gone": pod(70, 35, 35)}
    end = {"r-a": pod(20, 10, 10), "r-new": pod(30, 15, 15)}  # r-a's router restarted
    j = judge_counters(start, end, 0.05)
    assert j.ok and j.checks["consumed"] == 50 and j.checks["pods"] == 2


def test_no_counters_at_the_end_is_judged_by_readiness_and_says_so():
    j = judge_counters({"r-a": pod(1, 1, 0)}, {}, 0.05)
    assert j.ok and j.reason == rollback.READINESS_ONLY and "could be read" in j.message
