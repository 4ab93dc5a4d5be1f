"""An upgrade of the operator rolls no app, on the real node (issue 26).

The operator at the pinned earlier revision (hack/upgrade/baseline.json's, the one
tests/operator/test_upgrade_*.py compare with) is installed as a user installed it then:
that commit's crds/ and `kubectl apply -k` of that commit's manifests/, its image built
from that commit's Dockerfile.operator (hack/node-image-at.sh: buildah, as
hack/node-images.sh builds the current one; cached per revision). It runs three pipelines
to Ready on the real node: the sample its manifests/ install, one shaped by most of the
spec's pod fields (hack/upgrade/pipelines.yaml's `shaped`: pod-template labels,
annotations and tolerations, env, resources, probes, two router replicas and so a
PodDisruptionBudget) and one exactly-once router. Then the upgrade a user makes: this
tree's crds/ and `kubectl apply -k manifests/` with this tree's image. Once the new
operator has made a pass over each pipeline that writes nothing, no Deployment of the
pipelines has changed (generation, pod template) and no pod was replaced or restarted
(UIDs, restart counts). A pod template that does differ passes only when CHANGELOG.md
gained, since that revision, a line saying what rolls.

CI clones are full clones; a clone without the revision (shallow) skips, saying so.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import upgradebase
import yaml
from localinfra.node import NodeError
from localinfra.nodeconfig import IMAGES
from nodehelpers import (
    OPERATOR_NS,
    PIPELINE_NS,
    REPO,
    apply_obj,
    explained,
    install_kustomization,
    node_pipeline,
    operator_pod,
    pipeline_ready,
    pod_ready,
    pods,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(1500)]

CRD = "timestamppipelines.tspipe.io"
SAMPLE = "timestamps"  # manifests/samples/timestamppipeline.yaml
# After the new operator's quiet pass over every pipeline: time for anything it would
# still do (a debounced pass after a pod event, the pod watch's look at the apps).
SETTLE_SECONDS = 20


def reachable(rev: str) -> str | None:
    r = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True, text=True
    )
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.fixture(scope="module")
def earlier(node_cluster, tmp_path_factory):
    """(revision, its manifests/ and crds/ in a folder, its operator image's tag on the node)."""
    rev = upgradebase.revision()
    full = reachable(rev)
    if full is None:
        pytest.skip(
            f"the pinned earlier revision {rev} (hack/upgrade/baseline.json) is not in this clone "
            f"(shallow?): `git fetch --unshallow` or a full clone runs this test"
        )
    t = time.monotonic()
    r = subprocess.run(
        ["bash", str(REPO / "hack" / "node-image-at.sh"), full], cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    if r.returncode == 4:
        pytest.skip(f"hack/node-image-at.sh found no {full} in this clone: {r.stderr.strip()}")
    assert r.returncode == 0, f"hack/node-image-at.sh {full} failed:\n{r.stderr[-4000:]}"
    archive = Path(r.stdout.strip().splitlines()[-1])
    tag = f"ghcr.io/tspipe/operator:git-{full[:12]}"
    node_cluster.node.ctr("images", "import", str(archive))
    print(f"earlier operator image {tag}: built or found in {time.monotonic() - t:.0f} s")
    src = tmp_path_factory.mktemp("earlier")
    tree = subprocess.run(["git", "archive", full, "manifests", "crds"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=tree.stdout, check=True)
    yield full, src, tag
    with contextlib.suppress(NodeError):
        node_cluster.node.ctr("images", "rm", tag)


def more_pipelines(bootstrap: str) -> list[dict]:
    """Two pipelines beside the sample: hack/upgrade/pipelines.yaml's `shaped` (its broker
    the node's, its topics managed, a router memory limit a real router fits in) and the
    sample with an exactly-once router (`secured`'s guarantee without its credentials:
    this broker has no SASL listener)."""
    (shaped,) = [p for p in upgradebase.pipelines() if p["metadata"]["name"] == "shaped"]
    shaped["spec"]["kafka"]["brokers"] = [bootstrap]
    shaped["spec"]["kafka"]["topics"]["manage"] = True
    shaped["spec"]["router"]["resources"]["limits"]["memory"] = "256Mi"
    exactly = node_pipeline(
        bootstrap, {"input": "eosIn", "even": "eosEven", "odd": "eosOdd"}, processingGuarantee="exactly_once"
    )
    exactly["metadata"] = {"name": "exactly"}
    return [shaped, exactly]


def state(c) -> dict:
    """What an upgrade must leave alone: each Deployment's generation and pod template,
    each pod's UID and its containers' restart counts."""
    deps = {
        d["metadata"]["name"]: {"generation": d["metadata"]["generation"], "template": d["spec"]["template"]}
        for d in c.get("deployments", "-n", PIPELINE_NS)["items"]
    }
    ps = {
        p["metadata"]["name"]: {
            "uid": p["metadata"]["uid"],
            "restarts": {s["name"]: s.get("restartCount", 0) for s in p["status"].get("containerStatuses", [])},
        }
        for p in pods(c, PIPELINE_NS)
        if not p["metadata"].get("deletionTimestamp")
    }
    pdbs = {p["metadata"]["name"]: p["metadata"]["generation"] for p in c.get("pdb", "-n", PIPELINE_NS)["items"]}
    return {"deployments": deps, "pods": ps, "pdbs": pdbs}


def differences(a, b, path: str = "") -> list[str]:
    """The paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)} -> {json.dumps(b)}"]


def rolls_announced(rev: str) -> list[str]:
    """CHANGELOG.md's lines added since `rev` that say something rolls."""
    diff = subprocess.run(
        ["git", "diff", rev, "--", "CHANGELOG.md"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [
        ln[1:]
        for ln in diff.splitlines()
        if ln.startswith("+") and not ln.startswith("+++") and re.search(r"\brolls?\b", ln, re.I)
    ]


def passes(log: str, name: str) -> list[str]:
    return [ln for ln in log.splitlines() if f"reconciled {PIPELINE_NS}/{name}:" in ln]


def test_upgrading_the_operator_from_the_pinned_revision_restarts_no_pod(node_cluster, earlier, tmp_path):
    c = node_cluster
    rev, src, old_tag = earlier
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    install_kustomization(
        old_dir, c.cp.apiserver_port, c.broker.pod_bootstrap, manifests=src / "manifests", tag=old_tag.rsplit(":", 1)[1]
    )
    # This tree's install, as a user applies it; the debug log shows the passes that write nothing.
    install_kustomization(new_dir, c.cp.apiserver_port, c.broker.pod_bootstrap, args=("--log-level=debug",))
    extra = more_pipelines(c.broker.pod_bootstrap)
    names = [SAMPLE] + [p["metadata"]["name"] for p in extra]
    installed = old_dir
    try:
        with explained(c, PIPELINE_NS):
            for ns in (OPERATOR_NS, PIPELINE_NS):  # an earlier test's install may still be going
                wait_for(
                    lambda ns=ns: c.kubectl("get", "namespace", ns, check=False).returncode != 0,
                    240,
                    f"namespace {ns} gone",
                )
            t0 = time.monotonic()
            c.kubectl("apply", "-f", str(src / "crds"))
            c.cp.wait_crd_established(CRD)
            c.kubectl("apply", "-k", str(old_dir))
            op = wait_for(lambda: operator_pod(c), 300, f"the operator at {rev[:12]} Running and Ready")
            assert op["spec"]["containers"][0]["image"] == old_tag
            for obj in extra:
                apply_obj(c, obj, PIPELINE_NS)
            for name in names:
                wait_for(lambda n=name: pipeline_ready(c, PIPELINE_NS, n), 600, f"{name} Ready under {rev[:12]}")
            wait_for(
                lambda: (ps := pods(c, PIPELINE_NS)) and len(ps) == 13 and all(map(pod_ready, ps)),
                300,
                "the three pipelines' 13 pods Ready",
            )
            before = state(c)
            print(f"three pipelines Ready under {rev[:12]} after {time.monotonic() - t0:.0f} s")

            # The upgrade.
            t1 = time.monotonic()
            c.kubectl("apply", "-f", str(REPO / "crds"))
            c.cp.wait_crd_established(CRD)
            installed = new_dir
            c.kubectl("apply", "-k", str(new_dir))
            new = wait_for(
                lambda: operator_pod(c, other_than=op["metadata"]["name"]),
                300,
                "this tree's operator Running and Ready",
            )
            assert new["spec"]["containers"][0]["image"] == IMAGES["operator"]

            def quiet_pass_over_each():
                log = c.kubectl("logs", "-n", OPERATOR_NS, new["metadata"]["name"], timeout=60).stdout
                return all((p := passes(log, n)) and p[-1].endswith(": 0 writes") for n in names) and log

            log = wait_for(quiet_pass_over_each, 240, "a pass writing nothing over each pipeline by the new operator")
            time.sleep(SETTLE_SECONDS)
            after = state(c)
            print(f"upgraded and settled in {time.monotonic() - t1:.0f} s")

        changed = {
            n: differences(d["template"], after["deployments"].get(n, {}).get("template"))
            for n, d in before["deployments"].items()
        }
        changed = {n: d for n, d in changed.items() if d}
        if changed:
            announced = rolls_announced(rev)
            assert announced, (
                f"upgrading from {rev[:12]} changes the pod template of {sorted(changed)} (every pod "
                f"restarts): {json.dumps(changed, indent=1)[:3000]}\nIf that is meant, say in "
                f"CHANGELOG.md's Unreleased section what rolls on upgrade"
            )
            print(f"pod templates changed, as CHANGELOG.md says: {announced}")
        kept = {n for n in before["deployments"] if n not in changed}
        assert sorted(after["deployments"]) == sorted(before["deployments"]), "the upgrade added or removed an app"
        assert {n: after["deployments"][n]["generation"] for n in kept} == {
            n: before["deployments"][n]["generation"] for n in kept
        }, f"the upgrade rewrote a Deployment's spec: {differences(before['deployments'], after['deployments'])}"
        assert after["pdbs"] == before["pdbs"], "the upgrade rewrote or replaced a PodDisruptionBudget"
        if not changed:
            assert after["pods"] == before["pods"], (
                f"pods replaced or restarted by the upgrade: {differences(before['pods'], after['pods'])}\n"
                f"new operator's log:\n{log[-3000:]}"
            )
    finally:
        c.kubectl(
            "delete", "tsp", "--all", "-n", PIPELINE_NS, "--wait=true", "--timeout=180s", check=False, timeout=240
        )
        c.kubectl("delete", "-k", str(installed), "--wait=true", "--timeout=180s", check=False, timeout=240)
        c.kubectl("apply", "-f", str(REPO / "crds"), check=False)  # this tree's CRD for the tests after


def test_the_comparison_sees_a_restart_and_a_template_change():
    # The checks above can fail: a pod replaced, a container restarted, a template changed.
    pod = {"p": {"uid": "1", "restarts": {"router": 0}}}
    assert differences(pod, {"p": {"uid": "2", "restarts": {"router": 0}}}) == ['.p.uid: "1" -> "2"']
    assert differences(pod, {"p": {"uid": "1", "restarts": {"router": 1}}}) == [".p.restarts.router: 0 -> 1"]
    tpl = yaml.safe_load("spec: {containers: [{name: a, image: x}]}")
    assert differences(tpl, yaml.safe_load("spec: {containers: [{name: a, image: y}]}")) == [
        '.spec.containers[0].image: "x" -> "y"'
    ]
