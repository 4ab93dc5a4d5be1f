"""The real install: `kubectl apply -k manifests/` puts the operator in a pod (the image
built from Dockerfile.operator), with its ServiceAccount and least-privilege RBAC, in a
namespace enforcing Pod Security `restricted`; it reconciles the sample pipeline (also
part of manifests/) to Ready on the real node."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from localinfra.node import NODE_IP, NODE_NAME
from nodehelpers import REPO, explained, logger_payloads, pipeline_ready, pods, pod_ready, wait_for

# Generous: the first test also waits for the node to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

OPERATOR_NS, PIPELINE_NS, PIPELINE = "tspipe-system", "tspipe-pipelines", "timestamps"


def install_kustomization(folder, apiserver_port: int, bootstrap: str) -> None:
    """A user's overlay of manifests/: the local image tag, the API server's address (this
    cluster has no kube-proxy, so the `kubernetes` Service IP leads nowhere) and the broker."""
    # kustomize takes bases by relative path only: the overlay sits beside a copy.
    shutil.copytree(REPO / "manifests", folder / "manifests")
    env = [{"name": "KUBERNETES_SERVICE_HOST", "value": NODE_IP},
           {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver_port)}]
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


def test_operator_installed_with_kubectl_apply_k_runs_as_a_pod_and_reconciles_the_sample(node_cluster, tmp_path):
    c = node_cluster
    kdir = tmp_path / "install"
    install_kustomization(kdir, c.cp.apiserver_port, c.broker.pod_bootstrap)
    try:
        with explained(c, PIPELINE_NS):
            c.kubectl("apply", "-k", str(kdir))
            op = wait_for(lambda: (ps := pods(c, OPERATOR_NS)) and len(ps) == 1 and pod_ready(ps[0]) and ps[0],
                          300, "the operator pod Running and Ready")
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
    finally:
        c.kubectl("delete", "tsp", PIPELINE, "-n", PIPELINE_NS, "--wait=true", "--timeout=120s",
                  check=False, timeout=150)
        c.kubectl("delete", "-k", str(kdir), "--wait=true", "--timeout=180s", check=False, timeout=240)
