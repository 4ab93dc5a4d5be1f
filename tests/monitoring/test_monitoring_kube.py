"""manifests/monitoring as kustomize builds it (the project's kubectl), and its objects
checked by the real API server against the Prometheus operator's own CRDs (pinned in
hack/monitoring/versions, fetched by `make monitoring-tools`): a server-side dry run with
strict field validation, which refuses a malformed object."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from kubehelpers import wait_for
from localinfra import cache
from promnames import DASHBOARD_FILE, ROOT, metric_names

pytestmark = pytest.mark.kube

MANIFESTS = ROOT / "manifests"
MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
CRDS = ("podmonitors", "servicemonitors", "prometheusrules")


def build(control_plane, tmp_path: Path, kustomization: dict) -> list[dict]:
    """`kubectl kustomize` of a kustomization written to tmp_path (paths relative to it)."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = control_plane.kubectl("kustomize", str(tmp_path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def rel(path: Path, tmp_path: Path) -> str:
    import os

    return os.path.relpath(path, tmp_path)


def test_component_builds_on_the_install_and_the_install_needs_no_monitoring_kinds(control_plane, tmp_path):
    base = build(control_plane, tmp_path, {"resources": [rel(MANIFESTS, tmp_path)]})
    assert not [o for o in base if o["apiVersion"].startswith("monitoring.coreos.com/")]
    both = build(
        control_plane,
        tmp_path,
        {"resources": [rel(MANIFESTS, tmp_path)], "components": [rel(MANIFESTS / "monitoring", tmp_path)]},
    )

    def key(o):
        return o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]

    added = {key(o) for o in both} - {key(o) for o in base}
    assert added == {
        ("PodMonitor", "tspipe-system", "tspipe-router"),
        ("PodMonitor", "tspipe-system", "tspipe-operator"),
        ("PrometheusRule", "tspipe-system", "tspipe"),
        ("ConfigMap", "tspipe-system", "tspipe-grafana-dashboard"),
    }
    by = {key(o): o for o in both}
    for k in added:
        o = by[k]
        assert o["apiVersion"] == ("v1" if o["kind"] == "ConfigMap" else "monitoring.coreos.com/v1"), k
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tspipe"
    # The dashboard: labelled for Grafana's sidecar, the JSON file unchanged.
    cm = by[("ConfigMap", "tspipe-system", "tspipe-grafana-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["tspipe.json"]) == json.loads(DASHBOARD_FILE.read_text())
    # The rule groups as built parse: names, intervals, PromQL.
    rule = by[("PrometheusRule", "tspipe-system", "tspipe")]
    groups = rule["spec"]["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    for g in groups:
        for r in g["rules"]:
            assert metric_names(r["expr"]), r["alert"]
    # The base objects are untouched by the component.
    assert [o for o in both if key(o) not in added] == base


@pytest.fixture(scope="module")
def monitoring_crds(control_plane):
    files = [cache.prometheus_operator_crd(p) for p in CRDS]
    for f in files:
        # Server-side: the CRDs are too large for kubectl's last-applied annotation.
        control_plane.kubectl("apply", "--server-side", "-f", str(f))
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in files]

    def established():
        for n in names:
            crd = json.loads(control_plane.kubectl("get", "crd", n, "-o", "json").stdout)
            if not any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            ):
                return False
        return True

    wait_for(established, 60, "Prometheus operator CRDs Established")
    yield names
    control_plane.kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=false")


@pytest.fixture
def component_in_own_namespace(control_plane, namespace, tmp_path):
    """The component's objects alone, moved to a namespace of this test (other tests
    install into tspipe-system and expect it absent)."""
    objs = build(
        control_plane, tmp_path, {"namespace": namespace, "components": [rel(MANIFESTS / "monitoring", tmp_path)]}
    )
    return namespace, objs


def kept(stored, sent) -> bool:
    """Everything in `sent` is in `stored` (which may have more: defaults)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and kept(stored[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(map(kept, stored, sent))
    return stored == sent


def dry_run(control_plane, ns, objs):
    return control_plane.kubectl(
        "-n",
        ns,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=tspipe-test",
        "-o",
        "json",
        "-f",
        "-",
        input=yaml.safe_dump_all(objs),
        check=False,
    )


def test_component_objects_pass_the_prometheus_operator_schema(
    control_plane, monitoring_crds, component_in_own_namespace
):
    ns, objs = component_in_own_namespace
    assert {o["kind"] for o in objs} == {"PodMonitor", "PrometheusRule", "ConfigMap"}
    proc = dry_run(control_plane, ns, objs)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    items = out["items"] if out.get("kind") == "List" else [out]
    assert sorted((i["kind"], i["metadata"]["name"]) for i in items) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objs
    )
    # What the API server would store keeps every field sent (nothing pruned as unknown;
    # the schema may add defaults).
    for i in items:
        (o,) = [o for o in objs if (o["kind"], o["metadata"]["name"]) == (i["kind"], i["metadata"]["name"])]
        for field in ("spec", "data"):
            if field in o:
                assert kept(i[field], o[field]), (o["metadata"]["name"], field)
    # A dry run stores nothing.
    assert control_plane.kubectl("-n", ns, "get", "podmonitors,prometheusrules", "-o", "name").stdout.strip() == ""


@pytest.mark.parametrize("breakage", ["unknown field", "wrong type", "bad severity shape"])
def test_the_schema_check_can_fail(control_plane, monitoring_crds, component_in_own_namespace, breakage):
    """The dry run is a real check: the same objects, each broken one way, are refused."""
    ns, objs = component_in_own_namespace
    objs = copy.deepcopy(objs)
    pm = next(o for o in objs if o["kind"] == "PodMonitor")
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    if breakage == "unknown field":
        pm["spec"]["podMetricsEndpoints"][0]["pathh"] = "/metrics"
    elif breakage == "wrong type":
        pm["spec"]["namespaceSelector"]["any"] = "yes"
    else:
        rule["spec"]["groups"][0]["rules"][0]["labels"] = {"severity": {"level": "warning"}}
    proc = dry_run(control_plane, ns, objs)
    assert proc.returncode != 0, breakage
    # The API server names the field, from the CRD's schema.
    field = {
        "unknown field": ".spec.podMetricsEndpoints[0].pathh: field not declared in schema",
        "wrong type": ".spec.namespaceSelector.any: expected boolean",
        "bad severity shape": ".rules[0].labels.severity: expected string",
    }[breakage]
    assert field in proc.stderr, proc.stderr
