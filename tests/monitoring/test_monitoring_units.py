"""manifests/monitoring without any infrastructure: the rules and the dashboard parse and
say what they must, the metric-name check catches a misspelt name, the PodMonitors select
what the operator renders, and the two metrics changes behind them (the operator's
per-pipeline phase, the router's lag of partitions it no longer owns)."""

from __future__ import annotations

import re
import threading
from collections import namedtuple
from pathlib import Path

import promnames
import pytest
import yaml
from prometheus_client import generate_latest
from promnames import MONITORING, Query, dashboard_queries, load_dashboard, metric_names, missing, referenced, rules

ALERTS = {
    "TspipeRouterLagGrowing",
    "TspipeRouterDeadLetterRateHigh",
    "TspipeRouterSendErrors",
    "TspipePipelineDegraded",
    "TspipeOperatorDown",
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


# ---- the name extraction ------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, names",
    [
        (
            'sum by (namespace, pipeline) (rate(tsrouter_send_errors_total{job="tspipe-router"}[5m])) > 0',
            {"tsrouter_send_errors_total"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{le!="+Inf"}[$__rate_interval])))',
            {"a_seconds_bucket"},
        ),
        ('absent(up{job="tspipe-operator"} == 1)', {"up"}),
        (
            "max_over_time(deriv(lag[10m])[1h:5m] offset 1d) / on (pipeline) group_left(phase) b unless c",
            {"lag", "b", "c"},
        ),
        ('{__name__="by_name", job="rate"}', {"by_name"}),
        (
            'count without (sum) (label_replace(m, "dst", "$1", "src", "(.*)")) / ignoring(x) n + scalar(o)',
            {"m", "n", "o"},
        ),
        ("time() - 5 * 60", set()),
    ],
)
def test_metric_names_are_the_vector_selectors_only(expr, names):
    assert metric_names(promnames.grafana_to_promql(expr)) == names


def test_unparsable_promql_is_an_error():
    with pytest.raises(ValueError):
        metric_names("sum by (le (rate(x[5m]))")


# The counter without the `_total` prometheus_client adds, and a typo:
@pytest.mark.parametrize("typo", ["tsrouter_send_errors", "tsrouter_send_error_total"])
def test_a_misspelt_name_is_reported_missing(typo):
    exposed = {"tsrouter_send_errors_total", "tspipe_reconciles_total"}
    good = [Query("rule A", "rate(tsrouter_send_errors_total[5m]) > 0"), Query("panel B", "absent(up)")]
    assert missing(referenced(good), exposed) == {}
    bad = [*good, Query("rule C", f"rate({typo}[5m]) > 0")]
    assert missing(referenced(bad), exposed) == {typo: ["rule C"]}


def test_every_name_in_the_shipped_files_is_found_and_both_files_are_read():
    rule_names = referenced(promnames.rule_queries())
    dash_names = referenced(dashboard_queries(load_dashboard()))
    assert {"tsrouter_consumer_lag", "tspipe_pipeline_phase", "up"} <= set(rule_names)
    assert {
        "tsrouter_records_routed_total",
        "tsrouter_end_to_end_latency_seconds_bucket",
        "tspipe_reconciles_total",
        "tspipe_pipelines",
    } <= set(dash_names)


# ---- the PrometheusRule -------------------------------------------------------------------


def test_rule_file_has_the_alerts_with_severity_summary_and_description():
    obj = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "PrometheusRule"
    rs = rules()
    assert {r["alert"] for r in rs} == ALERTS
    for r in rs:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert r["annotations"]["summary"].strip() and len(r["annotations"]["description"]) > 80, r["alert"]
        assert DURATION.match(r["for"]), r["alert"]
        assert metric_names(r["expr"]), r["alert"]
        # Annotations use only labels the expression keeps.
        kept = (
            set(re.findall(r"by \(([^)]*)\)", r["expr"])[-1].replace(" ", "").split(","))
            if "by (" in r["expr"]
            else set()
        )
        for label in re.findall(r"\$labels\.(\w+)", str(r["annotations"])):
            assert label in kept, (r["alert"], label)


def test_pipeline_degraded_holds_five_minutes_per_pipeline():
    (r,) = [r for r in rules() if r["alert"] == "TspipePipelineDegraded"]
    assert r["for"] == "5m" and "tspipe_pipeline_phase" in r["expr"] and 'phase="Degraded"' in r["expr"]


# ---- the dashboard ------------------------------------------------------------------------

PANELS = (
    "Pipelines by phase",
    "Records routed per channel",
    "Dead-letter rate",
    "Consumer lag",
    "End-to-end latency",
    "Send errors",
    "Reconcile rate",
    "Reconcile errors",
)


def test_dashboard_has_the_panels_with_parsing_queries():
    dash = load_dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    titles = [p["title"] for p in dash["panels"] if p["type"] != "row"]
    for t in PANELS:
        assert t in titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
    queries = dashboard_queries(dash)
    assert len(queries) >= len(PANELS)
    for q in queries:
        metric_names(q.expr)  # raises on PromQL that does not parse
    (phase,) = [p for p in dash["panels"] if p["title"] == "Pipelines by phase"]
    assert "tspipe_pipelines" in phase["targets"][0]["expr"] and "by (phase)" in phase["targets"][0]["expr"]


def test_kustomization_is_a_component_shipping_the_dashboard_for_the_sidecar():
    k = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert k["kind"] == "Component" and k["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    (gen,) = k["configMapGenerator"]
    assert gen["options"]["labels"]["grafana_dashboard"] == "1"
    assert [f.rsplit("/", 1)[-1] for f in gen["files"]] == ["tspipe.json"]


# ---- the PodMonitors select what is really there -------------------------------------------


def podmonitor(name):
    return yaml.safe_load((MONITORING / f"podmonitor-{name}.yaml").read_text())


def test_router_podmonitor_selects_the_router_pods_the_operator_renders():
    from tspipe.components import COMPONENTS, ROUTER
    from tspipe.render import labels

    pm = podmonitor("router")
    sel = pm["spec"]["selector"]["matchLabels"]
    assert pm["spec"]["namespaceSelector"] == {"any": True}, "pipelines live in any namespace"
    assert sel.items() <= labels("any-name", ROUTER).items()
    for other in COMPONENTS:
        if other is not ROUTER:
            assert not sel.items() <= labels("any-name", other).items(), other.suffix
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["path"] == "/actuator/prometheus"
    import tspipe.render as render

    assert ep["port"] == "http" and render.SERVER_PORT == 8080
    relabel = {r["targetLabel"]: r for r in ep["relabelings"]}
    assert relabel["pipeline"]["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    assert relabel["job"]["replacement"] == "tspipe-router"


def test_router_container_port_and_actuator_route_exist():
    """The port name and path the PodMonitor scrapes, in what render.py and the router serve."""
    import tspipe.render as render
    from tsrouter.actuator import create_app
    from tsrouter.health import HealthState
    from tsrouter.metrics import Metrics

    src = Path(render.__file__).read_text()
    assert '"ports": [{"name": "http", "containerPort": SERVER_PORT' in src
    app = create_app(HealthState(), {}, Metrics().registry, 60.0)
    resp = app.test_client().get("/actuator/prometheus")
    assert resp.status_code == 200 and b"tsrouter_records_routed_total" in resp.data


def test_operator_podmonitor_selects_the_operator_pod_and_its_metrics_port():
    dep = yaml.safe_load((promnames.ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    tmpl = dep["spec"]["template"]
    (c,) = tmpl["spec"]["containers"]
    pm = podmonitor("operator")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": [dep["metadata"]["namespace"]]}
    assert pm["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert f"--metrics-port={ports[ep['port']]}" in c["args"] and ep["path"] == "/metrics"
    assert ep["honorLabels"] is True, "tspipe_pipeline_phase's namespace is the pipeline's"
    assert {r["targetLabel"]: r["replacement"] for r in ep["relabelings"]}["job"] == "tspipe-operator"


# ---- the operator's per-pipeline phase -----------------------------------------------------


def test_operator_pipeline_phase_is_one_series_per_pipeline():
    from tspipe.metrics import Metrics

    m = Metrics()

    def phase_lines():
        return sorted(
            ln for ln in generate_latest(m.registry).decode().splitlines() if ln.startswith("tspipe_pipeline_phase{")
        )

    m.set_phase("ns1", "a", "Progressing")
    m.set_phase("ns2", "a", "Running")
    m.set_phase("ns1", "a", "Degraded")
    m.set_phase("ns1", "a", "Degraded")
    assert phase_lines() == [
        'tspipe_pipeline_phase{namespace="ns1",phase="Degraded",pipeline="a"} 1.0',
        'tspipe_pipeline_phase{namespace="ns2",phase="Running",pipeline="a"} 1.0',
    ]
    assert m.pipelines.labels("Degraded")._value.get() == 1 and m.pipelines.labels("Progressing")._value.get() == 0
    m.forget_pipeline("ns1", "a")
    assert phase_lines() == ['tspipe_pipeline_phase{namespace="ns2",phase="Running",pipeline="a"} 1.0']
    m.forget_pipeline("ns1", "a")  # twice: nothing to do
    assert len(phase_lines()) == 1


# ---- the router's lag of partitions it no longer owns -------------------------------------

TP = namedtuple("TP", "topic partition")


class FakeConsumer:
    def __init__(self, high: dict):
        self.high = high

    def assignment(self):
        return set(self.high)

    def highwater(self, tp):
        return self.high[tp]


def test_router_lag_of_a_partition_it_no_longer_owns_is_removed():
    from tsrouter.app import Runner
    from tsrouter.config import load
    from tsrouter.health import HealthState
    from tsrouter.metrics import Metrics

    m = Metrics()
    r = Runner(
        load(["--spring.cloud.stream.kafka.binder.brokers=127.0.0.1:1"], {}), HealthState(), m, threading.Event()
    )
    t0, t1, t2 = TP("in", 0), TP("in", 1), TP("in", 2)

    def lag_lines(consumer, positions):
        r.consumer, r.positions, r._last_lag = consumer, dict(positions), -1e9
        r._update_lag()
        return sorted(
            ln for ln in generate_latest(m.registry).decode().splitlines() if ln.startswith("tsrouter_consumer_lag{")
        )

    assert lag_lines(FakeConsumer({t0: 10, t1: 7, t2: None}), {t0: 4, t1: 7}) == [
        'tsrouter_consumer_lag{partition="0",topic="in"} 6.0',
        'tsrouter_consumer_lag{partition="1",topic="in"} 0.0',
    ]
    # Partition 0 went to another replica at a rebalance; 2 now has a high watermark.
    assert lag_lines(FakeConsumer({t1: 9, t2: 5}), {t1: 7, t2: 5}) == [
        'tsrouter_consumer_lag{partition="1",topic="in"} 2.0',
        'tsrouter_consumer_lag{partition="2",topic="in"} 0.0',
    ]
    assert set(r.positions) == {t1, t2}, "the position of a partition it no longer owns is dropped"
    # Partition 0 comes back: its lag is unknown (no series) until a record is read from it.
    assert lag_lines(FakeConsumer({t0: 12, t1: 9}), r.positions) == [
        'tsrouter_consumer_lag{partition="1",topic="in"} 2.0',
    ]
    assert lag_lines(FakeConsumer({}), {}) == []
