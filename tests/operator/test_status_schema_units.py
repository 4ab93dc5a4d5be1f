"""Every key the operator writes into a status is in the CRD's status schema (pure).

The API server prunes what a structural schema does not declare, silently: a key the
code writes but the schema lacks reads back as missing on the next pass (status.rollout.
readyAt did, so a release that never committed waited forever instead of failing). Here
statuses from each feature are pruned as the API server would and must come back whole."""

from datetime import UTC, datetime, timedelta

import pytest
from samples import STORED, sample_pipeline

from tspipe import crd, rollback
from tspipe.model import Pipeline
from tspipe.pause import pause_state
from tspipe.render import render_deployments
from tspipe.status import compute_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def prune(value, schema):
    """What the API server keeps of `value` under a structural `schema`."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        if "additionalProperties" in schema:
            return {k: prune(v, schema["additionalProperties"]) for k, v in value.items()}
        props = schema.get("properties") or {}
        return {k: prune(v, props[k]) for k, v in value.items() if k in props}
    if isinstance(value, list):
        return [prune(v, schema.get("items") or {}) for v in value]
    return value


STATUS_SCHEMA = crd.status_schema()


def resource(**spec):
    return sample_pipeline(metadata={**STORED, "generation": 2}, **spec)


def offsets(committed, even, odd):
    return {"committed": committed, "even": even, "odd": odd, "deadLetter": [0], "input": [9], "inputStart": [0]}


def rollouts():
    """status.rollout in each state an attempt goes through."""
    spec = {"v": 1}
    r, _ = rollback.advance(
        None,
        generation=2,
        templates="t",
        spec=spec,
        phase="Running",
        phase_reason="AllComponentsReady",
        now=T0,
        verify_seconds=30,
    )
    waiting = rollback.opened(r, offsets([-1], [0], [0]), T0, 30, spec=spec)
    assert waiting["reason"] == rollback.WAITING_FOR_COMMITS and "readyAt" in waiting and "outputsAtReady" in waiting
    window = rollback.opened(r, offsets([0], [0], [0]), T0, 30)
    judged = rollback.judged(
        window,
        rollback.judge(window["window"]["start"], offsets([9], [5], [4]), {}, {"even": "E", "odd": "O"}, 0.05),
        T0,
        spec,
    )
    counters = rollback.opened(r, None, T0, 30, counters={"pod-a": dict.fromkeys(rollback.COUNTER_KEYS, 1)})
    return {"waiting": waiting, "window": window, "judged": judged, "counters": counters}


@pytest.mark.parametrize("state", ["waiting", "window", "judged", "counters"])
def test_a_rollouts_status_survives_the_api_servers_pruning(state):
    obj = resource(rollout={"autoRollback": True})
    status = compute_status(obj, render_deployments(obj), T0, rollout=rollouts()[state])
    assert prune(status, STATUS_SCHEMA) == status


def test_every_other_features_status_survives_the_api_servers_pruning():
    obj = resource(router={"replicas": 2, "autoscaling": {"maxReplicas": 4}}, paused=True)
    p = Pipeline.from_resource(obj)
    deps = render_deployments(obj)
    stopped = {"spec": {"replicas": 0}, "status": {"replicas": 0}}  # the time source, stopped
    pause = pause_state(
        p,
        {"time": stopped, "router": None, "evenLogger": None, "oddLogger": None},
        T0,
        source_stopped_at="2026-01-01T00:00:00Z",
        drain=("TimedOut", 12),
    )
    autoscaling = {
        "mode": "Enforce",
        "active": True,
        "reason": "Enforcing",
        "message": "m",
        "source": "kafka",
        "lag": 5,
        "partitions": 2,
        "recommendedReplicas": 2,
        "desiredReplicas": 2,
        "limitedByPartitions": False,
        "partitionsGrownTo": 4,
        "lastScale": {"time": "2026-01-01T00:00:00Z", "from": 1, "to": 2, "why": "lag"},
    }
    topics = {
        "ready": True,
        "reason": "TopicsReady",
        "message": "ok",
        "topics": [
            {
                "role": "input",
                "name": "timeDest",
                "state": "Reconfigured",
                "message": "m",
                "partitions": 2,
                "replicationFactor": 1,
            }
        ],
    }
    stuck = {
        "metadata": {
            "name": "timestamps-router-x",
            "labels": {"app.kubernetes.io/instance": "timestamps", "app.kubernetes.io/component": "router"},
        },
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"ready": False, "state": {"waiting": {"reason": "ImagePullBackOff"}}}],
        },
    }
    status = compute_status(
        obj,
        deps,
        T0 + timedelta(seconds=1),
        pause=pause,
        autoscaling=autoscaling,
        topics=topics,
        pods=[stuck],
        restarted=["router"],
    )
    assert status["components"]["router"]["notReady"]["reason"] == "ImagePullBackOff"
    assert status["autoscaling"]["lastScale"]["to"] == 2 and status["pause"]["recordsLeft"] == 12
    assert prune(status, STATUS_SCHEMA) == status


def test_the_status_keys_the_code_writes_by_name_are_the_schemas_top_level_keys():
    """status.py writes the top-level keys by status_fields.Key's names; the schema is
    generated from the declarations that use the same names: neither can drift alone."""
    from tspipe.status_fields import Key

    names = {v for k, v in vars(Key).items() if k.isupper()}
    assert names == set(STATUS_SCHEMA["properties"])
