"""Desired Deployments for one TimestampPipeline (pure).

One Deployment per app, wired in SCDF's exec style: container args `--key=value` from
`wiring.app_properties`, plus the broker list and SCDF's identity as env vars. Probes
and port as SCDF's Kubernetes deployer sets them; security contexts that pass the
`restricted` Pod Security Standard.
"""

from __future__ import annotations

import copy
from typing import Any

from . import probes, wiring
from .components import COMPONENTS, ROUTER, Component
from .model import AppCommon, Pipeline
from .names import (
    CA_MOUNT_PATH,
    CA_VOLUME,
    GROUP_VERSION,
    HASH_ANNOTATION,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_SELECTOR,
    MANAGER,
    PART_OF,
    POD_ANNOTATIONS_ANNOTATION,
    RESTARTED_AT_ANNOTATION,
    TMP_MOUNT_PATH,
    TMP_VOLUME,
)
from .podtemplate import PodTemplate, node_loss_tolerations
from .spring import (
    BROKERS_ENV,
    GROUP_ENV,
    GUID_ENV,
    SASL_PASSWORD_ENV,
    SASL_USERNAME_ENV,
    SERVER_PORT_KEY,
    binder_env,
)
from .stamps import digest

SERVER_PORT = 8080
RUN_AS = 1000  # some prebuilt images default to root; restricted PSS needs non-root


def deployment_name(pipeline_name: str, component: Component) -> str:
    return f"{pipeline_name}-{component.suffix}"


def selector_labels(pipeline_name: str, component: Component) -> dict[str, str]:
    return {LABEL_INSTANCE: pipeline_name, LABEL_COMPONENT: component.suffix}


def owned_selector(pipeline_name: str) -> str:
    """Label selector for every Deployment this operator manages for a pipeline."""
    return f"{MANAGED_SELECTOR},{LABEL_INSTANCE}={pipeline_name}"


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
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(obj: dict[str, Any]) -> str:
    return digest(obj, 16)


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
        f'{_LOGIN_MODULES[cr.mechanism]} required username="$({SASL_USERNAME_ENV})" password="$({SASL_PASSWORD_ENV})";'
    )
    env = [
        secret(SASL_USERNAME_ENV, cr.username_key),
        secret(SASL_PASSWORD_ENV, cr.password_key),
        {"name": binder_env("security.protocol"), "value": cr.protocol},
        {"name": binder_env("sasl.mechanism"), "value": cr.mechanism},
        {"name": binder_env("sasl.jaas.config"), "value": jaas},
    ]
    if cr.ca_secret_name:
        env += [
            {"name": binder_env("ssl.truststore.type"), "value": "PEM"},
            {"name": binder_env("ssl.truststore.location"), "value": f"{CA_MOUNT_PATH}/{cr.ca_key}"},
        ]
    return env


def without_false(value: Any) -> Any:
    """A user-given corev1 value without its `false` booleans. Every boolean a podTemplate
    can set means false when absent, and the API server drops many of them (`readOnly:
    false` of a volume mount is not stored), so leaving them in would read as drift on
    every pass and rewrite the Deployment forever."""
    if isinstance(value, dict):
        return {k: without_false(v) for k, v in value.items() if v is not False}
    if isinstance(value, list | tuple):
        return [without_false(v) for v in value]
    return value


def _user(items: tuple[Any, ...] | None) -> list[Any]:
    return [without_false(copy.deepcopy(dict(i))) for i in items or ()]


def _container(p: Pipeline, c: Component, spec: AppCommon, t: PodTemplate) -> dict[str, Any]:
    props = wiring.component_properties(p, c)
    args = [f"--{k}={v}" for k, v in props.items()] + [f"--{SERVER_PORT_KEY}={SERVER_PORT}"]
    env = (
        [
            {"name": BROKERS_ENV, "value": ",".join(p.kafka.brokers)},
            # SCDF's per-instance id; the pod UID is unique per replica and per restart.
            {"name": GUID_ENV, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}},
            {"name": GROUP_ENV, "value": p.stream_name},
        ]
        + credential_env(p)
        + [copy.deepcopy(dict(e)) for e in spec.env]
    )
    container: dict[str, Any] = {
        "name": c.suffix,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": probes.kubernetes(spec.probes.readiness, SERVER_PORT),
        "livenessProbe": probes.kubernetes(spec.probes.liveness, SERVER_PORT),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        # Writable scratch space for the JVM / Python with a read-only root filesystem.
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_MOUNT_PATH}],
    }
    if spec.probes.startup is not None:
        container["startupProbe"] = probes.kubernetes(spec.probes.startup, SERVER_PORT)
    if p.kafka.credentials is not None and p.kafka.credentials.ca_secret_name:
        container["volumeMounts"].append({"name": CA_VOLUME, "mountPath": CA_MOUNT_PATH, "readOnly": True})
    container["volumeMounts"] += _user(t.volume_mounts)
    if t.env_from:
        container["envFrom"] = _user(t.env_from)
    if t.resources:
        container["resources"] = without_false(copy.deepcopy(dict(t.resources)))
    return container


def _pod_spec(p: Pipeline, c: Component, spec: AppCommon, t: PodTemplate) -> dict[str, Any]:
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
        "containers": [_container(p, c, spec, t)],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}],
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
    pod["volumes"] += _user(t.volumes)
    if t.service_account_name:
        pod["serviceAccountName"] = t.service_account_name
    if t.priority_class_name:
        pod["priorityClassName"] = t.priority_class_name
    if t.image_pull_secrets:
        pod["imagePullSecrets"] = _user(t.image_pull_secrets)
    if t.node_selector:
        pod["nodeSelector"] = dict(t.node_selector)
    pod["tolerations"] = node_loss_tolerations(_user(t.tolerations))
    if t.affinity:
        pod["affinity"] = without_false(copy.deepcopy(dict(t.affinity)))
    if t.topology_spread_constraints:
        pod["topologySpreadConstraints"] = _user(t.topology_spread_constraints)
    return pod


def spec_replicas(p: Pipeline, c: Component) -> int:
    """Replicas the spec asks for (before pausing)."""
    if c.spec_field in p.held:
        return 0
    return p.router.replicas if c.scalable else 1


def render_deployment(
    resource: dict[str, Any], p: Pipeline, c: Component, replicas: int | None = None, spec_hash: str | None = None
) -> dict[str, Any]:
    """`spec_hash`: the spec-hash annotation, if known (an earlier render of the same
    pipeline: the hash ignores the replicas); computed otherwise."""
    spec = p.app(c)
    t = p.pod_template_for(c)
    lbl = labels(p.name, c)
    template_meta: dict[str, Any] = {"labels": {**(t.labels or {}), **lbl}}
    annotations: dict[str, str] = {}
    if t.annotations:
        template_meta["annotations"] = dict(t.annotations)
        # Which template annotations are the podTemplate's: one removed from it is removed
        # from the pods too (reconcile.merged_for_update).
        annotations[POD_ANNOTATIONS_ANNOTATION] = ",".join(sorted(t.annotations))
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(p.name, c),
            "namespace": p.namespace,
            "labels": lbl,
            "annotations": annotations,
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            "replicas": spec_replicas(p, c) if replicas is None else replicas,
            # From the spec, so a stalled rollout turns into ProgressDeadlineExceeded when the user says.
            "progressDeadlineSeconds": p.progress_deadline_seconds,
            "selector": {"matchLabels": selector_labels(p.name, c)},
            "template": {
                "metadata": template_meta,
                "spec": _pod_spec(p, c, spec, t),
            },
        },
    }
    if spec_hash is None:
        stamp_hash(deployment)
    else:
        annotations[HASH_ANNOTATION] = spec_hash
    return deployment


def stamp_hash(deployment: dict[str, Any]) -> None:
    """Set the spec-hash annotation: over the Deployment without its replica count (pausing
    or scaling is not a new revision) and without the annotation itself."""
    annotations = deployment["metadata"]["annotations"]
    annotations.pop(HASH_ANNOTATION, None)
    # A shallow copy: hashing only reads it; a deep copy was a tenth of a pass's CPU.
    hashed = {**deployment, "spec": {k: v for k, v in deployment["spec"].items() if k != "replicas"}}
    annotations[HASH_ANNOTATION] = spec_hash(hashed)


def render_deployments(
    resource: dict[str, Any],
    replicas: dict[str, int] | None = None,
    *,
    pipeline: Pipeline | None = None,
    spec_hashes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The four desired Deployments, in stream order. Raises model.PipelineError.

    `replicas`: per component (spec field) overrides, e.g. while pausing.
    `pipeline`: `resource` already parsed (the controller parses once per pass).
    `spec_hashes`: their spec-hash annotations from an earlier render of the same
    pipeline, name and uid (each a JSON dump and a SHA-256 spared)."""
    p = Pipeline.from_resource(resource) if pipeline is None else pipeline
    replicas = replicas or {}
    hashes: list[str | None] = list(spec_hashes) if spec_hashes else [None] * len(COMPONENTS)
    return [
        render_deployment(resource, p, c, replicas.get(c.spec_field), h)
        for c, h in zip(COMPONENTS, hashes, strict=True)
    ]


def with_restart(deployment: dict[str, Any], at: str) -> dict[str, Any]:
    """`deployment` with its pod template stamped `tspipe.io/restartedAt: at`: a new
    template, so the Deployment controller rolls every pod (as `kubectl rollout restart`).

    The stamp stays out of the hash and of later renders: the diff ignores template
    annotations it does not set, and an update keeps the ones already there."""
    out = copy.deepcopy(deployment)
    meta = out["spec"]["template"].setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), RESTARTED_AT_ANNOTATION: at}
    return out


def restarted_at(deployment: dict[str, Any] | None) -> str | None:
    """The restart stamp on a Deployment's pod template, if any."""
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)
    return str(value) if value is not None else None


def router_selector(pipeline_name: str) -> str:
    """The router pods' label selector as a string (the scale subresource's status.selector)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(pipeline_name, ROUTER).items())


def image_of(deployment: dict[str, Any]) -> str | None:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return containers[0].get("image") if containers else None
