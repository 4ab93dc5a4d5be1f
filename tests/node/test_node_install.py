"""The real install: `kubectl apply -k manifests/` puts the operator in a pod (the image
built from Dockerfile.operator), with its ServiceAccount and least-privilege RBAC, in a
namespace enforcing Pod Security `restricted`; it reconciles the sample pipeline (also
part of manifests/) to Ready on the real node.

Meanwhile a real Prometheus, configured from manifests/monitoring as the Prometheus
operator would (both PodMonitors, the PrometheusRule), discovers the operator's and the
router's pods through the API server and scrapes them at their pod IPs: `up == 1` for
each, every query of every dashboard panel returns data, and the dead-letter alert goes
from pending to firing after malformed records. What the test changes, and why: scrapes
and rule evaluations every 2 s instead of 30 s, the dead-letter alert's `for:` 10 s
instead of 10 minutes."""
from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml

from localinfra.node import NODE_IP, NODE_NAME
from nodehelpers import (REPO, explained, logger_payloads, node_prometheus, pipeline_ready, pods, pod_ready,
                         router_pod, wait_for)
from promchecks import (DEAD_LETTER_ALERT, OPERATOR_PODMONITOR, ROUTER_PODMONITOR, AlertWatcher,
                        assert_every_query_returns_data, live_dashboard_queries, podmonitor_jobs, rules_with_for,
                        up_pods)
from routerproc import produce

# Generous: the first test also waits for the node to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

OPERATOR_NS, PIPELINE_NS, PIPELINE = "tspipe-system", "tspipe-pipelines", "timestamps"


def operator_env(apiserver_port: int) -> list[dict]:
    """The API server's address for the operator's pod: this cluster has no kube-proxy, so
    the `kubernetes` Service IP leads nowhere."""
    return [{"name": "KUBERNETES_SERVICE_HOST", "value": NODE_IP},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver_port)}]


@pytest.fixture(scope="module")
def prometheus(node_cluster):
    """A real Prometheus with both PodMonitors' scrape jobs and the PrometheusRule."""
    kubeconfig = node_cluster.cp.kubeconfig
    jobs = podmonitor_jobs(ROUTER_PODMONITOR, kubeconfig) + podmonitor_jobs(OPERATOR_PODMONITOR, kubeconfig)
    with node_prometheus(jobs, {"tspipe-rules.yaml": rules_with_for({DEAD_LETTER_ALERT: "10s"})}) as prom:
        yield prom


def install_kustomization(folder, apiserver_port: int, bootstrap: str) -> None:
    """A user's overlay of manifests/: the local image tag, the API server's address and
    the broker."""
    # kustomize takes bases by relative path only: the overlay sits beside a copy.
    shutil.copytree(REPO / "manifests", folder / "manifests")
    env = operator_env(apiserver_port)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["manifests"],
        # The tag hack/node-images.sh built from Dockerfile.operator and imported.
        "images": [{"name": "ghcr.io/tspipe/operator", "newName": "ghcr.io/tspipe/operator", "newTag": "0.1.0"}],
        "patches": [
            {"target": {"group": "apps", "kind": "Deployment", "name": "tspipe-operator"},
             "patch": json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/env", "value": env}])},
            {"target": {"group": "tspipe.io", "kind": "TimestampPipeline"},
             "patch": json.dumps([{"op": "replace", "path": "/spec/kafka/brokers", "value": [bootstrap]}])},
        ],
    }))


def operator_pod(c, other_than: str | None = None) -> dict | None:
    """The operator's one pod, Running and Ready (and not the pod `other_than`)."""
    ps = pods(c, OPERATOR_NS)
    return ps[0] if len(ps) == 1 and pod_ready(ps[0]) and ps[0]["metadata"]["name"] != other_than else None


def test_operator_installed_with_kubectl_apply_k_runs_as_a_pod_and_reconciles_the_sample(node_cluster, prometheus,
                                                                                        tmp_path):
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
            wait_for(lambda: (ps := pods(c, PIPELINE_NS)) and len(ps) == 4 and all(map(pod_ready, ps)), 180,
                     "the sample's four pods Ready")
            wait_for(lambda: logger_payloads(c, PIPELINE_NS, PIPELINE, "evenlogger")
                     and logger_payloads(c, PIPELINE_NS, PIPELINE, "oddlogger"), 240, "lines in both loggers")
            assert all(p.startswith("Even timestamp:") for p in logger_payloads(c, PIPELINE_NS, PIPELINE, "evenlogger"))
            # The operator's own log, through the kubelet: it reconciled the sample.
            oplog = c.kubectl("logs", "-n", OPERATOR_NS, op["metadata"]["name"]).stdout
            assert PIPELINE in oplog, oplog[-3000:]

            check_monitoring(c, prometheus, op)
    finally:
        c.kubectl("delete", "tsp", PIPELINE, "-n", PIPELINE_NS, "--wait=true", "--timeout=120s",
                  check=False, timeout=150)
        c.kubectl("delete", "-k", str(kdir), "--wait=true", "--timeout=180s", check=False, timeout=240)


def check_monitoring(c, prom, op: dict) -> None:
    """What a user of manifests/monitoring checks while the sample runs."""
    # Both pods discovered and scraped through the PodMonitors' selectors and relabeling.
    router = router_pod(c, PIPELINE_NS, PIPELINE)["metadata"]["name"]
    wait_for(lambda: up_pods(prom, "tspipe-router", PIPELINE_NS) == {router}
             and up_pods(prom, "tspipe-operator", OPERATOR_NS) == {op["metadata"]["name"]}, 60,
             "up == 1 for the router pod and the operator pod")
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
    (alert,) = [a for a in prom.api("alerts")["alerts"] if a["labels"].get("alertname") == DEAD_LETTER_ALERT
                and a["labels"].get("namespace") == PIPELINE_NS]
    assert alert["labels"]["pipeline"] == PIPELINE and alert["state"] == "firing", alert

