"""Unit tests of the lifecycle's pure parts: rollout status, history, scale fields,
pausing, topic planning."""

import copy
from datetime import UTC, datetime, timedelta

import pytest
from samples import sample_pipeline

from tspipe import crd, history, pause, topicconfig, topics
from tspipe.model import Pipeline, PipelineError
from tspipe.render import render_deployments
from tspipe.status import compute_status

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def available(d, n=None):
    """What the API server shows for `d` once its rollout is complete."""
    a = copy.deepcopy(d)
    n = a["spec"]["replicas"] if n is None else n
    a["metadata"]["generation"] = 1
    a["status"] = {
        "observedGeneration": 1,
        "replicas": n,
        "updatedReplicas": n,
        "readyReplicas": n,
        "availableReplicas": n,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
    }
    return a


def conds(status):
    return {c["type"]: c for c in status["conditions"]}


# --- rollout ---------------------------------------------------------------------------


def test_image_change_renders_only_that_deployment_differently():
    old = {d["metadata"]["name"]: d for d in render_deployments(sample_pipeline(stored=True))}
    obj = sample_pipeline(stored=True)
    obj["spec"]["router"]["image"] = "ghcr.io/tspipe/router:0.2.0"
    obj["spec"]["evenLogger"]["properties"] = {"log.consumer.x": "1"}
    new = {d["metadata"]["name"]: d for d in render_deployments(obj)}
    changed = sorted(n for n in old if old[n] != new[n])
    assert changed == ["timestamps-evenlogger", "timestamps-router"]


def test_progress_deadline_comes_from_the_spec():
    obj = sample_pipeline(stored=True, rollout={"progressDeadlineSeconds": 15})
    assert {d["spec"]["progressDeadlineSeconds"] for d in render_deployments(obj)} == {15}
    assert {d["spec"]["progressDeadlineSeconds"] for d in render_deployments(sample_pipeline(stored=True))} == {600}


def test_rolling_component_is_named_then_ready_then_deadline_is_degraded():
    obj = sample_pipeline(stored=True)
    deps = [available(d) for d in render_deployments(obj)]
    assert compute_status(obj, deps, NOW)["phase"] == "Running"
    # The router's new ReplicaSet has 0 of 1 updated pods available; the old pod still runs.
    rolling = copy.deepcopy(deps)
    r = rolling[1]
    r["metadata"]["generation"] = 2
    r["status"].update(observedGeneration=2, replicas=2, updatedReplicas=1, availableReplicas=1)
    r["status"]["conditions"] = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
    s = compute_status(obj, rolling, NOW)
    assert s["phase"] == "Progressing" and s["readyComponents"] == "3/4"
    assert conds(s)["Progressing"]["status"] == "True"
    assert conds(s)["Progressing"]["message"].startswith("rolling out router (1/1 updated")
    assert "time" not in conds(s)["Progressing"]["message"]
    # The deadline passes.
    r["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    s = compute_status(obj, rolling, NOW)
    assert s["phase"] == "Degraded"
    assert conds(s)["Degraded"]["reason"] == "ProgressDeadlineExceeded"
    assert "router" in conds(s)["Degraded"]["message"] and conds(s)["Ready"]["status"] == "False"
    # The new ReplicaSet becomes available: Ready again.
    done = copy.deepcopy(rolling)
    done[1]["status"].update(replicas=1, updatedReplicas=1, availableReplicas=1, readyReplicas=1)
    done[1]["status"]["conditions"] = [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
    s = compute_status(obj, done, NOW)
    assert s["phase"] == "Running" and conds(s)["Ready"]["status"] == "True"


def test_history_records_generation_time_images_and_changed_fields():
    obj = sample_pipeline(stored=True)
    deps = [available(d) for d in render_deployments(obj)]
    s1 = compute_status(obj, deps, NOW)
    (h1,) = s1["history"]
    assert h1 == {
        "generation": 1,
        "time": "2026-11-27T12:00:00Z",
        "changed": [],
        "images": {
            "time": "springcloudstream/time-source-kafka:5.1.1",
            "router": "ghcr.io/tspipe/router:0.1.0",
            "evenLogger": "springcloudstream/log-sink-kafka:5.1.1",
            "oddLogger": "springcloudstream/log-sink-kafka:5.1.1",
        },
    }
    obj["status"] = s1
    # Same generation: history unchanged, whatever the time.
    assert compute_status(obj, deps, NOW + timedelta(hours=1))["history"] == [h1]
    obj2 = copy.deepcopy(obj)
    obj2["metadata"]["generation"] = 2
    obj2["spec"]["router"]["image"] = "ghcr.io/tspipe/router:0.2.0"
    obj2["spec"]["router"]["properties"] = {"tsrouter.batch": "5"}
    s2 = compute_status(obj2, deps, NOW + timedelta(minutes=5))
    assert [h["generation"] for h in s2["history"]] == [1, 2]
    assert s2["history"][1]["changed"] == ["router.image", "router.properties.tsrouter.batch"]
    assert s2["history"][1]["images"]["router"] == "ghcr.io/tspipe/router:0.2.0"
    # Bounded.
    cur = obj2 | {"status": s2}
    for g in range(3, 12):
        cur = copy.deepcopy(cur)
        cur["metadata"]["generation"] = g
        cur["spec"]["time"]["fixedDelaySeconds"] = g
        cur["status"] = compute_status(cur, deps, NOW)
    assert [h["generation"] for h in cur["status"]["history"]] == list(range(7, 12))
    assert cur["status"]["history"][-1]["changed"] == ["time.fixedDelaySeconds"]


def test_spec_digest_paths():
    d = history.spec_digest({"a": {"b": {"c": {"d": 1}}, "e": 2}, "f": []})
    assert set(d) == {"a.b.c", "a.e", "f"}


# --- scale ------------------------------------------------------------------------------


def test_scale_fields_and_over_provisioned_router():
    obj = sample_pipeline(stored=True)
    obj["spec"]["router"]["replicas"] = 3
    obj["spec"]["kafka"]["topics"]["partitions"] = 2
    deps = [available(d) for d in render_deployments(obj)]
    s = compute_status(obj, deps, NOW)
    assert s["replicas"] == 3
    assert s["selector"] == "app.kubernetes.io/instance=timestamps,app.kubernetes.io/component=router"
    warn = conds(s)["RouterOverProvisioned"]
    assert warn["status"] == "True" and "1 consumer(s) of the group sit idle" in warn["message"]
    assert s["phase"] == "Running"  # a warning, not a failure
    obj["spec"]["kafka"]["topics"]["partitions"] = 3
    assert "RouterOverProvisioned" not in conds(compute_status(obj, deps, NOW))
    # The broker's actual partition count wins over the declared one.
    seen = {
        "ready": True,
        "reason": "TopicsReady",
        "message": "",
        "topics": [{"role": "input", "name": "timeDest", "state": "Ready", "partitions": 1, "replicationFactor": 1}],
    }
    assert conds(compute_status(obj, deps, NOW, topics=seen))["RouterOverProvisioned"]["status"] == "True"


# --- pause -------------------------------------------------------------------------------


def _actual(obj, replicas, pods=None):
    out = {}
    for d in render_deployments(obj):
        f = {"time": "time", "router": "router", "evenlogger": "evenLogger", "oddlogger": "oddLogger"}[
            d["metadata"]["labels"]["app.kubernetes.io/component"]
        ]
        a = available(d, (pods or replicas)[f])
        a["spec"]["replicas"] = replicas[f]
        out[f] = a
    return out


def test_pause_stops_the_source_first_then_drains_then_the_rest():
    obj = sample_pipeline(stored=True, paused=True, rollout={"pauseDrainSeconds": 30})
    obj["spec"]["router"]["replicas"] = 2
    p = Pipeline.from_resource(obj)
    running = {"time": 1, "router": 2, "evenLogger": 1, "oddLogger": 1}
    st = pause.pause_state(p, _actual(obj, running), NOW)
    assert st.stage == pause.STOPPING_SOURCE and st.replicas == {**running, "time": 0}
    # Source scaled down but its pod still terminating.
    st = pause.pause_state(p, _actual(obj, {**running, "time": 0}, {**running, "time": 1}), NOW)
    assert st.stage == pause.STOPPING_SOURCE and st.replicas["router"] == 2
    # Source gone: measure the lag.
    actual = _actual(obj, {**running, "time": 0})
    st = pause.pause_state(p, actual, NOW)
    assert st.stage == pause.DRAINING and st.needs_lag and st.source_stopped_at == "2026-11-27T12:00:00Z"
    st = pause.pause_state(p, actual, NOW, source_stopped_at=st.source_stopped_at, lag=42)
    assert st.stage == pause.DRAINING and not st.needs_lag and st.replicas["router"] == 2
    assert "42 records left" in st.message
    # Drained: the router and loggers go to zero.
    st = pause.pause_state(p, actual, NOW + timedelta(seconds=3), source_stopped_at=st.source_stopped_at, lag=0)
    assert st.stage == pause.STOPPING and st.replicas == {"time": 0, "router": 0, "evenLogger": 0, "oddLogger": 0}
    # Not drained, but the bound passed: zero anyway (durable groups resume later).
    st2 = pause.pause_state(p, actual, NOW + timedelta(seconds=31), source_stopped_at="2026-11-27T12:00:00Z", lag=9)
    assert st2.replicas == st.replicas
    # Everything at zero: Paused.
    zero = {"time": 0, "router": 0, "evenLogger": 0, "oddLogger": 0}
    st = pause.pause_state(p, _actual(obj, zero), NOW, source_stopped_at="2026-11-27T12:00:00Z")
    assert st.stage == pause.PAUSED
    s = compute_status(obj, list(_actual(obj, zero).values()), NOW, pause=st)
    assert s["phase"] == "Paused" and conds(s)["Ready"]["reason"] == "Paused"
    assert s["pause"] == {"sourceStoppedAt": "2026-11-27T12:00:00Z"}, "no drain known: none claimed"
    # Un-pause: the spec's counts come back, in one step.
    obj["spec"]["paused"] = False
    st = pause.pause_state(Pipeline.from_resource(obj), _actual(obj, zero), NOW)
    assert st.stage == pause.RUNNING and st.replicas == running
    assert render_deployments(obj, st.replicas)[1]["spec"]["replicas"] == 2


def test_pause_says_how_the_drain_ended_and_keeps_it():
    obj = sample_pipeline(stored=True, paused=True, rollout={"pauseDrainSeconds": 30})
    p = Pipeline.from_resource(obj)
    stopped = {"time": 0, "router": 1, "evenLogger": 1, "oddLogger": 1}
    actual = _actual(obj, stopped)
    at = "2026-11-27T12:00:00Z"
    # Zero traffic: the group has no lag at once, so the drain is confirmed, not waited out.
    st = pause.pause_state(p, actual, NOW, source_stopped_at=at, lag=0)
    assert (st.stage, st.drain, st.records_left) == (pause.STOPPING, pause.DRAIN_CONFIRMED, None)
    assert "drain confirmed" in st.message
    # The bound passed with records left: timed out, and how many.
    st = pause.pause_state(p, actual, NOW + timedelta(seconds=31), source_stopped_at=at, lag=9)
    assert (st.stage, st.drain, st.records_left) == (pause.STOPPING, pause.DRAIN_TIMED_OUT, 9)
    assert "9 records wait in the input topic" in st.message
    # Kept from status on the next passes, through to Paused (no new lag measured).
    zero = {"time": 0, "router": 0, "evenLogger": 0, "oddLogger": 0}
    st = pause.pause_state(
        p, _actual(obj, zero), NOW + timedelta(seconds=40), source_stopped_at=at, drain=(st.drain, st.records_left)
    )
    assert (st.stage, st.drain, st.records_left) == (pause.PAUSED, pause.DRAIN_TIMED_OUT, 9)
    s = compute_status(obj, list(_actual(obj, zero).values()), NOW, pause=st)
    assert s["pause"] == {"sourceStoppedAt": at, "drain": "TimedOut", "recordsLeft": 9}
    assert "timed out" in conds(s)["Ready"]["message"]


def test_pausing_a_router_already_at_zero_completes_without_waiting_for_a_drain():
    obj = sample_pipeline(stored=True, paused=True, rollout={"pauseDrainSeconds": 600})
    obj["spec"]["router"]["replicas"] = 0
    p = Pipeline.from_resource(obj)
    actual = _actual(obj, {"time": 0, "router": 0, "evenLogger": 1, "oddLogger": 1})
    # Lag unknown (or any): nobody can drain it, so no waiting on the bound.
    st = pause.pause_state(p, actual, NOW, source_stopped_at="2026-11-27T12:00:00Z")
    assert not st.needs_lag
    assert (st.stage, st.drain) == (pause.STOPPING, pause.DRAIN_SKIPPED)
    assert st.replicas == {"time": 0, "router": 0, "evenLogger": 0, "oddLogger": 0}
    st = pause.pause_state(
        p, _actual(obj, st.replicas), NOW, source_stopped_at="2026-11-27T12:00:00Z", drain=(st.drain, None)
    )
    assert (st.stage, st.drain) == (pause.PAUSED, pause.DRAIN_SKIPPED)


def test_pausing_status_is_progressing_with_the_stage():
    obj = sample_pipeline(stored=True, paused=True)
    p = Pipeline.from_resource(obj)
    running = {"time": 1, "router": 1, "evenLogger": 1, "oddLogger": 1}
    actual = _actual(obj, running)
    st = pause.pause_state(p, actual, NOW)
    s = compute_status(obj, list(actual.values()), NOW, pause=st)
    assert s["phase"] == "Progressing" and "stopping the time source" in conds(s)["Progressing"]["message"]
    assert conds(s)["Progressing"]["reason"] == "StoppingSource"


def test_downstream_at_zero_stays_at_zero_while_paused():
    obj = sample_pipeline(stored=True, paused=True)
    p = Pipeline.from_resource(obj)
    # Operator restarted mid-pause: router already 0, time has a pod again (hand scaled).
    st = pause.pause_state(p, _actual(obj, {"time": 1, "router": 0, "evenLogger": 0, "oddLogger": 0}), NOW)
    assert st.replicas == {"time": 0, "router": 0, "evenLogger": 0, "oddLogger": 0}


# --- topics -------------------------------------------------------------------------------


def test_desired_topics_include_the_dead_letter_topic():
    p = Pipeline.from_resource(sample_pipeline(stored=True))
    got = {(t.role, t.name, t.partitions, t.replication_factor) for t in topics.desired_topics(p)}
    assert got == {
        ("input", "timeDest", 1, 1),
        ("even", "evenDest", 1, 1),
        ("odd", "oddDest", 1, 1),
        ("deadLetter", "error.timeDest.timeStampStream", 1, 1),
    }


def test_topic_plan_creates_grows_and_refuses_to_shrink():
    d = [
        topics.DesiredTopic("input", "in", 4, 1),
        topics.DesiredTopic("even", "ev", 4, 1),
        topics.DesiredTopic("odd", "od", 4, 1),
        topics.DesiredTopic("deadLetter", "dl", 4, 1),
    ]
    actual = {"in": None, "ev": (2, 1), "od": (6, 1), "dl": (4, 3)}
    plan = topics.plan_topics(d, actual)
    assert plan.create == {"in": (4, 1)} and plan.grow == {"ev": 4}
    assert plan.refused["od"][0] == topics.SHRINK_REFUSED and plan.refused["dl"][0] == topics.RF_MISMATCH
    st = topics.topic_status(d, actual, plan)
    assert not st["ready"] and st["reason"] == "PartitionShrinkRefused"
    assert "od has 6 partitions, the spec asks for 4: Kafka cannot remove partitions" in st["message"]
    states = {t["name"]: t["state"] for t in st["topics"]}
    assert states == {"in": "Created", "ev": "Grown", "od": "ShrinkRefused", "dl": "ReplicationFactorMismatch"}
    assert {t["name"]: t.get("partitions") for t in st["topics"]} == {"in": 4, "ev": 4, "od": 6, "dl": 4}
    ok = topics.topic_status(d, dict.fromkeys(actual, (4, 1)), topics.plan_topics(d, dict.fromkeys(actual, (4, 1))))
    assert ok["ready"] and ok["reason"] == "TopicsReady"


def test_topic_settings_parse_to_the_brokers_strings_and_bad_ones_name_the_key():
    p = Pipeline.from_resource(
        sample_pipeline(
            stored=True,
            kafka={
                "brokers": ["k:9092"],
                "topics": {
                    "replicationFactor": 3,
                    "config": {
                        "retention.ms": 604800000,
                        "min.insync.replicas": 2,
                        "compression.type": "zstd",
                        "unclean.leader.election.enable": False,
                    },
                },
            },
        )
    )
    assert p.kafka.topics.config == (
        ("compression.type", "zstd"),
        ("min.insync.replicas", "2"),
        ("retention.ms", "604800000"),
        ("unclean.leader.election.enable", "false"),
    )
    assert {t.config for t in topics.desired_topics(p)} == {p.kafka.topics.config}, "every managed topic"
    schema = crd.spec_schema()["properties"]["kafka"]["properties"]["topics"]
    assert set(schema["properties"]["config"]["properties"]) == set(topicconfig.BY_KEY)
    assert schema["properties"]["config"]["properties"]["retention.ms"]["minimum"] == -1
    assert any("min__dot__insync__dot__replicas" in r["rule"] for r in schema["x-kubernetes-validations"])


@pytest.mark.parametrize(
    "config, message",
    [
        ({"retention.msx": 1}, "spec.kafka.topics.config.retention.msx: not a supported topic setting"),
        ({"retention.ms": -2}, "spec.kafka.topics.config.retention.ms: must be between -1"),
        ({"retention.ms": "7d"}, "spec.kafka.topics.config.retention.ms: must be an integer"),
        ({"cleanup.policy": "compact"}, "spec.kafka.topics.config.cleanup.policy: must be one of delete"),
        ({"unclean.leader.election.enable": "no"}, "must be a boolean"),
        ({"min.insync.replicas": 4}, "spec.kafka.topics.config.min.insync.replicas: must not exceed"),
    ],
)
def test_bad_topic_settings_name_the_key(config, message):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(
            sample_pipeline(
                stored=True, kafka={"brokers": ["k:9092"], "topics": {"replicationFactor": 3, "config": config}}
            )
        )
    assert message in str(err.value)


def test_topic_plan_sets_settings_at_creation_and_puts_back_only_drifted_ones():
    cfg = (("min.insync.replicas", "2"), ("retention.ms", "3600000"))
    d = [
        topics.DesiredTopic("input", "in", 1, 3, cfg),
        topics.DesiredTopic("even", "ev", 1, 3, cfg),
        topics.DesiredTopic("odd", "od", 1, 3, cfg),
    ]
    actual = {"in": None, "ev": (1, 3), "od": (1, 3)}
    # ev as asked; od's retention changed by hand (and a setting the spec does not name, which stays).
    configs = {
        "ev": {"min.insync.replicas": "2", "retention.ms": "3600000"},
        "od": {"min.insync.replicas": "2", "retention.ms": "1000", "segment.ms": "5"},
    }
    plan = topics.plan_topics(d, actual, configs)
    assert plan.create == {"in": (1, 3)}
    assert plan.configure == {
        "in": {"min.insync.replicas": "2", "retention.ms": "3600000"},
        "od": {"retention.ms": "3600000"},
    }
    st = topics.topic_status(d, actual, plan)
    assert st["ready"] and {t["name"]: t["state"] for t in st["topics"]} == {
        "in": "Created",
        "ev": "Ready",
        "od": "Reconfigured",
    }
    assert "retention.ms=3600000" in next(t for t in st["topics"] if t["name"] == "od")["message"]
    # Settings not read (None): nothing to put back; a failed change is TopicChangeFailed.
    assert topics.plan_topics(d, actual).configure == {"in": dict(cfg)}
    failed = topics.topic_status(d, actual, plan, {"od": "InvalidConfigurationError"})
    assert not failed["ready"] and failed["reason"] == "TopicChangeFailed"


def test_unreachable_message_is_stable():
    p = Pipeline.from_resource(sample_pipeline(stored=True))
    d = topics.desired_topics(p)
    a = topics.unreachable_status(d, p.kafka.brokers, "no broker answered")
    assert a == topics.unreachable_status(d, p.kafka.brokers, "no broker answered")
    assert a["reason"] == "BrokerUnreachable" and "kafka.kafka.svc:9092" in a["message"]
    s = compute_status(sample_pipeline(stored=True), [], NOW, topics=a)
    assert conds(s)["TopicsReady"]["status"] == "False" and s["phase"] == "Pending"


# --- peering ------------------------------------------------------------------------------


def test_standby_when_a_live_peer_outranks_us():
    from tspipe.peering import is_standby

    def peer(prio, seen="2026-11-27T11:59:55+00:00", lifetime=60):
        return {"priority": prio, "lastseen": seen, "lifetime": lifetime}

    obj = {"status": {"me": peer(100), "other": peer(200)}}
    assert is_standby(obj, 100, NOW) and not is_standby(obj, 200, NOW)
    # The higher one's entry lapsed (killed without a goodbye): we are active.
    obj["status"]["other"] = peer(200, seen="2026-11-27T11:58:00+00:00")
    assert not is_standby(obj, 100, NOW)
    assert is_standby({"status": {"a": peer(5), "b": peer(5)}}, 5, NOW), "a tie pauses everyone in kopf"
    assert not is_standby(None, 5, NOW) and not is_standby({"status": {"me": peer(5)}}, 5, NOW)
