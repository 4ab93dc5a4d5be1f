"""What a pass's cheaper parse and render (issue 26) must keep: the same Pipeline from a
served object, and the same spec hashes the released operator wrote."""

import copy

from tspipe import render
from tspipe.model import Pipeline

RESOURCE = {
    "apiVersion": "tspipe.io/v1alpha1",
    "kind": "TimestampPipeline",
    "metadata": {"name": "timestamps", "namespace": "ns", "uid": "u1", "generation": 3},
    "spec": {"kafka": {"brokers": ["kafka:9092"]}},
}


def test_a_served_object_parses_as_its_spec_and_identity_alone():
    served = copy.deepcopy(RESOURCE)
    served["metadata"].update(
        resourceVersion="42",
        managedFields=[{"manager": "kubectl", "fieldsV1": {}}],
        annotations={"x": "y"},
        labels={"a": "b"},
    )
    served["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    before = copy.deepcopy(served)
    assert Pipeline.from_resource(served) == Pipeline.from_resource(RESOURCE)
    assert served == before  # the caller's object is not touched


def test_the_parse_does_not_share_the_callers_spec():
    obj = copy.deepcopy(RESOURCE)
    obj["spec"]["router"] = {"env": [{"name": "A", "value": "1"}]}
    p = Pipeline.from_resource(obj)
    obj["spec"]["router"]["env"][0]["value"] = "2"
    assert p == Pipeline.from_resource(
        {**obj, "spec": {**obj["spec"], "router": {"env": [{"name": "A", "value": "1"}]}}}
    )


def test_spec_hashes_are_the_released_operators():
    # A changed hash rewrites every Deployment on upgrade (and rolls its pods when the pod
    # template changed): name it in CHANGELOG.md, then update these.
    hashes = {
        d["metadata"]["name"]: d["metadata"]["annotations"][render.HASH_ANNOTATION]
        for d in render.render_deployments(RESOURCE)
    }
    assert hashes == EXPECTED_HASHES


# Written by the operator at fa30532 plus the node-loss tolerations (CHANGELOG.md: every
# app rolls once for them); the cheaper hash of issue 26 gives the same values.
EXPECTED_HASHES = {
    "timestamps-time": "6ff94034d0245248",
    "timestamps-router": "769821f41b9799f0",
    "timestamps-evenlogger": "313f74d9682ba9b7",
    "timestamps-oddlogger": "9d83e242b2566af0",
}
