"""manifests/ as built by kustomize (the project's kubectl), both install variants:
least-privilege RBAC, a restricted operator pod, scope and arguments that agree with
each other and with the operator's own command line. No API server here (that is
test_install_kube.py); marked kube because it needs the built kubectl."""

from __future__ import annotations

import copy
from urllib.parse import urlparse

import pytest
from installhelpers import (
    CLUSTER,
    NAMESPACED,
    OPERATOR_NS,
    SA_NAME,
    VARIANTS,
    Variant,
    find,
    kustomize,
    one,
    with_components,
)

from tspipe.manager import build_parser
from tspipe.model import Pipeline

pytestmark = pytest.mark.kube

# Everything the operator may touch, and how (see manifests/rbac/cluster-role.yaml for
# which call needs which). Written out here so the test does not trust the manifests.
NAMESPACED_RULES = {
    ("tspipe.io", "timestamppipelines"): {"get", "list", "watch", "patch"},
    ("tspipe.io", "timestamppipelines/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "update", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "create", "update", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {"list"},
    ("", "pods"): {"list", "watch"},
    ("batch", "jobs"): {"get", "create"},
    ("", "events"): {"create"},
}
# manifests/pod-proxy (opt-in): the router pods' counters through the API server's pod proxy.
POD_PROXY_RULES = {("", "pods/proxy"): {"get"}}
SCAN_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
NAMESPACE_SCAN = {("", "namespaces"): {"list", "watch"}}


@pytest.fixture(scope="module", params=VARIANTS, ids=str)
def variant(request) -> Variant:
    return request.param


@pytest.fixture(scope="module")
def built(variant) -> list[dict]:
    return kustomize(variant.path)


def rules_of(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def bound_rules(objs: list[dict]) -> tuple[dict, dict]:
    """(cluster-wide rules, {namespace: rules}) granted to the operator's ServiceAccount."""
    cluster: dict = {}
    namespaced: dict = {}
    for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": OPERATOR_NS}], b
        ref = b["roleRef"]
        role = one(objs, ref["kind"], ref["name"])
        if b["kind"] == "RoleBinding":
            assert role["kind"] == "Role" and role["metadata"]["namespace"] == b["metadata"]["namespace"]
            target = namespaced.setdefault(b["metadata"]["namespace"], {})
        else:
            target = cluster
        for key, verbs in rules_of(role).items():
            target.setdefault(key, set()).update(verbs)
    return cluster, namespaced


def operator_deployment(objs):
    return one(objs, "Deployment", "tspipe-operator")


def test_no_wildcards_anywhere(built):
    for role in find(built, "ClusterRole") + find(built, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: wildcard in {field}"
            assert "nonResourceURLs" not in rule


def test_rbac_grants_exactly_what_the_operator_uses(built, variant):
    cluster, namespaced = bound_rules(built)
    if variant.watched is None:
        assert namespaced == {}
        assert cluster == {**NAMESPACED_RULES, **SCAN_RULES}
    else:
        assert cluster == {**SCAN_RULES, **NAMESPACE_SCAN}, "cluster-wide: read-only scans only"
        assert namespaced == {variant.watched: NAMESPACED_RULES}


def test_namespaced_role_matches_the_cluster_role():
    """The overlay's Role repeats the ClusterRole's namespaced rules: they must not drift."""
    cluster, _ = bound_rules(kustomize(CLUSTER.path))
    _, namespaced = bound_rules(kustomize(NAMESPACED.path))
    assert {k: v for k, v in cluster.items() if k not in SCAN_RULES} == namespaced[NAMESPACED.watched]


def test_operator_args_parse_and_follow_the_scope(built, variant):
    d = operator_deployment(built)
    (c,) = d["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(c["args"])
    if variant.watched is None:
        assert args.all_namespaces and args.namespace == []
    else:
        assert args.namespace == [variant.watched] and not args.all_namespaces
    # One replica, standalone (no peering objects, so no peering RBAC), never two at once.
    assert d["spec"]["replicas"] == 1 and args.standalone
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    # The liveness probe asks kopf's liveness endpoint, on the port it listens on.
    url = urlparse(args.liveness)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    probe = c["livenessProbe"]["httpGet"]
    assert url.hostname == "0.0.0.0", "kubelet probes the pod IP"
    assert probe["path"] == url.path and port[probe["port"]] == url.port
    # Metrics on the container port named "metrics" (what manifests/monitoring's PodMonitor scrapes).
    assert args.metrics_port == port["metrics"] and args.metrics_address == "0.0.0.0"


def test_operator_pod_is_restricted(built):
    d = operator_deployment(built)
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["serviceAccountName"] == SA_NAME
    assert pod.get("automountServiceAccountToken", True), "the operator needs its token"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc.get("privileged", False) is False
    # The one writable path is an emptyDir at /tmp (HOME and TMPDIR in the image).
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp"} and "emptyDir" in vols[mounts["/tmp"]]
    res = c["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"]
    image = c["image"]
    assert image.startswith("ghcr.io/tspipe/operator:") and not image.endswith(":latest")


def test_operator_is_not_mistaken_for_a_pipeline_child(built):
    # The operator watches Deployments labelled managed-by=tspipe-operator as its own.
    d = operator_deployment(built)
    for labels in (d["metadata"].get("labels", {}), d["spec"]["template"]["metadata"].get("labels", {})):
        assert labels.get("app.kubernetes.io/managed-by") != "tspipe-operator"


def test_namespaces_enforce_restricted_and_everything_is_placed(built, variant):
    namespaces = {n["metadata"]["name"]: n for n in find(built, "Namespace")}
    assert OPERATOR_NS in namespaces
    for ns in namespaces.values():
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    cluster_kinds = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for o in built:
        if o["kind"] in cluster_kinds:
            assert "namespace" not in o["metadata"], o["metadata"]
        else:
            assert o["metadata"].get("namespace") in namespaces, f"{o['kind']} {o['metadata']['name']}"


def test_sample_pipeline_is_valid_and_in_scope(built, variant):
    (sample,) = find(built, "TimestampPipeline")
    Pipeline.from_resource(copy.deepcopy(sample))  # raises PipelineError naming the field
    if variant.watched:
        assert sample["metadata"]["namespace"] == variant.watched


def test_pod_proxy_component_adds_only_the_proxy_rule_and_the_operators_flag(variant, tmp_path):
    """manifests/pod-proxy over either install: pods/proxy get where the operator's other
    namespaced rules are, and --router-metrics=proxy; nothing else changes."""
    plain = kustomize(variant.path)
    opted = kustomize(with_components(tmp_path, variant.path, "pod-proxy"))
    cluster, namespaced = bound_rules(opted)
    if variant.watched is None:
        assert cluster == {**NAMESPACED_RULES, **SCAN_RULES, **POD_PROXY_RULES}
    else:
        assert cluster == {**SCAN_RULES, **NAMESPACE_SCAN}, "cluster-wide: still the read-only scans only"
        assert namespaced == {variant.watched: {**NAMESPACED_RULES, **POD_PROXY_RULES}}
    plain_args = operator_deployment(plain)["spec"]["template"]["spec"]["containers"][0]["args"]
    args = operator_deployment(opted)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [*plain_args, "--router-metrics=proxy"]
    assert build_parser().parse_args(plain_args).router_metrics == "direct", "the default reads the pod IP"
    assert build_parser().parse_args(args).router_metrics == "proxy"
    changed = {(o["kind"], o["metadata"]["name"]) for o in opted if o not in plain}
    assert changed == {
        ("Deployment", "tspipe-operator"),
        ("ClusterRole" if variant.watched is None else "Role", "tspipe-operator"),
    }
