"""The lag autoscaler: its decision (pure), its spec fields, and the controller acting on
it with fakes around it (the real broker and API server: test_autoscale_kube.py)."""

from __future__ import annotations

import pytest
from controllerfakes import _ready, make, run
from samples import sample_pipeline

from tspipe import autoscale, crd
from tspipe.autoscale import Samples, decide, recommend
from tspipe.model import Autoscaling, Pipeline, PipelineError


def policy(**kw) -> Autoscaling:
    base = {
        "mode": "Enforce",
        "min_replicas": 1,
        "max_replicas": 8,
        "target_lag_per_replica": 1000,
        "scale_up_stabilization_seconds": 30,
        "scale_down_stabilization_seconds": 300,
    }
    return Autoscaling(**{**base, **kw})


def test_recommendation_is_lag_over_target_within_bounds_and_partitions():
    a = policy()
    assert recommend(a, 0, 4) == (1, False), "no lag: the minimum"
    assert recommend(a, 2500, 4) == (3, False)
    assert recommend(a, 9000, 4) == (4, True), "the partitions hold it down: say so"
    assert recommend(a, 90000, 16) == (8, False), "maxReplicas holds it down: nothing to say"
    assert recommend(policy(min_replicas=3), 0, 2) == (3, False), "minReplicas is the user's word"


def test_scale_up_waits_for_the_window_to_agree_then_goes_straight_to_the_need():
    a = policy()
    s, t = Samples(), 0.0
    d = decide(a, 1, 5000, 8, t, s)
    assert (d.replicas, d.recommended) == (1, 5), "one sample is not agreement"
    assert "waiting" in d.reason
    for t in (15.0, 29.0):
        d = decide(a, 1, 5000, 8, t, d.samples)
        assert d.replicas == 1
    d = decide(a, 1, 5000, 8, 30.5, d.samples)  # every sample in the last 30 s says 5
    assert d.replicas == 5


def test_a_dip_within_the_up_window_holds_the_scale_up_back():
    a = policy()
    d = decide(a, 1, 5000, 8, 0.0, Samples())
    d = decide(a, 1, 1500, 8, 10.0, d.samples)  # lag dipped: 2
    d = decide(a, 1, 5000, 8, 35.0, d.samples)  # the window (5..35) holds 2 and 5: up to 2
    assert d.replicas == 2


def test_scale_down_only_after_a_whole_window_of_lower_recommendations():
    a = policy(scale_up_stabilization_seconds=0, scale_down_stabilization_seconds=300)
    d = decide(a, 4, 0, 8, 0.0, Samples())
    assert d.replicas == 4, "after a (re)start nothing scales down before a whole window was seen"
    d = decide(a, 4, 0, 8, 299.0, d.samples)
    assert d.replicas == 4
    d = decide(a, 4, 0, 8, 300.0, d.samples)
    assert d.replicas == 1
    # A burst inside the window keeps the count up for a window after it.
    d = decide(a, 1, 3000, 8, 310.0, d.samples)
    assert d.replicas == 3, "no up-window: at once"
    d = decide(a, 3, 0, 8, 320.0, d.samples)
    d = decide(a, 3, 0, 8, 600.0, d.samples)
    assert d.replicas == 3
    d = decide(a, 3, 0, 8, 611.0, d.samples)
    assert d.replicas == 1


def test_a_count_outside_new_bounds_is_corrected_at_once():
    d = decide(policy(max_replicas=2), 5, 0, 8, 0.0, Samples())
    assert d.replicas == 2
    d = decide(policy(min_replicas=3), 1, 0, 8, 0.0, Samples())
    assert d.replicas == 3


# --- the spec -------------------------------------------------------------------------------


def test_autoscaling_spec_defaults_and_refusals_name_the_field():
    obj = sample_pipeline()
    obj["spec"]["router"]["autoscaling"] = {"maxReplicas": 4}
    a = Pipeline.from_resource(obj).router.autoscaling
    assert a == policy(max_replicas=4)
    obj["spec"]["router"]["autoscaling"] = {"minReplicas": 5, "maxReplicas": 4}
    with pytest.raises(PipelineError) as e:
        Pipeline.from_resource(obj)
    assert e.value.field == "spec.router.autoscaling.minReplicas"
    obj["spec"]["router"]["autoscaling"] = {"minReplicas": 2}
    with pytest.raises(PipelineError) as e:
        Pipeline.from_resource(obj)
    assert e.value.field == "spec.router.autoscaling.maxReplicas" and "required" in str(e.value)
    obj["spec"]["router"]["autoscaling"] = {"maxReplicas": 4, "mode": "Auto"}
    with pytest.raises(PipelineError, match="Enforce, Recommend"):
        Pipeline.from_resource(obj)
    schema = crd.spec_schema()["properties"]["router"]["properties"]["autoscaling"]
    assert schema["required"] == ["maxReplicas"] and "default" not in schema["properties"]["maxReplicas"]
    assert "minReplicas <= self.maxReplicas" in schema["x-kubernetes-validations"][0]["rule"]


# --- the controller -------------------------------------------------------------------------


def _autoscaled(mode="Enforce", **kw):
    kube, ctl = make()
    pipe = kube.pipelines["timestamps"]
    pipe["spec"]["router"]["autoscaling"] = {
        "mode": mode,
        "maxReplicas": 4,
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 60,
        **kw,
    }
    ctl.admin.partitions = 3
    return kube, ctl, pipe


def _conds(pipe):
    return {c["type"]: c for c in pipe["status"]["conditions"]}


def test_enforce_scales_the_router_on_lag_and_back_and_says_why():
    kube, ctl, pipe = _autoscaled()
    ctl.admin.lag_value = 10_000
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.retry_after is not None and out.retry_after <= 15, "lag is sampled on a timer"
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 3, "the need (10), held to 3 partitions"
    st = pipe["status"]
    assert st["autoscaling"]["desiredReplicas"] == 3 and st["autoscaling"]["lag"] == 10_000
    assert st["autoscaling"]["lastScale"]["from"] == 1 and st["autoscaling"]["lastScale"]["to"] == 3
    assert _conds(pipe)["Autoscaling"]["reason"] == "Enforcing"
    assert _conds(pipe)["ScalingLimitedByPartitions"]["status"] == "True"
    assert [e for e in kube.events if e[1] == "Autoscaled"] == [
        ("Normal", "Autoscaled", f"router scaled 1 -> 3: {st['autoscaling']['lastScale']['why']}")
    ]
    assert pipe["spec"]["router"].get("replicas", 1) == 1, "the user's spec is not written"
    # Drained: back to one once the down window has passed.
    ctl.admin.lag_value = 0
    ctl.clock.t += 30
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 3
    ctl.clock.t += 61
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 1
    assert len([e for e in kube.events if e[1] == "Autoscaled"]) == 2


def test_recommend_reports_once_and_changes_nothing():
    kube, ctl, pipe = _autoscaled(mode="Recommend")
    ctl.admin.lag_value = 2500
    for _ in range(3):
        run(ctl.reconcile("ns", "timestamps"))
        _ready(kube)
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 1
    assert pipe["status"]["autoscaling"]["desiredReplicas"] == 3
    assert _conds(pipe)["Autoscaling"]["reason"] == "Recommending"
    assert [e[1] for e in kube.events].count("AutoscaleRecommended") == 1


def test_an_hpa_on_the_pipeline_makes_the_autoscaler_stand_aside():
    kube, ctl, pipe = _autoscaled()
    kube.hpas = [
        {
            "metadata": {"name": "mine"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "tspipe.io/v1alpha1",
                    "kind": "TimestampPipeline",
                    "name": "timestamps",
                }
            },
        }
    ]
    ctl.admin.lag_value = 10_000
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 1
    cond = _conds(pipe)["Autoscaling"]
    assert (cond["status"], cond["reason"]) == ("False", autoscale.EXTERNAL_AUTOSCALER)
    assert "HorizontalPodAutoscaler mine" in cond["message"]
    assert "lag" not in ctl.admin.calls, "standing aside: no lag read either"
    # An HPA on something else does not count.
    kube.hpas[0]["spec"]["scaleTargetRef"]["name"] = "other"
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 3


def test_an_unreachable_broker_keeps_the_count_and_says_so():
    kube, ctl, pipe = _autoscaled()
    ctl.admin.lag_value = 10_000
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    ctl.admin.down = True
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 3
    assert _conds(pipe)["Autoscaling"]["reason"] == autoscale.LAG_UNKNOWN


def test_a_group_without_commits_is_not_scaled_on():
    g = autoscale.GroupLag(lag=5000, partitions=3, committed=0)
    why = autoscale.group_unused(g, "timeStampStream", "timeDest", 1)
    assert "consumer group timeStampStream has no committed offset on timeDest (5000 records there)" in why
    assert "does not use the consumer group it is given" in why and why.endswith("keeping 1 replica(s)")
    assert autoscale.group_unused(autoscale.GroupLag(5000, 3, 1), "g", "t", 1) is None, "one partition committed"
    assert autoscale.group_unused(autoscale.GroupLag(0, 3, 0), "g", "t", 1) is None, "nothing waits: nothing to say"


def test_a_router_that_does_not_commit_in_its_group_keeps_its_count_and_the_condition_says_why():
    """A router that ignores the group it is given (the seed recipe's): the group's lag only
    grows, and more replicas of such a router each route every record."""
    kube, ctl, pipe = _autoscaled(growPartitions=True)
    ctl.admin.lag_value = 10_000
    ctl.admin.committed_partitions = 0
    for _ in range(3):
        ctl.clock.t += 20
        run(ctl.reconcile("ns", "timestamps"))
        _ready(kube)
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 1
    cond = _conds(pipe)["Autoscaling"]
    assert (cond["status"], cond["reason"]) == ("False", autoscale.NO_GROUP_COMMITS)
    assert "consumer group timeStampStream has no committed offset on timeDest (10000 records there)" in cond["message"]
    assert pipe["status"]["autoscaling"]["desiredReplicas"] == 1
    assert "partitionsGrownTo" not in pipe["status"]["autoscaling"], "nor are the topics grown for it"
    assert not [e for e in kube.events if e[1] in ("Autoscaled", "PartitionsGrown")]
    assert _conds(pipe).get("ScalingLimitedByPartitions", {}).get("status") != "True"
    # Once the group commits (a router that uses it), the lag drives the replicas again.
    ctl.admin.committed_partitions = 3
    for _ in range(3):
        ctl.clock.t += 20
        run(ctl.reconcile("ns", "timestamps"))
        _ready(kube)
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 3
    assert _conds(pipe)["Autoscaling"]["reason"] == autoscale.ENFORCING


# --- growPartitions -------------------------------------------------------------------------


def test_partitions_grow_only_at_the_cap_with_the_window_agreeing_and_in_bounded_steps():
    a = policy(grow_partitions=True, scale_up_stabilization_seconds=30)
    d = decide(a, 2, 9000, 2, 0.0, Samples())
    assert d.grow_partitions_to is None, "one sample is not agreement"
    d = decide(a, 2, 9000, 2, 30.0, d.samples)
    assert d.grow_partitions_to == 4 and d.replicas == 2, "doubled, then the replicas follow"
    assert "growing the topics to 4" in d.reason
    d = decide(a, 4, 9000, 7, 60.0, d.samples)  # (a topic grown by hand to 7)
    assert d.grow_partitions_to is None, "the router is not at the cap yet: scale first"
    assert decide(a, 7, 90000, 7, 0.0, Samples(since=-100.0)).grow_partitions_to == 8, "never beyond maxReplicas"
    assert decide(policy(), 2, 9000, 2, 0.0, Samples(since=-100.0)).grow_partitions_to is None, "off by default"


def test_the_controller_grows_the_topics_then_scales():
    kube, ctl, pipe = _autoscaled(growPartitions=True)
    ctl.admin.partitions = 1
    ctl.admin.lag_value = 10_000

    def passes(n):
        for _ in range(n):
            ctl.clock.t += 1
            run(ctl.reconcile("ns", "timestamps"))
            _ready(kube)
            # The broker's view: the input topic as the topics phase left it.
            ctl.admin.partitions = ctl.admin.topics["timeDest"][0]

    passes(1)
    assert pipe["status"]["autoscaling"]["partitionsGrownTo"] == 2
    assert [e[1] for e in kube.events].count("PartitionsGrown") == 1
    passes(1)  # the topics phase grows every topic to 2
    assert {parts for parts, _ in ctl.admin.topics.values()} == {2}
    passes(6)
    assert ctl.admin.partitions == 4 and kube.deps["timestamps-router"]["spec"]["replicas"] == 4
    assert pipe["status"]["autoscaling"]["partitionsGrownTo"] == 4, "maxReplicas is 4: no further"
    assert [e[1] for e in kube.events].count("PartitionsGrown") == 2
    topics = {c["type"]: c for c in pipe["status"]["conditions"]}["TopicsReady"]
    assert topics["status"] == "True", "grown topics are not a shrink the spec asks for"
