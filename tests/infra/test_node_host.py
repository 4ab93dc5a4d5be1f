"""Which of libcni's cached results belong to which real node (localinfra.nodehost): what
each node's teardown removes, without touching another node's. Files in a temporary
folder; nothing is started."""

from __future__ import annotations

from localinfra import nodehost
from localinfra.nodeconfig import NODES

SANDBOX = {0: "a" * 64, 1: "b" * 64}


def test_each_node_finds_its_own_network_results_and_their_loopback_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(nodehost, "CNI_RESULTS", tmp_path)
    for spec in NODES:
        (tmp_path / f"{spec.cni_network}-{SANDBOX[spec.index]}-eth0").write_text("{}")
        (tmp_path / f"cni-loopback-{SANDBOX[spec.index]}-lo").write_text("{}")
    for spec in NODES:
        assert [f.name for f in nodehost.cni_results(spec)] == [
            f"{spec.cni_network}-{SANDBOX[spec.index]}-eth0",
            f"cni-loopback-{SANDBOX[spec.index]}-lo",
        ]


def test_a_loopback_result_without_its_network_result_is_found_by_the_nodes_sandboxes(tmp_path, monkeypatch):
    # containerd stopped before the sandbox's CNI DEL: only the `lo` result may be left.
    monkeypatch.setattr(nodehost, "CNI_RESULTS", tmp_path)
    (tmp_path / f"cni-loopback-{SANDBOX[1]}-lo").write_text("{}")
    assert nodehost.cni_results(NODES[0]) == []
    assert nodehost.cni_results(NODES[1]) == []
    assert nodehost.cni_results(NODES[1], {SANDBOX[1]}) == [tmp_path / f"cni-loopback-{SANDBOX[1]}-lo"]


def test_a_nodes_sandboxes_are_read_from_its_containerds_folders(tmp_path):
    for kind, sid in (("root", SANDBOX[0]), ("state", SANDBOX[1])):
        (tmp_path / "containerd" / kind / "io.containerd.grpc.v1.cri" / "sandboxes" / sid).mkdir(parents=True)
    assert nodehost.sandbox_ids(tmp_path) == set(SANDBOX.values())
    assert nodehost.sandbox_ids(tmp_path / "gone") == set()
    assert nodehost.sandbox_ids(None) == set()


def test_loopback_results_are_orphans_only_while_no_container_runtime_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(nodehost, "CNI_RESULTS", tmp_path)
    (tmp_path / f"cni-loopback-{SANDBOX[0]}-lo").write_text("{}")
    monkeypatch.setattr(nodehost, "runtime_processes", lambda: ["42: /usr/bin/containerd --config x"])
    assert nodehost.orphan_loopback_results() == []
    monkeypatch.setattr(nodehost, "runtime_processes", list)
    assert nodehost.orphan_loopback_results() == [tmp_path / f"cni-loopback-{SANDBOX[0]}-lo"]
