"""Teardown leaves nothing, and a crashed run (of two nodes) is swept at the next start.

Runs last among the node tests (file order): it stops the session's node itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from localinfra.kube import sweep_stale_workdirs
from localinfra.node import NODES, SYSCTLS, leftovers, nft_tables, read_sysctl, state_file, sweep
from nodehelpers import REPO, wait_for

# Generous: the first test also waits for the node to start (image imports, 2 cores).
pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1200)]

# A run that starts both nodes, runs a pod on each and then dies without its teardown (SIGKILL).
CRASHING_RUN = r"""
import json, sys, time
from localinfra.kube import ControlPlane
from localinfra.node import NODE_IP, NODES, Node
cp = ControlPlane(node_ip=NODE_IP).start()
nodes = [Node(cp, index=spec.index, images=("pause", "router")).start() for spec in NODES]
for spec in NODES:
    pin = {"spec": {"nodeSelector": {"kubernetes.io/hostname": spec.name}}}
    cp.kubectl("run", f"crash-{spec.index}", "--image=ghcr.io/tspipe/router:0.1.0", "--image-pull-policy=Never",
               "--restart=Never", f"--overrides={json.dumps(pin)}", "--",
               "--spring.cloud.stream.kafka.binder.brokers=10.245.0.1:9")
for spec in NODES:
    for _ in range(240):
        if cp.kubectl("get", "pod", f"crash-{spec.index}", "-o", "jsonpath={.status.phase}").stdout == "Running":
            break
        time.sleep(0.5)
print("RUNNING", cp.workdir, *(n.workdir for n in nodes), flush=True)
time.sleep(3600)
"""


def spec_cgroups(spec, left: list[str]) -> list[str]:
    """The leftover cgroups below the node's top folder (/sys/fs/cgroup/<hierarchy>/<top>)."""
    top = (spec.cgroup_root or "/kubepods").strip("/")
    return [x for x in left if x.startswith("cgroup ") and Path(x.split(" ", 1)[1]).parts[5:6] == (top,)]


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
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHING_RUN], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        line = wait_for(
            lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("RUNNING")), None),
            400,
            f"the crashing run's pod Running (log {log})",
        )
    except AssertionError as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(log.read_text()[-5000:]) from exc
    cp_workdir, *workdirs = [Path(w) for w in line.split()[1:]]
    os.killpg(proc.pid, signal.SIGKILL)  # no teardown runs; kubelets and containerds die with it
    proc.wait()
    time.sleep(1)
    left = leftovers(*workdirs)
    # What a crash leaves: the pods' shims, processes in each node's pod cgroups, the bridges, mounts,
    # cached CNI results.
    for spec in NODES:
        assert spec_cgroups(spec, left), (spec.name, left)
        assert f"link {spec.bridge}" in left
        # libcni's cached results of its pod, the pod network's and containerd's `lo` one.
        assert any(x.startswith(f"CNI result /var/lib/cni/results/{spec.cni_network}-") for x in left), left
        assert state_file(spec).exists()
    assert any(x.startswith("CNI result /var/lib/cni/results/cni-loopback-") for x in left), left
    notes = sweep()
    assert leftovers(*workdirs) == [], notes
    # The control plane's processes died with the run; its folder goes at the next start.
    assert cp_workdir.is_dir()
    sweep_stale_workdirs()
    assert not cp_workdir.exists()
    assert {k: read_sysctl(k) for k in SYSCTLS} == sysctls
    assert nft_tables() == tables
