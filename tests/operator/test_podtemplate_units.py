"""Unit tests: podTemplate's merge, the parser's refusals (the CRD's rules mirrored),
render, the reconcile diff with podTemplate values, and the unschedulable status."""

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from podtemplate_cases import JVM, PYTHON, RULE_REFUSALS, UNKNOWN_FIELD_REFUSALS
from samples import sample_pipeline

from tspipe import childdiff, crd, podtemplate, render
from tspipe.childdiff import UPDATE, plan
from tspipe.handlers import pod_matters
from tspipe.model import Pipeline, PipelineError
from tspipe.names import POD_ANNOTATIONS_ANNOTATION
from tspipe.podtemplate import PodTemplate
from tspipe.render import render_deployments
from tspipe.status import compute_status, needs_pods, ready_pods, unscheduled

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
# What every app pod tolerates unless its podTemplate tolerates the taint itself.
NODE_LOSS = [
    {
        "key": taint,
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": podtemplate.NODE_LOSS_TOLERATION_SECONDS,
    }
    for taint in podtemplate.NODE_LOSS_TAINTS
]


def deployments(obj):
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in render_deployments(obj)}


def pod(d):
    return d["spec"]["template"]["spec"]


def container(d):
    return pod(d)["containers"][0]


EVERY_FIELD = {
    "labels": {"team": "data", "tier": "stream"},
    "annotations": {"example.com/owner": "data-team"},
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "stream", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]
            }
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "timestamps"}},
        }
    ],
    "priorityClassName": "stream-high",
    "serviceAccountName": "apps",
    "imagePullSecrets": [{"name": "registry"}],
    "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
    "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True}],
    "envFrom": [{"configMapRef": {"name": "app-env"}}, {"secretRef": {"name": "app-secret"}, "prefix": "S_"}],
}


def assert_has_every_field(d, t=EVERY_FIELD):
    meta = d["spec"]["template"]["metadata"]
    assert {k: meta["labels"][k] for k in t["labels"]} == t["labels"]
    assert meta["annotations"] == t["annotations"]
    c, p = container(d), pod(d)
    assert c["resources"] == t["resources"]
    assert c["envFrom"] == t["envFrom"]
    assert c["volumeMounts"][-len(t["volumeMounts"]) :] == t["volumeMounts"]
    assert p["volumes"][-len(t["volumes"]) :] == t["volumes"]
    for key in (
        "nodeSelector",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "serviceAccountName",
        "imagePullSecrets",
    ):
        assert p[key] == t[key], key
    assert p["tolerations"] == t["tolerations"] + NODE_LOSS  # a NoSchedule toleration is not one for node loss


# --- every field reaches the Deployment ----------------------------------------------------


def test_every_field_of_the_pipeline_default_reaches_every_deployment():
    deps = deployments(sample_pipeline(stored=True, podTemplate=EVERY_FIELD))
    for d in deps.values():
        assert_has_every_field(d)
        # The operator's own parts are still there, first.
        assert container(d)["volumeMounts"][0] == {"name": "tmp", "mountPath": "/tmp"}
        assert pod(d)["volumes"][0]["name"] == "tmp"
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert d["metadata"]["annotations"][POD_ANNOTATIONS_ANNOTATION] == "example.com/owner"


@pytest.mark.parametrize("name", ["time", "router", "oddlogger"])
def test_every_field_of_an_app_reaches_only_that_app(name):
    deps = deployments(sample_pipeline(stored=True, evenLogger={"podTemplate": EVERY_FIELD}))
    assert_has_every_field(deps["evenlogger"])
    p = pod(deps[name])
    assert not {"nodeSelector", "affinity", "priorityClassName", "envFrom"} & set(p)
    assert p["tolerations"] == NODE_LOSS
    assert "team" not in deps[name]["spec"]["template"]["metadata"]["labels"]


def test_no_podtemplate_renders_as_before_plus_default_resources_and_node_loss_tolerations():
    deps = deployments(sample_pipeline(stored=True))
    for name, d in deps.items():
        assert container(d)["resources"] == (PYTHON if name == "router" else JVM)
        assert "annotations" not in d["spec"]["template"]["metadata"]
        assert d["metadata"]["annotations"].keys() == {render.HASH_ANNOTATION}
        assert set(pod(d)) == {
            "automountServiceAccountToken",
            "enableServiceLinks",
            "securityContext",
            "containers",
            "volumes",
            "tolerations",
        }
        assert pod(d)["tolerations"] == NODE_LOSS


# --- merge -------------------------------------------------------------------------------


def test_app_overrides_the_pipeline_default_field_by_field():
    obj = sample_pipeline(
        stored=True,
        podTemplate={
            "labels": {"team": "data", "tier": "stream"},
            "nodeSelector": {"disk": "ssd", "zone": "a"},
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "priorityClassName": "low",
            "resources": {"limits": {"memory": "1Gi"}},
            "volumes": [{"name": "shared", "emptyDir": {}}],
        },
        router={
            "podTemplate": {
                "labels": {"tier": "router"},
                "nodeSelector": {"zone": "b"},
                "tolerations": [],
                "priorityClassName": "high",
            }
        },
        time={"resources": {"requests": {"cpu": "2"}}},
    )
    deps = deployments(obj)
    r, t, e = pod(deps["router"]), pod(deps["time"]), pod(deps["evenlogger"])
    # Maps: key by key, the app's value winning.
    assert deps["router"]["spec"]["template"]["metadata"]["labels"]["tier"] == "router"
    assert deps["router"]["spec"]["template"]["metadata"]["labels"]["team"] == "data"
    assert r["nodeSelector"] == {"disk": "ssd", "zone": "b"} and e["nodeSelector"] == {"disk": "ssd", "zone": "a"}
    # Lists and scalars: replaced (an empty list too).
    assert r["tolerations"] == NODE_LOSS and e["tolerations"] == [{"key": "a", "operator": "Exists"}] + NODE_LOSS
    assert r["priorityClassName"] == "high" and e["priorityClassName"] == "low"
    assert r["volumes"][-1] == {"name": "shared", "emptyDir": {}}
    # resources: whole; spec.<app>.resources is the app's own.
    assert container(deps["time"])["resources"] == {"requests": {"cpu": "2"}}
    assert container(deps["router"])["resources"] == {"limits": {"memory": "1Gi"}}
    assert t["nodeSelector"] == {"disk": "ssd", "zone": "a"}


def test_merge_rules_per_field():
    base = PodTemplate(
        labels={"a": "1", "b": "1"},
        tolerations=({"key": "x"},),
        affinity={"nodeAffinity": {}},
        service_account_name="base",
    )
    app = PodTemplate(labels={"b": "2"}, tolerations=(), service_account_name=None)
    out = app.over(base)
    assert out.labels == {"a": "1", "b": "2"}
    assert out.tolerations == () and out.affinity == {"nodeAffinity": {}} and out.service_account_name == "base"
    assert {f.name: f.merge for f in podtemplate.FIELDS if f.merge == "keys"}.keys() == {
        "labels",
        "annotations",
        "nodeSelector",
    }
    # Neither layer: the app's default resources.
    assert podtemplate.effective(PodTemplate(), PodTemplate(), JVM).resources == JVM


def test_spec_pod_is_the_older_name_of_spec_podtemplate():
    old = deployments(sample_pipeline(stored=True, pod={"serviceAccountName": "apps", "nodeSelector": {"disk": "ssd"}}))
    new = deployments(
        sample_pipeline(stored=True, podTemplate={"serviceAccountName": "apps", "nodeSelector": {"disk": "ssd"}})
    )
    assert old == new
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(sample_pipeline(stored=True, pod={"priorityClassName": "x"}))
    assert err.value.field == "spec.pod.priorityClassName" and err.value.message == "unknown field"


# --- the parser refuses what the API server refuses ------------------------------------------


@pytest.mark.parametrize("case", RULE_REFUSALS + UNKNOWN_FIELD_REFUSALS, ids=lambda c: c[0])
def test_parser_refuses_owned_and_unknown_fields_naming_them(case):
    _, patch, field, fragment = case
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(sample_pipeline(stored=True, **patch))
    assert err.value.field == field
    assert fragment in err.value.message


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"podTemplate": {"labels": {"team": "no spaces"}}}, "spec.podTemplate.labels.team"),
        ({"podTemplate": {"labels": {"team": "x" * 64}}}, "spec.podTemplate.labels.team"),
        (
            {"podTemplate": {"tolerations": [{"key": "k", "tolerationSeconds": "soon"}]}},
            "spec.podTemplate.tolerations[0].tolerationSeconds",
        ),
        ({"podTemplate": {"volumes": [{"configMap": {"name": "x"}}]}}, "spec.podTemplate.volumes[0].name"),
        (
            {"podTemplate": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]}},
            "spec.podTemplate.volumes[1]",
        ),
        ({"podTemplate": {"resources": {"limits": {"memory": "lots"}}}}, "spec.podTemplate.resources.limits.memory"),
        ({"router": {"resources": {"claims": [{"name": "gpu"}]}}}, "spec.router.resources.claims"),
        ({"podTemplate": {"tolerations": [{}] * 33}}, "spec.podTemplate.tolerations"),
        ({"podTemplate": {"priorityClassName": "Not_A_Name"}}, "spec.podTemplate.priorityClassName"),
        (
            {"podTemplate": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}},
            "spec.podTemplate.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
        ),
    ],
)
def test_parser_applies_the_kubernetes_shapes(patch, field):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(sample_pipeline(stored=True, **patch))
    assert err.value.field == field


@pytest.mark.parametrize(
    "path", ["/data", "/tmp/cache", "/etc/app", "/etc/tspipe/other", "/etc/tspipe/kafka-ca/extra", "/tmpx"]
)
def test_paths_around_the_operators_mounts_are_allowed(path):
    assert not re.fullmatch(podtemplate.OWNED_PATHS_RE, path), path


@pytest.mark.parametrize("path", ["/", "//", "/tmp", "tmp", "/tmp//", "//etc", "/etc/tspipe", "/etc//tspipe/kafka-ca/"])
def test_the_operators_mount_paths_are_refused(path):
    assert re.fullmatch(podtemplate.OWNED_PATHS_RE, path), path


# --- the CRD carries the same rules, and stays small enough for `kubectl apply` ----------------


def test_crd_carries_every_rule_and_the_kubernetes_shapes():
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for where in [spec["properties"]["podTemplate"]] + [
        spec["properties"][a]["properties"]["podTemplate"] for a in ("time", "router", "evenLogger", "oddLogger")
    ]:
        props = where["properties"]
        assert list(props) == [f.name for f in podtemplate.FIELDS]
        for r in podtemplate.RULES:
            target = props[r.field]["items"] if r.items else props[r.field]
            assert r.validation() in target["x-kubernetes-validations"]
        # The Kubernetes shapes, not preserve-unknown-fields blobs.
        text = json.dumps(props)
        assert "x-kubernetes-preserve-unknown-fields" not in text and "$ref" not in text
        assert props["affinity"]["properties"]["podAntiAffinity"]["properties"].keys() == {
            "preferredDuringSchedulingIgnoredDuringExecution",
            "requiredDuringSchedulingIgnoredDuringExecution",
        }
        assert set(props["volumes"]["items"]["properties"]) == {"name", *podtemplate_volume_sources()}
    assert set(spec["properties"]["pod"]["properties"]) == set(podtemplate.LEGACY_POD_FIELDS)


def podtemplate_volume_sources():
    return ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret")


def test_crd_fits_client_side_apply():
    """`kubectl apply` (client-side, as the README, the tests and the demo install it)
    stores the object as compact JSON in an annotation; annotations are limited to 256 KiB."""
    applied = json.dumps(crd.crd(), separators=(",", ":"))
    assert len(applied) < 200 * 1024, len(applied)


# --- reconcile: podTemplate values do not read as drift; removed annotations go -------------


def server_defaulted(d, resources=None):
    a = copy.deepcopy(d)
    a["metadata"].update(resourceVersion="7", generation=1)
    p = a["spec"]["template"]["spec"]
    for v in p["volumes"]:
        if "configMap" in v:
            v["configMap"]["defaultMode"] = 420  # a server default
    # The API server drops `false` booleans of omitempty fields; quantities canonical.
    for m in p["containers"][0]["volumeMounts"]:
        if m.get("readOnly") is False:
            del m["readOnly"]
    if resources:
        p["containers"][0]["resources"] = resources
    return a


def test_podtemplate_values_as_the_server_returns_them_are_in_sync():
    t = {
        **EVERY_FIELD,
        "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": False}],
        "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"memory": "2Gi"}},
    }
    obj = sample_pipeline(stored=True, podTemplate=t)
    desired = render_deployments(obj)
    assert container(desired[0])["volumeMounts"][-1] == {"name": "config", "mountPath": "/config"}
    canonical = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    actual = [server_defaulted(d, canonical) for d in desired]
    assert plan(obj, desired, actual).actions == []


def test_an_annotation_removed_from_the_podtemplate_leaves_the_pods():
    obj = sample_pipeline(stored=True, podTemplate={"annotations": {"a.io/x": "1", "a.io/y": "2"}})
    actual = [server_defaulted(d) for d in render_deployments(obj)]
    # Someone else's template annotation (kubectl rollout restart) stays.
    actual[0]["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = "t"
    obj["spec"]["podTemplate"]["annotations"] = {"a.io/y": "2"}
    desired = render_deployments(obj)
    body = next(a for a in plan(obj, desired, actual).actions if a.name == "timestamps-time").body
    assert body["spec"]["template"]["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/restartedAt": "t",
        "a.io/y": "2",
    }
    assert body["metadata"]["annotations"][POD_ANNOTATIONS_ANNOTATION] == "a.io/y"
    del obj["spec"]["podTemplate"]
    desired = render_deployments(obj)
    (action,) = [a for a in plan(obj, desired, actual).actions if a.name == "timestamps-time"]
    assert action.verb == UPDATE
    assert action.body["spec"]["template"]["metadata"]["annotations"] == {"kubectl.kubernetes.io/restartedAt": "t"}
    assert POD_ANNOTATIONS_ANNOTATION not in action.body["metadata"]["annotations"]
    assert childdiff.drift(desired[0], server_defaulted(action.body)) == []


def test_rendering_is_deterministic_and_a_podtemplate_rolls_only_its_app():
    h = lambda d: d["metadata"]["annotations"][render.HASH_ANNOTATION]  # noqa: E731
    before = deployments(sample_pipeline(stored=True))
    again = deployments(sample_pipeline(stored=True))
    assert before == again
    after = deployments(
        sample_pipeline(
            stored=True, oddLogger={"podTemplate": {"nodeSelector": {"disk": "ssd"}, "labels": {"b": "2", "a": "1"}}}
        )
    )
    assert [n for n in before if h(before[n]) != h(after[n])] == ["oddlogger"]
    reordered = deployments(
        sample_pipeline(
            stored=True, oddLogger={"podTemplate": {"labels": {"a": "1", "b": "2"}, "nodeSelector": {"disk": "ssd"}}}
        )
    )
    assert h(reordered["oddlogger"]) == h(after["oddlogger"])
    # A pipeline default the app overrides with the same value changes nothing for it.
    masked = deployments(
        sample_pipeline(
            stored=True, podTemplate={"priorityClassName": "p"}, oddLogger={"podTemplate": {"priorityClassName": "q"}}
        )
    )
    masked2 = deployments(
        sample_pipeline(
            stored=True,
            podTemplate={"priorityClassName": "other"},
            oddLogger={"podTemplate": {"priorityClassName": "q"}},
        )
    )
    assert h(masked["oddlogger"]) == h(masked2["oddlogger"]) and h(masked["time"]) != h(masked2["time"])


# --- status: the scheduler's reason, named with the component ----------------------------------


def unschedulable_pod(
    name, component, message="0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
):
    return {
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/instance": "timestamps", "app.kubernetes.io/component": component},
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
        },
    }


def actual_from(desired, ready=True):
    d = copy.deepcopy(desired)
    d["metadata"]["generation"] = 1
    n = d["spec"]["replicas"]
    d["status"] = {
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
    return d


def test_status_names_the_component_and_the_schedulers_reason():
    obj = sample_pipeline(stored=True, evenLogger={"podTemplate": {"nodeSelector": {"disk": "none"}}})
    desired = render_deployments(obj)
    actual = [actual_from(d, ready=d["metadata"]["name"] != "timestamps-evenlogger") for d in desired]
    without = compute_status(obj, actual, NOW)
    assert needs_pods(without) and "PodsUnschedulable" not in {c["type"] for c in without["conditions"]}
    pods = [
        unschedulable_pod("timestamps-evenlogger-b", "evenlogger"),
        unschedulable_pod("timestamps-evenlogger-a", "evenlogger", "first by name"),
        {
            **unschedulable_pod("timestamps-router-x", "router"),
            "metadata": {
                "name": "timestamps-router-x",
                "labels": {"app.kubernetes.io/instance": "timestamps", "app.kubernetes.io/component": "router"},
            },
        },
    ]
    s = compute_status(obj, actual, NOW, pods=pods)
    assert s["phase"] == "Progressing"
    assert s["components"]["evenLogger"]["unschedulable"] == {
        "pods": 2,
        "reason": "Unschedulable",
        "message": "first by name",
    }
    assert "unschedulable" not in s["components"]["router"], "a ready component's pods are not reported"
    cond = {c["type"]: c for c in s["conditions"]}
    assert cond["PodsUnschedulable"]["status"] == "True" and cond["PodsUnschedulable"]["reason"] == "Unschedulable"
    assert cond["PodsUnschedulable"]["message"] == "evenLogger: 2 pod(s) not scheduled (Unschedulable): first by name"
    assert "evenLogger: 2 pod(s) not scheduled" in cond["Progressing"]["message"]
    # Once the pods are placed, the condition goes.
    ready = compute_status(obj, [actual_from(d) for d in desired], NOW, pods=[])
    assert not needs_pods(ready) and "PodsUnschedulable" not in {c["type"] for c in ready["conditions"]}


def test_unscheduled_ignores_other_pipelines_and_terminating_pods():
    other = unschedulable_pod("x", "time")
    other["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    gone = unschedulable_pod("y", "time")
    gone["metadata"]["deletionTimestamp"] = "now"
    assert unscheduled([other, gone], "timestamps", "time") is None
    assert unscheduled([unschedulable_pod("z", "time")], "timestamps", "time")["pods"] == 1


def test_ready_pods_are_the_components_live_ready_ones():
    def pod(name, component="router", ready=True, instance="timestamps", deleting=False):
        meta = {
            "name": name,
            "labels": {"app.kubernetes.io/instance": instance, "app.kubernetes.io/component": component},
        }
        if deleting:
            meta["deletionTimestamp"] = "now"
        return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}

    pods = [
        pod("r-b"),
        pod("r-a"),
        pod("r-unready", ready=False),
        pod("r-going", deleting=True),
        pod("r-other", instance="other"),
        pod("t-1", component="time"),
    ]
    assert ready_pods(pods, "timestamps", "router") == ["r-a", "r-b"]
    assert ready_pods(pods, "timestamps", "time") == ["t-1"]
    assert ready_pods([], "timestamps", "router") == []


def test_pod_events_that_matter():
    pending = unschedulable_pod("a", "time")
    ready = {"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert pod_matters(pending) and not pod_matters(ready)
    assert not pod_matters({**pending, "metadata": {"deletionTimestamp": "now"}})


def test_every_boolean_a_podtemplate_can_set_means_false_when_absent():
    """render.without_false drops `false` from user values (the API server drops many of
    them, which would read as drift forever); that is only right while every boolean these
    Kubernetes shapes have means false when absent. A new one must be checked and listed."""
    found = set()

    def walk(s, path):
        if s.get("type") == "boolean":
            found.add(path)
        for k, v in (s.get("properties") or {}).items():
            walk(v, f"{path}.{k}")
        if "items" in s:
            walk(s["items"], f"{path}[]")

    for name, s in podtemplate.KUBE_SCHEMAS.items():
        walk(s, name)
    assert found == {  # each checked against the Kubernetes API reference: absent means false
        "envFrom[].configMapRef.optional",
        "envFrom[].secretRef.optional",
        "volumeMounts[].readOnly",
        "volumes[].configMap.optional",
        "volumes[].csi.readOnly",
        "volumes[].persistentVolumeClaim.readOnly",
        "volumes[].projected.sources[].clusterTrustBundle.optional",
        "volumes[].projected.sources[].configMap.optional",
        "volumes[].projected.sources[].secret.optional",
        "volumes[].secret.optional",
    }


# --- node-loss tolerations ---------------------------------------------------------------


def test_every_app_is_evicted_from_a_lost_node_after_30_seconds_not_kubernetes_300():
    for d in deployments(sample_pipeline(stored=True)).values():
        got = {t["key"]: t for t in pod(d)["tolerations"]}
        for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            assert got[taint] == {"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}


def test_a_podtemplate_toleration_for_a_node_loss_taint_wins_for_that_taint_only():
    mine = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 600,
    }
    deps = deployments(sample_pipeline(stored=True, router={"podTemplate": {"tolerations": [mine]}}))
    assert pod(deps["router"])["tolerations"] == [mine, NODE_LOSS[0]]
    assert pod(deps["time"])["tolerations"] == NODE_LOSS  # the other apps keep the default


@pytest.mark.parametrize(
    "toleration, added",
    [
        # As the DefaultTolerationSeconds admission plugin decides whether a pod tolerates the taint already:
        ({"operator": "Exists"}, []),  # no key, no effect: every taint, forever (the pod never leaves)
        ({"operator": "Exists", "effect": "NoExecute"}, []),
        ({"key": "node.kubernetes.io/not-ready", "operator": "Exists"}, [1]),  # no effect: every effect of that key
        ({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}, [0, 1]),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, [0, 1]),
    ],
)
def test_which_podtemplate_tolerations_count_as_tolerating_node_loss(toleration, added):
    assert podtemplate.node_loss_tolerations([toleration]) == [toleration] + [NODE_LOSS[i] for i in added]


def test_the_toleration_constant_is_what_the_docs_say():
    doc = (ROOT / "docs" / "pod-templates.md").read_text()
    assert f"tolerationSeconds: {podtemplate.NODE_LOSS_TOLERATION_SECONDS}" in doc
