"""Desired Deployments for one TimestampPipeline (pure).

One Deployment per app, wired in SCDF's exec style: container args `--key=value` from
`wiring.app_properties`, plus the broker list and SCDF's identity as env vars. Probes
and port as SCDF's Kubernetes deployer sets them; security contexts that pass the
`restricted` Pod Security Standard.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from . import wiring
from .model import API_GROUP, API_VERSION, KIND, AppCommon, Pipeline

MANAGER = "tspipe-operator"
PART_OF = "tspipe"
HASH_ANNOTATION = "tspipe.io/desired-hash"
SERVER_PORT = 8080
RUN_AS = 1000  # some prebuilt images default to root; restricted PSS needs non-root

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"


@dataclass(frozen=True)
class Component:
    label: str        # SCDF app label (wiring.APP_LABELS)
    suffix: str       # Deployment name suffix and app.kubernetes.io/component
    spec_field: str   # field under .spec (and key under .status.components)
    app_name: str     # app.kubernetes.io/name
    router: bool = False


COMPONENTS = (
    Component("time", "time", "time", "time-source"),
    Component("python-router", "router", "router", "tsp-router", router=True),
    Component("evenLogger", "evenlogger", "evenLogger", "log-sink"),
    Component("oddLogger", "oddlogger", "oddLogger", "log-sink"),
)


def deployment_name(pipeline_name: str, component: Component) -> str:
    return f"{pipeline_name}-{component.suffix}"


def selector_labels(pipeline_name: str, component: Component) -> dict[str, str]:
    return {LABEL_INSTANCE: pipeline_name, LABEL_COMPONENT: component.suffix}


def owned_selector(pipeline_name: str) -> str:
    """Label selector for every Deployment this operator manages for a pipeline."""
    return f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_INSTANCE}={pipeline_name}"


def labels(pipeline_name: str, component: Component) -> dict[str, str]:
    return {
        LABEL_NAME: component.app_name,
        LABEL_INSTANCE: pipeline_name,
        LABEL_COMPONENT: component.suffix,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGER,
    }


def owner_reference(resource: dict) -> dict:
    meta = resource["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(obj: dict) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _probe(path: str, delay: int, period: int) -> dict:
    return {
        "httpGet": {"path": path, "port": SERVER_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def _container(p: Pipeline, c: Component, spec: AppCommon) -> dict:
    props = wiring.app_properties(p)[c.label]
    args = [f"--{k}={v}" for k, v in props.items()] + [f"--server.port={SERVER_PORT}"]
    env = [
        {"name": "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS", "value": ",".join(p.kafka.brokers)},
        # SCDF's per-instance id; the pod UID is unique per replica and per restart.
        {"name": "SPRING_CLOUD_APPLICATION_GUID",
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}},
        {"name": "SPRING_CLOUD_APPLICATION_GROUP", "value": p.stream_name},
    ] + [copy.deepcopy(dict(e)) for e in spec.env]
    if c.router:
        # The router's own Boot-style health groups.
        readiness, liveness = _probe("/actuator/health/readiness", 5, 10), _probe("/actuator/health/liveness", 10, 30)
    else:
        # SCDF deployer defaults for Boot apps.
        readiness, liveness = _probe("/actuator/info", 10, 10), _probe("/actuator/health", 10, 60)
    container = {
        "name": c.suffix,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": readiness,
        "livenessProbe": liveness,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        # Writable scratch space for the JVM / Python with a read-only root filesystem.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.resources:
        container["resources"] = copy.deepcopy(dict(spec.resources))
    return container


def _pod_spec(p: Pipeline, c: Component, spec: AppCommon) -> dict:
    pod = {
        "automountServiceAccountToken": False,  # the apps never call the Kubernetes API
        "enableServiceLinks": False,  # no Docker-link env vars (e.g. KAFKA_PORT) leaking into apps
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(p, c, spec)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    o = p.pod
    if o.service_account_name:
        pod["serviceAccountName"] = o.service_account_name
    if o.image_pull_secrets:
        pod["imagePullSecrets"] = [copy.deepcopy(dict(s)) for s in o.image_pull_secrets]
    if o.node_selector:
        pod["nodeSelector"] = dict(o.node_selector)
    if o.tolerations:
        pod["tolerations"] = [copy.deepcopy(dict(t)) for t in o.tolerations]
    if o.affinity:
        pod["affinity"] = copy.deepcopy(dict(o.affinity))
    return pod


def spec_replicas(p: Pipeline, c: Component) -> int:
    """Replicas the spec asks for (before pausing)."""
    return p.router.replicas if c.router else 1


def app_spec(p: Pipeline, c: Component) -> AppCommon:
    return getattr(p, {"time": "time", "router": "router",
                       "evenLogger": "even_logger", "oddLogger": "odd_logger"}[c.spec_field])


def render_deployment(resource: dict, p: Pipeline, c: Component, replicas: int | None = None) -> dict:
    spec = app_spec(p, c)
    lbl = labels(p.name, c)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(p.name, c),
            "namespace": p.namespace,
            "labels": lbl,
            "annotations": {},
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            "replicas": spec_replicas(p, c) if replicas is None else replicas,
            # From the spec, so a stalled rollout turns into ProgressDeadlineExceeded when the user says.
            "progressDeadlineSeconds": p.progress_deadline_seconds,
            "selector": {"matchLabels": selector_labels(p.name, c)},
            "template": {
                "metadata": {"labels": dict(lbl)},
                "spec": _pod_spec(p, c, spec),
            },
        },
    }
    # The hash leaves out the replica count: pausing or scaling is not a new revision.
    hashed = copy.deepcopy(deployment)
    hashed["spec"].pop("replicas")
    deployment["metadata"]["annotations"][HASH_ANNOTATION] = spec_hash(hashed)
    return deployment


def render_deployments(resource: dict, replicas: dict[str, int] | None = None) -> list[dict]:
    """The four desired Deployments, in stream order. Raises model.PipelineError.

    `replicas`: per component (spec field) overrides, e.g. while pausing."""
    p = Pipeline.from_resource(resource)
    replicas = replicas or {}
    return [render_deployment(resource, p, c, replicas.get(c.spec_field)) for c in COMPONENTS]


def router_selector(pipeline_name: str) -> str:
    """The router pods' label selector as a string (the scale subresource's status.selector)."""
    router = next(c for c in COMPONENTS if c.router)
    return ",".join(f"{k}={v}" for k, v in selector_labels(pipeline_name, router).items())


def component_for(deployment: dict) -> Component | None:
    suffix = ((deployment.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT)
    return next((c for c in COMPONENTS if c.suffix == suffix), None)


def image_of(deployment: dict) -> str | None:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return containers[0].get("image") if containers else None
