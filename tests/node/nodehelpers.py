"""Helpers for the tests on the real node: what a user would look at (`kubectl get pods`,
`kubectl logs`, the pipeline's status), and everything printed when a wait fails."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from localinfra import proc
from localinfra.kafka import topic_values
from localinfra.operatorproc import OperatorProcess
from samples import sample_pipeline

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "manifests" / "samples"
# Where manifests/ (kubectl apply -k) puts the operator and the sample pipeline.
OPERATOR_NS, PIPELINE_NS = "tspipe-system", "tspipe-pipelines"
TIMESTAMP = re.compile(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d")
# "2026-11-27T22:50:01.123Z  INFO 1 --- [log-sink] [container-0-C-1] log-sink : Even timestamp:11/27/26 22:50:01"
SINK_LINE = re.compile(r"\blog-sink\s+: (.*)$")


@dataclass
class NodeCluster:
    cp: object  # localinfra.kube.ControlPlane (node_ip set)
    node: object  # localinfra.node.Node
    broker: object  # localinfra.kafka.KafkaBroker (pod_host set)
    node1: object | None = None  # tsp-node-1, once a test asked for two nodes (two_node_cluster)
    kafka_cluster: object | None = None  # localinfra.kafka.KafkaCluster, once asked for (node_kafka_cluster)

    def kubectl(self, *args, **kw):
        return self.cp.kubectl(*args, **kw)

    def close(self) -> None:
        """Stop the brokers, the nodes (node 1 first) and the control plane (again: a no-op)."""
        self.broker.stop()
        if self.kafka_cluster is not None:
            self.kafka_cluster.close()
        if self.node1 is not None:
            self.node1.stop()
        self.node.stop()
        self.cp.stop()

    def get(self, *args) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


def wait_for(probe, timeout: float, what: str, interval: float = 1.0):
    """localinfra's wait_for at kubectl's pace; a failed kubectl (e.g. `logs` before the
    container exists) counts as "not yet"."""
    return proc.wait_for(probe, timeout, what, interval, retry_on=(subprocess.CalledProcessError,))


def pods(c: NodeCluster, ns: str, selector: str | None = None) -> list[dict]:
    args = ["pods", "-n", ns] + (["-l", selector] if selector else [])
    return c.get(*args)["items"]


def pod_ready(pod: dict) -> bool:
    conds = {x["type"]: x["status"] for x in pod.get("status", {}).get("conditions", [])}
    return (
        pod.get("status", {}).get("phase") == "Running"
        and conds.get("Ready") == "True"
        and not pod["metadata"].get("deletionTimestamp")
    )


def component_pods(c: NodeCluster, ns: str, pipeline: str, component: str) -> list[dict]:
    return pods(c, ns, f"app.kubernetes.io/instance={pipeline},app.kubernetes.io/component={component}")


def logs(c: NodeCluster, ns: str, pod: str, previous: bool = False) -> str:
    args = ["logs", "-n", ns, pod] + (["--previous"] if previous else [])
    return c.kubectl(*args, timeout=60).stdout


def sink_payloads(text: str) -> list[str]:
    """The payloads a log sink printed (its `log-sink` logger's messages)."""
    return [m.group(1).strip() for line in text.splitlines() if (m := SINK_LINE.search(line))]


def logger_payloads(c: NodeCluster, ns: str, pipeline: str, component: str) -> list[str]:
    """Every payload the component's pods logged (current and previous containers)."""
    out = []
    for p in component_pods(c, ns, pipeline, component):
        name = p["metadata"]["name"]
        for cs in p.get("status", {}).get("containerStatuses", []):
            if cs.get("restartCount", 0) > 0:
                r = c.kubectl("logs", "-n", ns, name, "--previous", check=False, timeout=60)
                if r.returncode == 0:
                    out += sink_payloads(r.stdout)
        r = c.kubectl("logs", "-n", ns, name, check=False, timeout=60)
        if r.returncode == 0:
            out += sink_payloads(r.stdout)
    return out


def by_parity(timestamps) -> tuple[collections.Counter, collections.Counter]:
    even, odd = collections.Counter(), collections.Counter()
    for ts in timestamps:
        (even if int(ts[-1]) % 2 == 0 else odd)[ts] += 1
    return even, odd


def strip(payloads, prefixes) -> collections.Counter:
    """Counter of the timestamps inside payloads; AssertionError on any other payload."""
    out = collections.Counter()
    for p in payloads:
        for prefix in prefixes:
            if p.startswith(prefix):
                out[p[len(prefix) :]] += 1
                break
        else:
            raise AssertionError(f"payload with an unexpected prefix: {p!r}")
    return out


def node_pipeline(bootstrap: str, topics: dict | None = None, **router) -> dict:
    """The sample pipeline with the local broker's pod listener (the sample names an
    in-cluster Service, and this cluster has no DNS)."""
    return sample_pipeline(kafka={"brokers": [bootstrap], "topics": topics or {}}, router=router)


def apply_obj(c: NodeCluster, obj: dict, ns: str) -> None:
    c.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


def pipeline_status(c: NodeCluster, ns: str, name: str) -> dict:
    return c.get("tsp", name, "-n", ns).get("status") or {}


def pipeline_ready(c: NodeCluster, ns: str, name: str):
    obj = c.get("tsp", name, "-n", ns)
    conds = {x["type"]: x for x in (obj.get("status") or {}).get("conditions", [])}
    return (
        conds.get("Ready", {}).get("status") == "True"
        and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        and obj
    )


def router_probe_failing(c: NodeCluster, ns: str, name: str, timeout: float, what: str) -> dict:
    """The pipeline's status once it names why its router is not ready; asserts that it is
    the operator's default readiness probe (GET /actuator/health/readiness) and that the
    Ready condition says so."""
    status = wait_for(
        lambda: (s := pipeline_status(c, ns, name)).get("components", {}).get("router", {}).get("notReady") and s,
        timeout,
        what,
    )
    not_ready = status["components"]["router"]["notReady"]
    assert not_ready["reason"] == "ReadinessProbeFailing", not_ready
    assert "GET /actuator/health/readiness on port 8080" in not_ready["message"], not_ready
    ready = {x["type"]: x for x in status["conditions"]}["Ready"]
    assert ready["status"] == "False", ready
    assert "router: 1 pod(s) not ready (ReadinessProbeFailing)" in ready["message"], ready
    return status


def new_namespace(c: NodeCluster, prefix: str = "node") -> str:
    """A namespace like the sample's: Pod Security `restricted` enforced."""
    ns = yaml.safe_load((SAMPLE_DIR / "namespace.yaml").read_text())
    ns["metadata"]["name"] = f"{prefix}-{uuid.uuid4().hex[:6]}"
    c.kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    return ns["metadata"]["name"]


@contextlib.contextmanager
def node_prometheus(jobs: list[dict], rule_files: dict[str, dict] | None = None):
    """A real Prometheus (`make prometheus`) on the host with these scrape jobs (the
    PodMonitors' translation: discovery through the API server, pods scraped at their IPs
    on the node's bridge, which the host reaches), stopped and removed at the end."""
    from localinfra.prometheus import PrometheusServer
    from promchecks import prometheus_config

    with PrometheusServer(prometheus_config(jobs), rule_files) as prom:
        yield prom


def operator_env(apiserver_port: int) -> list[dict]:
    """The API server's address for the operator's pod: this cluster has no kube-proxy, so
    the `kubernetes` Service IP leads nowhere."""
    from localinfra.node import NODE_IP

    return [
        {"name": "KUBERNETES_SERVICE_HOST", "value": NODE_IP},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver_port)},
    ]


def install_kustomization(
    folder: Path,
    apiserver_port: int,
    bootstrap: str,
    *,
    manifests: Path = REPO / "manifests",
    tag: str = "0.1.0",
    args: tuple[str, ...] = (),
) -> None:
    """A user's overlay of `manifests` (this tree's, or an earlier revision's copy): the
    local image tag, the API server's address, the broker, and `args` added to the
    operator's."""
    # kustomize takes bases by relative path only: the overlay sits beside a copy.
    shutil.copytree(manifests, folder / "manifests")
    env = operator_env(apiserver_port)
    ops = [{"op": "add", "path": "/spec/template/spec/containers/0/env", "value": env}]
    ops += [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a} for a in args]
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["manifests"],
                # The tag hack/node-images.sh built from Dockerfile.operator and imported (or
                # hack/node-image-at.sh from an earlier revision's).
                "images": [{"name": "ghcr.io/tspipe/operator", "newName": "ghcr.io/tspipe/operator", "newTag": tag}],
                "patches": [
                    {
                        "target": {"group": "apps", "kind": "Deployment", "name": "tspipe-operator"},
                        "patch": json.dumps(ops),
                    },
                    {
                        "target": {"group": "tspipe.io", "kind": "TimestampPipeline"},
                        "patch": json.dumps([{"op": "replace", "path": "/spec/kafka/brokers", "value": [bootstrap]}]),
                    },
                ],
            }
        )
    )


def operator_pod(c: NodeCluster, other_than: str | None = None) -> dict | None:
    """The operator's one pod (manifests/ installs it), Running and Ready (and not the pod
    `other_than`)."""
    ps = pods(c, OPERATOR_NS)
    return ps[0] if len(ps) == 1 and pod_ready(ps[0]) and ps[0]["metadata"]["name"] != other_than else None


def start_operator(c: NodeCluster, ns: str, log_path: Path) -> OperatorProcess:
    """The operator as a local process (tests of the operator *as a pod* install it instead)."""
    return OperatorProcess.manager(c.cp.kubeconfig, ns, log_path).start()


def diagnostics(c: NodeCluster, ns: str | None, extra_logs: dict[str, Path] | None = None) -> str:
    """What a person would look at when something on the node went wrong."""
    out = []

    def run(*args):
        r = c.kubectl(*args, check=False, timeout=60)
        out.append(f"$ kubectl {' '.join(args)}\n{r.stdout}{r.stderr}")

    run("get", "nodes", "-o", "wide")
    if ns:
        run("get", "tsp,deploy,pods", "-n", ns, "-o", "wide")
        run("get", "tsp", "-n", ns, "-o", "jsonpath={.items[*].status}")
        run("get", "events", "-n", ns, "--sort-by=.lastTimestamp")
        r = c.kubectl("get", "pods", "-n", ns, "-o", "json", check=False)
        if r.returncode == 0:
            for p in json.loads(r.stdout)["items"]:
                name = p["metadata"]["name"]
                lg = c.kubectl("logs", "-n", ns, name, "--tail=40", check=False, timeout=60)
                out.append(f"$ kubectl logs {name} --tail=40\n{lg.stdout}{lg.stderr}")
    for name, path in (extra_logs or {}).items():
        try:
            tail = Path(path).read_text(errors="replace").splitlines()[-40:]
        except OSError:
            continue
        out.append(f"--- {name}: {path}\n" + "\n".join(tail))
    out.append(c.node.log_tails(60))
    return "\n".join(out)


@contextlib.contextmanager
def explained(c: NodeCluster, ns: str | None, extra_logs: dict[str, Path] | None = None):
    """Re-raise a failed wait or assertion with the cluster's diagnostics appended."""
    try:
        yield
    except (AssertionError, TimeoutError, subprocess.CalledProcessError) as exc:
        raise AssertionError(f"{exc}\n\n===== diagnostics =====\n{diagnostics(c, ns, extra_logs)}") from exc


def router_pod(c: NodeCluster, ns: str, name: str) -> dict | None:
    """The router's one pod that is not being deleted (None while there are more or none)."""
    ps = [p for p in component_pods(c, ns, name, "router") if not p["metadata"].get("deletionTimestamp")]
    return ps[0] if len(ps) == 1 else None


def events_for(c: NodeCluster, ns: str, pod: str) -> list[dict]:
    return c.get("events", "-n", ns, "--field-selector", f"involvedObject.name={pod}")["items"]


def container_pid(c: NodeCluster, pod: dict) -> int:
    """The host PID of the pod's container's main process (containerd's task list)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for line in c.node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"container {cid} not in containerd's task list")


def everything_arrived(
    c: NodeCluster,
    ns: str,
    name: str,
    input_topic: str,
    prefixes_even,
    prefixes_odd,
    upto: int | None = None,
    timeout: float = 240,
    bootstrap: str | None = None,
    ignore: frozenset[str] = frozenset(),
):
    """Wait until every timestamp in the input topic (its first `upto`, but for the values
    in `ignore`: malformed ones a test wrote) is in the right logger's `kubectl logs`, and
    none in the wrong one."""
    produced = [v for v in topic_values(bootstrap or c.broker.bootstrap, input_topic) if v not in ignore]
    even, odd = by_parity(produced[:upto] if upto else produced)

    def check():
        got_even = strip(logger_payloads(c, ns, name, "evenlogger"), prefixes_even)
        got_odd = strip(logger_payloads(c, ns, name, "oddlogger"), prefixes_odd)
        assert all(int(t[-1]) % 2 == 0 for t in got_even), got_even
        assert all(int(t[-1]) % 2 == 1 for t in got_odd), got_odd
        missing = (even - got_even) + (odd - got_odd)
        return (got_even, got_odd) if not missing else None

    return wait_for(check, timeout, f"all {sum(even.values()) + sum(odd.values())} timestamps in the right logger")


RESET_OFFSETS = "tspipe.io/reset-offsets"


def reset_offsets(c: NodeCluster, ns: str, name: str, value: str, timeout: float = 300) -> dict:
    """Annotate the pipeline with `tspipe.io/reset-offsets=value` and wait until the
    operator consumed the annotation (Completed or Rejected); its status.offsetReset."""
    c.kubectl("annotate", "tsp", name, "-n", ns, f"{RESET_OFFSETS}={value}", "--overwrite")
    return wait_for(
        lambda: (
            RESET_OFFSETS not in (c.get("tsp", name, "-n", ns)["metadata"].get("annotations") or {})
            and (r := pipeline_status(c, ns, name).get("offsetReset") or {}).get("request") == value
            and r.get("state") in ("Completed", "Rejected")
            and r
        ),
        timeout,
        f"{RESET_OFFSETS}={value} carried out",
    )
