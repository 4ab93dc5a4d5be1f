"""manifests/monitoring on a real Prometheus (`make prometheus`: the server of the promtool
module, Kubernetes discovery only), discovering pods through the real API server with the
PodMonitors translated as the Prometheus operator does (localinfra.prometheus) and the
PrometheusRule's groups as its rule file, while a pipeline runs:

- the operator reconciles a pipeline on the real API server and Kafka (kwok's node holds
  the pipeline's pods: they are discovered, but run nothing), and the pipeline's router
  runs here as a process with its Deployment's own args and env, routing timestamps the
  test produces (and some it cannot route); the operator's pod is the install's
  Deployment (manifests/base), run the same way;
- the router and the operator are discovered, selected and labelled by the PodMonitors'
  rules (`up == 1` with job, namespace, pipeline and pod as the PodMonitors give them);
- every query of every dashboard panel, and its variables, returns data;
- the dead-letter alert goes from pending to firing in Prometheus' own /api/v1/alerts;
  so does the Degraded alert for a pipeline whose rollout cannot finish (a router that
  asks for more CPU than any node has, past a 10 s progress deadline); the operator-down
  alert is silent while the operator runs and fires once it stops.

What the test's configuration changes, and why: kwok's pods have addresses nothing
listens on, so one rule appended to each job points this namespace's discovered pods at
the local process (after every PodMonitor rule, so selection and labels are theirs); the
scrape and evaluation intervals are 2 s instead of 30 s, and the dead-letter alert's
`for:` is 10 s instead of 10 minutes, so the test takes a minute, not a quarter hour.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid

import pytest
import yaml
from kubehelpers import Kubectl, Operator
from localinfra import cache
from localinfra.prometheus import PrometheusServer, rule_file
from localinfra.runner import program_for
from promchecks import (
    DEAD_LETTER_ALERT,
    INTERVAL,
    OPERATOR_PODMONITOR,
    RATE_INTERVAL,
    ROUTER_PODMONITOR,
    AlertWatcher,
    alert_states,
    assert_every_query_returns_data,
    live_dashboard_queries,
    podmonitor_jobs,
    prometheus_config,
    rules_with_for,
    targets,
)
from promnames import MONITORING, RULE_FILE
from routerproc import RouterProc, free_port, produce, timestamps, unique, wait_for
from samples import sample_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.kube]

ROOT = MONITORING.parents[1]
OPERATOR_NS = "tspipe-system"
DEAD_LETTER_FOR = "10s"
OPERATOR_DOWN_ALERT = "TspipeOperatorDown"
DEGRADED_ALERT = "TspipePipelineDegraded"
# from 10m, 5m and 5m
SHORTENED = {DEAD_LETTER_ALERT: DEAD_LETTER_FOR, OPERATOR_DOWN_ALERT: "10s", DEGRADED_ALERT: "10s"}


@pytest.fixture(scope="module")
def prometheus_bin():
    try:
        return cache.prometheus()
    except FileNotFoundError as exc:
        pytest.skip(f"prometheus not built (make prometheus): {exc}")


@pytest.fixture(scope="module")
def running_pipeline(prometheus_bin, control_plane, crd_installed, kafka_bootstrap, tmp_path_factory):
    """The install's operator Deployment (kwok: a Ready pod), a pipeline reconciled by the
    operator run here, its router run here from its Deployment, timestamps flowing."""
    kc = control_plane.kubectl
    assert kc("get", "namespace", OPERATOR_NS, check=False).returncode != 0, f"{OPERATOR_NS} left over"
    ns, name = f"tsp-prom-{uuid.uuid4().hex[:6]}", "timestamps"
    kc("create", "namespace", ns)
    kc("apply", "-k", str(ROOT / "manifests" / "base"))
    op_port = free_port()
    op = Operator(
        control_plane.kubeconfig,
        ns,
        tmp_path_factory.mktemp("op") / "operator.log",
        ("--metrics-port", str(op_port), "--metrics-address", "127.0.0.1", "--resync-seconds", "5"),
    )
    router = None
    stop = threading.Event()
    producer = None
    try:
        op.start()
        pipeline = sample_pipeline()
        pipeline["metadata"].update(name=name, namespace=ns)
        pipeline["spec"]["streamName"] = unique("stream")
        pipeline["spec"]["kafka"]["brokers"] = [kafka_bootstrap]
        topics = pipeline["spec"]["kafka"]["topics"]
        topics.update(input=unique("time"), even=unique("even"), odd=unique("odd"))
        # A rollout that cannot finish is Degraded after 10 s (the Degraded alert's test).
        pipeline["spec"]["rollout"] = {"progressDeadlineSeconds": 10}
        Kubectl(control_plane, ns).apply(pipeline)
        k = Kubectl(control_plane, ns)
        dep = wait_for(lambda: k.get_or_none("deployment", f"{name}-router"), 120, "the router's Deployment")
        prog = program_for(dep, lambda *_: None)
        router = RouterProc([a for a in prog.args if not a.startswith("--server.port=")], env=dict(prog.env)).start()
        router.wait_ready(120)

        def feed():
            n = 0
            while not stop.is_set():
                # One value in ten cannot be routed (no last digit): the dead-letter rate is
                # 10%, over the alert's 1%.
                produce(kafka_bootstrap, topics["input"], [*timestamps(9, start=1_700_000_000 + n), b"not a time"])
                n += 9
                stop.wait(1)

        producer = threading.Thread(target=feed, daemon=True)
        producer.start()
        wait_for(lambda: (router.metric("tsrouter_records_routed_total") or 0) > 0, 90, "records routed")
        yield {"ns": ns, "name": name, "router": router, "operator": op, "op_port": op_port}
    finally:
        stop.set()
        if producer is not None:
            producer.join(30)
        if router is not None:
            router.stop()
        op.stop()
        kc("delete", "namespace", ns, "--wait=false", check=False)
        kc("delete", "-k", str(ROOT / "manifests" / "base"), "--ignore-not-found", "--timeout=180s", check=False)


def point_at(job: dict, namespace: str, address: str) -> dict:
    """The test's one addition: this namespace's discovered pods are scraped at `address`."""
    job = copy.deepcopy(job)
    job["relabel_configs"].append(
        {"source_labels": ["namespace"], "regex": namespace, "target_label": "__address__", "replacement": address}
    )
    assert job["scrape_interval"] == INTERVAL
    return job


@pytest.fixture(scope="module")
def prometheus(running_pipeline, control_plane):
    jobs = [
        point_at(j, running_pipeline["ns"], f"127.0.0.1:{running_pipeline['router'].port}")
        for j in podmonitor_jobs(ROUTER_PODMONITOR, control_plane.kubeconfig)
    ]
    jobs += [
        point_at(j, OPERATOR_NS, f"127.0.0.1:{running_pipeline['op_port']}")
        for j in podmonitor_jobs(OPERATOR_PODMONITOR, control_plane.kubeconfig)
    ]
    with PrometheusServer(prometheus_config(jobs), {"tspipe-rules.yaml": rules_with_for(SHORTENED)}) as prom:
        # The dead-letter alert's states from the start, every half second: pending lasts
        # only its shortened `for:`, whichever test runs first.
        watcher = AlertWatcher(prom, DEAD_LETTER_ALERT, running_pipeline["ns"]).start()
        prom.alert_states = watcher.states
        try:
            yield prom
        finally:
            watcher.stop()


def test_router_and_operator_are_discovered_and_scraped_through_the_podmonitors(
    prometheus, running_pipeline, control_plane
):
    ns, name = running_pipeline["ns"], running_pipeline["name"]

    def both_up():
        r = [t for t in targets(prometheus, "podMonitor/tspipe-system/tspipe-router/", ns) if t["health"] == "up"]
        o = [
            t
            for t in targets(prometheus, "podMonitor/tspipe-system/tspipe-operator/", OPERATOR_NS)
            if t["health"] == "up"
        ]
        return (r, o) if r and o else None

    router_targets, operator_targets = wait_for(both_up, 120, "router and operator targets up")
    router_pods = Kubectl(control_plane, ns).json("pods", "-l", "app.kubernetes.io/component=router")["items"]
    assert {t["labels"]["pod"] for t in router_targets} == {p["metadata"]["name"] for p in router_pods}
    for t in router_targets:
        assert t["labels"]["job"] == "tspipe-router" and t["labels"]["pipeline"] == name, t["labels"]
        assert t["labels"]["endpoint"] == "http" and t["labels"]["container"] == "router", t["labels"]
    op_pods = Kubectl(control_plane, OPERATOR_NS).json("pods", "-l", "app.kubernetes.io/name=tspipe-operator")["items"]
    assert {t["labels"]["pod"] for t in operator_targets} == {p["metadata"]["name"] for p in op_pods}
    assert all(t["labels"]["job"] == "tspipe-operator" for t in operator_targets)
    # The pipeline's other three apps have no port "http" selected by the router's labels.
    others = [
        t
        for t in targets(prometheus, "podMonitor/tspipe-system/tspipe-router/", ns)
        if not t["labels"]["pod"].startswith(f"{name}-router-")
    ]
    assert not others, others

    up = wait_for(
        lambda: prometheus.query(f'up{{job="tspipe-router", namespace="{ns}", pipeline="{name}"}} == 1'),
        60,
        "up == 1 for the router",
    )
    assert len(up) == len(router_pods)
    assert wait_for(lambda: prometheus.query('up{job="tspipe-operator"} == 1'), 60, "up == 1 for the operator")
    # honorLabels: the operator's per-pipeline series keep the pipeline's namespace.
    phase = wait_for(
        lambda: prometheus.query(
            f'tspipe_pipeline_phase{{job="tspipe-operator", namespace="{ns}", pipeline="{name}"}} == 1'
        ),
        60,
        "the operator's phase series of the pipeline",
    )
    assert phase[0]["metric"]["namespace"] == ns


def test_every_dashboard_query_returns_data(prometheus, running_pipeline, control_plane):
    ns, name = running_pipeline["ns"], running_pipeline["name"]
    queries = live_dashboard_queries(ns, name)
    assert len(queries) >= 15, "every panel's targets and the variables"
    # Rates need two scrapes inside the window, and the alert below has been evaluating.
    wait_for(
        lambda: prometheus.query(f'rate(tsrouter_records_routed_total{{namespace="{ns}"}}[{RATE_INTERVAL}]) > 0'),
        90,
        "a rate of routed records",
    )

    # The reconcile duration shows the passes of its rate window; a settled pipeline has
    # none (the resync skips it), so touch it as a user's edit would: one pass.
    control_plane.kubectl("annotate", "tsp", name, "-n", ns, "--overwrite", f"tspipe.test/touched={time.time()}")
    assert_every_query_returns_data(prometheus, queries, 60)
    # Variables list this pipeline (Grafana's drop-downs).
    ns_values = {
        s["metric"]["namespace"] for s in prometheus.query('tsrouter_records_consumed_total{job="tspipe-router"}')
    }
    assert ns in ns_values


def test_rules_load_and_the_dead_letter_alert_goes_from_pending_to_firing(prometheus, running_pipeline):
    groups = prometheus.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    want = {r["alert"] for g in rule_file(yaml.safe_load(RULE_FILE.read_text()))["groups"] for r in g["rules"]}
    assert set(loaded) == want and len(want) == 5

    wait_for(lambda: "firing" in prometheus.alert_states, 120, f"{DEAD_LETTER_ALERT} firing", interval=0.5)
    states = prometheus.alert_states
    assert "pending" in states and states.index("pending") < states.index("firing"), (
        f"pending first (for: {DEAD_LETTER_FOR}), then firing; seen {sorted(set(states))}"
    )
    alert = next(
        a
        for a in prometheus.api("alerts")["alerts"]
        if a["labels"].get("alertname") == DEAD_LETTER_ALERT and a["labels"].get("namespace") == running_pipeline["ns"]
    )
    assert alert["labels"]["pipeline"] == running_pipeline["name"] and alert["labels"]["severity"] == "warning"
    assert running_pipeline["name"] in alert["annotations"]["summary"]
    # Every rule was evaluated without error.
    for name, r in {r["name"]: r for g in prometheus.api("rules")["groups"] for r in g["rules"]}.items():
        assert r["health"] == "ok", (name, r.get("lastError"))


def test_the_server_reports_the_pinned_release(prometheus):
    """hack/monitoring-tools.sh stamps the version as Prometheus' own build does (without
    it, `prometheus --version` and /api/v1/status/buildinfo say nothing)."""
    module = cache.monitoring_versions()["PROMETHEUS_VERSION"]  # v0.316.0 is Prometheus 3.16.0
    minor, patch = module.removeprefix("v0.").split(".")
    assert prometheus.api("status/buildinfo")["version"] == f"{int(minor) // 100}.{int(minor) % 100}.{patch}"


def test_degraded_alert_fires_for_a_pipeline_whose_rollout_cannot_finish(prometheus, running_pipeline, control_plane):
    """After the data tests: it leaves the router's rollout stuck (the old pod serves)."""
    ns, name = running_pipeline["ns"], running_pipeline["name"]
    k = Kubectl(control_plane, ns)
    wait_for(
        lambda: prometheus.query(f'tspipe_pipeline_phase{{namespace="{ns}", phase="Running"}} == 1'),
        60,
        "the pipeline Running in the operator's metrics",
    )
    assert alert_states(prometheus, DEGRADED_ALERT, ns) == [], "no Degraded alert while Running"
    k(
        "patch",
        "tsp",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"router": {"resources": {"requests": {"cpu": "500"}}}}}),
    )
    seen: list[str] = []

    def firing():
        seen.extend(alert_states(prometheus, DEGRADED_ALERT, ns))
        return "firing" in seen

    wait_for(firing, 180, f"{DEGRADED_ALERT} firing", interval=0.5)
    assert "pending" in seen and seen.index("pending") < seen.index("firing"), seen
    (alert,) = [
        a
        for a in prometheus.api("alerts")["alerts"]
        if a["labels"].get("alertname") == DEGRADED_ALERT and a["labels"].get("namespace") == ns
    ]
    assert alert["labels"]["pipeline"] == name and alert["labels"]["severity"] == "critical"
    assert k.json("tsp", name)["status"]["phase"] == "Degraded"


def test_operator_down_fires_once_the_operator_stops_and_not_before(prometheus, running_pipeline):
    """Last in this file: it stops the module's operator."""

    def down_states() -> list[str]:
        return [
            a["state"]
            for a in prometheus.api("alerts")["alerts"]
            if a["labels"].get("alertname") == OPERATOR_DOWN_ALERT
        ]

    wait_for(lambda: prometheus.query('up{job="tspipe-operator"} == 1'), 60, "the operator scraped")
    # Quiet for longer than its shortened for: while the operator is scraped.
    quiet_until = time.monotonic() + 15
    while time.monotonic() < quiet_until:
        assert down_states() == [], "operator-down while the operator is up"
        time.sleep(1)
    running_pipeline["operator"].stop()
    seen: list[str] = []

    def firing():
        seen.extend(down_states())
        return "firing" in seen

    wait_for(firing, 90, f"{OPERATOR_DOWN_ALERT} firing", interval=0.5)
    assert "pending" in seen and seen.index("pending") < seen.index("firing"), seen
    assert prometheus.query('up{job="tspipe-operator"} == 0'), "the operator's target is down, not gone"
