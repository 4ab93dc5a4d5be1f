"""bench/reaction.py: which pipelines a reaction run changes and how the audit log times them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import reaction

OP = ("tspipe-operator/",)


def ev(verb, resource, name, user_agent, received, completed, namespace="bench", subresource=None):
    ref = {"resource": resource, "name": name, "namespace": namespace}
    if subresource:
        ref["subresource"] = subresource
    return {
        "verb": verb,
        "objectRef": ref,
        "userAgent": user_agent,
        "requestReceivedTimestamp": f"2026-12-06T10:00:{received}Z",
        "stageTimestamp": f"2026-12-06T10:00:{completed}Z",
    }


def test_targets_spread_over_all_pipelines_and_take_all_when_asked_for_more():
    names = [f"p{i:04d}" for i in range(2000)]
    chosen = reaction.targets(names, 50)
    assert len(chosen) == len(set(chosen)) == 50
    assert chosen[0] == "p0000" and chosen[-1] == "p1960"
    assert reaction.targets(names[:3], 50) == names[:3]


def test_a_change_is_timed_from_the_patch_completed_to_the_operator_s_deployment_write():
    changed = {"p1": "p1-router", "p2": "p2-router"}
    events = [
        # the operator's own status patch of p1 is not the user's change
        ev("patch", "timestamppipelines", "p1", "tspipe-operator/0.1", "00.000000", "00.050000"),
        ev("patch", "timestamppipelines", "p1", "OpenAPI-Generator/35", "01.000000", "01.100000"),
        # a write of the Deployment by someone else does not count
        ev("update", "deployments", "p1-router", "kube-controller-manager/v1", "01.200000", "01.250000"),
        ev("update", "deployments", "p1-router", "tspipe-operator/0.1", "01.400000", "01.450000"),
        ev("update", "deployments", "p1-router", "tspipe-operator/0.1", "03.000000", "03.050000"),
        ev("patch", "timestamppipelines", "p2", "OpenAPI-Generator/35", "02.000000", "02.020000"),
        ev("patch", "timestamppipelines", "p2", "OpenAPI-Generator/35", "02.500000", "02.520000", subresource="status"),
    ]
    found = reaction.latencies(events, changed, "bench", OP)
    assert found["p1"] == pytest.approx(0.3)  # 01.4 received - 01.1 completed; the later write ignored
    assert found["p2"] is None  # no Deployment write for p2 (yet)
    assert reaction.summary(found) == {"changes": 2, "reached": 1, "p50_s": 0.3, "p99_s": 0.3, "max_s": 0.3}


def test_other_namespaces_are_not_counted():
    events = [
        ev("patch", "timestamppipelines", "p1", "kubectl/v1", "01.000000", "01.100000", namespace="x"),
        ev("update", "deployments", "p1-router", "tspipe-operator/0.1", "01.400000", "01.450000"),
    ]
    assert reaction.latencies(events, {"p1": "p1-router"}, "bench", OP) == {"p1": None}


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert reaction.percentile(values, 50) == 50.0
    assert reaction.percentile(values, 99) == 99.0
    assert reaction.percentile([2.0], 99) == 2.0
