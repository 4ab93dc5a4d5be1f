"""The real install: `kubectl apply -k manifests/` puts the operator in a pod (the image
built from Dockerfile.operator), with its ServiceAccount and least-privilege RBAC, in a
namespace enforcing Pod Security `restricted`; it reconciles the sample pipeline (also
part of manifests/) to Ready on the real node. Then the same with Helm (charts/tspipe):
`helm install` runs the operator pod and the sample goes Ready, `helm upgrade --set
image.tag=...` rolls the operator, `helm uninstall` removes it and keeps the CRD and the
pipelines created outside the chart.

The chart's namespaced values (`watchNamespaces`) install a Role in that namespace and no
ClusterRole with the operator's rights, and the operator serves that namespace only.

The operator's pod reads a router pod's counters at its pod IP (the default path for
rollouts judged by them, with Kafka credentials), with the operator's own code.

Meanwhile a real Prometheus, configured from manifests/monitoring as the Prometheus
operator would (both PodMonitors, the PrometheusRule), discovers the operator's and the
router's pods through the API server and scrapes them at their pod IPs: `up == 1` for
each, every query of every dashboard panel returns data, the dead-letter alert goes from
pending to firing after malformed records, the Degraded alert after the sample is forced
Degraded (a router rollout that cannot be scheduled, past a 10 s progress deadline), and
the operator-down alert once the operator is scaled to zero. What the test changes, and
why: scrapes and rule evaluations every 2 s instead of 30 s; `for:` 10 s instead of 10
minutes (dead letters) and 5 minutes (Degraded, operator down), in the test's copy of
the rules."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import pytest
import yaml
from charthelpers import CHART, RELEASE, helm, uninstall
from localinfra.node import NODE_NAME, NodeError
from localinfra.nodeconfig import IMAGES
from nodehelpers import (
    OPERATOR_NS,
    PIPELINE_NS,
    apply_obj,
    explained,
    install_kustomization,
    logger_payloads,
    new_namespace,
    node_prometheus,
    operator_env,
    operator_pod,
    pipeline_ready,
    pipeline_status,
    pod_ready,
    pods,
    router_pod,
    wait_for,
)
from promchecks import (
    DEAD_LETTER_ALERT,
    OPERATOR_PODMONITOR,
    ROUTER_PODMONITOR,
    AlertWatcher,
    alert_states,
    assert_every_query_returns_data,
    live_dashboard_queries,
    podmonitor_jobs,
    rules_with_for,
    up_pods,
)
from routerproc import produce
from samples import sample_pipeline

# Generous: the first test also waits for the node to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

PIPELINE = "timestamps"
OPERATOR_IMAGE = IMAGES["operator"]
HELM_RELEASE_NS = "default"  # where Helm keeps its release record; the objects name their own namespaces
# The tag of the upgrade in docs/helm.md: the node gets the same image under it, a new
# release as far as Kubernetes can tell (images never come from a registry here).
UPGRADE_TAG = "0.1.1"
POST_RENDERER = "tspipe-node"
DEGRADED_ALERT, OPERATOR_DOWN_ALERT = "TspipePipelineDegraded", "TspipeOperatorDown"
# The test's copy of the rules: each alert it waits for after 10 s (from 10, 5 and 5 minutes).
SHORTENED = {DEAD_LETTER_ALERT: "10s", DEGRADED_ALERT: "10s", OPERATOR_DOWN_ALERT: "10s"}
SA_USER = "system:serviceaccount:tspipe-system:tspipe-operator"


@pytest.fixture(scope="module")
def prometheus(node_cluster):
    """A real Prometheus with both PodMonitors' scrape jobs and the PrometheusRule."""
    kubeconfig = node_cluster.cp.kubeconfig
    jobs = podmonitor_jobs(ROUTER_PODMONITOR, kubeconfig) + podmonitor_jobs(OPERATOR_PODMONITOR, kubeconfig)
    with node_prometheus(jobs, {"tspipe-rules.yaml": rules_with_for(SHORTENED)}) as prom:
        yield prom


def test_operator_installed_with_kubectl_apply_k_runs_as_a_pod_and_reconciles_the_sample(
    node_cluster, prometheus, tmp_path
):
    c = node_cluster
    kdir = tmp_path / "install"
    install_kustomization(kdir, c.cp.apiserver_port, c.broker.pod_bootstrap)
    try:
        with explained(c, PIPELINE_NS, {"prometheus": prometheus.dir / "prometheus.log"}):
            c.kubectl("apply", "-k", str(kdir))
            op = wait_for(lambda: operator_pod(c), 300, "the operator pod Running and Ready")
            spec = op["spec"]
            assert spec["nodeName"] == NODE_NAME
            assert spec["serviceAccountName"] == "tspipe-operator"
            assert spec["containers"][0]["image"] == "ghcr.io/tspipe/operator:0.1.0"
            sc = spec["containers"][0]["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] == 10001
            ns = c.get("namespace", OPERATOR_NS)["metadata"]["labels"]
            assert ns["pod-security.kubernetes.io/enforce"] == "restricted"

            wait_for(lambda: pipeline_ready(c, PIPELINE_NS, PIPELINE), 420, "the sample pipeline Ready")
            wait_for(
                lambda: (ps := pods(c, PIPELINE_NS)) and len(ps) == 4 and all(map(pod_ready, ps)),
                180,
                "the sample's four pods Ready",
            )
            wait_for(
                lambda: (
                    logger_payloads(c, PIPELINE_NS, PIPELINE, "evenlogger")
                    and logger_payloads(c, PIPELINE_NS, PIPELINE, "oddlogger")
                ),
                240,
                "lines in both loggers",
            )
            assert all(p.startswith("Even timestamp:") for p in logger_payloads(c, PIPELINE_NS, PIPELINE, "evenlogger"))
            # The operator's own log, through the kubelet: it reconciled the sample.
            oplog = c.kubectl("logs", "-n", OPERATOR_NS, op["metadata"]["name"]).stdout
            assert PIPELINE in oplog, oplog[-3000:]

            check_counters_read_from_the_operator_pod(c, op)
            check_monitoring(c, prometheus, op)
    finally:
        c.kubectl(
            "delete", "tsp", PIPELINE, "-n", PIPELINE_NS, "--wait=true", "--timeout=120s", check=False, timeout=150
        )
        c.kubectl("delete", "-k", str(kdir), "--wait=true", "--timeout=180s", check=False, timeout=240)


# The operator's own read of a router pod's counters (the default path: at the pod's IP on
# its actuator port), run in the operator's pod with the operator's code and settings.
READ_COUNTERS = """
import json, sys
from tspipe import defaults, podmetrics
from tspipe.render import SERVER_PORT
pod = json.loads(sys.argv[1])
text = podmetrics.read_direct(pod, SERVER_PORT, defaults.ROUTER_METRICS_TIMEOUT)
print(json.dumps(podmetrics.router_counters(text)))
"""


def check_counters_read_from_the_operator_pod(c, op: dict) -> None:
    """From the operator's pod, the sample's router pod answers at its pod IP (no API
    server between: the install grants no pods/proxy)."""
    router = router_pod(c, PIPELINE_NS, PIPELINE)
    assert router["status"]["podIP"] != op["status"]["podIP"]
    pod = {"metadata": {"name": router["metadata"]["name"]}, "status": {"podIP": router["status"]["podIP"]}}

    def counters():
        out = c.kubectl(
            "exec",
            "-n",
            OPERATOR_NS,
            op["metadata"]["name"],
            "--",
            "python",
            "-c",
            READ_COUNTERS,
            json.dumps(pod),
            timeout=60,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        return got["committed"] > 0 and got

    got = wait_for(counters, 120, "the router pod's counters, read from the operator's pod at the router's pod IP")
    assert got["even"] + got["odd"] > 0, got
    assert (
        c.kubectl(
            "auth", "can-i", "get", "pods", "--subresource=proxy", "-n", PIPELINE_NS, f"--as={SA_USER}", check=False
        ).stdout.strip()
        == "no"
    )


def check_monitoring(c, prom, op: dict) -> None:
    """What a user of manifests/monitoring checks while the sample runs."""
    # Both pods discovered and scraped through the PodMonitors' selectors and relabeling.
    router = router_pod(c, PIPELINE_NS, PIPELINE)["metadata"]["name"]
    wait_for(
        lambda: (
            up_pods(prom, "tspipe-router", PIPELINE_NS) == {router}
            and up_pods(prom, "tspipe-operator", OPERATOR_NS) == {op["metadata"]["name"]}
        ),
        60,
        "up == 1 for the router pod and the operator pod",
    )
    up = prom.query(f'up{{job="tspipe-router", namespace="{PIPELINE_NS}", pipeline="{PIPELINE}"}} == 1')
    assert [s["metric"]["pod"] for s in up] == [router], up

    # Malformed records in the input topic: the dead-letter alert, pending first (its
    # shortened for:), then firing, in Prometheus' own /api/v1/alerts.
    watcher = AlertWatcher(prom, DEAD_LETTER_ALERT, PIPELINE_NS).start()
    try:
        topic = c.get("tsp", PIPELINE, "-n", PIPELINE_NS)["spec"]["kafka"]["topics"]["input"]
        produce(c.broker.bootstrap, topic, [b"not a time"] * 10)
        # The reconcile panels show the passes of their rate window; a settled pipeline has
        # none until the 5-minute resync, so touch it as a user's edit would (one pass).
        c.kubectl("annotate", "tsp", PIPELINE, "-n", PIPELINE_NS, "--overwrite", f"tspipe.test/touched={time.time()}")
        queries = live_dashboard_queries(PIPELINE_NS, PIPELINE)
        assert len(queries) >= 15, "every panel's targets and the variables"
        assert_every_query_returns_data(prom, queries, 90)
        wait_for(lambda: "firing" in watcher.states, 120, f"{DEAD_LETTER_ALERT} firing", interval=0.5)
    finally:
        watcher.stop()
    watcher.assert_pending_then_firing()
    (alert,) = [
        a
        for a in prom.api("alerts")["alerts"]
        if a["labels"].get("alertname") == DEAD_LETTER_ALERT and a["labels"].get("namespace") == PIPELINE_NS
    ]
    assert alert["labels"]["pipeline"] == PIPELINE and alert["state"] == "firing", alert

    # Forced Degraded: a router rollout whose pod no node can take (500 CPUs), past a
    # 10 s progress deadline; the old pod keeps serving. The operator reports the phase,
    # Prometheus scrapes it, the Degraded alert goes pending then firing.
    assert alert_states(prom, DEGRADED_ALERT, PIPELINE_NS) == [], "no Degraded alert while Running"
    watcher = AlertWatcher(prom, DEGRADED_ALERT, PIPELINE_NS).start()
    try:
        c.kubectl(
            "patch",
            "tsp",
            PIPELINE,
            "-n",
            PIPELINE_NS,
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "spec": {
                        "rollout": {"progressDeadlineSeconds": 10},
                        "router": {"resources": {"requests": {"cpu": "500"}}},
                    }
                }
            ),
        )
        wait_for(
            lambda: pipeline_status(c, PIPELINE_NS, PIPELINE).get("phase") == "Degraded", 180, "the sample Degraded"
        )
        wait_for(lambda: "firing" in watcher.states, 120, f"{DEGRADED_ALERT} firing", interval=0.5)
    finally:
        watcher.stop()
    watcher.assert_pending_then_firing()
    (alert,) = [
        a
        for a in prom.api("alerts")["alerts"]
        if a["labels"].get("alertname") == DEGRADED_ALERT and a["labels"].get("namespace") == PIPELINE_NS
    ]
    assert alert["labels"]["pipeline"] == PIPELINE and alert["labels"]["severity"] == "critical", alert

    # The operator stopped (its Deployment scaled to zero): once no operator is scraped,
    # the operator-down alert, quiet while it ran, goes pending then firing.
    wait_for(lambda: alert_states(prom, OPERATOR_DOWN_ALERT) == [], 60, "no operator-down alert while it runs")
    watcher = AlertWatcher(prom, OPERATOR_DOWN_ALERT).start()
    try:
        c.kubectl("scale", "deployment", "tspipe-operator", "-n", OPERATOR_NS, "--replicas=0")
        wait_for(lambda: "firing" in watcher.states, 120, f"{OPERATOR_DOWN_ALERT} firing", interval=0.5)
    finally:
        watcher.stop()
    watcher.assert_pending_then_firing()
    wait_for(lambda: not pods(c, OPERATOR_NS), 60, "the operator's pod gone")


def write_post_renderer(plugins: os.PathLike, apiserver_port: int, bootstrap: str) -> None:
    """A Helm post-renderer plugin (Helm 4 takes plugins only) doing what the kustomize
    overlay above does: the operator's API server address and the sample's broker."""
    folder = os.path.join(plugins, POST_RENDERER)
    os.makedirs(folder)
    with open(os.path.join(folder, "plugin.yaml"), "w") as f:
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "type": "postrenderer/v1",
                "name": POST_RENDERER,
                "version": "0.1.0",
                "runtime": "subprocess",
                "runtimeConfig": {"platformCommand": [{"command": "${HELM_PLUGIN_DIR}/render.py"}]},
            },
            f,
        )
    script = os.path.join(folder, "render.py")
    with open(script, "w") as f:
        f.write(f"""#!{sys.executable}
import sys, yaml
ENV, BROKERS = {operator_env(apiserver_port)!r}, {[bootstrap]!r}
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for d in docs:
    if d["kind"] == "Deployment" and d["metadata"]["name"] == "tspipe-operator":
        d["spec"]["template"]["spec"]["containers"][0]["env"] = ENV
    elif d["kind"] == "TimestampPipeline":
        d["spec"]["kafka"]["brokers"] = BROKERS
yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
""")
    os.chmod(script, 0o755)  # noqa: S103 - the post-renderer Helm runs; in a temporary folder


def helm_env(c, tmp_path) -> dict:
    """Helm's environment for this cluster: its own folders under tmp_path, and the
    post-renderer plugin."""
    env = dict(os.environ, KUBECONFIG=c.cp.kubeconfig, HELM_PLUGINS=str(tmp_path / "plugins"))
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp_path / var.lower())
    write_post_renderer(tmp_path / "plugins", c.cp.apiserver_port, c.broker.pod_bootstrap)
    return env


def test_helm_install_upgrade_and_uninstall_run_and_roll_the_operator_pod(node_cluster, prometheus, tmp_path):
    c = node_cluster
    env = helm_env(c, tmp_path)
    new_image = OPERATOR_IMAGE.rsplit(":", 1)[0] + f":{UPGRADE_TAG}"
    crd_uid = c.get("crd", "timestamppipelines.tspipe.io")["metadata"]["uid"]
    # A pipeline created outside the chart, in a namespace of its own. Held by the
    # reconcile-paused annotation: the operator only writes its status (no pods to pay for).
    outside = sample_pipeline(
        metadata={"annotations": {"tspipe.io/reconcile-paused": "true"}}, kafka={"brokers": [c.broker.pod_bootstrap]}
    )
    outside_ns = None
    try:
        c.node.ctr("images", "tag", "--force", OPERATOR_IMAGE, new_image)
        outside_ns = new_namespace(c, "outside")
        # The kustomize install's namespaces are gone (the chart creates them again).
        for ns in (OPERATOR_NS, PIPELINE_NS):
            wait_for(
                lambda ns=ns: c.kubectl("get", "namespace", ns, check=False).returncode != 0,
                180,
                f"namespace {ns} gone",
            )
        with explained(c, PIPELINE_NS, {"prometheus": prometheus.dir / "prometheus.log"}):
            helm(
                "install",
                RELEASE,
                str(CHART),
                "--namespace",
                HELM_RELEASE_NS,
                "--post-renderer",
                POST_RENDERER,
                env=env,
            )
            op = wait_for(lambda: operator_pod(c), 300, "the operator pod Running and Ready")
            assert op["spec"]["nodeName"] == NODE_NAME
            assert op["spec"]["containers"][0]["image"] == OPERATOR_IMAGE
            d = c.get("deployment", "tspipe-operator", "-n", OPERATOR_NS)
            assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
            wait_for(lambda: pipeline_ready(c, PIPELINE_NS, PIPELINE), 420, "the sample pipeline Ready")
            wait_for(
                lambda: (ps := pods(c, PIPELINE_NS)) and len(ps) == 4 and all(map(pod_ready, ps)),
                180,
                "the sample's four pods Ready",
            )

            # The upgrade of docs/helm.md rolls the operator: a new pod with the new image.
            helm(
                "upgrade",
                RELEASE,
                str(CHART),
                "--namespace",
                HELM_RELEASE_NS,
                "--reuse-values",
                "--set",
                f"image.tag={UPGRADE_TAG}",
                "--post-renderer",
                POST_RENDERER,
                env=env,
            )
            new = wait_for(
                lambda: operator_pod(c, other_than=op["metadata"]["name"]),
                300,
                "the upgraded operator pod Running and Ready",
            )
            assert new["spec"]["containers"][0]["image"] == new_image
            # It serves pipelines: one created now gets its status from it (every namespace),
            # the sample stays Ready; Prometheus scrapes it (the chart's pod matches the PodMonitor).
            apply_obj(c, outside, outside_ns)
            wait_for(
                lambda: (
                    {
                        x["type"]: x["status"] for x in pipeline_status(c, outside_ns, PIPELINE).get("conditions", [])
                    }.get("ReconciliationPaused")
                    == "True"
                ),
                120,
                "the outside pipeline's ReconciliationPaused condition, written by the upgraded operator",
            )
            wait_for(lambda: pipeline_ready(c, PIPELINE_NS, PIPELINE), 120, "the sample Ready after the upgrade")
            wait_for(
                lambda: up_pods(prometheus, "tspipe-operator", OPERATOR_NS) == {new["metadata"]["name"]},
                60,
                "up == 1 for the upgraded operator pod",
            )

            # Uninstall: the operator and its namespaces go; the CRD (the same object) and the
            # pipeline created outside the chart stay.
            helm(
                "uninstall", RELEASE, "--namespace", HELM_RELEASE_NS, "--wait", "--timeout", "5m", env=env, timeout=360
            )
            for ns in (OPERATOR_NS, PIPELINE_NS):
                wait_for(
                    lambda ns=ns: c.kubectl("get", "namespace", ns, check=False).returncode != 0,
                    180,
                    f"namespace {ns} gone",
                )
            assert c.kubectl("get", "clusterrole/tspipe-operator", check=False).returncode != 0
            assert c.get("crd", "timestamppipelines.tspipe.io")["metadata"]["uid"] == crd_uid
            assert c.get("tsp", PIPELINE, "-n", outside_ns)["metadata"]["name"] == PIPELINE
    finally:
        uninstall(HELM_RELEASE_NS, env)
        for ns in (OPERATOR_NS, PIPELINE_NS, outside_ns):
            if ns:
                c.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=180s", check=False, timeout=240)
        with contextlib.suppress(NodeError):  # (no such tag: the tag command failed)
            c.node.ctr("images", "rm", new_image)


def paused_pipeline(c) -> dict:
    """The sample, held by the reconcile-paused annotation: the operator that serves it
    writes its status (condition ReconciliationPaused) and creates no pods."""
    return sample_pipeline(
        metadata={"annotations": {"tspipe.io/reconcile-paused": "true"}}, kafka={"brokers": [c.broker.pod_bootstrap]}
    )


def test_helm_namespaced_values_install_a_role_and_serve_only_that_namespace(node_cluster, tmp_path):
    c = node_cluster
    env = helm_env(c, tmp_path)
    served = other = None
    try:
        served, other = new_namespace(c, "served"), new_namespace(c, "other")
        # The earlier tests' namespaces are gone (the chart creates tspipe-system again).
        wait_for(
            lambda: c.kubectl("get", "namespace", OPERATOR_NS, check=False).returncode != 0,
            180,
            f"namespace {OPERATOR_NS} gone",
        )
        with explained(c, served):
            # A pipeline outside the watched namespace first: it is older than the served one.
            apply_obj(c, paused_pipeline(c), other)
            helm(
                "install",
                RELEASE,
                str(CHART),
                "--namespace",
                HELM_RELEASE_NS,
                "--post-renderer",
                POST_RENDERER,
                "--set",
                f"watchNamespaces={{{served}}}",
                "--set",
                "samples.enabled=false",
                env=env,
            )
            op = wait_for(lambda: operator_pod(c), 300, "the operator pod Running and Ready")
            args = op["spec"]["containers"][0]["args"]
            assert f"--namespace={served}" in args and "--all-namespaces" not in args, args

            # The RBAC: a Role and RoleBinding in the served namespace; cluster-wide only the
            # read-only scans, no ClusterRole with the operator's rights.
            role = c.get("role", "tspipe-operator", "-n", served)
            assert {r for rule in role["rules"] for r in rule["resources"]} >= {"timestamppipelines", "deployments"}
            binding = c.get("rolebinding", "tspipe-operator", "-n", served)
            assert binding["roleRef"]["kind"] == "Role"
            assert c.kubectl("get", "clusterrole", "tspipe-operator", check=False).returncode != 0
            assert c.kubectl("get", "clusterrolebinding", "tspipe-operator", check=False).returncode != 0
            assert c.kubectl("get", "role", "tspipe-operator", "-n", other, check=False).returncode != 0

            def can_i(verb, resource, *scope):
                return c.kubectl("auth", "can-i", verb, resource, *scope, f"--as={SA_USER}", check=False).stdout.strip()

            assert can_i("create", "deployments.apps", "-n", served) == "yes"
            assert can_i("create", "deployments.apps", "-n", other) == "no"
            assert can_i("patch", "timestamppipelines.tspipe.io", "-n", other) == "no"
            assert can_i("list", "deployments.apps", "--all-namespaces") == "no"

            # It serves the watched namespace: a pipeline there gets its status; the older
            # one in the other namespace gets none, and the operator's log never names it.
            apply_obj(c, paused_pipeline(c), served)
            wait_for(
                lambda: (
                    {x["type"]: x["status"] for x in pipeline_status(c, served, PIPELINE).get("conditions", [])}.get(
                        "ReconciliationPaused"
                    )
                    == "True"
                ),
                120,
                "the served pipeline's ReconciliationPaused condition",
            )
            assert pipeline_status(c, other, PIPELINE) == {}, "the pipeline outside the watched namespace"
            oplog = c.kubectl("logs", "-n", OPERATOR_NS, op["metadata"]["name"]).stdout
            assert f"{other}/" not in oplog, oplog[-3000:]
    finally:
        uninstall(HELM_RELEASE_NS, env)
        for ns in (OPERATOR_NS, served, other):
            if ns:
                c.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=180s", check=False, timeout=240)
