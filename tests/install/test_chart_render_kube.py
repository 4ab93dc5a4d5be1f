"""charts/tspipe rendered by the built helm (`helm template`, `helm lint`), against the
kustomize install built by the project's kubectl (hence the kube marker; no API server):

- the default render is `kubectl kustomize manifests/`, object by object, Helm's own
  labels aside; watchNamespaces gives overlays/namespaced, replicas: 2 overlays/ha, the
  metrics values the monitoring component, rbac.podProxy the pod-proxy component (off by
  default: the default grants no pods/proxy);
- every value a user sets shows where it should, and the operator's own command line
  accepts the arguments the chart gives it.
"""

from __future__ import annotations

import os

import pytest
import yaml
from charthelpers import CHART, by_key, helm, key, template, without_helm_labels
from installhelpers import CLUSTER, MANIFESTS, NAMESPACED, OPERATOR_NS, SA_NAME, find, kustomize, one, with_components

from tspipe.manager import build_parser

pytestmark = pytest.mark.kube

HA = MANIFESTS / "overlays" / "ha"


def assert_same_objects(rendered: list[dict], built: list[dict]):
    got, want = without_helm_labels(rendered), by_key(built)
    assert sorted(got) == sorted(want), "the same objects (apiVersion, kind, namespace, name)"
    for k in want:
        assert got[k] == want[k], f"{k} differs"


def operator_args(objs: list[dict]) -> list[str]:
    (c,) = one(objs, "Deployment", "tspipe-operator")["spec"]["template"]["spec"]["containers"]
    return c["args"]


def test_default_render_is_the_kustomize_install(tmp_path):
    assert_same_objects(template(tmp_path), kustomize(CLUSTER.path))


def test_watch_namespaces_render_is_the_namespaced_overlay(tmp_path):
    assert_same_objects(template(tmp_path, {"watchNamespaces": [NAMESPACED.watched]}), kustomize(NAMESPACED.path))


def test_two_replicas_render_is_the_ha_overlay(tmp_path):
    assert_same_objects(template(tmp_path, {"replicas": 2}), kustomize(HA))


def test_metrics_values_render_the_monitoring_component(tmp_path):
    k = tmp_path / "k"
    k.mkdir()
    (k / "kustomization.yaml").write_text(
        yaml.safe_dump(  # kustomize takes relative paths only
            {"resources": [os.path.relpath(MANIFESTS, k)], "components": [os.path.relpath(MANIFESTS / "monitoring", k)]}
        )
    )
    on = {"enabled": True}
    rendered = template(tmp_path, {"metrics": {"podMonitor": on, "prometheusRule": on, "dashboard": on}})
    assert_same_objects(rendered, kustomize(k))


def test_pod_proxy_value_renders_the_pod_proxy_component_in_either_scope(tmp_path):
    on = {"rbac": {"podProxy": True}}
    assert_same_objects(template(tmp_path, on), kustomize(with_components(tmp_path / "c", CLUSTER.path, "pod-proxy")))
    assert_same_objects(
        template(tmp_path, {**on, "watchNamespaces": [NAMESPACED.watched]}),
        kustomize(with_components(tmp_path / "n", NAMESPACED.path, "pod-proxy")),
    )
    objs = template(tmp_path, {"rbac": {"podProxy": True}, "watchNamespaces": ["a", "b"]})
    assert "--router-metrics=proxy" in operator_args(objs)
    for role in find(objs, "Role"):
        assert {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]} in role["rules"], role
    assert "pods/proxy" not in str(one(objs, "ClusterRole", "tspipe-operator-scan"))


def test_by_default_no_role_grants_pods_proxy_and_the_operator_reads_pod_ips(tmp_path):
    for values in ({}, {"watchNamespaces": ["a"]}, {"replicas": 2}):
        objs = template(tmp_path, values)
        for role in find(objs, "ClusterRole") + find(objs, "Role"):
            assert not [r for r in role["rules"] if "pods/proxy" in r["resources"]], (values, role["metadata"])
        assert build_parser().parse_args(operator_args(objs)).router_metrics == "direct"


def test_chart_crds_are_the_install_crds(tmp_path):
    rendered = template(tmp_path, {}, "--include-crds")
    crds = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "CustomResourceDefinition"}
    want = {}
    for f in (MANIFESTS.parent / "crds").glob("*.yaml"):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                want[d["metadata"]["name"]] = d
    assert crds == want and "timestamppipelines.tspipe.io" in crds


def test_helm_lint_passes_with_defaults_and_with_every_option(tmp_path):
    helm("lint", "--strict", str(CHART))
    values = tmp_path / "all.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": "registry.example.com/tspipe/operator", "tag": "0.2.0", "pullPolicy": "Always"},
                "watchNamespaces": ["a", "b"],
                "logFormat": "json",
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "affinity": {},
                "resources": {},
                "metrics": {
                    "podMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True},
                    "dashboard": {"enabled": True},
                    "labels": {"release": "kps"},
                },
                "serviceAccount": {"create": False, "name": "mine"},
                "samples": {"enabled": False},
                "rbac": {"podProxy": True},
            }
        )
    )
    helm("lint", "--strict", str(CHART), "--values", str(values))


def test_image_values(tmp_path):
    objs = template(
        tmp_path,
        {"image": {"repository": "registry.example.com/tspipe/operator", "tag": "0.2.0", "pullPolicy": "Always"}},
    )
    (c,) = one(objs, "Deployment", "tspipe-operator")["spec"]["template"]["spec"]["containers"]
    assert (c["image"], c["imagePullPolicy"]) == ("registry.example.com/tspipe/operator:0.2.0", "Always")
    # No tag: the chart's appVersion (the default render above shows it is the manifests' tag).
    (c,) = one(template(tmp_path, {"image": {"repository": "r.example/op"}}), "Deployment", "tspipe-operator")["spec"][
        "template"
    ]["spec"]["containers"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert c["image"] == f"r.example/op:{app_version}"


def test_watch_namespaces_grant_a_role_in_each_and_no_cluster_wide_rights(tmp_path):
    objs = template(tmp_path, {"watchNamespaces": ["team-a", "team-b"]})
    assert [a for a in operator_args(objs) if a.startswith("--namespace") or a == "--all-namespaces"] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(objs, "Role")}
    assert roles == {("team-a", "tspipe-operator"), ("team-b", "tspipe-operator")}
    for b in find(objs, "RoleBinding"):
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tspipe-operator"}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": OPERATOR_NS}]
    assert {b["metadata"]["namespace"] for b in find(objs, "RoleBinding")} == {"team-a", "team-b"}
    # Cluster-wide only the read-only scans (CRDs, namespaces): no Deployments, no pipelines.
    (scan,) = find(objs, "ClusterRole")
    assert scan["metadata"]["name"] == "tspipe-operator-scan"
    assert {r for rule in scan["rules"] for r in rule["resources"]} == {"customresourcedefinitions", "namespaces"}
    assert {v for rule in scan["rules"] for v in rule["verbs"]} == {"list", "watch"}


def test_replicas_above_one_turn_peering_on(tmp_path):
    objs = template(tmp_path, {"replicas": 3})
    d = one(objs, "Deployment", "tspipe-operator")
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    args = operator_args(objs)
    assert "--standalone" not in args and "--peering=tspipe-operator" in args
    one(objs, "ClusterKopfPeering", "tspipe-operator")
    one(objs, "ClusterRole", "tspipe-operator-peering")
    one(objs, "ClusterRoleBinding", "tspipe-operator-peering")
    single = template(tmp_path, {"replicas": 1})
    assert "--standalone" in operator_args(single) and not find(single, "ClusterKopfPeering")
    assert one(single, "Deployment", "tspipe-operator")["spec"]["strategy"] == {"type": "Recreate"}


def test_values_that_cannot_work_are_refused(tmp_path):
    err = template(tmp_path, {"replicas": 2, "watchNamespaces": ["a"]}, check=False)
    assert "replicas > 1 (kopf peering) needs the cluster-wide scope" in err
    assert "logFormat: text or json" in template(tmp_path, {"logFormat": "xml"}, check=False)
    assert "replicas: at least 1" in template(tmp_path, {"replicas": 0}, check=False)


def test_resources_and_placement_values(tmp_path):
    res = {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    place = {
        "nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                    ]
                }
            }
        },
    }
    pod = one(template(tmp_path, {"resources": res, **place}), "Deployment", "tspipe-operator")["spec"]["template"][
        "spec"
    ]
    assert pod["containers"][0]["resources"] == res
    for field, value in place.items():
        assert pod[field] == value, field
    # Empty resources leave the field out; the defaults have no placement at all.
    pod = one(template(tmp_path, {"resources": None}), "Deployment", "tspipe-operator")["spec"]["template"]["spec"]
    assert "resources" not in pod["containers"][0]
    assert not set(place) & set(pod)


def test_monitoring_values_each_add_their_own_objects(tmp_path):
    def kinds(values):
        return sorted(
            key(o)[1:]
            for o in template(tmp_path, {"metrics": values})
            if o["kind"] in ("PodMonitor", "PrometheusRule") or o["metadata"]["name"] == "tspipe-grafana-dashboard"
        )

    on = {"enabled": True}
    assert kinds({}) == []
    assert kinds({"podMonitor": on}) == [
        ("PodMonitor", "tspipe-system", "tspipe-operator"),
        ("PodMonitor", "tspipe-system", "tspipe-router"),
    ]
    assert kinds({"prometheusRule": on}) == [("PrometheusRule", "tspipe-system", "tspipe")]
    assert kinds({"dashboard": on}) == [("ConfigMap", "tspipe-system", "tspipe-grafana-dashboard")]
    # Extra labels, e.g. what kube-prometheus-stack selects by, on every monitoring object.
    objs = template(
        tmp_path,
        {
            "metrics": {
                "podMonitor": on,
                "prometheusRule": on,
                "dashboard": on,
                "labels": {"release": "kube-prometheus-stack"},
            }
        },
    )
    labelled = [o for o in objs if o["metadata"].get("labels", {}).get("release") == "kube-prometheus-stack"]
    assert sorted(key(o)[1] for o in labelled) == ["ConfigMap", "PodMonitor", "PodMonitor", "PrometheusRule"]


def test_rbac_and_service_account_values(tmp_path):
    objs = template(tmp_path, {"rbac": {"create": False}})
    assert not [o for o in objs if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    one(objs, "ServiceAccount", SA_NAME)

    objs = template(tmp_path, {"serviceAccount": {"create": False, "name": "platform-operator"}})
    assert not find(objs, "ServiceAccount")
    d = one(objs, "Deployment", "tspipe-operator")
    assert d["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    for b in find(objs, "ClusterRoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "platform-operator", "namespace": OPERATOR_NS}]

    objs = template(tmp_path, {"serviceAccount": {"name": "renamed"}, "watchNamespaces": ["a"]})
    assert one(objs, "ServiceAccount", "renamed")["metadata"]["namespace"] == OPERATOR_NS
    bindings = find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding")
    assert len(bindings) == 2 and all(b["subjects"][0]["name"] == "renamed" for b in bindings)


def test_log_format_and_every_argument_the_chart_gives_the_operator_parse(tmp_path):
    for values, want in (({}, "text"), ({"logFormat": "json"}, "json")):
        args = operator_args(template(tmp_path, values))
        assert build_parser().parse_args(args).log_format == want, args
    for values in (
        {"replicas": 2},
        {"watchNamespaces": ["a", "b"], "logFormat": "json"},
        {"rbac": {"podProxy": True}, "logFormat": "json"},
    ):
        build_parser().parse_args(operator_args(template(tmp_path, values)))


def test_samples_and_namespaces_values(tmp_path):
    names = {key(o)[1:] for o in template(tmp_path, {"samples": {"enabled": False}})}
    assert ("TimestampPipeline", "tspipe-pipelines", "timestamps") not in names
    assert ("Namespace", None, "tspipe-pipelines") not in names and ("Namespace", None, OPERATOR_NS) in names
    names = {key(o)[1:] for o in template(tmp_path, {"namespaces": {"create": False}})}
    assert not [n for n in names if n[0] == "Namespace"]
    assert ("TimestampPipeline", "tspipe-pipelines", "timestamps") in names
