"""manifests/overlays/ha as kustomize builds it (the project's kubectl): two replicas
with kopf peering, the peering object they name, and the peering RBAC. The failover
itself is shown in test_operate_kube.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tspipe.manager import build_parser

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(control_plane):
    out = control_plane.kubectl("kustomize", str(ROOT / "manifests" / "overlays" / "ha")).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_two_peered_replicas_serving_every_namespace(built):
    (d,) = [o for o in built if o["kind"] == "Deployment"]
    (c,) = d["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(c["args"])
    assert d["spec"]["replicas"] == 2
    assert not args.standalone and args.all_namespaces
    (peering,) = [o for o in built if o["kind"] == "ClusterKopfPeering"]
    assert args.peering == peering["metadata"]["name"]


def test_one_replica_per_node(built):
    """A node that dies takes at most one replica; nodes the pod may not run on (cordoned,
    tainted, dead) are no domain, so a drained node's replica goes beside the other."""
    (d,) = [o for o in built if o["kind"] == "Deployment"]
    pod = d["spec"]["template"]["spec"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    assert spread["whenUnsatisfiable"] == "DoNotSchedule" and spread["nodeTaintsPolicy"] == "Honor"
    assert spread["labelSelector"] == {"matchLabels": d["spec"]["selector"]["matchLabels"]}


def test_peering_rbac_is_exactly_what_kopf_needs(built):
    sa = {"kind": "ServiceAccount", "name": "tspipe-operator", "namespace": "tspipe-system"}
    roles = {o["metadata"]["name"]: o for o in built if o["kind"] == "ClusterRole"}
    bound = [roles[b["roleRef"]["name"]] for b in built if b["kind"] == "ClusterRoleBinding" and b["subjects"] == [sa]]
    rules = {
        (g, r): set(rule["verbs"])
        for role in bound
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "kopfpeerings") not in rules  # cluster-wide operators use the cluster peering
    assert rules[("tspipe.io", "timestamppipelines")] == {"get", "list", "watch", "patch"}
