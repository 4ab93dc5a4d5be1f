"""Why an app's pods are not Ready (pure): the kubelet's waiting reasons at once, a
readiness probe that has not passed once it had its full chance, nothing during an
ordinary start; the pipeline's status names the app and the reason."""

from datetime import UTC, datetime, timedelta

import pytest
from samples import sample_pipeline

from tspipe import podhealth, status_policy
from tspipe.components import ROUTER
from tspipe.model import Pipeline
from tspipe.render import render_deployments
from tspipe.status import compute_status, pods_recheck_after

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
ROUTER_PROBE = ROUTER.readiness  # GET /actuator/health/readiness, 5 s delay, 10 s period, 3 failures: 35 s


def stamp(seconds_ago):
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, container_status, component="router", ready=False, scheduled=True, created=600):
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": stamp(created),
            "labels": {"app.kubernetes.io/instance": "timestamps", "app.kubernetes.io/component": component},
        },
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True" if scheduled else "False"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [{"name": component, "ready": ready, **container_status}],
        },
    }


def waiting(reason, message=""):
    return {"state": {"waiting": {"reason": reason, "message": message}}}


def running(seconds_ago):
    return {"state": {"running": {"startedAt": stamp(seconds_ago)}}}


def why(*pods):
    return podhealth.not_ready(pods, "timestamps", "router", ROUTER_PROBE, 8080, NOW)


@pytest.mark.parametrize(
    "state, reason, text",
    [
        (
            waiting("ImagePullBackOff", 'Back-off pulling image "example.com/router:9"'),
            "ImagePullBackOff",
            "Back-off pulling image",
        ),
        (waiting("ErrImagePull", "failed to resolve reference"), "ErrImagePull", "failed to resolve reference"),
        (
            {
                **waiting("CrashLoopBackOff", "back-off 40s restarting failed container"),
                "lastState": {"terminated": {"reason": "Error", "exitCode": 2}},
            },
            "CrashLoopBackOff",
            "last exit: Error (code 2); back-off 40s",
        ),
        (
            waiting("CreateContainerConfigError", 'secret "kafka" not found'),
            "CreateContainerConfigError",
            'secret "kafka" not found',
        ),
        ({"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}, "OOMKilled", "exit code 137"),
    ],
)
def test_the_kubelets_reason_is_reported_at_once(state, reason, text):
    got = why(pod("timestamps-router-b", state), pod("timestamps-router-a", state))
    assert got["pods"] == 2 and got["reason"] == reason and text in got["message"]


def test_a_running_unready_pod_is_reported_only_after_its_probe_had_its_full_chance():
    assert podhealth.grace_seconds(ROUTER_PROBE) == 35
    assert why(pod("p", running(20))) is None, "an ordinary start"
    assert pods_recheck_after(Pipeline.from_resource(resource()), "timestamps", [pod("p", running(20))], NOW) == 16
    got = why(pod("p", running(50)))
    assert got["reason"] == podhealth.READINESS_PROBE_FAILING
    assert "readiness probe (GET /actuator/health/readiness on port 8080) has not passed" in got["message"]
    assert "kubectl describe pod p" in got["message"]


def test_during_a_rollout_the_newest_pods_reason_is_reported():
    # The old pod's probe fails (it sorts first by name); the new one's image cannot be pulled.
    old = pod("timestamps-router-a", running(500), created=600)
    new = pod("timestamps-router-b", waiting("ImagePullBackOff", 'Back-off pulling image "x:2"'), created=30)
    got = why(old, new)
    assert got["pods"] == 2 and got["reason"] == "ImagePullBackOff"


@pytest.mark.parametrize(
    "p",
    [
        pod("p", waiting("ContainerCreating")),
        pod("p", waiting("ImagePullBackOff"), scheduled=False),  # the scheduler's problem: `unschedulable`
        pod("p", running(500), ready=True),
        pod("p", waiting("ImagePullBackOff"), component="time"),  # another app's pod
    ],
)
def test_nothing_to_report(p):
    assert why(p) is None


def resource(**spec):
    return sample_pipeline(stored=True, **spec)


def test_the_status_names_the_app_and_the_reason_and_the_change_is_written():
    obj = resource(router={"probes": {"readiness": {"httpGet": {"path": "/nope"}}}})
    deps = render_deployments(obj)
    before = compute_status(obj, deps, NOW, pods=[pod("timestamps-router-x", running(20))])
    assert before["phase"] == "Progressing" and "notReady" not in before["components"]["router"]
    after = compute_status(obj, deps, NOW, pods=[pod("timestamps-router-x", running(60))])
    nr = after["components"]["router"]["notReady"]
    assert nr["reason"] == "ReadinessProbeFailing" and "GET /nope on port 8080" in nr["message"], "the spec's probe"
    ready = {c["type"]: c for c in after["conditions"]}["Ready"]
    assert "router: 1 pod(s) not ready (ReadinessProbeFailing)" in ready["message"]
    assert status_policy.significant(after) != status_policy.significant(before), "written at once"
