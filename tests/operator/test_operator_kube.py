"""The CRD and the operator on the real control plane (kube-apiserver, controller
manager, scheduler, kwok). The operator runs as a real subprocess per test."""

from __future__ import annotations

import copy
import json
import time

import pytest
import yaml
from kubehelpers import describe, wait_for
from samples import sample_pipeline

from tspipe.model import Pipeline, PipelineError

pytestmark = pytest.mark.kube

NAME = "timestamps"
APPS = ("time", "router", "evenlogger", "oddlogger")

# The wiring contract (operator/tspipe/wiring.py) for the sample pipeline, written out by
# hand so the test does not trust the code it checks.
COMMON = {
    "spring.cloud.dataflow.stream.name": "timeStampStream",
    "spring.cloud.stream.kafka.binder.brokers": "kafka.kafka.svc:9092",
    "spring.cloud.stream.kafka.binder.replication-factor": "1",
    "spring.cloud.stream.kafka.binder.min-partition-count": "1",
    "server.port": "8080",
}
CONTRACT = {
    "time": {
        "spring.cloud.dataflow.stream.app.label": "time",
        "spring.cloud.stream.bindings.output.destination": "timeDest",
        "time.date-format": "MM/dd/yy HH:mm:ss",
        "spring.integration.poller.fixed-delay": "1000",
    },
    "router": {
        "spring.cloud.dataflow.stream.app.label": "python-router",
        "spring.cloud.stream.bindings.input.destination": "timeDest",
        "spring.cloud.stream.bindings.input.group": "timeStampStream",
        "spring.cloud.stream.bindings.even.destination": "evenDest",
        "spring.cloud.stream.bindings.odd.destination": "oddDest",
        "tsrouter.even-prefix": "Even timestamp:",
        "tsrouter.odd-prefix": "Odd timestamp:",
        "tsrouter.processing-guarantee": "at-least-once",
    },
    "evenlogger": {
        "spring.cloud.dataflow.stream.app.label": "evenLogger",
        "spring.cloud.stream.bindings.input.destination": "evenDest",
        "spring.cloud.stream.bindings.input.group": "timeStampStream",
        "log.consumer.level": "INFO",
        "log.consumer.expression": "payload",
    },
    "oddlogger": {
        "spring.cloud.dataflow.stream.app.label": "oddLogger",
        "spring.cloud.stream.bindings.input.destination": "oddDest",
        "spring.cloud.stream.bindings.input.group": "timeStampStream",
        "log.consumer.level": "INFO",
        "log.consumer.expression": "payload",
    },
}
IMAGES = {
    "time": "springcloudstream/time-source-kafka:5.1.1",
    "router": "ghcr.io/tspipe/router:0.1.0",
    "evenlogger": "springcloudstream/log-sink-kafka:5.1.1",
    "oddlogger": "springcloudstream/log-sink-kafka:5.1.1",
}


def container(d):
    (c,) = d["spec"]["template"]["spec"]["containers"]
    return c


def args_map(d):
    out = {}
    for a in container(d)["args"]:
        assert a.startswith("--") and "=" in a, a
        key, value = a[2:].split("=", 1)
        assert key not in out, f"duplicate arg {key}"
        out[key] = value
    return out


def conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def pipeline_ready(k, name=NAME):
    def probe():
        obj = k.get_or_none("tsp", name)
        if (
            obj
            and conditions(obj).get("Ready", {}).get("status") == "True"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    return probe


def four_children(k):
    deps = k.deployments(f"app.kubernetes.io/instance={NAME}")
    return deps if len(deps) == 4 else None


def start_and_wait_ready(k, operator_factory, pipeline=None):
    op = operator_factory().start()
    t0 = time.monotonic()
    k.apply(pipeline or sample_pipeline())
    obj = wait_for(pipeline_ready(k), 180, "pipeline Ready=True")
    return op, obj, time.monotonic() - t0


# --- the CRD alone -----------------------------------------------------------------------


def test_crd_installs_with_names_and_columns(control_plane, crd_installed):
    crd = json.loads(control_plane.kubectl("get", "crd", "timestamppipelines.tspipe.io", "-o", "json").stdout)
    assert crd["spec"]["names"]["shortNames"] == ["tsp"]
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    res = control_plane.kubectl("api-resources", "--api-group=tspipe.io", "-o", "wide").stdout
    assert "timestamppipelines" in res and "tsp" in res
    # The OpenAPI document is published shortly after the CRD is Established.
    expl = wait_for(
        lambda: control_plane.kubectl("explain", "tsp.spec.router.processingGuarantee", check=False).stdout,
        60,
        "kubectl explain tsp",
    )
    assert "exactly_once" in expl


def test_defaults_applied_by_the_api_server(control_plane, crd_installed, namespace):
    obj = {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": "minimal", "namespace": namespace},
        "spec": {"kafka": {"brokers": ["kafka:9092"]}},
    }
    out = json.loads(
        control_plane.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(obj)).stdout
    )
    spec = out["spec"]
    assert spec["kafka"]["topics"] == {
        "input": "timeDest",
        "even": "evenDest",
        "odd": "oddDest",
        "partitions": 1,
        "replicationFactor": 1,
        "manage": True,
        "deleteOnRemoval": False,
    }
    assert spec["paused"] is False
    assert spec["time"]["image"] == "springcloudstream/time-source-kafka:5.1.1"
    assert spec["time"]["dateFormat"] == "MM/dd/yy HH:mm:ss" and spec["time"]["fixedDelaySeconds"] == 1
    assert spec["router"] == {
        "image": "ghcr.io/tspipe/router:0.1.0",
        "replicas": 1,
        "processingGuarantee": "at_least_once",
        "evenPrefix": "Even timestamp:",
        "oddPrefix": "Odd timestamp:",
    }
    assert (
        spec["evenLogger"]
        == spec["oddLogger"]
        == {"image": "springcloudstream/log-sink-kafka:5.1.1", "level": "INFO", "expression": "payload"}
    )
    # The model applies the same defaults without an API server.
    p = Pipeline.from_resource(out)
    assert p == Pipeline.from_resource(obj | {"metadata": out["metadata"]})


def _invalid(path: str, value, name="bad"):
    obj = {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": name},
        "spec": {"kafka": {"brokers": ["kafka:9092"]}},
    }
    node = obj
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return obj


INVALID = [
    # (object, text the API server's message must contain)
    (_invalid("spec.kafka.topics.input", "bad topic"), "spec.kafka.topics.input"),
    (_invalid("spec.kafka.topics.even", ".."), "spec.kafka.topics.even"),
    (_invalid("spec.kafka.topics.odd", "x" * 250), "spec.kafka.topics.odd"),
    (_invalid("spec.kafka.topics.even", "timeDest"), "spec.kafka.topics"),
    (_invalid("spec.kafka.brokers", ["kafka"]), "spec.kafka.brokers[0]"),
    (_invalid("spec.kafka.brokers", ["kafka:9092", "kafka:99999"]), "spec.kafka.brokers[1]"),
    (_invalid("spec.kafka.brokers", []), "spec.kafka.brokers"),
    (_invalid("spec.kafka.brokers", ["a:1", "a:1"]), "spec.kafka.brokers[1]"),
    (_invalid("spec.kafka.topics.partitions", 0), "spec.kafka.topics.partitions"),
    (_invalid("spec.router.replicas", 65), "spec.router.replicas"),
    (_invalid("spec.router.replicas", -1), "spec.router.replicas"),
    (_invalid("spec.router.processingGuarantee", "at_most_once"), "spec.router.processingGuarantee"),
    (_invalid("spec.time.image", ""), "spec.time.image"),
    (_invalid("spec.oddLogger.image", "has space:1"), "spec.oddLogger.image"),
    (_invalid("spec.evenLogger.level", "LOUD"), "spec.evenLogger.level"),
    (_invalid("spec.time.fixedDelaySeconds", 0), "spec.time.fixedDelaySeconds"),
    (_invalid("spec.streamName", "1stream"), "spec.streamName"),
    (
        _invalid("spec.router.properties", {"spring.cloud.stream.bindings.input.destination": "x"}),
        "spec.router.properties",
    ),
    (_invalid("spec.time.properties", {"time.dateFormat": "yyyy"}), "spec.time.properties"),
    (_invalid("spec.oddLogger.env", [{"name": "SPRING_CLOUD_APPLICATION_GROUP", "value": "x"}]), "spec.oddLogger.env"),
    (_invalid("spec.router.replica", 2), "spec.router.replica"),  # typo: unknown field
    # Topic settings: an allow-list with types and bounds, and min.insync.replicas <= replicationFactor.
    (_invalid("spec.kafka.topics.config", {"retention.msx": 1}), "spec.kafka.topics.config.retention.msx"),
    (_invalid("spec.kafka.topics.config", {"retention.ms": -2}), "spec.kafka.topics.config.retention.ms"),
    (_invalid("spec.kafka.topics.config", {"cleanup.policy": "compact"}), "spec.kafka.topics.config.cleanup.policy"),
    (_invalid("spec.kafka.topics.config", {"min.insync.replicas": 2}), "spec.kafka.topics.config.min.insync.replicas"),
    # Probes: bounds, one action, an absolute path.
    (_invalid("spec.router.probes.readiness.periodSeconds", 0), "spec.router.probes.readiness.periodSeconds"),
    (
        _invalid("spec.time.probes.liveness", {"httpGet": {"path": "/a"}, "tcpSocket": {"port": 1}}),
        "spec.time.probes.liveness",
    ),
    (_invalid("spec.router.probes.readiness.httpGet.path", "health"), "spec.router.probes.readiness.httpGet.path"),
    (_invalid("spec.evenLogger.probes.startup.tcpSocket.port", 0), "spec.evenLogger.probes.startup.tcpSocket.port"),
    # A shadow release compares with the stable revision autoRollback keeps.
    (_invalid("spec.rollout.strategy", "Shadow"), "spec.rollout.strategy"),
    (_invalid("metadata.name", "n" * 43), "metadata.name"),
    (_invalid("metadata.name", "dotted.name"), "spec.streamName"),  # no valid default stream name
]


def test_invalid_pipelines_rejected_naming_the_field(control_plane, crd_installed, namespace):
    assert len(INVALID) >= 10
    for obj, field in INVALID:
        proc = control_plane.kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False
        )
        assert proc.returncode != 0, f"accepted: {field}"
        assert field in proc.stderr, f"{field!r} not named in: {proc.stderr}"
        # The model (used without an API server, e.g. by the SCDF path) agrees.
        with pytest.raises(PipelineError):
            Pipeline.from_resource(obj | {"metadata": {**obj["metadata"], "namespace": namespace}})
    # The same request with a valid body is accepted, so the rejections above are the rules'.
    valid = _invalid("spec.router.replicas", 64)
    valid["spec"]["kafka"]["topics"] = {
        "replicationFactor": 3,
        "config": {
            "retention.ms": 604800000,
            "min.insync.replicas": 2,
            "cleanup.policy": "delete",
            "unclean.leader.election.enable": False,
        },
    }
    valid["spec"]["rollout"] = {"strategy": "Shadow", "autoRollback": True}
    valid["spec"]["router"]["probes"] = {
        "readiness": {"httpGet": {"path": "/actuator/info", "port": 8080}},
        "startup": {"tcpSocket": {"port": 8080}, "failureThreshold": 30},
    }
    ok = control_plane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(valid), check=False
    )
    assert ok.returncode == 0, ok.stderr


# --- the operator --------------------------------------------------------------------------


def test_sample_pipeline_yields_wired_deployments_and_becomes_ready(k, operator_factory, audit, namespace):
    before = audit.offset()
    op, obj, took = start_and_wait_ready(k, operator_factory)
    deps = wait_for(lambda: four_children(k), 30, "four deployments")
    assert sorted(deps) == sorted(f"{NAME}-{a}" for a in APPS)
    uid = obj["metadata"]["uid"]
    for app in APPS:
        d = deps[f"{NAME}-{app}"]
        lbl = d["metadata"]["labels"]
        assert lbl["app.kubernetes.io/instance"] == NAME and lbl["app.kubernetes.io/component"] == app
        assert lbl["app.kubernetes.io/managed-by"] == "tspipe-operator"
        assert lbl["app.kubernetes.io/part-of"] == "tspipe" and lbl["app.kubernetes.io/name"]
        (ref,) = d["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "TimestampPipeline",
            uid,
            True,
            True,
        )
        c = container(d)
        assert c["image"] == IMAGES[app]
        # Exactly the contract's properties, each binding asserted.
        assert args_map(d) == {**COMMON, **CONTRACT[app]}, app
        env = {e["name"]: e for e in c["env"]}
        assert set(env) == {
            "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS",
            "SPRING_CLOUD_APPLICATION_GUID",
            "SPRING_CLOUD_APPLICATION_GROUP",
        }
        assert env["SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS"]["value"] == "kafka.kafka.svc:9092"
        assert env["SPRING_CLOUD_APPLICATION_GROUP"]["value"] == "timeStampStream"
        assert env["SPRING_CLOUD_APPLICATION_GUID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
        probes = (c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"])
        assert all(p["port"] == 8080 for p in probes)
        if app == "router":
            assert [p["path"] for p in probes] == ["/actuator/health/readiness", "/actuator/health/liveness"]
        else:
            assert [p["path"] for p in probes] == ["/actuator/info", "/actuator/health"]
        assert d["status"]["readyReplicas"] == 1
    # The pods really exist and are Ready (kwok), and pass the restricted Pod Security level.
    pods = k.json("pods", "-l", f"app.kubernetes.io/instance={NAME}")["items"]
    assert len(pods) == 4
    assert all({c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "True" for p in pods)
    st = obj["status"]
    assert st["phase"] == "Running" and st["readyComponents"] == "4/4"
    # The sample's broker address does not resolve here: a condition, not a failure.
    assert set(conditions(obj)) == {"Ready", "Progressing", "Degraded", "TopicsReady"}
    assert conditions(obj)["Degraded"]["status"] == "False"
    assert (conditions(obj)["TopicsReady"]["status"], conditions(obj)["TopicsReady"]["reason"]) == (
        "False",
        "BrokerUnreachable",
    )
    assert st["components"]["router"]["image"] == IMAGES["router"]
    assert st["components"]["router"]["readyReplicas"] == 1
    # Printer columns.
    table = k("get", "tsp").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "READY", "ROUTER", "ROLLOUT", "SHADOW", "AGE"]
    row = table[1].split()
    assert row[:4] == [NAME, "Running", "4/4", "1"] and len(row) == 5, "no autoRollback: empty ROLLOUT and SHADOW"
    # A first creation is no news (the status says it all); the unreachable broker is.
    events = k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
    assert [(e["type"], e["reason"]) for e in events if e.get("reportingComponent") == "tspipe-operator"] == [
        ("Warning", "BrokerUnreachable")
    ]
    wait_for(
        lambda: op.reconciles(NAME) and op.reconciles(NAME)[-1].endswith(": 0 writes"), 30, "a pass with no writes"
    )
    writes = audit.writes(before, namespace)
    print(
        f"\nFIGURE time-to-Ready {took:.1f}s; operator writes for one new pipeline: {len(writes)} "
        f"({', '.join(sorted({describe(w) for w in writes}))})"
    )
    # 4 creates + the status (Progressing, then Running) + that one Event; nothing else.
    assert sum(1 for w in writes if w["verb"] == "create" and w["objectRef"]["resource"] == "deployments") == 4
    assert sum(1 for w in writes if w["objectRef"]["resource"] == "timestamppipelines") <= 2
    assert len(writes) <= 7, [describe(w) for w in writes]
    assert not [
        w
        for w in writes
        if w["objectRef"]["resource"] == "timestamppipelines" and w["objectRef"].get("subresource") != "status"
    ], "the operator wrote to the pipeline object"


def test_restricted_pod_security_admission_accepts_the_pods(k, operator_factory, namespace):
    k(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    # Control: admission does enforce the level here (a default pod is refused).
    bad = k("run", "plain", "--image=busybox:1", "--restart=Never", check=False)
    assert bad.returncode != 0 and "violate" in bad.stderr and "PodSecurity" in bad.stderr, bad.stderr
    start_and_wait_ready(k, operator_factory)
    assert len(k.json("pods", "-l", f"app.kubernetes.io/instance={NAME}")["items"]) == 4
    events = k.json("events")["items"]
    assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]


def test_drift_is_reverted_and_strays_removed(k, operator_factory, audit, namespace):
    op, obj, _ = start_and_wait_ready(k, operator_factory)
    deps = four_children(k)
    router = deps[f"{NAME}-router"]
    good_args = container(router)["args"]

    # 1. Hand edit of the wiring (args) and the image.
    k(
        "patch",
        "deployment",
        f"{NAME}-router",
        "--type=json",
        "-p",
        json.dumps(
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/args/1",
                    "value": "--spring.cloud.stream.bindings.input.destination=hijacked",
                },
                {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:1"},
            ]
        ),
    )
    wait_for(
        lambda: (
            container(k.json("deployment", f"{NAME}-router"))["args"] == good_args
            and container(k.json("deployment", f"{NAME}-router"))["image"] == IMAGES["router"]
        ),
        30,
        "router args and image restored",
    )

    # 2. Hand scaling and an added env var.
    k("scale", "deployment", f"{NAME}-time", "--replicas=3")
    k("set", "env", "deployment", f"{NAME}-evenlogger", "EXTRA=1")
    wait_for(lambda: k.json("deployment", f"{NAME}-time")["spec"]["replicas"] == 1, 30, "time scaled back")
    wait_for(
        lambda: "EXTRA" not in {e["name"] for e in container(k.json("deployment", f"{NAME}-evenlogger"))["env"]},
        30,
        "env var removed",
    )

    # 3. Deletion of a child.
    old_uid = deps[f"{NAME}-oddlogger"]["metadata"]["uid"]
    k("delete", "deployment", f"{NAME}-oddlogger", "--wait=true")
    again = wait_for(lambda: k.get_or_none("deployment", f"{NAME}-oddlogger"), 30, "oddlogger recreated")
    assert again["metadata"]["uid"] != old_uid

    # 4. Labels edited away: found by name, labels restored.
    k("label", "deployment", f"{NAME}-time", "app.kubernetes.io/managed-by-")
    wait_for(
        lambda: (
            k.json("deployment", f"{NAME}-time")["metadata"]["labels"].get("app.kubernetes.io/managed-by")
            == "tspipe-operator"
        ),
        30,
        "labels restored",
    )

    # 5. A labelled Deployment the pipeline does not want is removed.
    stray = copy.deepcopy(deps[f"{NAME}-time"])
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences"):
        stray["metadata"].pop(key, None)
    stray.pop("status", None)
    stray["metadata"]["name"] = f"{NAME}-stray"
    stray["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "stray"
    stray["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "stray"
    stray["metadata"]["labels"]["app.kubernetes.io/component"] = "stray"
    k.apply(stray)
    wait_for(lambda: k.get_or_none("deployment", f"{NAME}-stray") is None, 30, "stray deployment removed")

    # 6. A Deployment from someone else (not ours by label) is left alone.
    k("create", "deployment", "unrelated", "--image=busybox:1")
    # Spec change rolls out: observedGeneration follows, router scaled by the pipeline.
    k("patch", "tsp", NAME, "--type=merge", "-p", json.dumps({"spec": {"router": {"replicas": 2}}}))
    obj = wait_for(pipeline_ready(k), 120, "pipeline Ready after scaling the router")
    assert obj["status"]["components"]["router"]["readyReplicas"] == 2
    assert k("get", "tsp").stdout.splitlines()[1].split()[:4] == [NAME, "Running", "4/4", "2"]
    assert k.get_or_none("deployment", "unrelated") is not None
    assert op.alive()
    reasons = {e["reason"] for e in k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]}
    assert {"CreatedDeployment", "UpdatedDeployment", "DeletedDeployment"} <= reasons


def test_deleting_the_pipeline_removes_children_by_gc(k, operator_factory):
    start_and_wait_ready(k, operator_factory)
    assert four_children(k)
    k("delete", "tsp", NAME, "--wait=true")
    wait_for(lambda: not k.deployments(f"app.kubernetes.io/instance={NAME}"), 60, "children garbage-collected")
    wait_for(lambda: not k.json("pods", "-l", f"app.kubernetes.io/instance={NAME}")["items"], 60, "pods gone")


def test_restart_creates_no_duplicates_and_no_writes(k, operator_factory, audit, namespace):
    op, _obj, _ = start_and_wait_ready(k, operator_factory)
    uids = {n: d["metadata"]["uid"] for n, d in four_children(k).items()}
    # Let the status settle: the operator's last pass wrote nothing.
    wait_for(
        lambda: op.reconciles(NAME) and op.reconciles(NAME)[-1].endswith(": 0 writes"), 30, "a pass with no writes"
    )
    op.stop()
    status_before = k.json("tsp", NAME)["status"]
    before = audit.offset()

    op2 = operator_factory("--resync-seconds", "1").start()
    # Several complete passes: the initial listing, then resyncs.
    wait_for(lambda: len(op2.reconciles(NAME)) >= 4, 60, "four reconcile passes after restart")
    writes = audit.writes(before, namespace)
    print(f"\nFIGURE writes after operator restart on an unchanged pipeline: {len(writes)}")
    assert writes == [], [describe(w) for w in writes]
    assert all(line.endswith(": 0 writes") for line in op2.reconciles(NAME))
    assert {n: d["metadata"]["uid"] for n, d in k.deployments().items()} == uids
    assert k.json("tsp", NAME)["status"] == status_before


def test_unfixable_conflict_becomes_a_condition_and_recovers(k, operator_factory, namespace):
    # Someone else's Deployment holds one of the names the pipeline needs.
    k("create", "deployment", f"{NAME}-time", "--image=busybox:1")
    op = operator_factory("--backoff-max", "2").start()
    k.apply(sample_pipeline())

    def failed():
        obj = k.get_or_none("tsp", NAME)
        return obj if obj and (obj.get("status") or {}).get("phase") == "Failed" else None

    obj = wait_for(failed, 60, "phase Failed")
    degraded = conditions(obj)["Degraded"]
    assert degraded["status"] == "True" and f"{NAME}-time" in degraded["message"]
    assert conditions(obj)["Ready"]["status"] == "False"
    warnings = [
        e
        for e in k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
        if e["type"] == "Warning" and e["reason"] == "ReconcileFailed"
    ]
    assert warnings and f"{NAME}-time" in warnings[0]["message"]
    # The other three are there; the foreign one was not touched.
    assert container(k.json("deployment", f"{NAME}-time"))["image"] == "busybox:1"
    assert len(k.deployments(f"app.kubernetes.io/instance={NAME}")) == 3
    # Once the obstacle is gone, the retry with backoff converges by itself.
    k("delete", "deployment", f"{NAME}-time")
    wait_for(pipeline_ready(k), 120, "pipeline Ready after the conflict is removed")
    assert op.alive()


def test_operator_survives_an_api_server_restart(tmp_path):
    """Its own control plane: the API server goes away and comes back; the operator
    keeps running, its watches resume, and drift made afterwards is still repaired."""
    from kubehelpers import CRD_FILE, Kubectl, Operator
    from localinfra.kube import ControlPlane

    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(CRD_FILE))
        wait_for(
            lambda: "timestamppipelines" in cp.kubectl("api-resources", "--api-group=tspipe.io", check=False).stdout,
            60,
            "CRD served",
        )
        cp.kubectl("create", "namespace", "restart")
        k = Kubectl(cp, "restart")
        op = Operator(
            cp.kubeconfig, "restart", tmp_path / "operator.log", ["--backoff-max", "2", "--inactivity-timeout", "10"]
        ).start()
        try:
            k.apply(sample_pipeline())
            wait_for(pipeline_ready(k), 180, "pipeline Ready")
            cp.restart_apiserver()
            k("delete", "deployment", f"{NAME}-router")
            wait_for(lambda: k.get_or_none("deployment", f"{NAME}-router"), 120, "router recreated after restart")
            wait_for(pipeline_ready(k), 180, "pipeline Ready again")
            assert op.alive()
        finally:
            op.stop()
            print("\n--- operator log tail ---\n" + op.log(since_start=False)[-3000:])
