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
from typing import Any

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
    label: str  # SCDF app label (wiring.APP_LABELS)
    suffix: str  # Deployment name suffix and app.kubernetes.io/component
    spec_field: str  # field under .spec (and key under .status.components)
    app_name: str  # app.kubernetes.io/name
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


def owner_reference(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(obj: dict[str, Any]) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _probe(path: str, delay: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": SERVER_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


CA_MOUNT_PATH = "/etc/tspipe/kafka-ca"
CA_VOLUME = "kafka-ca"
_BINDER_ENV = "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_"
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def credential_env(p: Pipeline) -> list[dict[str, Any]]:
    """The Kafka binder's security settings as env vars, secrets by reference only.

    The username and password come from the Secret through secretKeyRef; the JAAS line
    names them as `$(VAR)`, which the kubelet expands from the earlier entries when it
    starts the container, so no value ever appears in the Deployment. Spring's binder
    and the router both read `spring.cloud.stream.kafka.binder.configuration.*` from
    these upper-case names."""
    cr = p.kafka.credentials
    if cr is None:
        return []

    def secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": cr.secret_name, "key": key}}}

    jaas = (
        f'{_LOGIN_MODULES[cr.mechanism]} required username="$(KAFKA_SASL_USERNAME)" password="$(KAFKA_SASL_PASSWORD)";'
    )
    env = [
        secret("KAFKA_SASL_USERNAME", cr.username_key),
        secret("KAFKA_SASL_PASSWORD", cr.password_key),
        {"name": _BINDER_ENV + "SECURITY_PROTOCOL", "value": cr.protocol},
        {"name": _BINDER_ENV + "SASL_MECHANISM", "value": cr.mechanism},
        {"name": _BINDER_ENV + "SASL_JAAS_CONFIG", "value": jaas},
    ]
    if cr.ca_secret_name:
        env += [
            {"name": _BINDER_ENV + "SSL_TRUSTSTORE_TYPE", "value": "PEM"},
            {"name": _BINDER_ENV + "SSL_TRUSTSTORE_LOCATION", "value": f"{CA_MOUNT_PATH}/{cr.ca_key}"},
        ]
    return env


def _container(p: Pipeline, c: Component, spec: AppCommon) -> dict[str, Any]:
    props = wiring.app_properties(p)[c.label]
    args = [f"--{k}={v}" for k, v in props.items()] + [f"--server.port={SERVER_PORT}"]
    env = (
        [
            {"name": "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS", "value": ",".join(p.kafka.brokers)},
            # SCDF's per-instance id; the pod UID is unique per replica and per restart.
            {
                "name": "SPRING_CLOUD_APPLICATION_GUID",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}},
            },
            {"name": "SPRING_CLOUD_APPLICATION_GROUP", "value": p.stream_name},
        ]
        + credential_env(p)
        + [copy.deepcopy(dict(e)) for e in spec.env]
    )
    if c.router:
        # The router's own Boot-style health groups.
        readiness, liveness = _probe("/actuator/health/readiness", 5, 10), _probe("/actuator/health/liveness", 10, 30)
    else:
        # SCDF deployer defaults for Boot apps.
        readiness, liveness = _probe("/actuator/info", 10, 10), _probe("/actuator/health", 10, 60)
    container: dict[str, Any] = {
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
    if p.kafka.credentials is not None and p.kafka.credentials.ca_secret_name:
        container["volumeMounts"].append({"name": CA_VOLUME, "mountPath": CA_MOUNT_PATH, "readOnly": True})
    if spec.resources:
        container["resources"] = copy.deepcopy(dict(spec.resources))
    return container


def _pod_spec(p: Pipeline, c: Component, spec: AppCommon) -> dict[str, Any]:
    pod: dict[str, Any] = {
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
    cr = p.kafka.credentials
    if cr is not None and cr.ca_secret_name:
        # Only the CA key, read-only; the Secret's other keys stay out of the pod.
        pod["volumes"].append(
            {
                "name": CA_VOLUME,
                "secret": {
                    "secretName": cr.ca_secret_name,
                    "items": [{"key": cr.ca_key, "path": cr.ca_key}],
                    "defaultMode": 0o444,
                },
            }
        )
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
    spec: AppCommon = getattr(
        p, {"time": "time", "router": "router", "evenLogger": "even_logger", "oddLogger": "odd_logger"}[c.spec_field]
    )
    return spec


def render_deployment(
    resource: dict[str, Any], p: Pipeline, c: Component, replicas: int | None = None
) -> dict[str, Any]:
    spec = app_spec(p, c)
    lbl = labels(p.name, c)
    deployment: dict[str, Any] = {
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


def render_deployments(resource: dict[str, Any], replicas: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The four desired Deployments, in stream order. Raises model.PipelineError.

    `replicas`: per component (spec field) overrides, e.g. while pausing."""
    p = Pipeline.from_resource(resource)
    replicas = replicas or {}
    return [render_deployment(resource, p, c, replicas.get(c.spec_field)) for c in COMPONENTS]


def router_selector(pipeline_name: str) -> str:
    """The router pods' label selector as a string (the scale subresource's status.selector)."""
    router = next(c for c in COMPONENTS if c.router)
    return ",".join(f"{k}={v}" for k, v in selector_labels(pipeline_name, router).items())


def component_for(deployment: dict[str, Any]) -> Component | None:
    suffix = ((deployment.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT)
    return next((c for c in COMPONENTS if c.suffix == suffix), None)


def image_of(deployment: dict[str, Any]) -> str | None:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return containers[0].get("image") if containers else None
