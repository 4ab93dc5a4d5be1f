"""The chart installed with the built helm on the real control plane (kwok's node marks
the operator's pod Ready; nothing runs in it): `helm install` creates the CRDs from the
chart's crds/, the operator's Deployment and its RBAC; `helm upgrade --set image.tag=...`
rolls the operator; `helm uninstall` removes the release's objects and keeps the CRDs;
with watchNamespaces the operator's rights are a Role in that namespace only."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from charthelpers import CHART, RELEASE, helm, uninstall
from installhelpers import OPERATOR_NS, SA_NAME, SA_USER, audit_events, wait_for

pytestmark = pytest.mark.kube

RELEASE_NS = "default"  # where Helm keeps its release record; the objects name their own namespaces
SAMPLE_NS = "tspipe-pipelines"
CRD_NAMES = sorted(
    d["metadata"]["name"] for f in (CHART / "crds").glob("*.yaml") for d in yaml.safe_load_all(f.read_text()) if d
)


@pytest.fixture
def helm_env(tmp_path, control_plane):
    """helm against the test's API server, its cache, config and data in tmp_path."""
    env = dict(os.environ, KUBECONFIG=control_plane.kubeconfig)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp_path / var.lower())
    return env


def crd_uid(control_plane, name: str) -> str | None:
    proc = control_plane.kubectl("get", "crd", name, "-o", "jsonpath={.metadata.uid}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def can_i(control_plane, verb: str, resource: str, *scope: str) -> str:
    return control_plane.kubectl("auth", "can-i", verb, resource, *scope, f"--as={SA_USER}", check=False).stdout.strip()


def operator_image(control_plane) -> str:
    d = json.loads(
        control_plane.kubectl("-n", OPERATOR_NS, "get", "deployment", "tspipe-operator", "-o", "json").stdout
    )
    return d["spec"]["template"]["spec"]["containers"][0]["image"]


def test_helm_install_upgrade_and_uninstall_keep_the_crds(control_plane, helm_env):
    kc = control_plane.kubectl
    for ns in (OPERATOR_NS, SAMPLE_NS):
        assert kc("get", "namespace", ns, check=False).returncode != 0, f"namespace {ns} left over"
    existed = {name: uid for name in CRD_NAMES if (uid := crd_uid(control_plane, name))}
    since = os.path.getsize(control_plane.audit_log)
    try:
        helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NS, env=helm_env)
        status = json.loads(helm("status", RELEASE, "--namespace", RELEASE_NS, "-o", "json", env=helm_env).stdout)
        assert status["info"]["status"] == "deployed"

        # The CRDs: Helm created each of the chart's crds/ that was not there (Helm 4 applies
        # server-side: a PATCH answered 201 Created); one that was (other tests share the API
        # server) is left as it was.
        created = {
            ev["objectRef"]["name"]
            for ev in audit_events(control_plane.audit_log, since)
            if ev.get("objectRef", {}).get("resource") == "customresourcedefinitions"
            and ev["verb"] in ("create", "patch")
            and ev["responseStatus"]["code"] == 201
            and ev.get("userAgent", "").startswith("Helm/")
        }
        assert created == set(CRD_NAMES) - set(existed), (created, existed)
        for name in CRD_NAMES:
            control_plane.wait_crd_established(name)
        uids = {name: crd_uid(control_plane, name) for name in CRD_NAMES}
        assert {name: uids[name] for name in existed} == existed

        # The operator's Deployment rolls out (kwok marks its pod Ready), labelled by Helm.
        kc("-n", OPERATOR_NS, "rollout", "status", "deployment/tspipe-operator", "--timeout=120s")
        d = json.loads(kc("-n", OPERATOR_NS, "get", "deployment", "tspipe-operator", "-o", "json").stdout)
        assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert d["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
        assert operator_image(control_plane) == "ghcr.io/tspipe/operator:0.1.0"
        # Its RBAC, cluster-wide by default: the operator's rights and not more.
        kc("get", "clusterrole/tspipe-operator", "clusterrolebinding/tspipe-operator")
        kc("-n", OPERATOR_NS, "get", "serviceaccount", SA_NAME)
        assert can_i(control_plane, "create", "deployments.apps", "-n", SAMPLE_NS) == "yes"
        assert can_i(control_plane, "patch", "timestamppipelines.tspipe.io/status", "-n", SAMPLE_NS) == "yes"
        assert can_i(control_plane, "get", "secrets", "-n", SAMPLE_NS) == "no"
        # No pod proxy by default (rbac.podProxy: the router pods' counters are read at their IPs).
        assert can_i(control_plane, "get", "pods", "--subresource=proxy", "-n", SAMPLE_NS) == "no"
        # The sample pipeline, in its namespace.
        kc("-n", SAMPLE_NS, "get", "timestamppipeline", "timestamps")

        # An upgrade with another tag rolls the operator: a new ReplicaSet with the new image.
        helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NS,
            "--reuse-values",
            "--set",
            "image.tag=0.1.1",
            env=helm_env,
        )
        assert operator_image(control_plane) == "ghcr.io/tspipe/operator:0.1.1"
        kc("-n", OPERATOR_NS, "rollout", "status", "deployment/tspipe-operator", "--timeout=120s")
        rs_images = {
            rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["status"].get("readyReplicas", 0)
            for rs in json.loads(kc("-n", OPERATOR_NS, "get", "replicasets", "-o", "json").stdout)["items"]
        }
        assert rs_images == {"ghcr.io/tspipe/operator:0.1.0": 0, "ghcr.io/tspipe/operator:0.1.1": 1}, rs_images
        history = json.loads(helm("history", RELEASE, "--namespace", RELEASE_NS, "-o", "json", env=helm_env).stdout)
        assert [h["revision"] for h in history] == [1, 2]

        # Uninstall: the release's objects go, the CRDs stay (the same objects, not recreated).
        helm("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout", "5m", env=helm_env)
        for ns in (OPERATOR_NS, SAMPLE_NS):
            wait_for(lambda ns=ns: kc("get", "namespace", ns, check=False).returncode != 0, 180, f"namespace {ns} gone")
        for what in ("clusterrole/tspipe-operator", "clusterrolebinding/tspipe-operator"):
            assert kc("get", what, check=False).returncode != 0, f"{what} left after uninstall"
        assert {name: crd_uid(control_plane, name) for name in CRD_NAMES} == uids
        assert helm("status", RELEASE, "--namespace", RELEASE_NS, check=False, env=helm_env).returncode != 0
    finally:
        uninstall(RELEASE_NS, helm_env)
        for ns in (OPERATOR_NS, SAMPLE_NS):
            kc("delete", "namespace", ns, "--ignore-not-found", "--timeout=180s", check=False)
        # What this test created and other tests do not expect: CRDs that were not there.
        created = [name for name in CRD_NAMES if name not in existed]
        if created:
            kc("delete", "crd", *created, "--ignore-not-found", "--timeout=120s", check=False)


def test_helm_install_with_watch_namespaces_grants_a_role_there_only(control_plane, helm_env):
    """The namespaced values on the API server: a Role in the watched namespace, no
    ClusterRole with the operator's rights, and can-i says so for the operator's account.
    With rbac.podProxy the Role also grants the pod proxy, there only."""
    kc = control_plane.kubectl
    for ns in (OPERATOR_NS, SAMPLE_NS):
        assert kc("get", "namespace", ns, check=False).returncode != 0, f"namespace {ns} left over"
    existed = {name for name in CRD_NAMES if crd_uid(control_plane, name)}
    try:
        helm(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NS,
            "--set",
            f"watchNamespaces={{{SAMPLE_NS}}}",
            "--set",
            "rbac.podProxy=true",
            env=helm_env,
        )
        kc("-n", OPERATOR_NS, "rollout", "status", "deployment/tspipe-operator", "--timeout=120s")
        d = json.loads(kc("-n", OPERATOR_NS, "get", "deployment", "tspipe-operator", "-o", "json").stdout)
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={SAMPLE_NS}" in args and "--all-namespaces" not in args, args
        assert "--router-metrics=proxy" in args, args
        kc("-n", SAMPLE_NS, "get", "role/tspipe-operator", "rolebinding/tspipe-operator")
        assert kc("get", "clusterrole/tspipe-operator", check=False).returncode != 0, "no cluster-wide role"
        kc("get", "clusterrole/tspipe-operator-scan", "clusterrolebinding/tspipe-operator-scan")
        assert can_i(control_plane, "create", "deployments.apps", "-n", SAMPLE_NS) == "yes"
        assert can_i(control_plane, "create", "deployments.apps", "-n", RELEASE_NS) == "no"
        assert can_i(control_plane, "list", "timestamppipelines.tspipe.io", "--all-namespaces") == "no"
        assert can_i(control_plane, "watch", "namespaces") == "yes"
        assert can_i(control_plane, "get", "pods", "--subresource=proxy", "-n", SAMPLE_NS) == "yes"
        assert can_i(control_plane, "get", "pods", "--subresource=proxy", "-n", RELEASE_NS) == "no"
        helm("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout", "5m", env=helm_env)
        for ns in (OPERATOR_NS, SAMPLE_NS):
            wait_for(lambda ns=ns: kc("get", "namespace", ns, check=False).returncode != 0, 180, f"namespace {ns} gone")
        assert kc("get", "clusterrole/tspipe-operator-scan", check=False).returncode != 0
    finally:
        uninstall(RELEASE_NS, helm_env)
        for ns in (OPERATOR_NS, SAMPLE_NS):
            kc("delete", "namespace", ns, "--ignore-not-found", "--timeout=180s", check=False)
        created = [name for name in CRD_NAMES if name not in existed]
        if created:
            kc("delete", "crd", *created, "--ignore-not-found", "--timeout=120s", check=False)
