"""`make demo`: the seed's pipeline end to end on this machine.

Starts a local control plane and Kafka broker, installs the CRD, starts the operator,
applies the sample TimestampPipeline (pointed at the local broker) and waits for it to be
Ready. On a real node (localinfra.node: root, Debian's containerd, runc and CNI plugins)
the four apps run as pods from the project's images: the demo shows `kubectl get pods -o
wide` and follows `kubectl logs -f` of the two logger pods, like the seed's last step.
Where a node cannot run, it says why and falls back to kwok's fake node plus the runner,
which runs the four Deployments as local processes. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from localinfra.operatorproc import OperatorProcess
from localinfra.proc import stop_process_group
from localinfra.runner import REPO, Runner

# The sample pipeline, declared once here: tests/samples.py and bench/operator_bench.py import it.
SAMPLE = REPO / "manifests" / "samples" / "timestamppipeline.yaml"
CRD_DIR = REPO / "crds"


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pipeline_manifest(bootstrap: str, path: Path = SAMPLE, **router_overrides) -> dict:
    """The sample pipeline with the local broker (the sample names an in-cluster one)."""
    obj = yaml.safe_load(path.read_text())
    obj["spec"]["kafka"]["brokers"] = [bootstrap]
    obj["spec"].setdefault("router", {}).update(router_overrides)
    return obj


def apply(cp, obj: dict, namespace: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(obj, f)
    try:
        cp.kubectl("apply", "-n", namespace, "-f", f.name)
    finally:
        os.unlink(f.name)


def wait_ready(cp, name: str, namespace: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    obj = {}
    while time.monotonic() < deadline:
        out = cp.kubectl("get", "tsp", name, "-n", namespace, "-o", "json", check=False)
        if out.returncode == 0:
            obj = json.loads(out.stdout)
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
            ready = conds.get("Ready", {})
            if (
                ready.get("status") == "True"
                and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
            ):
                return obj
        time.sleep(1)
    raise TimeoutError(f"pipeline {namespace}/{name} not Ready after {timeout}s: {obj.get('status')}")


def start_operator(kubeconfig: str, namespace: str, log_path: Path) -> OperatorProcess:
    return OperatorProcess.manager(kubeconfig, namespace, log_path).start()


# The log sink's own logger is named `log-sink` (the app name shows in brackets on every
# Spring line; the logger column is the one followed by " : ").
SINK_LINE = re.compile(r"^(\S+)\s+\w+\s+\d+ --- .*\blog-sink\s+: (.*)$")
PAYLOAD_LINE = re.compile(r"\blog-sink\s+: ")


def logger_line(key: str, line: str) -> str | None:
    """A log sink's payload line, shown like `kubectl logs` of the logger pod; None otherwise."""
    m = SINK_LINE.match(line) if key.endswith("logger") else None
    return f"{key.split('/')[-1]:>22} | {m.group(1)}  INFO --- log-sink : {m.group(2)}" if m else None


@contextlib.contextmanager
def local_stack(workdir: Path, namespace: str = "default", real_node: bool = False):
    """Control plane (+ real node) + broker + CRD + operator; yields (control_plane, broker)."""
    from localinfra.kafka import KafkaBroker
    from localinfra.kube import ControlPlane

    with contextlib.ExitStack() as stack:
        t0 = time.monotonic()
        say("starting the Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
        pod_host = None
        if real_node:
            from localinfra.node import NODE_IP, NODE_NAME, Node

            cp = stack.enter_context(ControlPlane(node_ip=NODE_IP))
            say(
                f"control plane up in {time.monotonic() - t0:.0f}s; starting node {NODE_NAME} "
                "(containerd, kubelet, CNI bridge; images imported from hack/node-images.sh)"
            )
            t0 = time.monotonic()
            stack.enter_context(Node(cp))
            say(f"node {NODE_NAME} Ready in {time.monotonic() - t0:.0f}s")
            pod_host = NODE_IP
        else:
            cp = stack.enter_context(ControlPlane())
        say(f"KUBECONFIG={cp.kubeconfig}")
        t0 = time.monotonic()
        say("starting Kafka (KRaft, single node)")
        broker = stack.enter_context(KafkaBroker(pod_host=pod_host))
        say(
            f"Kafka up in {time.monotonic() - t0:.0f}s at {broker.bootstrap}"
            + (f" (pods: {broker.pod_bootstrap})" if pod_host else "")
        )
        cp.kubectl("apply", "-f", str(CRD_DIR))
        cp.wait_crd_established("timestamppipelines.tspipe.io")
        say("CRD installed; starting the operator")
        op = start_operator(cp.kubeconfig, namespace, workdir / "operator.log")
        stack.callback(op.stop, 15)
        yield cp, broker


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    ap.add_argument(
        "--runner", action="store_true", help="use kwok's fake node and the local runner even where a real node can run"
    )
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tspipe-demo-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from localinfra.node import unavailable

    reason = "--runner given" if args.runner else unavailable()
    try:
        if reason is None:
            say("a real node can run here: the pipeline's pods run on kubelet + containerd")
            with local_stack(workdir, real_node=True) as (cp, broker):
                return on_real_node(cp, broker, args.seconds, stop)
        say(f"no real node ({reason}): kwok's fake node and the local runner play kubelet")
        with local_stack(workdir) as (cp, broker):
            obj = pipeline_manifest(broker.bootstrap)
            apply(cp, obj, "default")
            say(f"applied TimestampPipeline/{obj['metadata']['name']}; waiting for Ready")
            wait_ready(cp, obj["metadata"]["name"], "default")
            print(cp.kubectl("get", "tsp", "-n", "default").stdout, flush=True)
            print(cp.kubectl("get", "deployments", "-n", "default").stdout, flush=True)

            def show(key, line):
                shown = logger_line(key, line)
                if shown:
                    print(shown, flush=True)

            say("running the apps (router from this repo, Spring apps as jars); loggers' lines follow")
            with Runner(cp.kubeconfig, "default", workdir / "apps", on_line=show):
                deadline = time.monotonic() + args.seconds if args.seconds else None
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    stop.wait(0.5)
                say("stopping")
    except KeyboardInterrupt:
        say("interrupted; stopping")
    finally:
        say(f"all stopped; logs kept in {workdir}")
    return 0


def on_real_node(cp, broker, seconds: float, stop: threading.Event) -> int:
    """The sample on the real node; `kubectl logs -f` of both loggers until stopped."""
    obj = pipeline_manifest(broker.pod_bootstrap)
    name = obj["metadata"]["name"]
    apply(cp, obj, "default")
    say(f"applied TimestampPipeline/{name}; waiting for Ready (kubelet's probes on the real actuators)")
    wait_ready(cp, name, "default", timeout=300)
    print(cp.kubectl("get", "tsp", "-n", "default").stdout, flush=True)
    print(cp.kubectl("get", "pods", "-n", "default", "-o", "wide").stdout, flush=True)
    followers = []
    for comp in ("evenlogger", "oddlogger"):
        pod = cp.kubectl(
            "get",
            "pods",
            "-n",
            "default",
            "-o",
            "name",
            "-l",
            f"app.kubernetes.io/instance={name},app.kubernetes.io/component={comp}",
        ).stdout.split()[0]
        say(f"kubectl logs -f {pod}")
        followers.append(
            subprocess.Popen(
                [str(cp._tspkube()), "kubectl", "--kubeconfig", cp.kubeconfig, "logs", "-f", "-n", "default", pod],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )

    def pump(proc, label):
        for line in proc.stdout:
            if PAYLOAD_LINE.search(line):  # the sink's payloads, not Spring's start-up chatter
                print(f"{label:>22} | {line.rstrip()}", flush=True)

    for proc, comp in zip(followers, ("evenlogger", "oddlogger"), strict=False):
        threading.Thread(target=pump, args=(proc, f"{name}-{comp}"), daemon=True).start()
    try:
        deadline = time.monotonic() + seconds if seconds else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.5)
        say("stopping")
    finally:
        for proc in followers:
            stop_process_group(proc, 5)
        cp.kubectl("delete", "tsp", name, "-n", "default", "--wait=false", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
