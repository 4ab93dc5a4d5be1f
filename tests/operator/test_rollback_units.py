"""Data-gated rollouts: the verdict (pure), its spec fields, and the controller acting on it
with fakes around it (the real broker, API server and routers: test_rollback_kube.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from controllerfakes import _ready, make, run
from samples import sample_pipeline

from tspipe import crd, rollback
from tspipe.model import Pipeline, PipelineError
from tspipe.rollback import JUDGE, OPEN, advance, judge, parity_problem

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PREFIXES = {"even": "Even timestamp:", "odd": "Odd timestamp:"}


def offsets(committed, even, odd, dead=(0,)):
    return {"committed": list(committed), "even": list(even), "odd": list(odd), "deadLetter": list(dead)}


# --- judge --------------------------------------------------------------------------------


def test_a_window_where_every_committed_record_reached_the_right_topic_is_stable():
    j = judge(
        offsets([100], [50], [50]),
        offsets([160], [80], [80]),
        {"even": [b"Even timestamp:11/27/26 00:00:02"], "odd": [b'Odd timestamp:"11/27/26 00:00:03"']},
        PREFIXES,
        0.05,
    )
    assert j.ok and j.reason == rollback.CHECKS_PASSED
    assert j.checks == {
        "source": "broker",
        "consumed": 60,
        "routedEven": 30,
        "routedOdd": 30,
        "deadLettered": 0,
        "lost": 0,
        "sampled": 2,
        "misrouted": 0,
        "deadLetterRatio": 0.0,
    }


def test_committed_records_that_reached_no_output_are_lost():
    j = judge(offsets([100], [50], [50]), offsets([160], [60], [60]), {}, PREFIXES, 0.05)
    assert not j.ok and j.reason == rollback.LOST and j.checks["lost"] == 40
    assert "40 of 60 records" in j.message


def test_records_on_the_wrong_topic_are_misrouted_and_the_message_shows_one():
    samples = {
        "even": [b"Even timestamp:11/27/26 00:00:02", b"Even timestamp:11/27/26 00:00:03"],
        "odd": [b"Odd timestamp:11/27/26 00:00:05"],
    }
    j = judge(offsets([0], [0], [0]), offsets([3], [2], [1]), samples, PREFIXES, 0.05)
    assert not j.ok and j.reason == rollback.MISROUTED and j.checks["misrouted"] == 1
    assert "1 of 3 sampled" in j.message and "odd digit" in j.message


def test_a_dead_letter_jump_above_the_ratio_fails_and_below_it_passes():
    start, end = offsets([0], [0], [0], [0]), offsets([100], [45], [45], [10])
    j = judge(start, end, {}, PREFIXES, 0.05)
    assert not j.ok and j.reason == rollback.DEAD_LETTERS and j.checks["deadLetterRatio"] == 0.1
    assert "spec.rollout.maxDeadLetterRatio 0.05" in j.message
    assert judge(start, end, {}, PREFIXES, 0.2).ok


def test_no_traffic_is_stable_and_says_the_data_had_nothing_to_judge():
    j = judge(offsets([5], [3], [2]), offsets([5], [3], [2]), {}, PREFIXES, 0.05)
    assert j.ok and j.reason == rollback.NO_TRAFFIC


def test_offsets_count_new_partitions_from_zero_and_an_unknown_commit_from_the_inputs_end():
    # The input grew from 1 to 2 partitions in the window; the group had not committed on
    # partition 0 when the window opened (-1), where the input then ended at 7.
    start = {**offsets([-1], [10], [10]), "input": [7], "inputStart": [7]}
    j = judge(start, offsets([40, 20], [20, 10], [10, 10]), {}, PREFIXES, 0.05)
    assert j.checks["consumed"] == 33 + 20 and j.checks["routedEven"] == 20 and j.checks["routedOdd"] == 10
    assert j.checks["lost"] == 53 - 30


def test_records_are_counted_in_the_committed_range_so_commit_markers_are_not_lost_records():
    # A transactional upstream: 10 records took 20 offsets (a commit marker after each).
    start, end = offsets([100], [0], [0]), offsets([120], [5], [5])
    assert rollback.commit_ranges(start, end) == {0: (100, 120)}
    assert not judge(start, end, {}, PREFIXES, 0.05).ok, "counting offsets, the markers look lost"
    j = judge(start, end, {}, PREFIXES, 0.05, consumed_records=10)
    assert j.ok and j.checks["consumed"] == 10
    assert rollback.commit_ranges(start, offsets([100 + rollback.COUNT_LIMIT + 1], [0], [0])) is None


def test_the_window_waits_for_the_groups_first_commits_and_a_release_that_never_commits_fails():
    r, need = step(stable_at())
    assert need == OPEN and r["readyAt"] == "2026-01-01T00:00:00Z"
    waiting = {**offsets([-1, 5], [0], [0]), "input": [3, 5], "inputStart": [0, 0]}
    assert rollback.unconsumed(waiting) == [0]
    assert rollback.unconsumed({**waiting, "inputStart": [3, 0]}) == [], "nothing waiting on partition 0"
    r = rollback.opened(r, waiting, T0 + timedelta(seconds=10), 60)
    assert r["reason"] == rollback.WAITING_FOR_COMMITS and "window" not in r and "partition(s) 0" in r["message"]
    r2, need = step(r, at=20)
    assert need == OPEN, "asks again"
    r2 = rollback.opened(r2, waiting, T0 + timedelta(seconds=60), 60)
    assert (r2["verdict"], r2["reason"]) == (rollback.ROLLED_BACK, rollback.NOT_CONSUMING)
    assert "committed nothing on input partition(s) 0 in 60s" in r2["message"]


def test_a_router_that_routes_but_never_commits_in_its_group_is_judged_by_readiness_not_rolled_back():
    # The seed recipe's router has no consumer group: records flow, no commit ever comes.
    r, _ = step(stable_at())
    r = rollback.opened(r, {**offsets([-1], [0], [0]), "input": [3], "inputStart": [0]}, T0, 60, spec={"v": "new"})
    assert r["reason"] == rollback.WAITING_FOR_COMMITS and r["outputsAtReady"] == 0
    r, _ = step(r, at=60)
    flowing = {**offsets([-1], [40], [35]), "input": [80], "inputStart": [0]}
    r = rollback.opened(r, flowing, T0 + timedelta(seconds=60), 60, spec={"v": "new"})
    assert (r["verdict"], r["reason"]) == (rollback.STABLE, rollback.GROUP_UNUSED)
    assert "75 records reached the output topics" in r["message"] and "judged by readiness" in r["message"]
    assert r["stable"]["spec"] == {"v": "new"}, "the attempt is the revision to return to"


@pytest.mark.parametrize(
    ("value", "parity", "problem"),
    [
        (b"Even timestamp:11/27/26 00:00:04", "even", None),
        (b'Even timestamp:"11/27/26 00:00:04" ', "even", None),
        (b"EVEN:11/27/26 00:00:04", "even", None),  # another prefix: the digit still decides
        (b"Odd timestamp:11/27/26 00:00:04", "odd", "even digit"),
        (b"Even timestamp:noon", "even", "no trailing digit"),
        (b"\xff\xfe", "odd", "not UTF-8"),
    ],
)
def test_parity_is_judged_on_the_last_digit_after_the_prefix(value, parity, problem):
    got = parity_problem(value, parity, PREFIXES[parity])
    assert (got is None) if problem is None else (problem in got)


def test_sample_ranges_take_the_newest_records_of_each_partition():
    assert rollback.sample_ranges([10, -1], [2000, 30], per_partition=500) == {0: (1500, 2000), 1: (0, 30)}
    assert rollback.sample_ranges([10], [10]) == {}


# --- the attempt's course -------------------------------------------------------------------


def step(prev, templates="new", phase="Running", reason="AllComponentsReady", at=0, generation=2, verify=60):
    return advance(
        prev,
        generation=generation,
        templates=templates,
        spec={"v": templates},
        phase=phase,
        phase_reason=reason,
        now=T0 + timedelta(seconds=at),
        verify_seconds=verify,
    )


def stable_at(generation=1, templates="old"):
    return {
        "generation": generation,
        "templates": templates,
        "verdict": rollback.STABLE,
        "reason": "ChecksPassed",
        "message": "",
        "time": "2026-01-01T00:00:00Z",
        "stable": {
            "generation": generation,
            "templates": templates,
            "time": "2026-01-01T00:00:00Z",
            "spec": {"v": templates},
        },
    }


def test_an_attempt_waits_for_ready_opens_a_window_and_is_judged_at_its_end():
    r, need = step(stable_at(), phase="Progressing", reason="RollingOut")
    assert (r["verdict"], r["reason"], need) == (rollback.VERIFYING, rollback.WAITING_FOR_READY, None)
    assert r["stable"]["generation"] == 1, "the revision to return to is kept"
    r, need = step(r, at=5)
    assert need == OPEN
    r = rollback.opened(r, offsets([1], [1], [0]), T0 + timedelta(seconds=5), 60)
    assert r["reason"] == rollback.WINDOW_OPEN and r["window"]["start"]["committed"] == [1]
    assert rollback.window_left(r, T0 + timedelta(seconds=20), 60) == 45
    assert step(r, at=64)[1] is None
    r, need = step(r, at=65)
    assert need == JUDGE
    good = rollback.Judgement(True, rollback.CHECKS_PASSED, "fine", {"consumed": 60})
    r = rollback.judged(r, good, T0 + timedelta(seconds=65), {"v": "new"})
    assert r["verdict"] == rollback.STABLE and "window" not in r
    assert r["stable"] == {"generation": 2, "templates": "new", "time": "2026-01-01T00:01:05Z", "spec": {"v": "new"}}
    assert rollback.event(stable_at(), r)[:2] == ("Normal", "RolloutVerified")


def test_a_failed_check_rolls_back_to_the_stable_spec_until_the_pods_change_again():
    r, _ = step(stable_at())
    r = rollback.opened(r, offsets([0], [0], [0]), T0, 60)
    bad = rollback.Judgement(False, rollback.MISROUTED, "3 of 9 sampled records are on the wrong topic", {})
    r = rollback.judged(r, bad, T0 + timedelta(seconds=61), {"v": "new"})
    assert (r["verdict"], r["reason"]) == (rollback.ROLLED_BACK, rollback.MISROUTED)
    assert r["message"].startswith("rolled back to generation 1: 3 of 9")
    assert rollback.event(None, r)[:2] == ("Warning", "RolledBack")
    assert rollback.rollback_spec(r, "new") == {"v": "old"}
    # A scale (a new generation, the same pods) keeps the rollback.
    r2, need = step(r, generation=3, at=100)
    assert r2["verdict"] == rollback.ROLLED_BACK and r2["generation"] == 3 and need is None
    assert rollback.rollback_spec(r2, "new") == {"v": "old"}
    # New pods: a new attempt, the user's spec is rendered again.
    r3, _ = step(r2, templates="newer", generation=4, phase="Progressing", reason="RollingOut")
    assert r3["verdict"] == rollback.VERIFYING and rollback.rollback_spec(r3, "newer") is None
    # Back to the stable revision's pods: stable at once.
    r4, need = step(r2, templates="old", generation=5)
    assert (r4["verdict"], r4["reason"], need) == (rollback.STABLE, rollback.SAME_PODS, None)


def test_the_progress_deadline_fails_the_attempt_and_without_a_stable_revision_it_is_failed():
    r, _ = step(stable_at(), phase="Degraded", reason="ProgressDeadlineExceeded")
    assert (r["verdict"], r["reason"]) == (rollback.ROLLED_BACK, rollback.DEADLINE)
    first, _ = step(None, phase="Degraded", reason="ProgressDeadlineExceeded", generation=1)
    assert first["verdict"] == rollback.FAILED and "no stable revision" in first["message"]
    assert rollback.rollback_spec(first, "new") is None
    assert rollback.event(None, first)[:2] == ("Warning", "RolloutFailed")


# --- spec fields --------------------------------------------------------------------------------


def test_rollout_fields_parse_with_defaults_and_bad_values_name_the_field():
    p = Pipeline.from_resource(sample_pipeline())
    assert (p.auto_rollback, p.verify_seconds, p.max_dead_letter_ratio) == (False, 60, 0.05)
    p = Pipeline.from_resource(
        sample_pipeline(rollout={"autoRollback": True, "verifySeconds": 5, "maxDeadLetterRatio": 0})
    )
    assert (p.auto_rollback, p.verify_seconds, p.max_dead_letter_ratio) == (True, 5, 0.0)
    with pytest.raises(PipelineError, match=r"spec.rollout.maxDeadLetterRatio: must be between 0.0 and 1.0"):
        Pipeline.from_resource(sample_pipeline(rollout={"maxDeadLetterRatio": 1.5}))
    with pytest.raises(PipelineError, match=r"spec.rollout.maxDeadLetterRatio: must be a number"):
        Pipeline.from_resource(sample_pipeline(rollout={"maxDeadLetterRatio": "5%"}))
    schema = crd.spec_schema()["properties"]["rollout"]["properties"]
    assert schema["maxDeadLetterRatio"] == {
        **schema["maxDeadLetterRatio"],
        "type": "number",
        "minimum": 0.0,
        "maximum": 1.0,
        "default": 0.05,
    }
    columns = {c["name"]: c["jsonPath"] for c in crd.crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Rollout"] == ".status.rollout.verdict"


# --- the controller, with fakes ---------------------------------------------------------------------


class Now:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


def _auto_rollback_pipeline():
    now = Now()
    kube, ctl = make(now=now)
    obj = kube.pipelines["timestamps"]
    obj["spec"]["rollout"] = {"autoRollback": True, "verifySeconds": 30}
    return kube, ctl, now


def _settle(kube, ctl):
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    return run(ctl.reconcile("ns", "timestamps"))


def router_image(kube):
    return kube.deps["timestamps-router"]["spec"]["template"]["spec"]["containers"][0]["image"]


def test_the_controller_verifies_then_rolls_a_misrouting_release_back_and_says_so():
    kube, ctl, now = _auto_rollback_pipeline()
    admin, obj = ctl.admin, kube.pipelines["timestamps"]
    t = obj["spec"]["kafka"]["topics"]
    # 1. The first revision: Ready, a window opens with the broker's offsets, then it is stable.
    admin.offsets_value = offsets([0], [0], [0])
    _settle(kube, ctl)
    st = obj["status"]
    assert st["phase"] == "Running" and st["rollout"]["reason"] == rollback.WINDOW_OPEN
    assert {c["type"]: c["status"] for c in st["conditions"]}["RolloutVerified"] == "False"
    now.t += timedelta(seconds=31)
    admin.offsets_value = offsets([10], [5], [5])
    admin.records = {
        t["even"]: [b"Even timestamp:11/27/26 00:00:02"],
        t["odd"]: [b"Odd timestamp:11/27/26 00:00:01"],
        t["input"]: [b"11/27/26 00:00:0%d" % i for i in range(10)],
    }
    run(ctl.reconcile("ns", "timestamps"))
    st = obj["status"]
    assert st["rollout"]["verdict"] == rollback.STABLE and st["rollout"]["stable"]["generation"] == 1
    assert st["rollout"]["checks"]["consumed"] == 10, "the records read in the committed range"
    assert {c["type"]: c["status"] for c in st["conditions"]}["RolloutVerified"] == "True"
    assert ("Normal", "RolloutVerified") in [e[:2] for e in kube.events]
    good_image = router_image(kube)

    # 2. A new router image that misroutes: Ready, window, the sample shows it, rolled back.
    obj["spec"]["router"]["image"] = "ghcr.io/tspipe/router:9.9.9"
    obj["metadata"]["generation"] = 2
    _settle(kube, ctl)
    assert router_image(kube) == "ghcr.io/tspipe/router:9.9.9"
    now.t += timedelta(seconds=31)
    admin.offsets_value = offsets([20], [12], [8])
    admin.records = {t["even"]: [b"Even timestamp:11/27/26 00:00:03"], t["odd"]: []}
    run(ctl.reconcile("ns", "timestamps"))
    assert obj["status"]["rollout"]["verdict"] == rollback.ROLLED_BACK
    assert ("Warning", "RolledBack") in [e[:2] for e in kube.events]
    # The next pass renders the stable revision; the user's spec is untouched.
    _settle(kube, ctl)
    assert router_image(kube) == good_image
    assert obj["spec"]["router"]["image"] == "ghcr.io/tspipe/router:9.9.9"
    st = obj["status"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert st["phase"] == "Degraded" and conds["Degraded"]["reason"] == "RolledBack"
    assert "rolled back to generation 1" in conds["Degraded"]["message"] and "Misrouted" in conds["Degraded"]["message"]
    assert st["rollout"]["checks"]["misrouted"] == 1
    assert st["components"]["router"]["image"] == good_image


def test_without_auto_rollback_nothing_is_judged_and_no_broker_read_is_made():
    kube, ctl = make()
    _settle(kube, ctl)
    assert "rollout" not in kube.pipelines["timestamps"]["status"]
    assert "offsets" not in ctl.admin.calls


def test_an_unreachable_broker_keeps_the_window_open_and_retries_after_a_backoff():
    kube, ctl, now = _auto_rollback_pipeline()
    ctl.admin.offsets_value = offsets([0], [0], [0])
    _settle(kube, ctl)
    now.t += timedelta(seconds=31)

    def unreachable(*args, **kwargs):
        from tspipe.kafka_admin import KafkaUnavailable

        raise KafkaUnavailable("Unable to bootstrap")

    ctl.admin.offsets = unreachable
    ctl.clock.t += 600  # the topics' own recheck is far off
    out = run(ctl.reconcile("ns", "timestamps"))
    r = kube.pipelines["timestamps"]["status"]["rollout"]
    assert r["verdict"] == rollback.VERIFYING and r["window"], "no verdict without the data"
    assert out.retry_after >= 5.0, "not a tight retry loop against a broker that is down"
