"""Teardown leaves nothing, and a crashed run is swept at the next start.

Runs last among the node tests (file order): it stops the session's node itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localinfra.node import STATE_FILE, SYSCTLS, leftovers, nft_tables, read_sysctl, sweep
from nodehelpers import REPO, wait_for

# Generous: the first test also waits for the node to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

# A run that starts a node, runs a pod and then dies without its teardown (SIGKILL).
CRASHING_RUN = r"""
import sys, time
from localinfra.kube import ControlPlane
from localinfra.node import NODE_IP, Node
cp = ControlPlane(node_ip=NODE_IP).start()
node = Node(cp, images=("pause", "router")).start()
cp.kubectl("run", "crash", "--image=ghcr.io/tspipe/router:0.1.0", "--image-pull-policy=Never",
           "--restart=Never", "--", "--spring.cloud.stream.kafka.binder.brokers=10.245.0.1:9")
for _ in range(240):
    if cp.kubectl("get", "pod", "crash", "-o", "jsonpath={.status.phase}").stdout == "Running":
        break
    time.sleep(0.5)
print("RUNNING", node.workdir, flush=True)
time.sleep(3600)
"""


def test_the_session_node_stops_without_leftovers(node_cluster):
    before = dict(node_cluster.node.sysctls)
    tables = node_cluster.node.nft_tables
    workdir = node_cluster.node.workdir
    node_cluster.close()
    assert leftovers(workdir) == []
    assert node_cluster.node.teardown_notes == []
    assert {k: read_sysctl(k) for k in before} == before
    assert nft_tables() == tables


def test_a_crashed_run_is_swept_at_the_next_start(node_cluster, tmp_path):
    node_cluster.close()  # (already stopped by the test above when run in order)
    sysctls = {k: read_sysctl(k) for k in SYSCTLS}
    tables = nft_tables()
    env = dict(os.environ, PYTHONPATH=str(REPO / "hack"))
    log = tmp_path / "crashing-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        line = wait_for(lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("RUNNING")), None),
                        400, f"the crashing run's pod Running (log {log})")
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(log.read_text()[-5000:])
    workdir = Path(line.split(" ", 1)[1])
    os.killpg(proc.pid, signal.SIGKILL)  # no teardown runs; kubelet and containerd die with it
    proc.wait()
    time.sleep(1)
    left = leftovers(workdir)
    # What a crash leaves: the pod's shim, processes in kubepods cgroups, the bridge, mounts.
    assert any(x.startswith("cgroup ") for x in left), left
    assert STATE_FILE.exists()
    notes = sweep()
    assert leftovers(workdir) == [], notes
    assert {k: read_sysctl(k) for k in SYSCTLS} == sysctls
    assert nft_tables() == tables
