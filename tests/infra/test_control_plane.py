"""The local control plane is a real Kubernetes: rollouts through kwok, garbage
collection, CRD schema validation, RBAC, kubectl with kustomize, auditing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from localinfra import cache
from localinfra.proc import wait_for

pytestmark = pytest.mark.kube

DEADLINE = 90  # seconds any single condition may take; a bound, not an assertion


@pytest.fixture(scope="module")
def api(kubeconfig):
    return config.new_client_from_config(config_file=kubeconfig)


def deployment(name, replicas=2):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                # kwok never pulls or runs the image; the pod only has to be valid.
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="registry.invalid/app:1.0")]),
            ),
        ),
    )


def test_deployment_becomes_available(api, namespace):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web"))

    def available():
        d = apps.read_namespaced_deployment("web", namespace)
        conds = {c.type: c.status for c in (d.status.conditions or [])}
        return d.status.available_replicas == 2 and conds.get("Available") == "True"

    wait_for(what="Deployment web Available with 2 replicas", timeout=DEADLINE, probe=available)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        # Bound by the scheduler, made Ready by kwok.
        assert pod.spec.node_name == "kwok-node-0"
        ready = {c.type: c.status for c in pod.status.conditions}
        assert ready["Ready"] == "True"


def test_deleting_a_deployment_garbage_collects_replicaset_and_pods(api, namespace):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("gc"))
    wait_for(
        what="ReplicaSet and 2 pods",
        timeout=DEADLINE,
        probe=lambda: (
            apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items
            and len(core.list_namespaced_pod(namespace, label_selector="app=gc").items) == 2
        ),
    )
    rs = apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items[0]
    assert rs.metadata.owner_references[0].kind == "Deployment"

    apps.delete_namespaced_deployment("gc", namespace)  # default propagation: background GC

    wait_for(
        what="ReplicaSet collected",
        timeout=DEADLINE,
        probe=lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items,
    )
    wait_for(
        what="pods collected",
        timeout=DEADLINE,
        probe=lambda: not core.list_namespaced_pod(namespace, label_selector="app=gc").items,
    )


CRD_GROUP = "infratest.tspipe.io"


@pytest.fixture
def widget_crd(api):
    ext = client.ApiextensionsV1Api(api)
    name = f"widgets.{CRD_GROUP}"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["replicas"],
                                    "properties": {
                                        "replicas": {"type": "integer", "minimum": 1},
                                        "colour": {"type": "string", "enum": ["red", "blue"]},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(body)

    def established():
        crd = ext.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))

    wait_for(what="CRD Established", timeout=DEADLINE, probe=established)
    yield name
    ext.delete_custom_resource_definition(name)


def test_crd_schema_rejects_invalid_object_naming_the_field(api, namespace, widget_crd):
    custom = client.CustomObjectsApi(api)

    def widget(name, spec):
        return {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    # The valid one is accepted (the schema is not rejecting everything)...
    wait_for(
        what="valid Widget accepted",
        timeout=DEADLINE,
        probe=lambda: _try_create(custom, namespace, widget("ok", {"replicas": 2, "colour": "red"})),
    )

    # ...the invalid ones are refused with the field named.
    with pytest.raises(ApiException) as bad_type:
        custom.create_namespaced_custom_object(
            CRD_GROUP, "v1", namespace, "widgets", widget("bad1", {"replicas": "many"})
        )
    assert bad_type.value.status == 422
    assert "spec.replicas" in json.loads(bad_type.value.body)["message"]

    with pytest.raises(ApiException) as bad_enum:
        custom.create_namespaced_custom_object(
            CRD_GROUP, "v1", namespace, "widgets", widget("bad2", {"replicas": 1, "colour": "green"})
        )
    assert bad_enum.value.status == 422
    assert "spec.colour" in json.loads(bad_enum.value.body)["message"]


def _try_create(custom, namespace, obj):
    # Right after Established, discovery may lag for a moment: 404 means "not yet".
    try:
        return custom.create_namespaced_custom_object(CRD_GROUP, "v1", namespace, "widgets", obj)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _client_with_token(admin_api, token):
    cfg = client.Configuration()
    cfg.host = admin_api.configuration.host
    cfg.ssl_ca_cert = admin_api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def test_service_account_without_permissions_is_denied(api, namespace):
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = wait_for(what="token for nobody", timeout=DEADLINE, probe=lambda: _token(core, namespace, "nobody"))
    sa_api = _client_with_token(api, token)

    # The token authenticates (who am I works for everyone authenticated)...
    review = client.AuthenticationV1Api(sa_api).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"

    # ...but RBAC grants it nothing: 403, where the admin may.
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(sa_api).list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    core.list_namespaced_config_map(namespace)  # admin: allowed

    # Granting a Role makes the same call succeed: the 403 above was RBAC's.
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-cm"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="nobody-read-cm"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-cm"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)],
        ),
    )

    def allowed():
        try:
            client.CoreV1Api(sa_api).list_namespaced_config_map(namespace)
            return True
        except ApiException as e:
            if e.status == 403:
                return False
            raise

    wait_for(what="RoleBinding to take effect", timeout=DEADLINE, probe=allowed)


def _token(core, namespace, sa):
    try:
        tr = core.create_namespaced_service_account_token(
            sa,
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return tr.status.token


def test_built_kubectl_version_and_kustomize(control_plane, namespace, tmp_path):
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert out["clientVersion"]["gitVersion"] == out["serverVersion"]["gitVersion"]

    (tmp_path / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  colour: blue\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        f"namespace: {namespace}\nnamePrefix: demo-\ncommonLabels:\n  owner: infra-test\nresources:\n- cm.yaml\n"
    )
    control_plane.kubectl("apply", "-k", str(tmp_path))

    cm = json.loads(control_plane.kubectl("get", "configmap", "demo-settings", "-n", namespace, "-o", "json").stdout)
    assert cm["data"] == {"colour": "blue"}
    assert cm["metadata"]["labels"]["owner"] == "infra-test"


def test_audit_log_records_a_create(api, control_plane, namespace):
    name = f"audited-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})
    )

    def find():
        with open(control_plane.audit_log) as f:
            for line in f:
                ev = json.loads(line)
                ref = ev.get("objectRef", {})
                if (
                    ev.get("verb") == "create"
                    and ref.get("resource") == "configmaps"
                    and ref.get("namespace") == namespace
                    and ref.get("name") == name
                    and ev.get("stage") == "ResponseComplete"
                ):
                    return ev
        return None

    ev = wait_for(what="audit event for the create", timeout=DEADLINE, probe=find)
    assert ev["level"] == "Metadata"
    assert ev["user"]["username"] == "tspipe-admin"
    assert ev["responseStatus"]["code"] == 201
    assert "requestObject" not in ev  # Metadata level: no bodies in the log


def test_venv_kubectl_is_the_built_one(control_plane):
    """`make k8s-bins` links the built kubectl where users and tests find it."""
    link = Path(sys.prefix) / "bin" / "kubectl"
    assert link.exists(), f"{link} missing: run `make k8s-bins`"
    proc = subprocess.run(
        [str(link), "--kubeconfig", control_plane.kubeconfig, "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["node/kwok-node-0"]
    version = json.loads(
        subprocess.run(
            [str(link), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
        ).stdout
    )
    assert version["clientVersion"]["gitVersion"] == f"{cache.k8s_version()}"


def test_own_control_plane_restarts_apiserver_on_same_data_and_stops_clean():
    """What crash tests rely on: restart_apiserver keeps port and etcd data;
    stop() leaves no process and no temporary folder."""
    from localinfra.kube import ControlPlane

    cp = ControlPlane()
    with cp:
        url = cp.apiserver_url
        pids = cp.pids()
        cp.kubectl("create", "configmap", "survivor", "--from-literal=k=v")
        old_apiserver = pids["kube-apiserver"]

        cp.restart_apiserver()

        assert cp.apiserver_url == url
        assert cp.pids()["kube-apiserver"] != old_apiserver
        assert cp.pids()["etcd"] == pids["etcd"]
        out = cp.kubectl("get", "configmap", "survivor", "-o", "jsonpath={.data.k}").stdout
        assert out == "v"
        workdir = cp.workdir

    assert not workdir.exists()
    for pid in pids.values():
        assert not _alive(pid), f"process {pid} survived stop()"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; the harness reaps its own children.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"
