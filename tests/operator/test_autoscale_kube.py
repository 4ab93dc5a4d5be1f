"""The lag autoscaler on the real control plane and the real broker. The router pods are
kwok's (they consume nothing), so the test makes the lag itself: it produces a backlog
into the input topic, and drains it by committing the router group's offsets, which is
what the real router's consumer group does. The group first commits the input's start,
as a router that uses its group does on its first poll: the autoscaler scales only on the
lag of a group that commits (another router image may ignore the group it is given)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from kubehelpers import conditions, produce, settled, wait_for
from samples import SAMPLE_NAME as NAME
from samples import sample_pipeline

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

PARTITIONS = 3


def router_replicas(k) -> int:
    return k.json("deployment", f"{NAME}-router")["spec"]["replicas"]


def autoscaling_status(k) -> dict:
    return ((k.get_or_none("tsp", NAME) or {}).get("status") or {}).get("autoscaling") or {}


def drain(bootstrap: str, topic: str, group: str, n: int) -> None:
    """Consume and commit `n` records as the router's group (its offsets are the lag)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    seen, deadline = 0, time.monotonic() + 60
    while seen < n and time.monotonic() < deadline:
        seen += sum(len(v) for v in consumer.poll(1000).values())
    consumer.commit()
    consumer.close()
    assert seen >= n, seen


def commit_start(bootstrap: str, topic: str, group: str) -> None:
    """The group's commits at the input's start on every partition, from outside the group
    (it has no members: kwok's router pods consume nothing)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic)
        assert parts, f"topic {topic} has no partitions yet"
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(0, "", -1) for p in parts})
    finally:
        consumer.close(autocommit=False)


def start_autoscaled(k, operator_factory, bootstrap: str, partitions: int, **autoscaling) -> tuple[str, str, str]:
    """A pipeline on its own topics with spec.router.autoscaling, Running and reporting;
    returns (tag, the router's group, the input topic)."""
    tag = uuid.uuid4().hex[:8]
    obj = sample_pipeline()
    group, topic = f"s{tag}", f"in-{tag}"
    obj["spec"]["streamName"] = group
    obj["spec"]["kafka"] = {
        "brokers": [bootstrap],
        "topics": {"input": topic, "even": f"even-{tag}", "odd": f"odd-{tag}", "partitions": partitions},
    }
    obj["spec"]["router"]["autoscaling"] = {"targetLagPerReplica": 10, "scaleUpStabilizationSeconds": 0, **autoscaling}
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    wait_for(lambda: autoscaling_status(k).get("desiredReplicas") == 1, 60, "the autoscaler reporting")
    commit_start(bootstrap, topic, group)
    return tag, group, topic


def test_lag_scales_the_router_up_to_the_partitions_and_back(k, operator_factory, kafka_bootstrap):
    _, group, topic = start_autoscaled(
        k, operator_factory, kafka_bootstrap, PARTITIONS, maxReplicas=5, scaleDownStabilizationSeconds=20
    )
    assert conditions(k.json("tsp", NAME))["Autoscaling"]["reason"] == "Enforcing"

    # 1. A backlog of 100 asks for 10 replicas; the input has 3 partitions, so 3, and it says why.
    t0 = time.monotonic()
    produce(kafka_bootstrap, topic, 100)
    wait_for(lambda: router_replicas(k) == PARTITIONS, 90, "the router scaled to the partition count")
    up_after = time.monotonic() - t0
    obj = wait_for(settled(k, "Running"), 120, "Running at 3 router replicas")
    st = obj["status"]["autoscaling"]
    assert (st["lag"], st["partitions"], st["recommendedReplicas"], st["desiredReplicas"]) == (100, 3, 3, 3)
    assert st["lastScale"]["from"] == 1 and st["lastScale"]["to"] == 3
    limited = conditions(obj)["ScalingLimitedByPartitions"]
    assert limited["status"] == "True" and "3 partition(s)" in limited["message"]
    assert obj["spec"]["router"].get("replicas", 1) == 1, "the user's spec is not written"
    events = [e["reason"] for e in k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]]
    assert "Autoscaled" in events

    # 2. Drained: back to one, after the 20 s scale-down window.
    t0 = time.monotonic()
    drain(kafka_bootstrap, topic, group, 100)
    wait_for(lambda: router_replicas(k) == 1, 120, "the router back to one replica")
    down_after = time.monotonic() - t0
    assert down_after >= 20, "not before the scale-down window"
    print(f"autoscale: lag -> 3 replicas in {up_after:.1f}s; drained -> 1 replica in {down_after:.1f}s")

    # 3. Recommend mode: the same backlog changes the status only.
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"router":{"autoscaling":{"mode":"Recommend"}}}}')
    produce(kafka_bootstrap, topic, 50)
    wait_for(lambda: autoscaling_status(k).get("desiredReplicas") == 3, 90, "a recommendation of 3")
    assert conditions(k.json("tsp", NAME))["Autoscaling"]["reason"] == "Recommending"
    assert router_replicas(k) == 1

    # 4. An HPA on the pipeline (the scale subresource): the autoscaler stands aside, and
    #    stays aside in Enforce mode with the backlog still there.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "by-hand"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "tspipe.io/v1alpha1", "kind": "TimestampPipeline", "name": NAME},
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }
    k("apply", "-f", "-", input=json.dumps(hpa))

    def aside():
        cond = conditions(k.json("tsp", NAME)).get("Autoscaling") or {}
        return cond if cond.get("reason") == "ExternalAutoscaler" else None

    cond = wait_for(aside, 90, "the autoscaler standing aside for the HPA")
    assert cond["status"] == "False" and "HorizontalPodAutoscaler by-hand" in cond["message"]
    k("patch", "tsp", NAME, "--type=merge", "-p", '{"spec":{"router":{"autoscaling":{"mode":"Enforce"}}}}')
    wait_for(settled(k, "Running"), 60, "the Enforce spec observed")
    time.sleep(20)  # more than an autoscaler interval with 50 records of lag: nothing moves
    assert router_replicas(k) == 1
    assert aside() is not None


def test_a_group_that_never_commits_is_not_scaled_on(k, operator_factory, kafka_bootstrap):
    """A router that ignores the group it is given (the seed recipe's) leaves it without a
    commit: its lag only grows, and more replicas of such a router each route every record."""
    tag = uuid.uuid4().hex[:8]
    obj = sample_pipeline()
    group, topic = f"s{tag}", f"in-{tag}"
    obj["spec"]["streamName"] = group
    obj["spec"]["kafka"] = {
        "brokers": [kafka_bootstrap],
        "topics": {"input": topic, "even": f"even-{tag}", "odd": f"odd-{tag}", "partitions": PARTITIONS},
    }
    obj["spec"]["router"]["autoscaling"] = {
        "targetLagPerReplica": 10,
        "scaleUpStabilizationSeconds": 0,
        "maxReplicas": 5,
    }
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    produce(kafka_bootstrap, topic, 100)

    def said():
        cond = conditions(k.json("tsp", NAME)).get("Autoscaling") or {}
        return cond if cond.get("reason") == "NoGroupCommits" else None

    cond = wait_for(said, 90, "the autoscaler saying the group has no commits")
    assert cond["status"] == "False", cond
    assert f"consumer group {group} has no committed offset on {topic} (100 records there)" in cond["message"]
    # The decision made with the whole backlog seen: the count kept.
    assert router_replicas(k) == 1
    st = autoscaling_status(k)
    assert (st["lag"], st["desiredReplicas"]) == (100, 1), st
    # The group commits (a router that uses it): the lag scales the router.
    commit_start(kafka_bootstrap, topic, group)
    wait_for(lambda: router_replicas(k) == PARTITIONS, 90, "the router scaled on the group's lag")


def test_at_the_partition_cap_the_topics_grow_and_the_router_follows(k, operator_factory, kafka_bootstrap):
    from tspipe.kafka_admin import TopicAdmin

    tag, group, topic = start_autoscaled(k, operator_factory, kafka_bootstrap, 1, maxReplicas=3, growPartitions=True)

    t0 = time.monotonic()
    produce(kafka_bootstrap, topic, 100)
    wait_for(lambda: router_replicas(k) == 3, 120, "the topics grown and the router at 3 replicas")
    print(f"autoscale: 1 partition -> 3 partitions and 3 replicas in {time.monotonic() - t0:.1f}s")
    described = TopicAdmin(10).describe((kafka_bootstrap,), [topic, f"even-{tag}"])
    assert {name: parts for name, (parts, _rf) in described.items()} == {topic: 3, f"even-{tag}": 3}
    obj = k.json("tsp", NAME)
    assert obj["status"]["autoscaling"]["partitionsGrownTo"] == 3
    assert obj["spec"]["kafka"]["topics"]["partitions"] == 1, "the spec is not written"
    assert conditions(obj)["TopicsReady"]["status"] == "True"
    events = [e["reason"] for e in k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]]
    assert events.count("PartitionsGrown") == 2, events  # 1 -> 2 -> 3: one bounded step at a time
    # Nothing is lost across it: the group (reading new partitions from the earliest offset,
    # as the router does) gets the 100 records from before and 30 spread over all three after.
    produce(kafka_bootstrap, topic, 30)
    drain(kafka_bootstrap, topic, group, 130)
