"""Reliability on its own real control plane (it restarts the API server): SIGKILL the
operator while 50 pipelines are being created, then restart it; restart the API server
under a running operator. The operator is a real subprocess."""

from __future__ import annotations

import collections
import json
import threading
import time

import pytest
import yaml
from kubehelpers import CRD_FILE, Kubectl, Operator, wait_for
from samples import sample_pipeline

pytestmark = pytest.mark.kube

N = 50
NS = "reliability"


@pytest.fixture(scope="module")
def cp():
    from localinfra.kube import ControlPlane

    with ControlPlane() as plane:
        plane.kubectl("apply", "-f", str(CRD_FILE))
        wait_for(
            lambda: "timestamppipelines" in plane.kubectl("api-resources", "--api-group=tspipe.io", check=False).stdout,
            60,
            "CRD served",
        )
        plane.kubectl("create", "namespace", NS)
        yield plane


def pipelines(n: int) -> str:
    docs = []
    for i in range(n):
        obj = sample_pipeline()
        obj["metadata"] = {"name": f"p{i:03d}", "namespace": NS}
        obj["spec"]["kafka"]["topics"]["manage"] = False
        docs.append(obj)
    return yaml.safe_dump_all(docs)


def phases(k) -> collections.Counter:
    items = k.json("tsp")["items"]
    return collections.Counter(
        (o.get("status") or {}).get("phase")
        if (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
        else None
        for o in items
    )


def test_sigkill_during_creation_of_50_then_restart_converges_without_duplicates(cp, tmp_path):
    k = Kubectl(cp, NS)
    log = tmp_path / "operator.log"
    op = Operator(cp.kubeconfig, NS, log).start()
    try:
        # The pipelines arrive in batches, as users create them: a quiet machine's operator
        # creates all 200 Deployments within one kubectl round trip of a single apply.
        docs = pipelines(N).split("---\n")
        feeder = threading.Thread(
            target=lambda: [
                (k("apply", "-f", "-", input="---\n".join(docs[i : i + 5])), time.sleep(0.5)) for i in range(0, N, 5)
            ]
        )
        feeder.start()
        # Kill it mid-way: some children exist, not all.
        wait_for(lambda: len(k.deployments()) >= 20, 120, "20 Deployments created")
        op.kill()
        made = len(k.deployments())
        feeder.join()
        print(f"\nFIGURE Deployments when the operator was killed: {made} of {4 * N}")
        assert made < 4 * N, "killed too late to show anything"
        op2 = Operator(cp.kubeconfig, NS, log).start()
        wait_for(lambda: phases(k).get("Running") == N, 300, f"{N} pipelines Running", interval=2)
        assert op2.alive()
    finally:
        op.stop()
        if "op2" in locals():
            op2.stop()

    deps = k.json("deployments")["items"]
    uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in k.json("tsp")["items"]}
    per_pipeline = collections.defaultdict(list)
    for d in deps:
        lbl = d["metadata"]["labels"]
        (ref,) = d["metadata"]["ownerReferences"]
        assert ref["uid"] == uids[lbl["app.kubernetes.io/instance"]]
        per_pipeline[lbl["app.kubernetes.io/instance"]].append(lbl["app.kubernetes.io/component"])
    assert len(deps) == 4 * N
    assert all(sorted(c) == ["evenlogger", "oddlogger", "router", "time"] for c in per_pipeline.values())
    assert len(per_pipeline) == N
    # One ReplicaSet per Deployment (no flapping templates) and one pod per app.
    rs = k.json("replicasets")["items"]
    owners = collections.Counter(r["metadata"]["ownerReferences"][0]["name"] for r in rs)
    assert len(owners) == 4 * N and set(owners.values()) == {1}
    pods = k.json("pods")["items"]
    assert len(pods) == 4 * N


def test_api_server_restart_watches_recover_and_later_changes_are_reconciled(cp, tmp_path):
    k = Kubectl(cp, NS)
    k.apply(sample_pipeline() | {"metadata": {"name": "restart", "namespace": NS}})
    op = Operator(
        cp.kubeconfig, NS, tmp_path / "operator.log", ["--backoff-max", "2", "--inactivity-timeout", "10"]
    ).start()
    try:

        def running():
            o = k.get_or_none("tsp", "restart")
            st = (o or {}).get("status") or {}
            return (
                o
                if st.get("phase") == "Running" and st.get("observedGeneration") == o["metadata"]["generation"]
                else None
            )

        wait_for(running, 180, "pipeline Running")
        cp.restart_apiserver()
        # A spec change arrives only through the pipeline watch: it must have resumed.
        k("patch", "tsp", "restart", "--type=merge", "-p", json.dumps({"spec": {"router": {"replicas": 3}}}))
        wait_for(
            lambda: (o := running()) and o["status"]["components"]["router"]["readyReplicas"] == 3,
            120,
            "router scaled to 3 after the restart",
        )
        # And a child change only through the Deployment watch.
        k("delete", "deployment", "restart-oddlogger")
        wait_for(lambda: k.get_or_none("deployment", "restart-oddlogger"), 120, "oddlogger recreated")
        assert op.alive()
    finally:
        op.stop()
