"""podTemplate on the real control plane (kube-scheduler, kwok's fake node, the API
server's own admission): every field reaches the Deployments and their pods, an app's
own value beats the pipeline default, owned fields are refused by the API server naming
them, a nodeSelector no node matches leaves that app Pending with the scheduler's
reason in the pipeline's status, and the committed Kubernetes shapes are this API
server's. The operator is a real subprocess."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from kubehelpers import conditions, generations, no_broker_pipeline, settled, wait_for
from podschemas import OUT as SCHEMAS_FILE
from podschemas import build, fetch, render
from podtemplate_cases import RULE_REFUSALS, UNKNOWN_FIELD_REFUSALS
from samples import SAMPLE_NAME as NAME
from samples import merged

from tspipe.model import Pipeline, PipelineError
from tspipe.podtemplate import node_loss_tolerations

pytestmark = pytest.mark.kube

COMPONENTS = {"time": "time", "router": "router", "evenLogger": "evenlogger", "oddLogger": "oddlogger"}


def test_committed_kubernetes_shapes_are_this_api_servers(control_plane):
    """operator/tspipe/data/podtemplate-schemas.json is what hack/podschemas.py makes from
    the OpenAPI document this API server serves (`make pod-schemas` rewrites it)."""
    openapi, version = fetch(control_plane.kubectl)
    assert SCHEMAS_FILE.read_text() == render(build(openapi, version))


def pod_template(d):
    return d["spec"]["template"]


def deployment(k, component):
    return k.json("deployment", f"{NAME}-{component}")


@pytest.fixture
def priority_class(control_plane):
    name = f"tsp-test-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "priorityclass", name, "--value=1000")
    yield name
    control_plane.kubectl("delete", "priorityclass", name, check=False)


def test_every_field_reaches_the_deployments_and_an_apps_value_beats_the_default(k, operator_factory, priority_class):
    # What the pods name must exist for the API server's admission to create them.
    k("create", "serviceaccount", "stream-apps")
    default = {
        "labels": {"team": "data", "tier": "stream"},
        "annotations": {"example.com/owner": "data-team"},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "stream", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": NAME}},
            }
        ],
        "priorityClassName": priority_class,
        "serviceAccountName": "stream-apps",
        "imagePullSecrets": [{"name": "registry"}],
        "volumes": [{"name": "config", "configMap": {"name": "app-config", "optional": True}}],
        "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True}],
        "envFrom": [{"configMapRef": {"name": "app-env", "optional": True}}],
    }
    router = {
        "labels": {"tier": "router"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [],
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}},
    }
    obj = no_broker_pipeline(podTemplate=default)
    obj["spec"]["router"]["podTemplate"] = router
    # Probes (spec.<app>.probes) go through the same API server: its defaults must not read as drift.
    obj["spec"]["router"]["probes"] = {
        "readiness": {"httpGet": {"path": "/actuator/info"}, "timeoutSeconds": 5},
        "startup": {"tcpSocket": {"port": 8080}, "failureThreshold": 30},
    }
    obj["spec"]["time"]["resources"] = {"requests": {"cpu": "10m", "memory": "300Mi"}}  # the short spelling
    Pipeline.from_resource(
        {**obj, "metadata": {**obj["metadata"], "namespace": k.namespace}}
    )  # valid for the model too
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running (pods scheduled on the kwok node)")

    for component in COMPONENTS.values():
        t = pod_template(deployment(k, component))
        meta, pod = t["metadata"], t["spec"]
        (c,) = pod["containers"]
        assert meta["labels"]["team"] == "data"
        assert meta["labels"]["tier"] == ("router" if component == "router" else "stream")
        assert meta["labels"]["app.kubernetes.io/component"] == component, "the operator's labels stay"
        assert meta["annotations"]["example.com/owner"] == "data-team"
        assert pod["priorityClassName"] == priority_class and pod["serviceAccountName"] == "stream-apps"
        assert pod["imagePullSecrets"] == [{"name": "registry"}]
        assert pod["affinity"] == default["affinity"]
        assert pod["topologySpreadConstraints"] == default["topologySpreadConstraints"]
        assert pod["volumes"][0]["name"] == "tmp" and pod["volumes"][-1]["configMap"]["name"] == "app-config"
        assert c["volumeMounts"][0]["mountPath"] == "/tmp"
        assert c["volumeMounts"][-1] == {"name": "config", "mountPath": "/config", "readOnly": True}
        assert c["envFrom"] == default["envFrom"]
        if component == "router":
            assert c["readinessProbe"]["httpGet"]["path"] == "/actuator/info"
            assert c["readinessProbe"]["timeoutSeconds"] == 5 and c["readinessProbe"]["periodSeconds"] == 10
            assert c["startupProbe"]["tcpSocket"] == {"port": 8080} and c["startupProbe"]["failureThreshold"] == 30
            assert pod["nodeSelector"] == {"type": "kwok", "kubernetes.io/os": "linux"}, "maps merge, app wins"
            assert pod["tolerations"] == node_loss_tolerations([]), "the app's empty list replaces the default's"
            assert c["resources"] == router["resources"]
        else:
            assert pod["nodeSelector"] == {"type": "kwok"}
            assert pod["tolerations"] == node_loss_tolerations(default["tolerations"])
            assert c["resources"] == (
                {"requests": {"cpu": "10m", "memory": "300Mi"}} if component == "time" else default["resources"]
            )
    # The pods carry them too: what a user selects by.
    pods = k.json("pods", "-l", f"team=data,app.kubernetes.io/instance={NAME}")["items"]
    assert sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods) == sorted(COMPONENTS.values())
    assert all(p["spec"]["priority"] == 1000 for p in pods)

    # Changing one app's podTemplate rolls that app only.
    gens = generations(k)
    k(
        "patch",
        "tsp",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"oddLogger": {"podTemplate": {"annotations": {"example.com/owner": "sinks"}}}}}),
    )
    wait_for(
        lambda: pod_template(deployment(k, "oddlogger"))["metadata"]["annotations"]["example.com/owner"] == "sinks",
        60,
        "the oddLogger's annotation updated",
    )
    wait_for(settled(k, "Running"), 120, "Running after the change")
    after = generations(k)
    assert after["oddlogger"] == gens["oddlogger"] + 1
    assert {c: g for c, g in after.items() if c != "oddlogger"} == {c: g for c, g in gens.items() if c != "oddlogger"}


def apply_refused(k, obj):
    proc = k("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert proc.returncode != 0, f"accepted: {json.dumps(obj['spec'])}"
    return proc.stderr


@pytest.mark.parametrize("case", RULE_REFUSALS, ids=lambda c: c[0])
def test_an_owned_field_is_refused_by_the_api_server_naming_it(k, crd_installed, case):
    _, patch, field, fragment = case
    obj = merged(no_broker_pipeline(), {"spec": patch})
    err = apply_refused(k, obj)
    # e.g. `spec.podTemplate.volumes[0].name: Forbidden: volume name tmp is the operator's`
    assert f"{field}:" in err and fragment in err, err
    assert k.get_or_none("tsp", NAME) is None
    with pytest.raises(PipelineError) as model_err:  # the parser agrees
        Pipeline.from_resource(obj)
    assert model_err.value.field == field


@pytest.mark.parametrize("case", UNKNOWN_FIELD_REFUSALS, ids=lambda c: c[0])
def test_a_field_not_in_the_schema_is_refused_naming_it(k, crd_installed, case):
    """kubectl's default `--validate=strict`: the API server refuses an unknown field by its path."""
    _, patch, field, _ = case
    obj = merged(no_broker_pipeline(), {"spec": patch})
    err = apply_refused(k, obj)
    assert f'unknown field "{field}"' in err, err
    with pytest.raises(PipelineError) as model_err:
        Pipeline.from_resource(obj)
    assert model_err.value.field == field and model_err.value.message == "unknown field"


def test_a_node_selector_no_node_matches_leaves_the_app_pending_and_status_says_why(k, operator_factory):
    operator_factory().start()
    obj = no_broker_pipeline()
    obj["spec"]["evenLogger"]["podTemplate"] = {"nodeSelector": {"disk": "no-such-disk"}}
    k.apply(obj)

    def unschedulable():
        o = k.get_or_none("tsp", NAME)
        cond = conditions(o or {}).get("PodsUnschedulable")
        return o if cond and cond["status"] == "True" else None

    obj = wait_for(unschedulable, 120, "condition PodsUnschedulable")
    cond = conditions(obj)["PodsUnschedulable"]
    # The component and the scheduler's own reason and message.
    assert cond["reason"] == "Unschedulable"
    assert cond["message"].startswith("evenLogger: 1 pod(s) not scheduled (Unschedulable): "), cond["message"]
    assert "nodes are available" in cond["message"] and "node affinity/selector" in cond["message"], cond["message"]
    comp = obj["status"]["components"]["evenLogger"]
    assert comp["unschedulable"]["reason"] == "Unschedulable" and comp["unschedulable"]["pods"] == 1
    assert comp["unschedulable"]["message"] in cond["message"]
    assert obj["status"]["phase"] == "Progressing" and "evenLogger" in conditions(obj)["Progressing"]["message"]
    for other in ("router", "time", "oddLogger"):
        assert "unschedulable" not in obj["status"]["components"][other]
    # What a user sees: the pod Pending on no node, the other apps running.
    (pod,) = k.json("pods", "-l", f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=evenlogger")["items"]
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    assert pod["spec"]["nodeSelector"] == {"disk": "no-such-disk"}
    wait_for(
        lambda: all(
            (d.get("status") or {}).get("availableReplicas") == 1
            for n, d in k.deployments().items()
            if not n.endswith("-evenlogger")
        ),
        120,
        "the other three apps available",
    )

    # The selector fixed: the pod is placed, the pipeline Running, the condition gone.
    k(
        "patch",
        "tsp",
        NAME,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/spec/evenLogger/podTemplate/nodeSelector"}]),
    )
    obj = wait_for(settled(k, "Running"), 120, "Running once the selector is gone")
    assert "PodsUnschedulable" not in conditions(obj)
    assert "unschedulable" not in obj["status"]["components"]["evenLogger"]
