"""Automatic rollback on the real node: readiness is the kubelet's probes of the real
actuators, so a release whose router never becomes Ready (arguments it refuses: it exits
at start and the kubelet restarts it in a loop) is rolled back at the progress deadline,
and the pipeline goes on with the stable revision's router without losing a timestamp.
Under `strategy: Shadow` the same kind of release runs only as a shadow: rejected at the
deadline naming the crash, removed with its topics and group, nothing of it on the real
topics.

With Kafka credentials the operator cannot read the broker; it reads the real router
pods' own counters instead, by its default path: at their pod IPs on the actuator port
(the operator runs on the host here, which reaches the node's bridge as an operator pod
does; test_node_install.py reads them from the operator's pod). kwok's pods have no
address, so only the real node can show that path."""

from __future__ import annotations

import collections
import json
import time

import pytest
from localinfra.kafka import consumer_groups, topic_values
from nodehelpers import (
    apply_obj,
    everything_arrived,
    explained,
    logger_payloads,
    new_namespace,
    node_pipeline,
    pipeline_status,
    pod_ready,
    reset_offsets,
    router_pod,
    start_operator,
    wait_for,
)
from routerproc import create_topic

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

DEADLINE = 30


def rollout(c, ns, name) -> dict:
    return pipeline_status(c, ns, name).get("rollout") or {}


def degraded(status: dict) -> dict:
    """The pipeline's Degraded condition ({} when it has none)."""
    return {x["type"]: x for x in status.get("conditions") or []}.get("Degraded", {})


@pytest.fixture(scope="class")
def plain_pipeline(node_cluster, tmp_path_factory):
    """The sample pipeline on the session's broker with autoRollback, the operator watching
    its namespace: (ns, name, topics, operator log). Shared by the rollback and the shadow
    tests of TestOnePipeline, in file order (three JVMs starting on two cores are most of
    each test's time); class-scoped, so it is gone before the credentials tests start
    theirs."""
    c = node_cluster
    ns = new_namespace(c, "rollback")
    log = tmp_path_factory.mktemp("operator-plain") / "operator.log"
    op = start_operator(c, ns, log)
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    obj = node_pipeline(c.broker.pod_bootstrap, topics)
    # The first revision gets the default deadline: three JVMs starting on two cores may
    # take longer than the short one the bad release is judged by.
    obj["spec"]["rollout"] = {"autoRollback": True, "verifySeconds": 15}
    try:
        apply_obj(c, obj, ns)
        yield ns, obj["metadata"]["name"], topics, log
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        op.stop(15)


class TestOnePipeline:
    """The rollback test, then the shadow test, on one pipeline (plain_pipeline)."""

    def test_a_router_that_never_becomes_ready_is_rolled_back_at_the_deadline(self, node_cluster, plain_pipeline):
        c = node_cluster
        ns, name, topics, log = plain_pipeline
        with explained(c, ns, {"operator": log}):
            first = wait_for(
                lambda: (r := rollout(c, ns, name)).get("verdict") == "Stable" and r,
                420,
                "the first revision verified on real pods",
            )
            assert first["reason"] == "ChecksPassed" and first["checks"]["consumed"] > 0, first
            stable_pod = router_pod(c, ns, name)["metadata"]["name"]

            # A release whose router refuses its arguments: it never passes its readiness probe.
            c.kubectl(
                "patch",
                "tsp",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                json.dumps(
                    {
                        "spec": {
                            "rollout": {"progressDeadlineSeconds": DEADLINE},
                            "router": {"properties": {"tsrouter.max-poll-records": "0"}},
                        }
                    }
                ),
            )
            t0 = time.monotonic()
            bad = wait_for(
                lambda: (r := rollout(c, ns, name)).get("verdict") == "RolledBack" and r,
                DEADLINE + 180,
                "the release that never became Ready rolled back",
            )
            after = time.monotonic() - t0
            assert bad["reason"] == "ProgressDeadlineExceeded", bad
            assert bad["message"].startswith("rolled back to generation 1"), bad

            # The stable router serves again; the new pods are gone; the spec is as the user wrote it.
            wait_for(
                lambda: (
                    (p := router_pod(c, ns, name))
                    and pod_ready(p)
                    and "--tsrouter.max-poll-records=0" not in p["spec"]["containers"][0]["args"]
                    and len(
                        [
                            x
                            for x in c.get("pods", "-n", ns)["items"]
                            if x["metadata"]["labels"].get("app.kubernetes.io/component") == "router"
                        ]
                    )
                    == 1
                ),
                180,
                "one Ready router pod of the stable revision",
            )
            assert router_pod(c, ns, name)["metadata"]["name"] == stable_pod, (
                "the stable pod kept serving through the failed rollout"
            )
            spec = c.get("tsp", name, "-n", ns)["spec"]
            assert spec["router"]["properties"] == {"tsrouter.max-poll-records": "0"}
            # Until the Deployment controller sees the bad pods gone, the router Deployment keeps
            # its ProgressDeadlineExceeded condition and the pipeline is Degraded for that reason;
            # what the user is left with is Degraded because of the rollback.
            why = wait_for(
                lambda: (
                    (s := pipeline_status(c, ns, name)).get("phase") == "Degraded"
                    and (d := degraded(s)).get("reason") == "RolledBack"
                    and d
                ),
                120,
                "Degraded with the rollback",
            )
            assert why["message"].startswith("rolled back to generation 1"), why
            assert "[check: ProgressDeadlineExceeded]" in why["message"], why

            # Nothing lost: every timestamp so far reaches the right logger.
            upto = len(topic_values(c.broker.bootstrap, topics["input"]))
            everything_arrived(c, ns, name, topics["input"], ["Even timestamp:"], ["Odd timestamp:"], upto)
            print(
                f"node rollback: a router that never became Ready was rolled back {after:.1f}s after the "
                f"change (progressDeadlineSeconds {DEADLINE})"
            )

    def test_a_shadow_release_that_crash_loops_is_rejected_at_the_deadline(self, node_cluster, plain_pipeline):
        """spec.rollout.strategy Shadow on the real node: a release whose router exits at start
        (a property it refuses: the kubelet restarts it in a loop) runs only as a shadow, is
        rejected at the progress deadline naming the crash, and is removed with its topics and
        group; the stable router is never touched and routes every record, and no record of
        the release reaches the real topics. After the rollback test: its stable revision is
        the first one."""
        from tspipe.kafka_admin import TopicAdmin

        c = node_cluster
        ns, name, topics, log = plain_pipeline
        bootstrap = c.broker.bootstrap
        new_prefix = "Shadow even:"
        with explained(c, ns, {"operator": log}):
            stable = wait_for(lambda: (p := router_pod(c, ns, name)) and pod_ready(p) and p, 180, "a Ready router pod")
            stable_template = c.get("deploy", f"{name}-router", "-n", ns)["spec"]["template"]
            patch = {
                "spec": {
                    "rollout": {"strategy": "Shadow", "progressDeadlineSeconds": DEADLINE},
                    # tsrouter.workers must be 1..64: the router exits with a configuration error.
                    "router": {
                        "evenPrefix": new_prefix,
                        "properties": {"tsrouter.max-poll-records": None, "tsrouter.workers": "0"},
                    },
                }
            }
            c.kubectl("patch", "tsp", name, "-n", ns, "--type=merge", "-p", json.dumps(patch))
            gen = c.get("tsp", name, "-n", ns)["metadata"]["generation"]
            t0 = time.monotonic()
            running = wait_for(
                lambda: (
                    (r := rollout(c, ns, name)).get("reason") == "Shadowing"
                    and (r.get("shadow") or {}).get("generation") == gen
                    and r["shadow"]
                ),
                60,
                "the release started as a shadow",
            )
            shadow_name, shadow_topics, group = running["deployment"], running["topics"], running["group"]
            wait_for(
                lambda: any(
                    cs.get("restartCount", 0) > 0 or (cs.get("lastState") or {}).get("terminated")
                    for p in c.get("pods", "-n", ns, "-l", "app.kubernetes.io/component=router-shadow")["items"]
                    for cs in p.get("status", {}).get("containerStatuses", [])
                ),
                DEADLINE + 30,
                "the shadow's router crashing",
            )
            rejected = wait_for(
                lambda: (
                    (r := rollout(c, ns, name)).get("verdict") == "ShadowRejected" and r.get("generation") == gen and r
                ),
                DEADLINE + 120,
                "the crashing shadow rejected",
            )
            after = time.monotonic() - t0
            assert rejected["reason"] == "ProgressDeadlineExceeded", rejected
            # It names the crash: the router's exit code 2 (a configuration error), in a loop.
            assert "code 2" in rejected["message"], rejected
            degraded_cond = wait_for(
                lambda: (
                    (s := pipeline_status(c, ns, name)).get("phase") == "Degraded"
                    and (d := degraded(s)).get("reason") == "ShadowRejected"
                    and d
                ),
                60,
                "Degraded with the shadow's rejection",
            )
            assert "code 2" in degraded_cond["message"], degraded_cond
            events = c.get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
            assert any(e["reason"] == "ShadowRejected" and e["type"] == "Warning" for e in events)

            # The shadow is gone: its Deployment, its pods, its topics and its group.
            wait_for(
                lambda: (
                    (rollout(c, ns, name).get("shadow") or {}).get("state") == "Done"
                    and not c.get("deploy", "-n", ns, "--field-selector", f"metadata.name={shadow_name}")["items"]
                    and not c.get("pods", "-n", ns, "-l", "app.kubernetes.io/component=router-shadow")["items"]
                ),
                150,
                "the rejected shadow removed",
            )
            assert set(TopicAdmin().describe([bootstrap], shadow_topics).values()) == {None}, "shadow topics deleted"
            assert group not in consumer_groups(bootstrap), "the shadow's group deleted"
            # No finalizer left once nothing of the shadow is on the broker (deleteOnRemoval is off).
            wait_for(
                lambda: not c.get("tsp", name, "-n", ns)["metadata"].get("finalizers"), 30, "the finalizer removed"
            )

            # The real router never changed: the stable revision's template, the same pod.
            assert c.get("deploy", f"{name}-router", "-n", ns)["spec"]["template"] == stable_template
            assert router_pod(c, ns, name)["metadata"]["name"] == stable["metadata"]["name"]

            # Nothing lost, nothing of the release on the real topics: each input record up to
            # now is on its side's real topic with the stable prefix.
            produced = topic_values(bootstrap, topics["input"])
            want_even = collections.Counter(v for v in produced if int(v[-1]) % 2 == 0)
            want_odd = collections.Counter(v for v in produced if int(v[-1]) % 2 == 1)

            def routed():
                even, odd = (topic_values(bootstrap, topics[side]) for side in ("even", "odd"))
                assert not [v for v in even + odd if v.startswith(new_prefix)], "a record of the rejected release"
                assert all(v.startswith("Even timestamp:") for v in even) and all(
                    v.startswith("Odd timestamp:") for v in odd
                ), "a record on the wrong side or with another prefix"
                got_even = collections.Counter(v.removeprefix("Even timestamp:") for v in even)
                got_odd = collections.Counter(v.removeprefix("Odd timestamp:") for v in odd)
                missing = (want_even - got_even) + (want_odd - got_odd)
                return (got_even, got_odd) if not missing else None

            got_even, got_odd = wait_for(routed, 120, f"all {len(produced)} input records on the real even/odd topics")
            twice = sum(n - 1 for n in (got_even + got_odd).values() if n > 1)
            print(
                f"node shadow: a release crashing at start was rejected {after:.1f}s after the change "
                f"(progressDeadlineSeconds {DEADLINE}): {rejected['message']!r}; {len(produced)} input records all on "
                f"the real topics with the stable prefixes ({twice} routed twice), none of the release's"
            )

    def test_a_harmless_shadow_release_is_promoted_and_its_prefix_reaches_the_loggers(
        self, node_cluster, plain_pipeline
    ):
        """After the rejected shadow: a release that only changes the even prefix (and drops
        the crashing property) runs as a shadow, is judged equal through each revision's own
        prefix, is promoted, and the real router rolls to it: the new prefix is on the real
        even topic and in the even logger's `kubectl logs`, and every record reaches its
        logger under one prefix or the other."""
        c = node_cluster
        ns, name, topics, log = plain_pipeline
        new_prefix = "Promoted even:"
        with explained(c, ns, {"operator": log}):
            patch = {
                "spec": {
                    # Three JVMs share two cores: the healthy shadow gets the time to start.
                    "rollout": {"progressDeadlineSeconds": 180},
                    "router": {"evenPrefix": new_prefix, "properties": {"tsrouter.workers": None}},
                }
            }
            c.kubectl("patch", "tsp", name, "-n", ns, "--type=merge", "-p", json.dumps(patch))
            gen = c.get("tsp", name, "-n", ns)["metadata"]["generation"]
            t0 = time.monotonic()
            promoted = wait_for(
                lambda: (
                    (sh := rollout(c, ns, name).get("shadow") or {}).get("generation") == gen
                    and sh.get("verdict") in ("Promoted", "ShadowRejected", "NotCompared")
                    and sh
                ),
                300,
                "the harmless shadow judged",
            )
            after = time.monotonic() - t0
            assert promoted["verdict"] == "Promoted" and promoted["reason"] == "OutputsEqual", promoted
            assert promoted["compared"] > 0 and promoted["differing"] == 0, promoted
            wait_for(
                lambda: (
                    (p := router_pod(c, ns, name))
                    and pod_ready(p)
                    and f"--tsrouter.even-prefix={new_prefix}" in p["spec"]["containers"][0]["args"]
                ),
                240,
                "the real router rolled to the promoted revision",
            )
            wait_for(
                lambda: any(v.startswith(new_prefix) for v in topic_values(c.broker.bootstrap, topics["even"])),
                120,
                "the promoted prefix on the real even topic",
            )
            logged = wait_for(
                lambda: [x for x in logger_payloads(c, ns, name, "evenlogger") if x.startswith(new_prefix)],
                120,
                "the promoted prefix in the even logger's kubectl logs",
            )
            upto = len(topic_values(c.broker.bootstrap, topics["input"]))
            everything_arrived(c, ns, name, topics["input"], ["Even timestamp:", new_prefix], ["Odd timestamp:"], upto)
            print(
                f"node shadow: a prefix change promoted {after:.1f}s after the change "
                f"({promoted['compared']} records compared, load {promoted.get('load')}); "
                f"{len(logged)} lines with the new prefix in the even logger's kubectl logs"
            )


@pytest.fixture(scope="module")
def sasl_broker(node_cluster):
    """A broker whose pod listener wants SASL (the session's broker has none); after the
    node, whose bridge its pod listener binds to."""
    from localinfra.kafka import KafkaBroker
    from localinfra.node import NODE_IP

    with KafkaBroker(sasl=True, pod_host=NODE_IP) as broker:
        yield broker


# No trailing digit: the router dead-letters them (it routes by the last digit alone).
MALFORMED = [f"not a timestamp ({i})" for i in range(30)]


@pytest.fixture(scope="module")
def sasl_pipeline(node_cluster, sasl_broker, tmp_path_factory):
    """The sample pipeline with Kafka credentials on the SASL broker, with the operator
    watching its namespace: (ns, name, topics, operator log). Shared by the tests below
    in file order (three JVMs starting on two cores are most of each test's time)."""
    c, b = node_cluster, sasl_broker
    ns = new_namespace(c, "rollback-sasl")
    log = tmp_path_factory.mktemp("operator-sasl") / "operator.log"
    op = start_operator(c, ns, log)
    # The counters are read at the pods' IPs: the operator runs with its default path.
    assert not [a for a in op.argv if a.startswith("--router-metrics")], op.argv
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    for t in topics.values():  # with credentials the operator does not manage topics
        create_topic(b.bootstrap, t)
    user, password = next(iter(b.sasl_users.items()))
    c.kubectl(
        "create",
        "secret",
        "generic",
        "kafka-creds",
        "-n",
        ns,
        f"--from-literal=username={user}",
        f"--from-literal=password={password}",
    )
    obj = node_pipeline(b.pod_bootstrap, topics)
    obj["spec"]["kafka"]["topics"]["manage"] = False
    obj["spec"]["kafka"]["credentials"] = {
        "secretName": "kafka-creds",
        "mechanism": "SCRAM-SHA-512",
        "protocol": "SASL_PLAINTEXT",
    }
    obj["spec"]["rollout"] = {"autoRollback": True, "verifySeconds": 15}
    try:
        apply_obj(c, obj, ns)
        yield ns, obj["metadata"]["name"], topics, log
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        op.stop(15)


def test_with_credentials_the_router_pods_counters_judge_the_rollout(node_cluster, sasl_broker, sasl_pipeline):
    from kafka import KafkaProducer

    c, b = node_cluster, sasl_broker
    ns, name, topics, log = sasl_pipeline
    with explained(c, ns, {"operator": log}):
        first = wait_for(
            lambda: (r := rollout(c, ns, name)).get("verdict") == "Stable" and r,
            420,
            "the first revision verified by the router pod's counters",
        )
        checks = first["checks"]
        assert first["reason"] == "ChecksPassed", first
        assert checks["source"] == "routerCounters" and checks["pods"] == 1, checks
        assert checks["consumed"] > 0 and checks["lost"] == 0, checks
        assert "misrouting was not checked" in first["message"], first

        # A new release (a pod template change); while its window is open, dead letters
        # jump: the router pod's counters show it and the release is rolled back.
        c.kubectl(
            "patch",
            "tsp",
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"router": {"properties": {"tsrouter.max-poll-records": "500"}}}}),
        )
        wait_for(
            lambda: (
                (r := rollout(c, ns, name)).get("reason") == "WindowOpen"
                and r.get("generation", 0) > first["generation"]
            ),
            300,
            "the new release's window open",
        )
        t0 = time.monotonic()
        producer = KafkaProducer(bootstrap_servers=b.bootstrap)
        for v in MALFORMED:
            producer.send(topics["input"], v.encode())
        producer.flush(30)
        producer.close()
        bad = wait_for(
            lambda: (r := rollout(c, ns, name)).get("verdict") == "RolledBack" and r,
            120,
            "the release rolled back by the counters",
        )
        after = time.monotonic() - t0
        assert bad["reason"] == "DeadLetterRatio", bad
        assert bad["checks"]["source"] == "routerCounters", bad
        assert bad["checks"]["deadLettered"] == len(MALFORMED), bad
        assert bad["message"].startswith(f"rolled back to generation {first['generation']}"), bad

        wait_for(
            lambda: (
                (p := router_pod(c, ns, name))
                and pod_ready(p)
                and "--tsrouter.max-poll-records=500" not in p["spec"]["containers"][0]["args"]
            ),
            180,
            "a Ready router pod of the stable revision",
        )
        # Nothing lost: every timestamp so far reaches the right logger.
        upto = len(topic_values(b.bootstrap, topics["input"]))
        everything_arrived(
            c,
            ns,
            name,
            topics["input"],
            ["Even timestamp:"],
            ["Odd timestamp:"],
            upto,
            bootstrap=b.bootstrap,
            ignore=frozenset(MALFORMED),
        )
        print(
            f"node rollback (credentials): first revision {checks}; dead letters in the new release's "
            f"window rolled it back {after:.1f}s after they were written (verifySeconds 15)"
        )


def test_with_credentials_a_replay_runs_as_a_job_of_the_router_image(node_cluster, sasl_broker, sasl_pipeline):
    """The operator cannot read the broker (it never reads the Secret): a reset runs as a
    one-shot Job of the router's image with the router's credential env, on the running
    pipeline: the sample's log sinks consume in the stream's group too, and the operator
    holds them at zero with the router (the broker sets a group's offsets only while it
    has no members). An offset out of range is refused by the Job naming the partition; a
    reset to `earliest` is recorded, and every record of the input is routed again to the
    right logger."""
    c, b = node_cluster, sasl_broker
    ns, name, topics, log = sasl_pipeline
    prefixes = (["Even timestamp:"], ["Odd timestamp:"])
    with explained(c, ns, {"operator": log}):
        wait_for(lambda: (p := router_pod(c, ns, name)) and pod_ready(p), 180, "a Ready router pod")
        upto = len(topic_values(b.bootstrap, topics["input"]))
        values = [v for v in topic_values(b.bootstrap, topics["input"])[:upto] if v not in MALFORMED]

        # Refused by the Job: an offset beyond the end of partition 0.
        t0 = time.monotonic()
        refused = reset_offsets(c, ns, name, "0:99999999")
        refused_s = time.monotonic() - t0
        assert refused["state"] == "Rejected" and refused["reason"] == "OffsetOutOfRange", refused
        assert f"partition 0 of {topics['input']}: offset 99999999 is outside 0.." in refused["message"], refused
        assert refused["job"].startswith(f"{name}-reset-"), refused
        job = c.get("job", refused["job"], "-n", ns)
        assert job["status"].get("failed") == 1 and not job["status"].get("succeeded"), job["status"]

        t0 = time.monotonic()
        done = reset_offsets(c, ns, name, "earliest")
        reset_s = time.monotonic() - t0
        assert done["state"] == "Completed", done
        assert done["job"].startswith(f"{name}-reset-") and done["job"] != refused["job"], done
        assert done["topic"] == topics["input"] and [m["to"] for m in done["partitions"]] == [0], done
        # Committed by the router before it stopped (the time source went on meanwhile).
        assert 0 < done["partitions"][0]["from"] <= len(topic_values(b.bootstrap, topics["input"])), done
        history = [h["offsetReset"] for h in pipeline_status(c, ns, name)["history"] if "offsetReset" in h]
        assert history[-1] == {
            "request": "earliest",
            "group": done["group"],
            "topic": topics["input"],
            "partitions": done["partitions"],
        }, history
        events = c.get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
        assert any(e["reason"] == "OffsetsReset" and done["job"] in e["message"] for e in events)
        assert any(e["reason"] == "OffsetResetRejected" and "partition 0" in e["message"] for e in events)

        # The Job: the router's image, non-root, read-only root filesystem, its result in its log.
        job = c.get("job", done["job"], "-n", ns)
        assert job["status"].get("succeeded") == 1, job["status"]
        assert job["metadata"]["ownerReferences"][0]["name"] == name
        pod_spec = job["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        router_spec = c.get("deploy", f"{name}-router", "-n", ns)["spec"]["template"]["spec"]
        assert container["image"] == router_spec["containers"][0]["image"]
        assert pod_spec["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
        said = c.kubectl("logs", f"job/{done['job']}", "-n", ns, timeout=60).stdout
        assert '"committed":true' in said and b.sasl_users[next(iter(b.sasl_users))] not in said

        # The reset restarted the log sinks: the new pods print only what is routed from now
        # on, so every value of the input before the reset in their logs was routed again.
        everything_arrived(
            c, ns, name, topics["input"], *prefixes, upto, bootstrap=b.bootstrap, ignore=frozenset(MALFORMED)
        )
        print(
            f"node replay (credentials): {len(values)} records re-delivered after a reset to earliest by Job "
            f"{done['job']} ({reset_s:.1f}s from the annotation to Completed, the pipeline running); the refused "
            f"reset took {refused_s:.1f}s"
        )
