"""Lifecycle on the real control plane (kwok pods) and the real broker: rollouts and
their history, the scale subresource (kubectl scale, an HPA), pause/resume with a
drain measured on Kafka, and topic management. The operator is a real subprocess."""

from __future__ import annotations

import json
import uuid

import pytest
from kubehelpers import conditions, generations, no_broker_pipeline, produce, settled, wait_for
from localinfra.proc import free_port
from samples import SAMPLE_NAME as NAME
from samples import sample_pipeline

pytestmark = pytest.mark.kube


def status_of(k, name=NAME):
    return (k.get_or_none("tsp", name) or {}).get("status") or {}


def closed_port() -> int:
    return free_port()  # nothing listens there


# --- rollout -------------------------------------------------------------------------------


def test_rollout_changes_one_app_reports_progress_deadline_and_history(k, operator_factory):
    operator_factory().start()
    k.apply(no_broker_pipeline(rollout={"progressDeadlineSeconds": 10}))
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    gens = generations(k)

    # 1. A new router image: only the router's Deployment changes, and it rolls out.
    k(
        "patch",
        "tsp",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"router": {"image": "ghcr.io/tspipe/router:0.2.0"}}}),
    )
    obj = wait_for(settled(k, "Running"), 120, "Running with the new router image")
    assert obj["status"]["components"]["router"]["image"] == "ghcr.io/tspipe/router:0.2.0"
    after = generations(k)
    assert after["router"] > gens["router"]
    assert {c: g for c, g in after.items() if c != "router"} == {c: g for c, g in gens.items() if c != "router"}
    hist = obj["status"]["history"]
    assert [h["generation"] for h in hist] == [1, 2]
    assert hist[-1]["changed"] == ["router.image"] and hist[-1]["images"]["router"] == "ghcr.io/tspipe/router:0.2.0"

    # 2. A router change whose pods can never be scheduled (more CPU than the node has):
    #    Progressing naming the router, then Degraded/ProgressDeadlineExceeded after 10 s.
    k(
        "patch",
        "tsp",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"router": {"resources": {"requests": {"cpu": "500"}}}}}),
    )
    obj = wait_for(settled(k, "Progressing"), 60, "Progressing")
    assert conditions(obj)["Progressing"]["message"].startswith("rolling out router")
    obj = wait_for(settled(k, "Degraded"), 120, "Degraded after the progress deadline")
    degraded = conditions(obj)["Degraded"]
    assert degraded["reason"] == "ProgressDeadlineExceeded" and "router" in degraded["message"]
    assert conditions(obj)["Ready"]["status"] == "False"
    assert obj["status"]["components"]["router"]["availableReplicas"] == 1, "the old pod keeps serving"
    assert {c: g for c, g in generations(k).items() if c != "router"} == {
        c: g for c, g in gens.items() if c != "router"
    }
    events = k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
    assert any(e["type"] == "Warning" and e["reason"] == "ProgressDeadlineExceeded" for e in events)

    # 3. Rolling back by re-applying the earlier spec: Running again.
    k("patch", "tsp", NAME, "--type=json", "-p", json.dumps([{"op": "remove", "path": "/spec/router/resources"}]))
    obj = wait_for(settled(k, "Running"), 120, "Running after the rollback")
    assert [h["changed"] for h in obj["status"]["history"][-2:]] == [["router.resources.requests"]] * 2


# --- scale ----------------------------------------------------------------------------------


def test_kubectl_scale_and_an_hpa_use_the_scale_subresource(k, operator_factory):
    obj = no_broker_pipeline()
    obj["spec"]["kafka"]["topics"]["partitions"] = 2
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")

    k("scale", f"tsp/{NAME}", "--replicas=3")
    obj = wait_for(
        lambda: (o := settled(k, "Running")()) and o["status"].get("replicas") == 3 and o, 120, "3 router pods"
    )
    assert obj["spec"]["router"]["replicas"] == 3
    assert k.json("deployment", f"{NAME}-router")["spec"]["replicas"] == 3
    warn = conditions(obj)["RouterOverProvisioned"]
    assert warn["status"] == "True" and "sit idle" in warn["message"] and "2 partition" in warn["message"]
    scale = json.loads(k("get", f"tsp/{NAME}", "--subresource=scale", "-o", "json").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "app.kubernetes.io/instance=timestamps,app.kubernetes.io/component=router"
    # The selector finds exactly the router's pods.
    assert len(k.json("pods", "-l", scale["status"]["selector"])["items"]) == 3

    k("scale", f"tsp/{NAME}", "--replicas=2")
    obj = wait_for(
        lambda: (o := settled(k, "Running")()) and o["status"].get("replicas") == 2 and o, 120, "2 router pods"
    )
    assert "RouterOverProvisioned" not in conditions(obj)

    # An HPA targets the pipeline; the controller manager's HPA controller reads its scale.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "router"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "tspipe.io/v1alpha1", "kind": "TimestampPipeline", "name": NAME},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }
    k.apply(hpa)

    def read_scale():
        st = k.json("hpa", "router").get("status") or {}
        able = {c["type"]: c for c in st.get("conditions") or []}.get("AbleToScale") or {}
        return st if able.get("status") == "True" and able.get("reason") == "SucceededGetScale" else None

    st = wait_for(read_scale, 120, "HPA AbleToScale/SucceededGetScale")
    assert st["currentReplicas"] == 2  # read through the scale subresource (no metrics here, so no scaling)


# --- pause ----------------------------------------------------------------------------------


def _unique_topics(obj, tag):
    obj["spec"]["streamName"] = f"s{tag}"
    obj["spec"]["kafka"]["topics"].update(input=f"in-{tag}", even=f"even-{tag}", odd=f"odd-{tag}")
    return obj


def test_pause_stops_the_source_waits_for_the_drain_and_resume_restores(k, operator_factory, kafka_bootstrap):
    from kafka import KafkaConsumer

    tag = uuid.uuid4().hex[:8]
    obj = _unique_topics(sample_pipeline(), tag)
    obj["spec"]["kafka"]["brokers"] = [kafka_bootstrap]
    obj["spec"]["router"]["replicas"] = 2
    obj["spec"]["rollout"] = {"pauseDrainSeconds": 600}  # only the drain itself can end the wait
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    wait_for(lambda: conditions(k.json("tsp", NAME)).get("TopicsReady", {}).get("status") == "True", 60, "topics ready")
    # Records the router (a kwok pod: it consumes nothing) has not processed yet.
    produce(kafka_bootstrap, f"in-{tag}", 7)

    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":true}}')

    def draining():
        st = status_of(k)
        msg = conditions({"status": st}).get("Progressing", {}).get("message", "")
        return st if "7 records left" in msg else None

    wait_for(draining, 90, "pause waiting for the router to drain 7 records")
    reps = {
        n.rsplit("-", 1)[1]: d["spec"]["replicas"]
        for n, d in k.deployments(f"app.kubernetes.io/instance={NAME}").items()
    }
    assert reps == {"time": 0, "router": 2, "evenlogger": 1, "oddlogger": 1}, "source first, the rest keeps running"
    assert status_of(k)["phase"] == "Progressing"

    # The router's consumer group commits everything (what the real router does as it drains).
    consumer = KafkaConsumer(
        f"in-{tag}",
        bootstrap_servers=kafka_bootstrap,
        group_id=f"s{tag}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen = 0
    for _ in range(30):
        seen += sum(len(v) for v in consumer.poll(1000).values())
        if seen >= 7:
            break
    consumer.commit()
    consumer.close()
    assert seen == 7

    obj = wait_for(settled(k, "Paused"), 120, "phase Paused")
    reps = {
        n.rsplit("-", 1)[1]: d["spec"]["replicas"]
        for n, d in k.deployments(f"app.kubernetes.io/instance={NAME}").items()
    }
    assert reps == {"time": 0, "router": 0, "evenlogger": 0, "oddlogger": 0}
    assert not k.json("pods", "-l", f"app.kubernetes.io/instance={NAME}")["items"]
    assert conditions(obj)["Ready"]["status"] == "False" and conditions(obj)["Ready"]["reason"] == "Paused"

    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":false}}')
    obj = wait_for(settled(k, "Running"), 120, "Running after resume")
    reps = {
        n.rsplit("-", 1)[1]: d["spec"]["replicas"]
        for n, d in k.deployments(f"app.kubernetes.io/instance={NAME}").items()
    }
    assert reps == {"time": 1, "router": 2, "evenlogger": 1, "oddlogger": 1}
    assert obj["status"]["components"]["router"]["readyReplicas"] == 2
    reasons = [e["reason"] for e in k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]]
    assert "Paused" in reasons and "Resumed" in reasons


def test_pause_completes_with_no_traffic_and_with_the_router_at_zero(k, operator_factory, kafka_bootstrap):
    """Numaflow's pauses could hang on a drain nobody confirmed: an idle input is drained
    at once, and a router with no replicas has nothing to drain. Neither waits out the bound."""
    tag = uuid.uuid4().hex[:8]
    obj = _unique_topics(sample_pipeline(), tag)
    obj["spec"]["kafka"]["brokers"] = [kafka_bootstrap]
    obj["spec"]["rollout"] = {"pauseDrainSeconds": 600}  # far beyond the waits below
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    wait_for(lambda: conditions(k.json("tsp", NAME)).get("TopicsReady", {}).get("status") == "True", 60, "topics ready")

    # 1. Nothing was ever written: the drain is confirmed by the broker, not timed out.
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":true}}')
    obj = wait_for(settled(k, "Paused"), 120, "Paused with an idle input")
    assert obj["status"]["pause"]["drain"] == "Confirmed", obj["status"]["pause"]
    assert "drain confirmed" in conditions(obj)["Ready"]["message"]

    # 2. Resumed with the router at zero replicas, records arrive that nobody routes.
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":false,"router":{"replicas":0}}}')
    wait_for(settled(k, "Running"), 120, "Running with the router at zero")
    assert "pause" not in status_of(k), "a resume forgets the last pause"
    produce(kafka_bootstrap, f"in-{tag}", 5)
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"paused":true}}')
    obj = wait_for(settled(k, "Paused"), 120, "Paused with the router at zero")
    assert obj["status"]["pause"]["drain"] == "Skipped", obj["status"]["pause"]
    assert "its input waits in the topic" in conditions(obj)["Ready"]["message"]
    reps = {
        n.rsplit("-", 1)[1]: d["spec"]["replicas"]
        for n, d in k.deployments(f"app.kubernetes.io/instance={NAME}").items()
    }
    assert reps == {"time": 0, "router": 0, "evenlogger": 0, "oddlogger": 0}


# --- topics ---------------------------------------------------------------------------------


def _describe(bootstrap, names):
    from tspipe.kafka_admin import TopicAdmin

    return TopicAdmin(10).describe((bootstrap,), names)


def test_topics_created_grown_never_shrunk_and_deleted_only_when_asked(k, operator_factory, kafka_bootstrap):
    tag = uuid.uuid4().hex[:8]
    names = [f"in-{tag}", f"even-{tag}", f"odd-{tag}", f"error.in-{tag}.s{tag}"]
    obj = _unique_topics(sample_pipeline(), tag)
    obj["spec"]["kafka"]["brokers"] = [kafka_bootstrap]
    obj["spec"]["kafka"]["topics"]["partitions"] = 2
    operator_factory("--topic-recheck-seconds", "5").start()
    k.apply(obj)

    def topics_state(want):
        st = status_of(k)
        got = {t["name"]: (t.get("state"), t.get("partitions")) for t in st.get("topics") or []}
        return st if got == want else None

    wait_for(lambda: topics_state(dict.fromkeys(names, ("Ready", 2))), 60, "four topics Ready with 2 partitions")
    assert _describe(kafka_bootstrap, names) == dict.fromkeys(names, (2, 1))

    # Grow.
    k("patch", "tsp", NAME, "--type=merge", "-p", json.dumps({"spec": {"kafka": {"topics": {"partitions": 4}}}}))
    wait_for(lambda: topics_state(dict.fromkeys(names, ("Ready", 4))), 60, "topics grown to 4")
    assert _describe(kafka_bootstrap, names) == dict.fromkeys(names, (4, 1))

    # Shrink: refused, with the reason; the topics keep 4.
    k("patch", "tsp", NAME, "--type=merge", "-p", json.dumps({"spec": {"kafka": {"topics": {"partitions": 3}}}}))
    st = wait_for(lambda: topics_state(dict.fromkeys(names, ("ShrinkRefused", 4))), 60, "shrink refused")
    cond = conditions({"status": st})["TopicsReady"]
    assert cond["status"] == "False" and cond["reason"] == "PartitionShrinkRefused"
    assert "Kafka cannot remove partitions" in cond["message"]
    # The apps roll out the new min-partition-count and run: a topic warning is no outage.
    obj = wait_for(settled(k, "Running"), 120, "Running with the shrink refused")
    assert conditions(obj)["TopicsReady"]["reason"] == "PartitionShrinkRefused"
    assert _describe(kafka_bootstrap, names) == dict.fromkeys(names, (4, 1))

    # Deleting a pipeline keeps its topics by default (and it carries no finalizer).
    assert not k.json("tsp", NAME)["metadata"].get("finalizers")
    k("delete", "tsp", NAME, "--wait=true", "--timeout=60s")
    assert _describe(kafka_bootstrap, names) == dict.fromkeys(names, (4, 1))

    # deleteOnRemoval: a finalizer, and the topics go with the pipeline.
    obj["spec"]["kafka"]["topics"].update(partitions=4, deleteOnRemoval=True)
    k.apply(obj)
    wait_for(
        lambda: k.json("tsp", NAME)["metadata"].get("finalizers") == ["tspipe.io/delete-topics"], 60, "finalizer added"
    )
    wait_for(lambda: topics_state(dict.fromkeys(names, ("Ready", 4))), 60, "topics Ready")
    k("delete", "tsp", NAME, "--wait=true", "--timeout=60s")
    wait_for(lambda: all(v is None for v in _describe(kafka_bootstrap, names).values()), 60, "topics deleted")


def _settings(bootstrap, names, keys):
    """name -> {setting: value} as the broker reports them (read independently of the operator)."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, list(keys)) for n in names], config_filter="all"
        )["topic"]
    finally:
        admin.close()
    return {n: {key: c["value"] for key, c in found[n].items()} for n in names}


def _alter(bootstrap, name, settings):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, settings)], incremental=True)
    finally:
        admin.close()


def test_topic_settings_applied_at_creation_and_put_back_when_they_drift(k, operator_factory, kafka_bootstrap):
    tag = uuid.uuid4().hex[:8]
    names = [f"in-{tag}", f"even-{tag}", f"odd-{tag}", f"error.in-{tag}.s{tag}"]
    keys = ("retention.ms", "compression.type", "segment.ms")
    obj = _unique_topics(sample_pipeline(), tag)
    obj["spec"]["kafka"]["brokers"] = [kafka_bootstrap]
    obj["spec"]["kafka"]["topics"]["config"] = {"retention.ms": 3600000, "compression.type": "zstd"}
    operator_factory("--topic-recheck-seconds", "3").start()
    k.apply(obj)

    def states():
        return {t["name"]: t.get("state") for t in status_of(k).get("topics") or []}

    wait_for(lambda: states() == dict.fromkeys(names, "Ready"), 60, "four topics Ready")
    before = _settings(kafka_bootstrap, names, keys)
    assert {n: (v["retention.ms"], v["compression.type"]) for n, v in before.items()} == dict.fromkeys(
        names, ("3600000", "zstd")
    ), "created with the spec's settings"

    # Someone changes two of the spec's settings and one it does not name: the spec's are put back.
    _alter(kafka_bootstrap, names[0], {"retention.ms": "1000", "compression.type": "gzip", "segment.ms": "600000"})
    wait_for(
        lambda: _settings(kafka_bootstrap, names[:1], keys)[names[0]]["retention.ms"] == "3600000",
        60,
        "retention.ms put back",
    )
    after = _settings(kafka_bootstrap, names, keys)
    assert after[names[0]] == {"retention.ms": "3600000", "compression.type": "zstd", "segment.ms": "600000"}
    assert after[names[1]] == before[names[1]], "an untouched topic is left alone"
    wait_for(lambda: states() == dict.fromkeys(names, "Ready"), 60, "Ready again after the repair")
    assert conditions({"status": status_of(k)})["TopicsReady"]["status"] == "True"

    # A spec change reaches every topic.
    k(
        "patch",
        "tsp",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"kafka": {"topics": {"config": {"retention.ms": 7200000}}}}}),
    )
    wait_for(
        lambda: {v["retention.ms"] for v in _settings(kafka_bootstrap, names, keys).values()} == {"7200000"},
        60,
        "retention.ms 7200000 on all four topics",
    )


def test_unreachable_broker_is_a_condition_and_the_apps_still_deploy(k, operator_factory):
    obj = sample_pipeline()
    obj["spec"]["kafka"]["brokers"] = [f"127.0.0.1:{closed_port()}"]
    op = operator_factory("--kafka-timeout", "2").start()
    k.apply(obj)
    obj = wait_for(settled(k, "Running"), 180, "Running without a broker")
    cond = conditions(obj)["TopicsReady"]
    assert cond["status"] == "False" and cond["reason"] == "BrokerUnreachable" and "did not answer" in cond["message"]
    assert {t["state"] for t in obj["status"]["topics"]} == {"Unknown"}
    assert op.alive()
