"""Unit tests: rendering, status computation and the reconcile diff (pure functions)."""

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from samples import sample_pipeline

from tspipe import childdiff, crd, render
from tspipe.childdiff import CREATE, DELETE, RECREATE, UPDATE, contains, plan
from tspipe.model import PipelineError
from tspipe.render import render_deployments
from tspipe.status import compute_status

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def by_component(deps):
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in deps}


def test_four_deployments_named_labelled_and_owned():
    deps = render_deployments(sample_pipeline(stored=True))
    assert [d["metadata"]["name"] for d in deps] == [
        "timestamps-time",
        "timestamps-router",
        "timestamps-evenlogger",
        "timestamps-oddlogger",
    ]
    for d in deps:
        lbl = d["metadata"]["labels"]
        assert lbl["app.kubernetes.io/instance"] == "timestamps"
        assert lbl["app.kubernetes.io/managed-by"] == "tspipe-operator"
        assert lbl["app.kubernetes.io/part-of"] == "tspipe"
        assert set(d["spec"]["selector"]["matchLabels"].items()) <= set(
            d["spec"]["template"]["metadata"]["labels"].items()
        )
        (ref,) = d["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "tspipe.io/v1alpha1",
            "kind": "TimestampPipeline",
            "name": "timestamps",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert len(d["metadata"]["annotations"][render.HASH_ANNOTATION]) == 16


def test_args_env_and_probes_follow_the_contract():
    deps = by_component(render_deployments(sample_pipeline(stored=True)))
    args = {k: c["spec"]["template"]["spec"]["containers"][0]["args"] for k, c in deps.items()}
    assert "--spring.cloud.stream.bindings.output.destination=timeDest" in args["time"]
    assert "--time.date-format=MM/dd/yy HH:mm:ss" in args["time"]
    assert "--spring.cloud.stream.bindings.input.destination=timeDest" in args["router"]
    assert "--spring.cloud.stream.bindings.even.destination=evenDest" in args["router"]
    assert "--spring.cloud.stream.bindings.odd.destination=oddDest" in args["router"]
    assert "--spring.cloud.stream.bindings.input.group=timeStampStream" in args["router"]
    assert "--spring.cloud.stream.bindings.input.destination=evenDest" in args["evenlogger"]
    assert "--spring.cloud.stream.bindings.input.destination=oddDest" in args["oddlogger"]
    for k, d in deps.items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert "--server.port=8080" in c["args"]
        assert all(a.startswith("--") and "=" in a for a in c["args"])
        env = {e["name"]: e for e in c["env"]}
        assert env["SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS"]["value"] == "kafka.kafka.svc:9092"
        assert env["SPRING_CLOUD_APPLICATION_GROUP"]["value"] == "timeStampStream"
        assert env["SPRING_CLOUD_APPLICATION_GUID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
        paths = (c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"])
        if k == "router":
            assert paths == ("/actuator/health/readiness", "/actuator/health/liveness")
        else:
            assert paths == ("/actuator/info", "/actuator/health")
        assert c["readinessProbe"]["httpGet"]["port"] == 8080


def test_restricted_pod_security():
    for d in render_deployments(sample_pipeline(stored=True)):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert pod["automountServiceAccountToken"] is False
        assert all("hostPath" not in v for v in pod["volumes"])


def test_overrides_replicas_resources_env():
    obj = sample_pipeline(stored=True)
    obj["spec"]["router"].update(
        replicas=3, resources={"limits": {"cpu": "500m"}}, env=[{"name": "EXTRA", "value": "1"}]
    )
    obj["spec"]["pod"] = {
        "serviceAccountName": "apps",
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "reg"}],
    }
    deps = by_component(render_deployments(obj))
    assert deps["router"]["spec"]["replicas"] == 3 and deps["time"]["spec"]["replicas"] == 1
    c = deps["router"]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "500m"}} and c["env"][-1] == {"name": "EXTRA", "value": "1"}
    for d in deps.values():
        pod = d["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "apps" and pod["nodeSelector"] == {"disk": "ssd"}
        assert pod["imagePullSecrets"] == [{"name": "reg"}]


def test_hash_changes_with_spec_only():
    a = by_component(render_deployments(sample_pipeline(stored=True)))
    b = by_component(render_deployments(sample_pipeline(stored=True)))
    obj = sample_pipeline(stored=True)
    obj["spec"]["time"]["dateFormat"] = "yyyy"
    c = by_component(render_deployments(obj))
    h = lambda d: d["metadata"]["annotations"][render.HASH_ANNOTATION]  # noqa: E731
    assert h(a["time"]) == h(b["time"]) and h(a["time"]) != h(c["time"])
    assert h(a["router"]) == h(c["router"])


def test_render_rejects_invalid_spec():
    obj = sample_pipeline(stored=True)
    obj["spec"]["kafka"]["topics"]["odd"] = "evenDest"
    with pytest.raises(PipelineError):
        render_deployments(obj)


# --- status --------------------------------------------------------------------------


def actual_from(desired, ready=True, **status):
    d = copy.deepcopy(desired)
    d["metadata"]["generation"] = 1
    n = d["spec"]["replicas"]
    st = {
        "observedGeneration": 1,
        "replicas": n,
        "updatedReplicas": n,
        "readyReplicas": n if ready else 0,
        "availableReplicas": n if ready else 0,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if ready else "ReplicaSetUpdated",
            }
        ],
    }
    st.update(status)
    d["status"] = st
    return d


def test_status_pending_progressing_running_degraded_failed():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    s = compute_status(obj, [], NOW)
    assert s["phase"] == "Pending" and s["readyComponents"] == "0/4" and s["observedGeneration"] == 1

    s = compute_status(obj, [actual_from(d, ready=False) for d in desired], NOW)
    assert s["phase"] == "Progressing"  # pods of a first rollout not yet available
    running = [actual_from(d) for d in desired]
    s = compute_status(obj, running, NOW)
    assert s["phase"] == "Running" and s["readyComponents"] == "4/4"
    cond = {c["type"]: c for c in s["conditions"]}
    assert cond["Ready"]["status"] == "True" and cond["Progressing"]["status"] == "False"
    assert cond["Degraded"]["status"] == "False"
    assert cond["Ready"]["lastTransitionTime"] == "2026-11-27T12:00:00Z"
    assert s["components"]["router"] == {
        "deployment": "timestamps-router",
        "desiredReplicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "ready": True,
        "image": "ghcr.io/tspipe/router:0.1.0",
    }

    # Rollout in progress: a new generation not yet observed.
    rolling = copy.deepcopy(running)
    rolling[1]["metadata"]["generation"] = 2
    assert compute_status(obj, rolling, NOW)["phase"] == "Progressing"

    # Rolled out but a pod lost readiness.
    degraded = copy.deepcopy(running)
    degraded[2]["status"]["availableReplicas"] = 0
    s = compute_status(obj, degraded, NOW)
    assert s["phase"] == "Degraded" and s["readyComponents"] == "3/4"
    assert "evenLogger 0/1" in s["conditions"][0]["message"]

    stuck = copy.deepcopy(running)
    stuck[0]["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    stuck[0]["status"]["availableReplicas"] = 0
    s = compute_status(obj, stuck, NOW)
    cond = {c["type"]: c for c in s["conditions"]}
    # The old pods keep serving: Degraded (not Failed), naming the stuck component.
    assert s["phase"] == "Degraded" and cond["Degraded"]["reason"] == "ProgressDeadlineExceeded"
    assert "rollout of time made no progress within 600s" in cond["Degraded"]["message"]
    assert cond["Progressing"]["status"] == "False" and cond["Progressing"]["reason"] == "ProgressDeadlineExceeded"

    s = compute_status(obj, running, NOW, error="forbidden")
    assert s["phase"] == "Failed"
    assert {c["type"]: c for c in s["conditions"]}["Degraded"]["message"] == "forbidden"


def test_unready_after_rollout_is_degraded_and_partial_is_progressing():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    assert compute_status(obj, [actual_from(d) for d in desired[:2]], NOW)["phase"] == "Progressing"
    old_pods = [actual_from(d) for d in desired]
    old_pods[1]["status"]["replicas"] = 2  # an old ReplicaSet still has a pod
    assert compute_status(obj, old_pods, NOW)["phase"] == "Progressing"


def test_last_transition_time_kept_when_status_unchanged():
    obj = sample_pipeline(stored=True)
    running = [actual_from(d) for d in render_deployments(obj)]
    first = compute_status(obj, running, NOW)
    obj["status"] = first
    later = datetime(2026, 11, 27, 13, 0, 0, tzinfo=UTC)
    again = compute_status(obj, running, later)
    assert again == first  # nothing changed: identical status, so no write
    running[0]["status"]["availableReplicas"] = 0
    changed = compute_status(obj, running, later)
    ready = {c["type"]: c for c in changed["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "2026-11-27T13:00:00Z"


def test_router_scaled_to_zero_is_ready():
    obj = sample_pipeline(stored=True)
    obj["spec"]["router"]["replicas"] = 0
    deps = [actual_from(d) for d in render_deployments(obj)]
    for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        deps[1]["status"].pop(k)
    assert compute_status(obj, deps, NOW)["phase"] == "Running"


# --- reconcile diff ----------------------------------------------------------------------


def server_defaulted(d):
    """What the API server returns: defaults added, empty values dropped, quantities canonical."""
    a = actual_from(d)
    a["metadata"].update(
        resourceVersion="7", uid="dep-uid", creationTimestamp="x", managedFields=[{"manager": "tspipe-operator"}]
    )
    a["spec"].update(strategy={"type": "RollingUpdate"}, revisionHistoryLimit=10, progressDeadlineSeconds=600)
    pod = a["spec"]["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    for c in pod["containers"]:
        c.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
        c["readinessProbe"]["successThreshold"] = 1
    pod["volumes"][0]["emptyDir"]["sizeLimit"] = "256Mi"
    return a


def test_in_sync_means_no_actions():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    actual = [server_defaulted(d) for d in desired]
    assert plan(obj, desired, actual).actions == []


def test_quantities_compare_by_value():
    assert contains({"resources": {"limits": {"cpu": "0.5"}}}, {"resources": {"limits": {"cpu": "500m"}}})
    assert contains({"resources": {"requests": {"memory": "1Gi"}}}, {"resources": {"requests": {"memory": "1024Mi"}}})
    assert not contains({"resources": {"limits": {"cpu": "1"}}}, {"resources": {"limits": {"cpu": "500m"}}})
    assert contains({"env": [{"name": "A", "value": ""}]}, {"env": [{"name": "A"}]})
    assert not contains({"env": [{"name": "A"}]}, {"env": [{"name": "A"}, {"name": "B"}]})


def test_missing_children_are_created():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    actual = [server_defaulted(d) for d in desired[1:]]
    p = plan(obj, desired, actual)
    assert [(a.verb, a.name) for a in p.actions] == [(CREATE, "timestamps-time")]


@pytest.mark.parametrize(
    "edit, part",
    [
        (lambda d: d["spec"]["template"]["spec"]["containers"][0]["args"].append("--x=y"), "template"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"}),
            "template",
        ),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="evil:1"), "template"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "template",
        ),
        (lambda d: d["spec"].update(replicas=5), "replicas"),
        (lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/managed-by"), "labels"),
        (lambda d: d["metadata"].update(ownerReferences=[]), "ownerReferences"),
    ],
)
def test_hand_edits_are_drift(edit, part):
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    actual = [server_defaulted(d) for d in desired]
    edit(actual[1])
    p = plan(obj, desired, actual)
    (action,) = p.actions
    assert action.verb == UPDATE and action.name == "timestamps-router" and part in action.reason
    body = action.body
    assert (
        body["metadata"]["resourceVersion"] == "7" and "status" not in body and "managedFields" not in body["metadata"]
    )
    assert body["spec"]["template"] == desired[1]["spec"]["template"]
    assert body["spec"]["strategy"] == {"type": "RollingUpdate"}  # untouched
    assert childdiff.drift(desired[1], server_defaulted({**body, "status": {}})) == []


def test_foreign_labels_and_restart_annotation_survive_update():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    a = server_defaulted(desired[0])
    a["metadata"]["labels"]["team"] = "x"
    a["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "t"}
    a["spec"]["replicas"] = 2
    (action,) = plan(obj, desired, [a] + [server_defaulted(d) for d in desired[1:]]).actions
    assert action.body["metadata"]["labels"]["team"] == "x"
    assert action.body["spec"]["template"]["metadata"]["annotations"] == {"kubectl.kubernetes.io/restartedAt": "t"}


def test_undesired_labelled_child_deleted_foreign_left_alone():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    actual = [server_defaulted(d) for d in desired]
    stray = copy.deepcopy(actual[0])
    stray["metadata"]["name"] = "timestamps-old"
    other_owner = copy.deepcopy(stray)
    other_owner["metadata"]["name"] = "timestamps-x"
    other_owner["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    unlabelled = copy.deepcopy(stray)
    unlabelled["metadata"]["name"] = "unrelated"
    unlabelled["metadata"]["labels"] = {"app": "x"}
    p = plan(obj, desired, actual + [stray, other_owner, unlabelled])
    assert [(a.verb, a.name) for a in p.actions] == [(DELETE, "timestamps-old")]


def test_name_taken_by_someone_else_is_blocked_and_selector_change_recreates():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    actual = [server_defaulted(d) for d in desired]
    actual[0]["metadata"]["ownerReferences"][0]["uid"] = "another-pipeline"
    actual[3]["metadata"]["ownerReferences"] = []  # ours by label: adopted back
    actual[1]["spec"]["selector"] = {"matchLabels": {"app": "old"}}
    p = plan(obj, desired, actual)
    assert p.blocked and "timestamps-time" in p.blocked[0]
    assert [(a.verb, a.name) for a in p.actions] == [(RECREATE, "timestamps-router"), (UPDATE, "timestamps-oddlogger")]
    actual[2]["metadata"]["deletionTimestamp"] = "now"
    assert "timestamps-evenlogger" in plan(obj, desired, actual).waiting


def test_crd_file_is_generated_and_consistent():
    assert (ROOT / "crds" / "timestamppipelines.tspipe.io.yaml").read_text() == crd.render_yaml()
    doc = crd.crd()
    v = doc["spec"]["versions"][0]
    assert doc["spec"]["names"]["shortNames"] == ["tsp"] and v["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.router.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    assert [c["name"] for c in v["additionalPrinterColumns"]][:3] == ["Phase", "Ready", "Router"]
