"""The SCDF fallback against Skipper's Kubernetes deployer on a real API server (kwok
nodes, no kubelet): the Deployments Skipper creates for `tspipe scdf deploy` carry the
operator's pod shape, and `tspipe scdf import` reads a stream back into a pipeline.

Data Flow 2.11.5 and Skipper 2.8.0 with deployer 2.9.5 (hack/localinfra/scdf.py), Skipper's
account `default` on the session's control plane. The operator's side is its rendered
Deployment for the same pipeline, put through the API server with a server-side dry
run, so both sides carry the API server's defaults. Nothing needs to run: the pod
templates are compared, not the pods.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import recipe
import requests
import yaml
from localinfra.scdf import KubernetesPlatform, ScdfServers
from samples import sample_pipeline

from tspipe import probes as probe_render
from tspipe.components import COMPONENTS
from tspipe.model import Pipeline
from tspipe.names import LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF
from tspipe.render import SERVER_PORT, render_deployments
from tspipe.scdf.podshape import SCDF_POD_LABELS, neutral_startup
from tspipe.spring import RESERVED_ENV

pytestmark = [pytest.mark.scdf, pytest.mark.kube, pytest.mark.timeout(1500)]

OPERATOR_LABELS = (LABEL_NAME, LABEL_INSTANCE, LABEL_COMPONENT, LABEL_PART_OF, LABEL_MANAGED_BY)

# A pod template with every field the deployer can carry, spread over the pipeline's
# podTemplate and the apps' own, and each kind of probe.
ROUTER_TEMPLATE = {
    "labels": {"team": "data", "example.com/tier": "stream"},
    "annotations": {"example.com/owner": "data team: streams"},
    "nodeSelector": {"disktype": "ssd"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]}]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tsp-router"}},
                    },
                }
            ]
        },
    },
    "serviceAccountName": "router",
    "imagePullSecrets": [{"name": "regcred"}],
    "volumes": [
        {
            "name": "cfg",
            "configMap": {"name": "router-cfg", "defaultMode": 292, "items": [{"key": "a", "path": "a.conf"}]},
        },
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ],
    "volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/router", "readOnly": True},
        {"name": "cache", "mountPath": "/var/cache/router", "subPath": "c"},
    ],
    "envFrom": [{"configMapRef": {"name": "router-env"}}, {"secretRef": {"name": "router-secret"}}],
    "resources": {"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"cpu": "1", "memory": "300Mi"}},
}


ROUTER_ENV = [
    {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx200m -Dlist=a,b"},
    {"name": "log.level", "value": "debug"},
    {"name": "EMPTY", "value": ""},
    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "region"}}},
]


def pipeline_doc(stream: str, ns: str) -> dict:
    doc = sample_pipeline()
    doc["metadata"] = {"name": stream.lower(), "namespace": ns}
    doc["spec"]["streamName"] = stream
    doc["spec"]["podTemplate"] = {
        "nodeSelector": {"type": "kwok"},
        "labels": {"team": "stream"},
        "tolerations": [{"key": "tspipe.io/fake-node", "operator": "Exists"}],
    }
    doc["spec"]["router"] = {
        "replicas": 2,
        "podTemplate": ROUTER_TEMPLATE,
        "env": ROUTER_ENV,
        "probes": {"readiness": {"httpGet": {"path": "/actuator/health"}, "timeoutSeconds": 4, "failureThreshold": 5}},
    }
    doc["spec"]["time"] = {
        "probes": {
            "startup": {"httpGet": {"path": "/actuator/info", "port": 8080}, "periodSeconds": 2, "failureThreshold": 40}
        }
    }
    doc["spec"]["oddLogger"] = {
        "probes": {
            "readiness": {"tcpSocket": {}, "timeoutSeconds": 1},
            "liveness": {"tcpSocket": {}, "timeoutSeconds": 1, "periodSeconds": 20},
            "startup": {"tcpSocket": {}, "timeoutSeconds": 1},
        }
    }
    doc["spec"]["evenLogger"] = {
        "podTemplate": {
            "priorityClassName": "stream-apps",
            "resources": {"requests": {"memory": "800Mi"}, "limits": {"memory": "800Mi"}},
        }
    }
    return doc


def tspipe(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "tspipe.cli", "scdf", *args], capture_output=True, text=True, timeout=600)
    print(f"$ tspipe scdf {' '.join(args)}  (exit {r.returncode})\n{r.stdout}{r.stderr}")
    return r


@pytest.fixture(scope="module")
def k8s_scdf(control_plane, crd_installed, tmp_path_factory):
    cp = control_plane
    ns = f"scdf-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", ns)
    servers = ScdfServers(
        tmp_path_factory.mktemp("scdf-kwok") / "servers", kubernetes=KubernetesPlatform(cp.kubeconfig, ns)
    )
    try:
        servers.start()
        yield cp, ns, servers
    finally:
        servers.cleanup()
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def scdf_deployment(cp, ns: str, stream: str, label: str, timeout: float = 300) -> dict:
    """The Deployment Skipper's deployer created for the app of release 1."""
    name = f"{stream}-{label}-v1".lower()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = cp.kubectl("get", "deploy", name, "-n", ns, "-o", "json", check=False)
        if r.returncode == 0:
            return json.loads(r.stdout)
        time.sleep(2)
    raise AssertionError(f"no Deployment {ns}/{name} from Skipper within {timeout:.0f}s")


def operator_deployments(cp, doc: dict) -> dict[str, dict]:
    """The operator's Deployments for `doc` as the API server stores them (server-side dry run)."""
    resource = {**doc, "metadata": {**doc["metadata"], "uid": str(uuid.uuid4())}}
    out = {}
    for c, d in zip(COMPONENTS, render_deployments(resource), strict=True):
        r = cp.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(d))
        out[c.label] = json.loads(r.stdout)
    return out


def pod_shape(template: dict, owned_labels: tuple[str, ...]) -> dict:
    """What a user compares between two pod templates: placement, resources, labels and
    annotations they set, volumes, envFrom, security and probes."""
    spec, ctr = template["spec"], template["spec"]["containers"][0]
    meta = template.get("metadata") or {}
    return {
        "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k not in owned_labels},
        "annotations": meta.get("annotations") or {},
        **{
            k: spec.get(k)
            for k in (
                "nodeSelector",
                "tolerations",
                "affinity",
                "priorityClassName",
                "serviceAccountName",
                "imagePullSecrets",
                "volumes",
                "securityContext",
            )
        },
        **{
            f"container.{k}": ctr.get(k)
            for k in (
                "resources",
                "volumeMounts",
                "envFrom",
                "securityContext",
                "readinessProbe",
                "livenessProbe",
                "startupProbe",
            )
        },
        # The user's env vars (the wiring's are compared in tests/node/test_node_scdf.py), by
        # name: the deployer keeps no order.
        "container.env": {e["name"]: e for e in ctr.get("env") or [] if e["name"] not in RESERVED_ENV},
    }


def test_the_recipes_own_stream_imports_to_a_pipeline_the_api_server_accepts(k8s_scdf, tmp_path):
    """The seed's recipe, typed by hand through the REST API: its registrations (the
    python router as `docker://`), its definition and its six properties, nothing else."""
    cp, ns, servers = k8s_scdf
    url = servers.dataflow_url
    stream = "timeStampStream"
    try:
        import_the_recipe(cp, ns, url, stream, tmp_path)
    finally:
        # SCDF keeps one repository per app name: the recipe's python-router must go
        # before this project's router image can be registered under that name.
        requests.delete(f"{url}/streams/definitions/{stream}", timeout=120)
        for name, version, _ in recipe.APPS:
            requests.delete(f"{url}/apps/app/{name}/{version}", timeout=60)


def import_the_recipe(cp, ns: str, url: str, stream: str, tmp_path: Path) -> None:
    for name, version, uri in recipe.APPS:
        requests.post(f"{url}/apps/app/{name}/{version}", data={"uri": uri}, timeout=60).raise_for_status()
    requests.post(
        f"{url}/streams/definitions", data={"name": stream, "definition": recipe.DEFINITION}, timeout=60
    ).raise_for_status()
    requests.post(f"{url}/streams/deployments/{stream}", json=recipe.PROPERTIES, timeout=120).raise_for_status()
    scdf_deployment(cp, ns, stream, "python-router")  # Skipper has deployed it

    r = tspipe("import", "--server", url, "--stream", stream)
    assert r.returncode == 1
    assert "sets spring.cloud.stream.kafka.binder.brokers" in r.stderr and "--brokers" in r.stderr

    r = tspipe("import", "--server", url, "--stream", stream, "--brokers", "kafka.kafka.svc:9092", "--namespace", ns)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    assert doc["metadata"] == {"name": "timestampstream", "namespace": ns}
    assert doc["spec"]["streamName"] == stream
    assert doc["spec"]["router"]["image"] == "springcloud/polyglot-python-app:0.2"
    assert doc["spec"]["time"]["image"] == "springcloudstream/time-source-kafka:2.1.0.RELEASE"
    assert doc["spec"]["kafka"]["topics"] == {"input": "timeDest", "even": "evenDest", "odd": "oddDest"}
    # The probes the recipe's pods have under SCDF (its router serves only these two paths).
    router = Pipeline.from_resource(doc).router
    assert (router.probes.readiness.path, router.probes.liveness.path) == ("/actuator/info", "/actuator/health")
    assert "the operator gives it the consumer group timeStampStream" in r.stderr

    path = tmp_path / "recipe.yaml"
    path.write_text(r.stdout)
    cp.kubectl("apply", "-f", str(path))
    stored = json.loads(cp.kubectl("get", "tsp", "timestampstream", "-n", ns, "-o", "json").stdout)
    assert stored["spec"]["router"]["image"] == "springcloud/polyglot-python-app:0.2"
    cp.kubectl("delete", "tsp", "timestampstream", "-n", ns)


def test_scdf_deployments_have_the_operators_pod_shape_and_import_gives_the_pipeline_back(k8s_scdf, tmp_path):
    cp, ns, servers = k8s_scdf
    url = servers.dataflow_url
    stream = f"shape{uuid.uuid4().hex[:4]}"
    doc = pipeline_doc(stream, ns)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = tspipe("deploy", "-f", str(path), "--server", url, "--wait", "0")
    assert r.returncode == 0, r.stderr

    p = Pipeline.from_resource(doc)
    ours = operator_deployments(cp, doc)
    differences, expected = [], []
    for c in COMPONENTS:
        scdf = scdf_deployment(cp, ns, stream, c.label)
        mine = pod_shape(ours[c.label]["spec"]["template"], OPERATOR_LABELS)
        theirs = pod_shape(scdf["spec"]["template"], SCDF_POD_LABELS)
        if p.app(c).probes.startup is None:
            # The deployer always adds a startup probe; tspipe makes it one that changes
            # nothing (podshape.neutral_startup): that, and only that, is expected.
            neutral = probe_render.kubernetes(neutral_startup(p.app(c).probes), SERVER_PORT)
            assert mine["container.startupProbe"] is None
            got = {k: v for k, v in (theirs["container.startupProbe"] or {}).items() if k != "successThreshold"}
            if got == neutral:
                expected.append(f"{c.label}: startupProbe {neutral} (none in the pipeline)")
                mine["container.startupProbe"] = theirs["container.startupProbe"]
        for key in mine:
            if mine[key] != theirs[key]:
                differences.append(f"{c.label}: {key}:\n    operator: {mine[key]}\n    SCDF:     {theirs[key]}")
        assert scdf["spec"]["replicas"] == (2 if c.scalable else 1)
    print("\nexpected differences (the deployer's own):\n  " + "\n  ".join(expected))
    print("differences between the operator's and SCDF's pod templates:\n  " + ("\n  ".join(differences) or "none"))
    assert not differences
    # The router's and the even logger's: time and the odd logger have theirs in the pipeline.
    assert len(expected) == sum(p.app(c).probes.startup is None for c in COMPONENTS) == 2

    # Back: the same pipeline (what the operator renders from it is the same), and the API
    # server accepts it.
    r = tspipe("import", "--server", url, "--stream", stream)
    assert r.returncode == 0, r.stderr
    back = yaml.safe_load(r.stdout)
    # The stream's description, which deploy wrote, names the pipeline it came from.
    assert back["metadata"] == doc["metadata"]
    uid = {"uid": "u"}
    assert render_deployments({**back, "metadata": {**back["metadata"], **uid}}) == render_deployments(
        {**doc, "metadata": {**doc["metadata"], **uid}}
    )
    q = Pipeline.from_resource(back)
    assert (q.stream_name, q.kafka, q.router.replicas) == (p.stream_name, p.kafka, p.router.replicas)
    imported = tmp_path / "imported.yaml"
    imported.write_text(r.stdout)
    cp.kubectl("apply", "-f", str(imported))
    cp.kubectl("delete", "tsp", back["metadata"]["name"], "-n", ns)
    assert tspipe("destroy", "-f", str(path), "--server", url).returncode == 0


def test_a_field_the_deployer_cannot_express_is_named_and_nothing_is_sent(k8s_scdf, tmp_path):
    _cp, ns, servers = k8s_scdf
    doc = pipeline_doc(f"refuse{uuid.uuid4().hex[:4]}", ns)
    doc["spec"]["router"]["podTemplate"] = {
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = tspipe("deploy", "-f", str(path), "--server", servers.dataflow_url)
    assert r.returncode == 2
    assert "spec.router.podTemplate.topologySpreadConstraints: SCDF's Kubernetes deployer" in r.stderr
    assert (
        requests.get(f"{servers.dataflow_url}/streams/definitions/{doc['spec']['streamName']}", timeout=30).status_code
        == 404
    )
