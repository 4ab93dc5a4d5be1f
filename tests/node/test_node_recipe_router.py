"""The seed recipe's own router, as its users have it, runs as the pipeline's router on the
real node: the image built from the recipe's Dockerfile (hack/recipe-image.sh:
bench/seed_router/Dockerfile with the seed's router code, on the project's Python base),
tagged springcloud/polyglot-python-app:0.2 and run with manifests/samples/recipe-router.yaml,
which gives it the probes SCDF's deployer would (readiness /actuator/info, liveness
/actuator/health). The same image without those probes is not ready (the operator's default
readiness probe asks for /actuator/health/readiness, which it answers 404), and the status
names the router and that probe.

The recipe's router has no consumer group: it starts at the input's end when it starts and
commits nothing. So the timestamps the time source wrote before it started are never routed
(the recipe's behaviour, not checked), every later one is, and a rollout with autoRollback
is judged by readiness only (GroupNotUsed)."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest
import recipe
import yaml
from kafka import KafkaConsumer, TopicPartition
from localinfra.kafka import topic_values
from localinfra.node import NODE_NAME
from nodehelpers import (
    SAMPLE_DIR,
    TIMESTAMP,
    apply_obj,
    by_parity,
    explained,
    logger_payloads,
    new_namespace,
    pipeline_ready,
    pipeline_status,
    pod_ready,
    pods,
    router_probe_failing,
    start_operator,
    strip,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(900)]

IMAGE = "springcloud/polyglot-python-app:0.2"  # as the sample names it
# Timestamps routed after the first one before the test looks at the loggers: both parities.
ROUTED = 20


def _time(ts: str) -> datetime:
    return datetime.strptime(ts, "%m/%d/%y %H:%M:%S")


def _routed(c, topics) -> tuple[list[str], list[str]]:
    """The timestamps in the even and odd topics, each checked for the recipe's prefix and its parity."""
    even = [v.removeprefix(recipe.ROUTER_EVEN) for v in topic_values(c.broker.bootstrap, topics["even"])]
    odd = [v.removeprefix(recipe.ROUTER_ODD) for v in topic_values(c.broker.bootstrap, topics["odd"])]
    assert all(TIMESTAMP.fullmatch(t) and int(t[-1]) % 2 == 0 for t in even), even
    assert all(TIMESTAMP.fullmatch(t) and int(t[-1]) % 2 == 1 for t in odd), odd
    return even, odd


def test_the_recipes_router_image_runs_as_the_router_with_the_recipe_sample(node_cluster, recipe_image, tmp_path):
    c = node_cluster
    ns = new_namespace(c, "recipe")
    log = tmp_path / "operator.log"
    op = start_operator(c, ns, log)
    obj = yaml.safe_load((SAMPLE_DIR / "recipe-router.yaml").read_text())
    # As the other node tests adjust the main sample: the local broker's pod listener, and
    # topics of this test's own on the session's broker.
    obj["spec"]["kafka"]["brokers"] = [c.broker.pod_bootstrap]
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    obj["spec"]["kafka"]["topics"] = dict(topics)
    # The sample leaves autoRollback off; on, the rollout gets a verdict (a shorter window
    # than the default 60 s: the verdict comes after it).
    obj["spec"]["rollout"] = {"autoRollback": True, "verifySeconds": 30}
    name = obj["metadata"]["name"]
    try:
        with explained(c, ns, {"operator": log}):
            # First as a user who names the recipe's image without the probes SCDF's deployer
            # gave it: the operator's default readiness probe asks the recipe's actuator for a
            # path it does not serve, and the status names the router and that probe.
            bare = copy.deepcopy(obj)
            del bare["spec"]["router"]["probes"]
            apply_obj(c, bare, ns)
            router_probe_failing(c, ns, name, 300, "status.components.router.notReady without the recipe's probes")

            # The sample as it is, with those probes: Ready.
            apply_obj(c, obj, ns)
            wait_for(lambda: pipeline_ready(c, ns, name), 300, "the pipeline Ready (4/4)")
            running = wait_for(
                lambda: (ps := pods(c, ns)) and len(ps) == 4 and all(map(pod_ready, ps)) and ps,
                120,
                "four pods Running and Ready",
            )
            (router,) = [p for p in running if p["metadata"]["labels"]["app.kubernetes.io/component"] == "router"]
            container, status = router["spec"]["containers"][0], router["status"]["containerStatuses"][0]
            assert router["spec"]["nodeName"] == NODE_NAME
            assert (container["image"], status["image"]) == (IMAGE, recipe_image), status
            # Made Ready by the kubelet's probe of the recipe's actuator at the pod's IP.
            assert container["readinessProbe"]["httpGet"]["path"] == "/actuator/info", container
            assert status["restartCount"] == 0, status
            # The recipe's image names no user and runs as root under SCDF; here the pod's
            # security context runs it as a non-root user on a read-only root filesystem
            # (Pod Security `restricted`), and it runs: it writes nothing.
            assert router["spec"]["securityContext"]["runAsUser"] != 0
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            ready = {x["type"]: x for x in pipeline_status(c, ns, name)["conditions"]}["Ready"]
            assert ready["status"] == "True", ready

            # Every timestamp written after the router's first routed one is routed, to the
            # right topic (the recipe's prefixes, the right parity) ...
            def routed_since_first():
                even, odd = _routed(c, topics)
                first = min(map(_time, even + odd), default=None)
                later = [t for t in topic_values(c.broker.bootstrap, topics["input"]) if first and _time(t) > first]
                return len(later) >= ROUTED and later

            later = wait_for(routed_since_first, 300, f"{ROUTED} timestamps after the router's first")
            exp_even, exp_odd = by_parity(later)
            assert exp_even and exp_odd, later
            even, odd = _routed(c, topics)
            assert not (exp_even - by_parity(even)[0]) and not (exp_odd - by_parity(odd)[1]), (later, even, odd)

            # ... and `kubectl logs` of each logger shows them, only Even lines in the even
            # logger and only Odd lines in the odd one.
            def in_the_logs():
                got_even = strip(logger_payloads(c, ns, name, "evenlogger"), [recipe.ROUTER_EVEN])
                got_odd = strip(logger_payloads(c, ns, name, "oddlogger"), [recipe.ROUTER_ODD])
                assert all(int(t[-1]) % 2 == 0 for t in got_even), got_even
                assert all(int(t[-1]) % 2 == 1 for t in got_odd), got_odd
                return not (exp_even - got_even) and not (exp_odd - got_odd)

            wait_for(in_the_logs, 180, f"the {len(later)} timestamps in the loggers' kubectl logs")

            # The rollout: records reach the outputs but the router never commits in the
            # consumer group it is given, so it is judged by readiness, and stable.
            # (Verifying while it waits for the group's first commit, verifySeconds from readiness.)
            rollout = wait_for(
                lambda: (
                    (r := pipeline_status(c, ns, name).get("rollout", {})).get("verdict") not in (None, "Verifying")
                    and r
                ),
                240,
                "the rollout's verdict",
            )
            assert (rollout["verdict"], rollout["reason"]) == ("Stable", "GroupNotUsed"), rollout
            assert "never committed in its consumer group" in rollout["message"], rollout
            assert "judged by readiness and the progress deadline only" in rollout["message"], rollout
            conds = {x["type"]: x for x in pipeline_status(c, ns, name)["conditions"]}
            verified = conds["RolloutVerified"]
            assert (verified["status"], verified["reason"]) == ("True", "GroupNotUsed"), verified
            assert conds["Ready"]["status"] == "True", conds["Ready"]
            # What the status claims, on the broker: the group has no offset on the input.
            # (Read without joining the group, as test_node_cluster.py's committed() does.)
            group = KafkaConsumer(
                bootstrap_servers=c.broker.bootstrap, group_id=obj["spec"]["streamName"], enable_auto_commit=False
            )
            try:
                parts = group.partitions_for_topic(topics["input"])
                committed = {p: group.committed(TopicPartition(topics["input"], p)) for p in parts}
            finally:
                group.close(autocommit=False)
            assert parts and all(o is None for o in committed.values()), committed
    finally:
        # Deleting the namespace first lets the kubelet stop the pods gracefully.
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        op.stop(15)
