"""Unit tests: the reset with Kafka credentials as a one-shot Job of the router's image:
the Job the operator renders (resetjob.py), the result the Job writes and the operator
reads back (offsetplan.result_document / parse_result), and the router's copy of the
shared plan module being the operator's byte for byte."""

import json
from pathlib import Path

from tspipe import names, offsetplan, resetjob
from tspipe.components import ROUTER
from tspipe.model import Pipeline
from tspipe.render import render_deployment

REPO = Path(__file__).resolve().parents[2]


def resource(**router):
    return {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": "timestamps", "namespace": "apps", "uid": "u-1", "generation": 1},
        "spec": {
            "kafka": {
                "brokers": ["kafka:9092"],
                "topics": {"manage": False},
                "credentials": {"secretName": "kafka-user", "mechanism": "SCRAM-SHA-512", "caSecretName": "kafka-ca"},
            },
            "router": router,
        },
    }


def test_the_router_module_is_the_operators_copy():
    source = (REPO / "operator/tspipe/offsetplan.py").read_bytes()
    copy = (REPO / "router/tsrouter/offsetplan.py").read_bytes()
    assert copy == source, "router/tsrouter/offsetplan.py is stale: run `make offsetplan`"
    assert offsetplan.ANNOTATION == names.RESET_OFFSETS_ANNOTATION


def test_the_job_is_the_router_pod_with_the_reset_command():
    res = resource(podTemplate={"nodeSelector": {"disk": "ssd"}, "serviceAccountName": "router-sa"})
    p = Pipeline.from_resource(res)
    router = render_deployment(res, p, ROUTER)["spec"]["template"]["spec"]
    job = resetjob.render_job(res, p, "timestamps-reset-1234abcd", "2026-12-05T09:00:00Z")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TimestampPipeline"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # The router pod's security, scheduling and volumes (the CA mount) as they are.
    for key in (
        "securityContext",
        "volumes",
        "nodeSelector",
        "serviceAccountName",
        "automountServiceAccountToken",
        "tolerations",
    ):
        assert pod[key] == router[key], key
    (c,) = pod["containers"]
    rc = router["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["runAsNonRoot"]
    assert c["securityContext"] == rc["securityContext"] and c["image"] == rc["image"]
    # The same credential env: secretKeyRef and the $(VAR) JAAS line, never a value.
    assert c["env"] == rc["env"] and c["volumeMounts"] == rc["volumeMounts"]
    assert any("secretKeyRef" in e.get("valueFrom", {}) for e in c["env"])
    assert c["command"] == ["tsp-router", "reset-offsets"]
    assert c["args"][:3] == [
        "--reset.to=2026-12-05T09:00:00Z",
        "--reset.router=timestamps-router",
        f"--reset.wait-seconds={resetjob.WAIT_SECONDS}",
    ]
    assert c["args"][3:] == rc["args"]
    assert c["terminationMessagePolicy"] == "File" and c["terminationMessagePath"] == "/dev/termination-log"
    assert not {"readinessProbe", "livenessProbe", "startupProbe", "ports"} & set(c)
    # None of the router's labels on its pod: the router's Deployment must not count it.
    labels = spec["template"]["metadata"]["labels"]
    assert names.LABEL_COMPONENT not in labels and names.LABEL_INSTANCE not in labels


def test_one_job_name_per_request_within_the_label_limit():
    a = resetjob.job_name("timestamps", "earliest", "2026-12-07T01:00:00Z")
    assert a == resetjob.job_name("timestamps", "earliest", "2026-12-07T01:00:00Z")
    assert a != resetjob.job_name("timestamps", "earliest", "2026-12-07T01:05:00Z")
    assert a != resetjob.job_name("timestamps", "latest", "2026-12-07T01:00:00Z")
    assert len(resetjob.job_name("p" * 253, "earliest", "t")) <= 63


def test_the_job_state_and_message_read_back():
    assert resetjob.finished({"status": {"active": 1}}) == ""
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    failed = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ]
        }
    }
    assert resetjob.finished(done) == "Complete" and resetjob.finished(failed) == "Failed"
    assert resetjob.failure(failed) == "DeadlineExceeded: Job was active longer than specified deadline"
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": "{}"}}}]}}
    assert resetjob.termination_message([{"status": {}}, pod]) == "{}"
    assert resetjob.termination_message([{"status": {"containerStatuses": [{"state": {"running": {}}}]}}]) == ""


def test_a_committed_result_round_trips():
    plan = offsetplan.Plan((offsetplan.Move(0, 40, 0), offsetplan.Move(1, -1, 0)))
    text = offsetplan.result_document("g", "in", plan, True)
    assert json.loads(text) == {"group": "g", "topic": "in", "committed": True, "moves": [[0, 40, 0], [1, -1, 0]]}
    r = offsetplan.parse_result(text)
    assert r == offsetplan.Result(True, plan.moves, group="g", topic="in")


def test_a_refusal_round_trips_naming_the_partition():
    req = offsetplan.parse_reset("3:5")
    parts = [offsetplan.PartitionState(0, 0, 10, 4)]
    refusal = offsetplan.plan(req, "in", parts, 0)
    r = offsetplan.parse_result(offsetplan.result_document("g", "in", refusal, False))
    assert (r.committed, r.reason) == (False, offsetplan.UNKNOWN_PARTITION)
    assert "no partition 3" in r.message and r.moves == ()


def test_many_partitions_fit_the_termination_message_saying_how_many_are_left_out():
    plan = offsetplan.Plan(tuple(offsetplan.Move(i, 1_000_000 + i, 0) for i in range(1000)))
    text = offsetplan.result_document("g", "in", plan, True)
    assert len(text.encode()) <= offsetplan.RESULT_LIMIT
    r = offsetplan.parse_result(text)
    assert r.committed and len(r.moves) + r.left_out == 1000 and r.moves[0] == plan.moves[0]


def test_anything_else_is_no_result():
    for text in ("", "panic: exec format error", "[1, 2]", '{"moves": []}', '{"committed": true, "moves": [["x"]]}'):
        assert offsetplan.parse_result(text) is None, text
