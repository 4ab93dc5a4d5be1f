"""The SCDF fallback for real: Skipper's Kubernetes platform deploys the seed's stream,
with this project's router image, onto the real node.

Data Flow 2.11.5 and Skipper 2.8.0 (hack/localinfra/scdf.py) with Skipper's Kubernetes
account pointed at the local control plane; `tspipe scdf deploy` registers the images
the node imported, creates `time || python-router || evenLogger: log || oddLogger: log`
and deploys it. Skipper's deployer creates one Deployment and Service per app; the
kubelet runs the pods; the loggers' output is read with `kubectl logs`, as the seed does.
The tests share one stream, in file order (starting three JVMs on two cores is most of
each test's time): deploy, wiring, pod shape, scale, update, undeploy and destroy, then
the errors.

Pod Security: the namespace enforces `baseline` and warns at `restricted`. Skipper
2.8.0's own spring-cloud-deployer-kubernetes 2.7.0 has no containerSecurityContext (nor
runAsNonRoot or seccompProfile in podSecurityContext); hack/scdf-jars.sh swaps in the 2.9.5
deployer (hack/scdf/skipper-k8s/pom.xml), which applies the whole pod shape `tspipe` sends,
so `test_scdf_pods_meet_restricted` checks that SCDF's pods meet `restricted`.

Skipper's account gives every app the broker as an environment variable, as SCDF's own
Kubernetes install does (the recipe's stream names no broker, and its router reads only
that variable). After the module's stream is destroyed, the seed's recipe is typed by
hand through the REST API (its registrations, with the recipe's router image, its
definition and its six properties), imported with `tspipe scdf import`, destroyed, and
run by the operator. Then a pipeline with a pod template runs as its own stream, and
each of SCDF's running pods is compared with the pod the operator's Deployment would create.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import recipe
import requests
import yaml
from localinfra.kafka import topic_values
from localinfra.node import NODE_NAME
from localinfra.proc import free_port
from localinfra.scdf import KubernetesPlatform, ScdfServers
from nodehelpers import (
    by_parity,
    container_pid,
    explained,
    logger_payloads,
    node_pipeline,
    pipeline_status,
    pod_ready,
    pods,
    sink_payloads,
    start_operator,
    strip,
    wait_for,
)

from tspipe import probes as probe_render
from tspipe import wiring
from tspipe.components import COMPONENTS
from tspipe.model import Pipeline
from tspipe.names import OWNED_LABELS
from tspipe.render import SERVER_PORT, render_deployments
from tspipe.scdf.client import DataFlowClient
from tspipe.scdf.podshape import SCDF_POD_LABELS, neutral_startup
from tspipe.scdf.render import docker_uri, metadata_uri
from tspipe.spring import BROKERS_ENV

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.scdf, pytest.mark.timeout(1500)]

LABELS = tuple(c.label for c in COMPONENTS)

PROBE_FIELDS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold")
# Timestamps routed after the router's first one under the operator before the loggers are read: both parities.
RECIPE_ROUTED = 10


# ---------------------------------------------------------------- helpers


class Forwarder:
    """Skipper's way to the API server, which a test can cut: a TCP forwarder on loopback.
    Cut, it closes every connection and refuses new ones (accepts and closes at once)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = True
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self.lock:
            self.conns.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> None:
        self.open = False
        with self.lock:
            conns = list(self.conns)
        for sock in conns:
            self._drop(sock)

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.server.close()


def kubeconfig_to(src: str, dest: Path, server: str) -> Path:
    config = yaml.safe_load(Path(src).read_text())  # JSON is YAML
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
    dest.write_text(yaml.safe_dump(config))
    return dest


@dataclass
class Scdf:
    c: object  # nodehelpers.NodeCluster
    ns: str
    servers: ScdfServers
    workdir: Path
    stream: str
    topics: dict[str, str]
    forwarder: Forwarder
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.servers.dataflow_url

    def pipeline_doc(self, **router) -> dict:
        doc = node_pipeline(self.c.broker.pod_bootstrap, self.topics, **router)
        doc["metadata"]["name"] = self.stream
        doc["spec"]["streamName"] = self.stream
        return doc

    def write(self, doc: dict, name: str = "pipeline.yaml") -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(doc))
        return path

    def tspipe(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [sys.executable, "-m", "tspipe.cli", "scdf", *args, "--server", self.url],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(f"$ tspipe scdf {' '.join(args)}  (exit {r.returncode})\n{r.stdout}{r.stderr}")
        return r

    def app_pods(self, label: str, stream: str | None = None) -> list[dict]:
        """The pods Skipper's deployer labelled as this app of the stream."""
        sel = f"role=spring-app,spring-group-id={stream or self.stream},spring-application-name={label}"
        return [p for p in pods(self.c, self.ns, sel) if not p["metadata"].get("deletionTimestamp")]

    def payloads(self, label: str) -> list[str]:
        out = []
        for p in self.app_pods(label):
            r = self.c.kubectl("logs", "-n", self.ns, p["metadata"]["name"], check=False, timeout=60)
            if r.returncode == 0:
                out += sink_payloads(r.stdout)
        return out

    def diagnostics(self) -> str:
        out = []
        for args in (
            ("get", "deploy,pods,svc", "-n", self.ns, "-o", "wide"),
            ("get", "events", "-n", self.ns, "--sort-by=.lastTimestamp"),
        ):
            r = self.c.kubectl(*args, check=False, timeout=60)
            out.append(f"$ kubectl {' '.join(args)}\n{r.stdout}{r.stderr}")
        for name in ("skipper", "dataflow"):
            try:
                tail = self.servers.log_path(name).read_text(errors="replace").splitlines()[-30:]
            except OSError:
                continue
            out.append(f"--- {name} log\n" + "\n".join(tail))
        return "\n".join(out)


def args_and_env(container: dict) -> tuple[dict[str, str], dict[str, str]]:
    args = {}
    for a in container.get("args") or []:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            args[k] = v
    env = {
        e["name"]: e.get("value", "<from " + ",".join(e.get("valueFrom", {})) + ">") for e in container.get("env") or []
    }
    return args, env


def env_name(key: str) -> str:
    """Spring's relaxed binding: `spring.cloud.stream.bindings.input.destination` ->
    `SPRING_CLOUD_STREAM_BINDINGS_INPUT_DESTINATION`."""
    return re.sub(r"[.-]", "_", key).upper()


def wired_value(key: str, args: dict[str, str], env: dict[str, str]) -> str | None:
    return args[key] if key in args else env.get(env_name(key))


def all_ready(s: Scdf, counts: dict[str, int]):
    got = {label: s.app_pods(label) for label in LABELS}
    ok = all(len(got[label]) == counts.get(label, 1) and all(map(pod_ready, got[label])) for label in LABELS)
    return got if ok else None


def status_says(s: Scdf, *needles: str):
    r = s.tspipe("status", "-f", str(s.workdir / "pipeline.yaml"))
    return r.stdout if r.returncode == 0 and all(n in r.stdout for n in needles) else None


def everything_arrived(s: Scdf, upto: int, even_prefixes, odd_prefixes, timeout: float = 300):
    """Every one of the first `upto` timestamps of the input topic is in the right logger's
    `kubectl logs`, and none in the wrong one."""
    produced = topic_values(s.c.broker.bootstrap, s.topics["input"])[:upto]
    even, odd = by_parity(produced)

    def check():
        got_even = strip(s.payloads("evenLogger"), even_prefixes)
        got_odd = strip(s.payloads("oddLogger"), odd_prefixes)
        assert all(int(t[-1]) % 2 == 0 for t in got_even), got_even
        assert all(int(t[-1]) % 2 == 1 for t in got_odd), got_odd
        return not ((even - got_even) + (odd - got_odd))

    wait_for(check, timeout, f"all {upto} timestamps in the right logger")


# ---------------------------------------------------------------- fixtures


def scdf_namespace(c) -> str:
    ns = f"scdf-{uuid.uuid4().hex[:6]}"
    c.kubectl("create", "namespace", ns)
    # baseline enforced, restricted warned and audited: see the module docstring.
    c.kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=baseline",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/audit=restricted",
    )
    return ns


@pytest.fixture(scope="module")
def scdf(node_cluster, tmp_path_factory):
    c = node_cluster
    ns = scdf_namespace(c)
    work = tmp_path_factory.mktemp("scdf-k8s")
    # Skipper reaches the API server through a forwarder a test can cut (the account unreachable).
    api = urlsplit(yaml.safe_load(Path(c.cp.kubeconfig).read_text())["clusters"][0]["cluster"]["server"])
    forwarder = Forwarder((api.hostname, api.port))
    kubeconfig = kubeconfig_to(c.cp.kubeconfig, work / "skipper.kubeconfig", f"https://127.0.0.1:{forwarder.port}")
    # The broker reaches every app as SCDF's own Kubernetes install gives it: an environment
    # variable of Skipper's account (the recipe's stream names no broker; its router reads
    # only this variable).
    platform = KubernetesPlatform(
        str(kubeconfig), ns, environment_variables=(f"{BROKERS_ENV}={c.broker.pod_bootstrap}",)
    )
    servers = ScdfServers(work / "servers", kubernetes=platform)
    stream = f"ts{uuid.uuid4().hex[:5]}"
    s = Scdf(c, ns, servers, work, stream, {k: f"{k}-{stream}" for k in ("input", "even", "odd")}, forwarder)
    try:
        servers.start()
        rss = servers.rss()
        s.figures["skipper start"] = f"{servers.start_seconds['skipper']:.1f} s, RSS {rss['skipper'] / 2**20:.0f} MiB"
        s.figures["dataflow start"] = (
            f"{servers.start_seconds['dataflow']:.1f} s, RSS {rss['dataflow'] / 2**20:.0f} MiB"
        )
        yield s
    finally:
        if servers.skipper is not None:
            s.figures["skipper RSS at the end"] = f"{servers.rss().get('skipper', 0) / 2**20:.0f} MiB"
        servers.stop()
        forwarder.close()
        c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
        print("\n[scdf on the node] " + "; ".join(f"{k}: {v}" for k, v in s.figures.items()))


@pytest.fixture
def explain(scdf):
    try:
        yield
    except (AssertionError, TimeoutError, subprocess.CalledProcessError) as exc:
        raise AssertionError(f"{exc}\n\n===== diagnostics =====\n{scdf.diagnostics()}") from exc


# ---------------------------------------------------------------- tests, in order


def test_deploy_runs_four_ready_pods_and_the_loggers_log_even_and_odd(scdf, explain):
    s = scdf
    path = s.write(s.pipeline_doc())
    t0 = time.monotonic()
    r = s.tspipe("deploy", "-f", str(path), "--wait", "0")
    assert r.returncode == 0, r.stderr
    assert f"deployed stream '{s.stream}'" in r.stdout

    first_even = wait_for(
        lambda: any(p.startswith("Even timestamp:") for p in s.payloads("evenLogger")),
        600,
        "the first `Even timestamp:` line in the even logger's kubectl logs",
    )
    assert first_even
    s.figures["deploy to first Even line"] = f"{time.monotonic() - t0:.0f} s"

    got = wait_for(lambda: all_ready(s, {}), 600, "four Running and Ready pods, one per app")
    for ps in got.values():
        (p,) = ps
        assert p["spec"]["nodeName"] == NODE_NAME
        assert p["metadata"]["labels"]["spring-deployment-id"].endswith("-v1"), p["metadata"]["labels"]
        # Created by Skipper's deployer: its Deployment, not the operator's.
        deploy = s.c.get("deploy", p["metadata"]["labels"]["spring-deployment-id"], "-n", s.ns)
        assert "app.kubernetes.io/managed-by" not in deploy["metadata"].get("labels", {})

    wait_for(lambda: s.payloads("oddLogger"), 120, "the odd logger's first line")
    assert all(p.startswith("Even timestamp:") for p in s.payloads("evenLogger"))
    assert all(p.startswith("Odd timestamp:") for p in s.payloads("oddLogger"))
    out = wait_for(
        lambda: status_says(s, "state: deployed", "apps: 4 of 4 deployed"),
        120,
        "tspipe scdf status: deployed, 4 of 4 apps",
    )
    for label in LABELS:
        assert re.search(rf"^  {re.escape(label)}: deployed, 1/1 instances deployed", out, re.M), out
    # Nothing lost so far: the first 20 timestamps are all in the right logger.
    wait_for(lambda: len(topic_values(s.c.broker.bootstrap, s.topics["input"])) >= 20, 120, "20 timestamps")
    everything_arrived(s, 20, ["Even timestamp:"], ["Odd timestamp:"])


def test_same_wiring_as_the_operators_pods(scdf, explain):
    """For the same pipeline file, each app gets the same binding properties (destinations,
    groups, prefixes, broker, ...) from the operator and from SCDF."""
    s = scdf
    doc = s.pipeline_doc()
    p = Pipeline.from_resource({**doc, "metadata": {**doc["metadata"], "namespace": s.ns}})
    resource = {**doc, "metadata": {**doc["metadata"], "namespace": s.ns, "uid": "0"}}
    operator = {
        c.label: d["spec"]["template"]["spec"]["containers"][0]
        for c, d in zip(COMPONENTS, render_deployments(resource), strict=True)
    }
    wiring_diffs, other = [], []
    for c in COMPONENTS:
        (pod,) = s.app_pods(c.label)
        o_args, o_env = args_and_env(operator[c.label])
        s_args, s_env = args_and_env(pod["spec"]["containers"][0])
        wanted = wiring.component_properties(p, c)
        for key, value in wanted.items():
            o, v = wired_value(key, o_args, o_env), wired_value(key, s_args, s_env)
            if not (o == v == value):
                wiring_diffs.append(f"{c.label}: {key}: operator {o!r}, SCDF {v!r}, pipeline {value!r}")
        for key in sorted(set(o_args) ^ set(s_args)):
            side = "operator" if key in o_args else "SCDF"
            other.append(f"{c.label}: arg --{key} only from {side}")
        for key in sorted(set(o_env) ^ set(s_env)):
            side = "operator" if key in o_env else "SCDF"
            other.append(f"{c.label}: env {key} only from {side}")
        for key in sorted(set(o_env) & set(s_env)):
            if o_env[key] != s_env[key]:
                other.append(f"{c.label}: env {key}: operator {o_env[key]!r}, SCDF {s_env[key]!r}")
        other.append(f"{c.label}: pod labels from SCDF {sorted(pod['metadata']['labels'])}")
    print("\nwiring differences between the operator's pods and SCDF's (other than wiring):\n  " + "\n  ".join(other))
    assert not wiring_diffs, "\n".join(wiring_diffs)


def test_scdf_pods_have_the_operators_probes_security_and_writable_tmp(scdf, explain):
    """The pod shape tspipe sends, as the deployer (2.9.5 in Skipper's jar) applies it: the
    operator's probes, resources, /tmp, and the same pod and container security contexts."""
    s = scdf
    doc = s.pipeline_doc()
    resource = {**doc, "metadata": {**doc["metadata"], "namespace": s.ns, "uid": "0"}}
    operator = {
        c.label: d["spec"]["template"]["spec"] for c, d in zip(COMPONENTS, render_deployments(resource), strict=True)
    }
    for c in COMPONENTS:
        (pod,) = s.app_pods(c.label)
        ctr = pod["spec"]["containers"][0]
        assert pod["spec"]["securityContext"] == operator[c.label]["securityContext"], c.label
        assert ctr["securityContext"] == operator[c.label]["containers"][0]["securityContext"], c.label
        assert ctr["readinessProbe"]["httpGet"] | {"scheme": "HTTP"} == {
            "path": c.readiness.path,
            "port": 8080,
            "scheme": "HTTP",
        }
        assert ctr["livenessProbe"]["httpGet"]["path"] == c.liveness.path
        assert (ctr["readinessProbe"]["initialDelaySeconds"], ctr["readinessProbe"]["periodSeconds"]) == (
            c.readiness.initial_delay,
            c.readiness.period,
        )
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
        assert pod["spec"]["securityContext"]["fsGroup"] == 1000
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["spec"]["volumes"]
        assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
        assert ctr["resources"]["limits"]["memory"] == c.resources["limits"]["memory"]


def test_scdf_pods_meet_restricted(scdf):
    s = scdf
    # The namespace's pods are what the dry run judges: all four apps must have theirs.
    assert all(s.app_pods(label) for label in LABELS), "a pod for every app"
    r = s.c.kubectl(
        "label",
        "--dry-run=server",
        "--overwrite",
        "namespace",
        s.ns,
        "pod-security.kubernetes.io/enforce=restricted",
        check=False,
    )
    warnings = [ln for ln in (r.stderr + r.stdout).splitlines() if "violate" in ln or ln.startswith("Warning")]
    print("\nPod Security `restricted` on SCDF's pods:\n  " + "\n  ".join(warnings))
    assert not warnings


def test_scale_gives_two_router_pods_in_the_release(scdf, explain):
    s = scdf
    path = s.write(s.pipeline_doc(replicas=2))
    r = s.tspipe("deploy", "-f", str(path), "--wait", "420")
    assert r.returncode == 0, r.stderr
    # Skipper refuses an upgrade that changes only a count; tspipe scales instead.
    assert f"scaled app 'python-router' of stream '{s.stream}' to 2" in r.stdout
    got = wait_for(lambda: all_ready(s, {"python-router": 2}), 420, "two Ready router pods, one of each other app")
    ids = {p["metadata"]["labels"]["spring-deployment-id"] for p in got["python-router"]}
    assert ids == {f"{s.stream}-python-router-v1"}, "the release's router Deployment, resized"
    r = s.tspipe("deploy", "-f", str(path), "--wait", "0")
    assert r.returncode == 0 and "up to date, nothing changed" in r.stdout, r.stdout
    wait_for(
        lambda: status_says(
            s, "state: deployed", "apps: 4 of 4 deployed", "python-router: deployed, 2/2 instances deployed"
        ),
        180,
        "status with 2/2 routers",
    )


def test_a_prefix_change_rolls_the_router_and_loses_nothing(scdf, explain):
    s = scdf
    before = {p["metadata"]["labels"]["spring-deployment-id"] for p in s.app_pods("python-router")}
    path = s.write(s.pipeline_doc(replicas=2, evenPrefix="EVEN:"))
    r = s.tspipe("deploy", "-f", str(path), "--wait", "420")
    assert r.returncode == 0, r.stderr
    assert re.search(r"release \d+ deployed", r.stdout), r.stdout
    got = wait_for(
        lambda: (
            (a := all_ready(s, {"python-router": 2}))
            and {p["metadata"]["labels"]["spring-deployment-id"] for p in a["python-router"]}.isdisjoint(before)
            and a
        ),
        420,
        "two Ready router pods of the new release",
    )
    for p in got["python-router"]:
        assert "--tsrouter.even-prefix=EVEN:" in p["spec"]["containers"][0]["args"]
    # The loggers were not redeployed: only the router's properties changed.
    assert all(p["metadata"]["labels"]["spring-deployment-id"].endswith("-v1") for p in got["evenLogger"])
    wait_for(
        lambda: any(p.startswith("EVEN:") for p in s.payloads("evenLogger")),
        240,
        "the new prefix in the even logger's kubectl logs",
    )
    upto = len(topic_values(s.c.broker.bootstrap, s.topics["input"]))
    everything_arrived(s, upto, ["Even timestamp:", "EVEN:"], ["Odd timestamp:"])


def test_status_names_every_app_while_skippers_kubernetes_account_is_unreachable(scdf, explain):
    s = scdf
    path = str(s.workdir / "pipeline.yaml")
    s.forwarder.cut()
    try:
        r = s.tspipe("status", "-f", path)
        # Data Flow cannot even compute the stream's state then (HTTP 500): status says so,
        # exits 1, and still names every app with what is known of it.
        assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        assert "state: unknown: Data Flow could not compute it" in r.stdout, r.stdout
        assert "apps: 4 of 4 deployed" not in r.stdout
        for label in LABELS:
            assert re.search(rf"^  {re.escape(label)}: (?!docker:)", r.stdout, re.M), r.stdout
    finally:
        s.forwarder.restore()
    wait_for(lambda: status_says(s, "apps: 4 of 4 deployed"), 180, "status whole again once Skipper reaches Kubernetes")


def test_undeploy_removes_the_pods_and_keeps_the_definition_destroy_removes_both(scdf, explain):
    s = scdf
    path = str(s.workdir / "pipeline.yaml")
    r = s.tspipe("undeploy", "-f", path, "--wait", "180")
    assert r.returncode == 0 and "state: undeployed" in r.stdout, r.stdout + r.stderr
    wait_for(lambda: not pods(s.c, s.ns, f"spring-group-id={s.stream}"), 240, "SCDF's pods gone")
    assert not s.c.get("deploy", "-n", s.ns, "-l", f"spring-group-id={s.stream}")["items"]
    r = s.tspipe("status", "-f", path)
    assert r.returncode == 0 and "state: undeployed" in r.stdout and "time || python-router" in r.stdout
    r = s.tspipe("undeploy", "-f", path)
    assert r.returncode == 0 and "is not deployed; nothing to undeploy" in r.stdout

    r = s.tspipe("destroy", "-f", path)
    assert r.returncode == 0 and "destroyed" in r.stdout
    r = s.tspipe("status", "-f", path)
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = s.tspipe("destroy", "-f", path)
    assert r.returncode == 0 and "does not exist; nothing to destroy" in r.stdout
    assert not s.c.get("deploy,svc", "-n", s.ns, "-l", f"spring-group-id={s.stream}")["items"]


def _probes(container: dict) -> dict[str, dict]:
    """A container's probes as a user compares them: action (path, port) and timing."""
    out = {}
    for kind in ("readiness", "liveness", "startup"):
        probe = container.get(f"{kind}Probe")
        if probe:
            action = probe.get("httpGet") or probe.get("tcpSocket") or {}
            out[kind] = {"path": action.get("path"), "port": action.get("port")} | {k: probe[k] for k in PROBE_FIELDS}
    return out


def _unregister(url: str, names) -> None:
    """Every version of these apps (no stream uses them), as on a fresh server: SCDF takes a new
    version of an app only from its default's repository, and refuses one registered twice."""
    client = DataFlowClient(url)
    for name in names:
        for reg in client.app_versions(name):
            requests.delete(f"{url}/apps/app/{name}/{reg['version']}", timeout=60).raise_for_status()


def _time(ts: str) -> datetime:
    return datetime.strptime(ts, "%m/%d/%y %H:%M:%S")


def _new_values(c, topic: str, before: collections.Counter) -> collections.Counter:
    return collections.Counter(topic_values(c.broker.bootstrap, topic)) - before


def test_the_recipes_own_stream_created_by_hand_imports_to_a_pipeline_the_operator_runs(
    scdf, recipe_image, tmp_path, explain
):
    """The way off SCDF, as a user of the seed's recipe takes it: the recipe's stream, created
    and deployed by hand with the recipe's router image, deployed by SCDF; `tspipe scdf import`
    turns it into a pipeline; the stream is destroyed and the operator runs the pipeline,
    Ready 4/4, every timestamp in the right logger. (After the module's own stream is
    destroyed: its registrations go, as the recipe's user starts from a fresh server.)"""
    s = scdf
    url = s.url
    images = {c.label: Pipeline.from_resource(s.pipeline_doc()).app(c).image for c in COMPONENTS}
    # The seed registers time 2.1.0 and log 2.1.1; the node has the harness's prebuilt apps,
    # registered the same way (docker URI, metadata URI), and the recipe's router as it says.
    registrations = [
        (name, image.rsplit(":", 1)[1], docker_uri(image), metadata_uri(*image.rsplit(":", 1)))
        for name, image in (("time", images["time"]), ("log", images["evenLogger"]))
    ] + [(*recipe.ROUTER_APP, None)]
    _unregister(url, [name for name, *_ in registrations])
    log = tmp_path / "operator.log"
    op = None
    t0 = time.monotonic()
    try:
        for name, version, uri, meta in registrations:
            form = {"uri": uri} | ({"metadata-uri": meta} if meta else {})
            requests.post(f"{url}/apps/app/{name}/{version}", data=form, timeout=60).raise_for_status()
        requests.post(
            f"{url}/streams/definitions", data={"name": recipe.STREAM, "definition": recipe.DEFINITION}, timeout=60
        ).raise_for_status()
        requests.post(
            f"{url}/streams/deployments/{recipe.STREAM}", json=recipe.PROPERTIES, timeout=120
        ).raise_for_status()

        # It runs under SCDF: a pod per app, the recipe's router Ready with the deployer's
        # default probes. (Not waited for: the JVM apps' first lines, which took 453 s in a
        # run here; the deployer's default startup probe restarts an app that does not answer
        # /actuator/info within 90 s of its start, a tight budget for a JVM on a busy node.)
        def scdf_router_ready():
            got = {label: s.app_pods(label, recipe.STREAM) for label in LABELS}
            (router,) = got["python-router"] or [None]
            return all(got.values()) and router and pod_ready(router) and got

        got = wait_for(scdf_router_ready, 300, "SCDF's pods, the recipe's router Ready")
        (router,) = got["python-router"]
        assert router["spec"]["containers"][0]["image"] == "springcloud/polyglot-python-app:0.2"
        assert router["spec"]["nodeName"] == NODE_NAME
        scdf_probes = {label: _probes(ps[0]["spec"]["containers"][0]) for label, ps in got.items()}
        s.figures["recipe stream: deploy to its router Ready"] = f"{time.monotonic() - t0:.0f} s"

        # The import. The recipe leaves the broker to the server's settings: --brokers names it.
        r = s.tspipe("import", "--stream", recipe.STREAM, "--brokers", s.c.broker.pod_bootstrap, "--namespace", s.ns)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        doc = yaml.safe_load(r.stdout)
        spec = doc["spec"]
        assert doc["metadata"] == {"name": recipe.STREAM.lower(), "namespace": s.ns}
        assert spec["streamName"] == recipe.STREAM
        assert spec["kafka"] == {"brokers": [s.c.broker.pod_bootstrap], "topics": recipe.TOPICS}, spec["kafka"]
        assert spec["router"]["image"] == "springcloud/polyglot-python-app:0.2"
        assert (spec["time"]["image"], spec["evenLogger"]["image"]) == (images["time"], images["evenLogger"])
        # The recipe's apps have no consumer group: the notes say the operator gives them one.
        assert f"the operator gives it the consumer group {recipe.STREAM}" in r.stderr
        # Probes that fit the recipe's router: only paths its actuator serves.
        router_probes = spec["router"]["probes"]
        assert {p["httpGet"]["path"] for p in router_probes.values()} <= recipe.ROUTER_ACTUATOR, router_probes
        path = tmp_path / "imported.yaml"
        path.write_text(r.stdout)

        # Off SCDF: the stream undeployed and destroyed, its pods gone.
        requests.delete(f"{url}/streams/deployments/{recipe.STREAM}", timeout=120).raise_for_status()
        requests.delete(f"{url}/streams/definitions/{recipe.STREAM}", timeout=120).raise_for_status()
        wait_for(lambda: not pods(s.c, s.ns, f"spring-group-id={recipe.STREAM}"), 240, "SCDF's recipe pods gone")
        before = {role: collections.Counter(topic_values(s.c.broker.bootstrap, t)) for role, t in recipe.TOPICS.items()}

        # On the operator.
        op = start_operator(s.c, s.ns, log)
        t1 = time.monotonic()
        name = doc["metadata"]["name"]
        with explained(s.c, s.ns, {"operator": log}):
            s.c.kubectl("apply", "-f", str(path))
            wait_for(
                lambda: (
                    (st := pipeline_status(s.c, s.ns, name)).get("readyComponents") == "4/4"
                    and {x["type"]: x["status"] for x in st.get("conditions", [])}.get("Ready") == "True"
                ),
                300,
                "the imported pipeline Ready (4/4)",
            )
            running = {
                p["metadata"]["labels"]["app.kubernetes.io/component"]: p
                for p in pods(s.c, s.ns, f"app.kubernetes.io/instance={name}")
                if pod_ready(p)
            }
            assert len(running) == 4, running.keys()
            s.figures["imported pipeline: apply to Ready 4/4"] = f"{time.monotonic() - t1:.0f} s"
            router = running["router"]
            assert router["spec"]["nodeName"] == NODE_NAME
            assert router["status"]["containerStatuses"][0]["image"] == recipe_image
            assert router["status"]["containerStatuses"][0]["restartCount"] == 0
            # Each app has the probes it had under SCDF.
            by_label = {c.label: running[c.suffix] for c in COMPONENTS}
            got = {label: _probes(p["spec"]["containers"][0]) for label, p in by_label.items()}
            differences = [
                f"{label}: {kind}: SCDF {scdf_probes[label].get(kind)}, operator {got[label].get(kind)}"
                for label in LABELS
                for kind in ("readiness", "liveness", "startup")
                if scdf_probes[label].get(kind) != got[label].get(kind)
            ]
            assert not differences, "\n".join(differences)

            # Every timestamp written after the router's first routed one reaches the right
            # topic and the right logger's `kubectl logs` (the recipe's router starts at the
            # input's end: what came before it started is not routed, the recipe's behaviour).
            def routed_since_first():
                even = strip(_new_values(s.c, "evenDest", before["even"]).elements(), [recipe.ROUTER_EVEN])
                odd = strip(_new_values(s.c, "oddDest", before["odd"]).elements(), [recipe.ROUTER_ODD])
                first = min(map(_time, [*even, *odd]), default=None)
                later = [
                    t for t in _new_values(s.c, "timeDest", before["input"]).elements() if first and _time(t) > first
                ]
                return len(later) >= RECIPE_ROUTED and (later, even, odd)

            later, even, odd = wait_for(routed_since_first, 300, f"{RECIPE_ROUTED} timestamps after the router's first")
            exp_even, exp_odd = by_parity(later)
            assert exp_even and exp_odd, later
            assert all(int(t[-1]) % 2 == 0 for t in even) and all(int(t[-1]) % 2 == 1 for t in odd), (even, odd)

            def in_the_logs():
                got_even = strip(logger_payloads(s.c, s.ns, name, "evenlogger"), [recipe.ROUTER_EVEN])
                got_odd = strip(logger_payloads(s.c, s.ns, name, "oddlogger"), [recipe.ROUTER_ODD])
                assert all(int(t[-1]) % 2 == 0 for t in got_even), got_even
                assert all(int(t[-1]) % 2 == 1 for t in got_odd), got_odd
                return not (exp_even - got_even) and not (exp_odd - got_odd)

            wait_for(in_the_logs, 180, f"the {len(later)} timestamps in the loggers' kubectl logs")
        s.figures["recipe import test"] = f"{time.monotonic() - t0:.0f} s"
    finally:
        s.c.kubectl(
            "delete",
            "tsp",
            recipe.STREAM.lower(),
            "-n",
            s.ns,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
            check=False,
            timeout=150,
        )
        if op is not None:
            op.stop(15)
        requests.delete(f"{url}/streams/definitions/{recipe.STREAM}", timeout=120)
        with contextlib.suppress(TimeoutError):  # (not to hide the failure that got here)
            wait_for(lambda: not pods(s.c, s.ns, f"spring-group-id={recipe.STREAM}"), 240, "SCDF's recipe pods gone")
        # The later tests register this project's router as python-router again.
        _unregister(url, [name for name, *_ in registrations])


# A pod template with what matters on a real node (the kwok tests in tests/scdf/ compare
# every field the deployer carries, on Deployment templates): the pipeline's podTemplate
# for every app, the router's own resources and probe timing over it.
NODE_SHAPE_ENV = {"SHAPE_NOTE": "from-a-configmap"}
NODE_SHAPE_TEMPLATE = {
    "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
    "tolerations": [{"key": "example.com/dedicated", "operator": "Equal", "value": "stream", "effect": "NoSchedule"}],
    "labels": {"team": "stream", "example.com/tier": "apps"},
    "annotations": {"example.com/owner": "stream-team"},
    "volumes": [
        {"name": "scratch", "emptyDir": {"sizeLimit": "16Mi"}},
        {"name": "settings", "configMap": {"name": "<set by the test>"}},
    ],
    "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "settings", "mountPath": "/etc/shape", "readOnly": True},
    ],
    "envFrom": [{"configMapRef": {"name": "<set by the test>"}}],
}
NODE_SHAPE_ROUTER = {
    "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
    "probes": {"readiness": {"periodSeconds": 5, "failureThreshold": 4}},
}
# Labels each side sets itself: the operator's, the deployer's, the ReplicaSet controller's.
OWN_POD_LABELS = (*OWNED_LABELS, *SCDF_POD_LABELS, "pod-template-hash")
# The service account token volume Kubernetes mounts into a pod that does not opt out: the
# deployer has no property for automountServiceAccountToken (docs/scdf.md).
TOKEN_VOLUME = re.compile(r"^kube-api-access-\w+$")


def _pod_shape(pod: dict) -> tuple[dict, list[str]]:
    """What a user compares between two pods of one app, and the service account token's
    volume and mount (left out of it)."""
    spec, ctr = pod["spec"], pod["spec"]["containers"][0]
    meta = pod["metadata"]
    token = [v["name"] for v in spec.get("volumes") or [] if TOKEN_VOLUME.match(v["name"])]
    shape = {
        "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k not in OWN_POD_LABELS},
        "annotations": meta.get("annotations") or {},
        **{k: spec.get(k) for k in ("nodeSelector", "tolerations", "affinity", "securityContext")},
        "volumes": [v for v in spec.get("volumes") or [] if v["name"] not in token],
        **{
            f"container.{k}": ctr.get(k)
            for k in ("resources", "envFrom", "securityContext", "readinessProbe", "livenessProbe", "startupProbe")
        },
        "container.volumeMounts": [m for m in ctr.get("volumeMounts") or [] if m["name"] not in token],
    }
    other_mounts = [m["mountPath"] for m in ctr.get("volumeMounts") or [] if m["name"] in token]
    return shape, [f"volume {', '.join(token)} mounted at {', '.join(other_mounts)}"] if token else []


def _operator_pods(s: Scdf, doc: dict) -> dict[str, dict]:
    """The pod each of the operator's Deployments for `doc` would create, as the API server
    admits it into the namespace (server-side dry run): its defaults and admission (the
    service account's, Pod Security) applied, as they were to SCDF's pods."""
    resource = {**doc, "metadata": {**doc["metadata"], "namespace": s.ns, "uid": "0"}}
    out = {}
    for c, d in zip(COMPONENTS, render_deployments(resource), strict=True):
        t = d["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**t["metadata"], "name": d["metadata"]["name"], "namespace": s.ns},
            "spec": t["spec"],
        }
        r = s.c.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
        out[c.label] = json.loads(r.stdout)
    return out


def _process_env(s: Scdf, pod: dict) -> dict[str, str]:
    """The environment of the pod's container's main process, as `kubectl exec env` shows it."""
    raw = Path(f"/proc/{container_pid(s.c, pod)}/environ").read_bytes()
    return dict(e.decode().split("=", 1) for e in raw.split(b"\0") if b"=" in e)


def _mount_points(s: Scdf, pod: dict) -> set[str]:
    text = Path(f"/proc/{container_pid(s.c, pod)}/mountinfo").read_text()
    return {line.split()[4] for line in text.splitlines()}


def test_a_pod_template_gives_scdfs_running_pods_the_operators_pod_shape(scdf, explain):
    """`tspipe scdf deploy` of a pipeline with a pod template (the node by its hostname, a
    toleration, resources, pod labels and annotations, an emptyDir and a ConfigMap volume
    with their mounts, envFrom of a ConfigMap): SCDF's pods run and are Ready on the node,
    each with the placement, resources, labels, annotations, volumes, mounts, envFrom,
    security and probes of the pod the operator's Deployment would create. Every difference
    is printed; the deployer's own (docs/scdf.md) are expected, any other fails. A field the
    deployer cannot express is named and nothing is sent. (Its own stream and topics, after
    the module's stream is destroyed: it does not touch the other tests' stream.)"""
    s = scdf
    stream = f"{s.stream}-shape"
    config_map = f"{stream}-env"
    doc = node_pipeline(s.c.broker.pod_bootstrap, {k: f"{k}-{stream}" for k in ("input", "even", "odd")})
    doc["metadata"]["name"] = doc["spec"]["streamName"] = stream
    template = copy.deepcopy(NODE_SHAPE_TEMPLATE)
    template["volumes"][1]["configMap"]["name"] = config_map
    template["envFrom"][0]["configMapRef"]["name"] = config_map
    doc["spec"]["podTemplate"] = template
    doc["spec"]["router"] |= NODE_SHAPE_ROUTER

    # Named, and nothing sent: the kwok tests check the message for every such field.
    refused = copy.deepcopy(doc)
    refused["spec"]["podTemplate"]["topologySpreadConstraints"] = [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
    ]
    r = s.tspipe("deploy", "-f", str(s.write(refused, "shape-refused.yaml")))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "spec.podTemplate.topologySpreadConstraints: SCDF's Kubernetes deployer" in r.stderr, r.stderr
    assert requests.get(f"{s.url}/streams/definitions/{stream}", timeout=30).status_code == 404

    path = s.write(doc, "shape.yaml")
    t0 = time.monotonic()
    try:
        s.c.kubectl(
            "create",
            "configmap",
            config_map,
            "-n",
            s.ns,
            *(f"--from-literal={k}={v}" for k, v in NODE_SHAPE_ENV.items()),
        )
        r = s.tspipe("deploy", "-f", str(path), "--wait", "0")
        assert r.returncode == 0, r.stderr

        def ready():
            got = {label: s.app_pods(label, stream) for label in LABELS}
            return all(len(ps) == 1 and pod_ready(ps[0]) for ps in got.values()) and {
                label: ps[0] for label, ps in got.items()
            }

        running = wait_for(ready, 420, "SCDF's four pods Running and Ready")
        s.figures["pod template stream: deploy to Ready 4/4"] = f"{time.monotonic() - t0:.0f} s"

        p = Pipeline.from_resource({**doc, "metadata": {**doc["metadata"], "namespace": s.ns}})
        ours = _operator_pods(s, doc)
        differences, expected = [], []
        for c in COMPONENTS:
            pod = running[c.label]
            # Placement: the node the selector names (the operator's pods have the same
            # selector, tolerations and affinity: compared below).
            assert pod["spec"]["nodeName"] == NODE_NAME, pod["spec"].get("nodeName")
            mine, _ = _pod_shape(ours[c.label])
            theirs, token = _pod_shape(pod)
            expected += [f"{c.label}: SCDF's pod: {t} (no automountServiceAccountToken: false)" for t in token]
            if p.app(c).probes.startup is None:
                # The deployer always adds a startup probe; tspipe sends one that changes
                # nothing (podshape.neutral_startup): that, and only that, is expected.
                neutral = probe_render.kubernetes(neutral_startup(p.app(c).probes), SERVER_PORT)
                got = {k: v for k, v in (theirs["container.startupProbe"] or {}).items() if k != "successThreshold"}
                if mine["container.startupProbe"] is None and got == neutral:
                    expected.append(f"{c.label}: SCDF's pod: startupProbe {neutral} (none in the pipeline)")
                    mine["container.startupProbe"] = theirs["container.startupProbe"]
            differences += [
                f"{c.label}: {key}:\n    operator: {mine[key]}\n    SCDF:     {theirs[key]}"
                for key in mine
                if mine[key] != theirs[key]
            ]
            # What the kubelet made of it: the ConfigMap's variables in the app's process, the
            # volumes mounted where the template says.
            env = _process_env(s, pod)
            assert {k: env.get(k) for k in NODE_SHAPE_ENV} == NODE_SHAPE_ENV, c.label
            assert {"/scratch", "/etc/shape", "/tmp"} <= _mount_points(s, pod), c.label
        print("\nexpected differences (the deployer's own):\n  " + "\n  ".join(expected))
        print("differences between the operator's pods and SCDF's:\n  " + ("\n  ".join(differences) or "none"))
        assert not differences, "\n".join(differences)
    finally:
        s.tspipe("destroy", "-f", str(path), "--wait", "120")
        s.c.kubectl("delete", "configmap", config_map, "-n", s.ns, "--ignore-not-found", check=False)
        with contextlib.suppress(TimeoutError):  # (not to hide the failure that got here)
            wait_for(lambda: not pods(s.c, s.ns, f"spring-group-id={stream}"), 240, "the stream's pods gone")
    s.figures["pod template test"] = f"{time.monotonic() - t0:.0f} s"


def test_an_image_missing_on_the_node_is_named_by_status(scdf, explain):
    s = scdf
    doc = s.pipeline_doc()
    doc["spec"]["router"]["image"] = "ghcr.io/tspipe/router:0.0.0-not-on-the-node"
    stream = doc["spec"]["streamName"] = f"{s.stream}-missing"
    path = s.write(doc, "missing.yaml")
    try:
        r = s.tspipe("deploy", "-f", str(path), "--wait", "0")
        assert r.returncode == 0, r.stderr
        wait_for(
            lambda: any(
                e["reason"] == "Failed" and "ErrImageNeverPull" in e.get("message", "")
                for e in s.c.get("events", "-n", s.ns)["items"]
            ),
            180,
            "ErrImageNeverPull on the node",
        )
        r = s.tspipe("status", "-f", str(path))
        assert r.returncode == 0, r.stderr
        # The app, its state and instance count, then its pod's phase and what that means.
        assert re.search(
            r"^  python-router: deploying, 0/1 instances deployed .*\n    \S+: deploying, phase Pending: "
            r"its container has not started: the image is missing on the node",
            r.stdout,
            re.M,
        ), r.stdout
        assert "Traceback" not in r.stdout + r.stderr
    finally:
        s.tspipe("destroy", "-f", str(path), "--wait", "120")
        wait_for(lambda: not pods(s.c, s.ns, f"spring-group-id={stream}"), 240, "the broken stream's pods gone")


def test_an_unreachable_kubernetes_account_is_named_by_deploy_and_status(scdf, tmp_path, explain):
    """Skipper whose Kubernetes API server does not answer (a closed port)."""
    s = scdf
    kubeconfig = kubeconfig_to(
        s.c.cp.kubeconfig, tmp_path / "unreachable.kubeconfig", f"https://127.0.0.1:{free_port()}"
    )
    with ScdfServers(tmp_path / "servers", kubernetes=KubernetesPlatform(str(kubeconfig), s.ns)) as other:
        path = s.write(s.pipeline_doc(), "unreachable.yaml")
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "tspipe.cli",
                "scdf",
                "deploy",
                "-f",
                str(path),
                "--server",
                other.dataflow_url,
                "--wait",
                "120",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        print(r.stdout, r.stderr)
        st = subprocess.run(
            [sys.executable, "-m", "tspipe.cli", "scdf", "status", "-f", str(path), "--server", other.dataflow_url],
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(st.stdout, st.stderr)
        out = r.stdout + r.stderr + st.stdout + st.stderr
        assert "Traceback" not in out
        # deploy fails naming the app Skipper could not install, the platform and what failed.
        assert r.returncode == 1, r.stdout
        assert re.search(r"Skipper could not install app '\w+-v1' on platform 'default': .*failed", r.stderr), r.stderr
        assert len(r.stderr.splitlines()[0]) < 400, "one short line, not the whole deploy request"
        # status reads what SCDF holds: the definition, not deployed.
        assert st.returncode == 0 and "state: undeployed" in st.stdout, st.stdout
