"""`make demo`: the seed's pipeline end to end on this machine.

Starts a local control plane and Kafka broker, installs the CRD, starts the operator,
applies the sample TimestampPipeline (pointed at the local broker), waits for it to be
Ready, then runs the four apps for real through the runner and prints the loggers' lines
as they arrive. Ctrl-C stops everything it started.
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

from localinfra.runner import REPO, Runner
from localinfra.proc import stop_process_group

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
            if ready.get("status") == "True" and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]:
                return obj
        time.sleep(1)
    raise TimeoutError(f"pipeline {namespace}/{name} not Ready after {timeout}s: {obj.get('status')}")


def start_operator(kubeconfig: str, namespace: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=kubeconfig, PYTHONUNBUFFERED="1")
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tspipe.manager", "--standalone", "--namespace", namespace],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


# The log sink's own logger is named `log-sink` (the app name shows in brackets on every
# Spring line; the logger column is the one followed by " : ").
SINK_LINE = re.compile(r"^(\S+)\s+\w+\s+\d+ --- .*\blog-sink\s+: (.*)$")


def logger_line(key: str, line: str) -> str | None:
    """A log sink's payload line, shown like `kubectl logs` of the logger pod; None otherwise."""
    m = SINK_LINE.match(line) if key.endswith("logger") else None
    return f"{key.split('/')[-1]:>22} | {m.group(1)}  INFO --- log-sink : {m.group(2)}" if m else None


@contextlib.contextmanager
def local_stack(workdir: Path, namespace: str = "default"):
    """Control plane + broker + CRD + operator; yields (control_plane, broker)."""
    from localinfra.kafka import KafkaBroker
    from localinfra.kube import ControlPlane

    with contextlib.ExitStack() as stack:
        t0 = time.monotonic()
        say("starting the Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
        cp = stack.enter_context(ControlPlane())
        say(f"control plane up in {time.monotonic() - t0:.0f}s; KUBECONFIG={cp.kubeconfig}")
        t0 = time.monotonic()
        say("starting Kafka (KRaft, single node)")
        broker = stack.enter_context(KafkaBroker())
        say(f"Kafka up in {time.monotonic() - t0:.0f}s at {broker.bootstrap}")
        cp.kubectl("apply", "-f", str(CRD_DIR))
        cp.kubectl("wait", "--for=condition=Established", "crd/timestamppipelines.tspipe.io", "--timeout=60s")
        say("CRD installed; starting the operator")
        op = start_operator(cp.kubeconfig, namespace, workdir / "operator.log")
        stack.callback(stop_process_group, op, 15)
        yield cp, broker


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tspipe-demo-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
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
    say(f"all stopped; logs kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
