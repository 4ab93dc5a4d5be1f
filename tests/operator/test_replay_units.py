"""Unit tests: the `tspipe.io/reset-offsets` annotation: its syntax, the plan (which
offset each partition moves from and to, what is refused and why) and the reconcile
passes that carry it out, over the in-memory fakes (controllerfakes.py)."""

from datetime import UTC, datetime

import pytest
from controllerfakes import FakeAdmin, _ready, make, run

from tspipe.replay import (
    BEFORE_LOG_START,
    EARLIEST,
    FOREIGN_MEMBERS,
    IN_FUTURE,
    LATEST,
    MALFORMED,
    NO_INPUT_TOPIC,
    OFFSETS,
    OUT_OF_RANGE,
    TIME,
    UNKNOWN_PARTITION,
    Member,
    Move,
    PartitionState,
    owned,
    parse_reset,
    plan,
    refuse_members,
)

NOW_MS = int(datetime(2026, 12, 5, 10, 0, tzinfo=UTC).timestamp() * 1000)
T9 = int(datetime(2026, 12, 5, 9, 0, tzinfo=UTC).timestamp() * 1000)


# --- syntax ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind, extra",
    [
        ("earliest", EARLIEST, None),
        (" Latest ", LATEST, None),
        ("2026-12-05T09:00:00Z", TIME, T9),
        ("2026-12-05T10:00:00+01:00", TIME, T9),
        ("2026-12-05t09:00:00.250z", TIME, T9 + 250),
        ("0:120", OFFSETS, ((0, 120),)),
        (" 1:5 , 0:120 ", OFFSETS, ((0, 120), (1, 5))),
    ],
)
def test_valid_values(value, kind, extra):
    r = parse_reset(value)
    assert (r.kind, r.problem) == (kind, "")
    if kind == TIME:
        assert r.at_ms == extra
    if kind == OFFSETS:
        assert r.offsets == extra


@pytest.mark.parametrize(
    "value, says",
    [
        ("", "empty"),
        ("yesterday", "not earliest, latest, an RFC 3339 time"),
        ("2026-12-05", "a time needs seconds and a zone"),
        ("2026-12-05T09:00:00", "a time needs seconds and a zone"),
        ("2026-02-30T09:00:00Z", "not a valid time"),
        ("0:120,x:5", "'x:5' is not partition:offset"),
        ("0:-1", "'0:-1' is not partition:offset"),
        ("0:1,0:2", "partition 0 is named twice"),
        ("0:1,", "'' is not partition:offset"),
    ],
)
def test_malformed_values_name_the_problem(value, says):
    r = parse_reset(value)
    assert r.kind == "" and says in r.problem and r.problem.endswith("nothing changed"), r.problem
    assert f"tspipe.io/reset-offsets={value!r}" in r.problem
    p = plan(r, "in", [], NOW_MS)
    assert (p.reason, p.message) == (MALFORMED, r.problem)


# --- the plan -------------------------------------------------------------------------------

PARTS = [
    PartitionState(0, start=0, end=120, committed=100, at=40, first_time=T9 - 3_600_000),
    PartitionState(1, start=0, end=5, committed=None, at=None, first_time=T9 - 3_600_000),
]


def moves(value, parts=PARTS, now=NOW_MS):
    p = plan(parse_reset(value), "in", parts, now)
    assert not p.refused, p.message
    return [(m.partition, m.before, m.after) for m in p.moves]


def test_earliest_latest_and_a_time_move_every_partition():
    assert moves("earliest") == [(0, 100, 0), (1, -1, 0)]
    assert moves("latest") == [(0, 100, 120), (1, -1, 5)]
    # No record at or after the time in partition 1: its end (nothing there to replay).
    assert moves("2026-12-05T09:00:00Z") == [(0, 100, 40), (1, -1, 5)]


def test_explicit_offsets_move_only_the_partitions_named():
    assert moves("1:5") == [(1, -1, 5)]
    assert moves("0:120,1:0") == [(0, 100, 120), (1, -1, 0)]


@pytest.mark.parametrize(
    "value, parts, reason, says",
    [
        ("2:0", PARTS, UNKNOWN_PARTITION, "topic in has no partition 2 (partitions: 0..1)"),
        ("0:121", PARTS, OUT_OF_RANGE, "partition 0 of in: offset 121 is outside 0..120"),
        ("0:3", [PartitionState(0, start=10, end=20, committed=15)], OUT_OF_RANGE, "offset 3 is outside 10..20"),
        (
            "2026-12-05T09:00:00Z",
            [
                PartitionState(0, 0, 9, None, at=0, first_time=T9 - 1),
                PartitionState(1, start=50, end=60, committed=55, at=50, first_time=T9 + 60_000),
            ],
            BEFORE_LOG_START,
            "partition 1 of in: 2026-12-05T09:00:00.000Z is before its log start (offset 50, the "
            "oldest record left, is from 2026-12-05T09:01:00.000Z",
        ),
        ("2026-12-05T11:00:00Z", PARTS, IN_FUTURE, "2026-12-05T11:00:00.000Z is in the future"),
        ("earliest", None, NO_INPUT_TOPIC, "the input topic in does not exist"),
    ],
)
def test_refusals_name_the_partition_and_change_nothing(value, parts, reason, says):
    p = plan(parse_reset(value), "in", parts, NOW_MS)
    assert (p.reason, p.moves) == (reason, ())
    assert says in p.message and p.message.endswith("nothing changed"), p.message


def test_a_time_before_the_first_record_of_a_log_never_trimmed_is_fine():
    # Log start 0: nothing was ever deleted, so everything after the time is still there.
    parts = [PartitionState(0, start=0, end=9, committed=None, at=0, first_time=T9 + 60_000)]
    assert moves("2026-12-05T09:00:00Z", parts) == [(0, -1, 0)]


def test_the_router_pods_consumers_are_owned_others_are_foreign():
    router = "timestamps-router"
    assert owned(Member("tsrouter-timestamps-router-5d4f8b7c9-x2x7q", "/10.0.0.7"), router)
    assert not owned(Member("tsrouter-laptop", "/10.0.0.9"), router)
    assert not owned(Member("tsrouter-timestamps-router2-abc-def", "/10.0.0.9"), "timestamps-router2x")
    # A router image of its own (another client id): known by its pod's IP while the pod exists.
    assert owned(Member("kafka-python-2.0.2", "/10.0.0.7"), router, {"10.0.0.7"})
    assert not owned(Member("kafka-python-2.0.2", "/10.0.0.9"), router, {"10.0.0.7"})
    p = refuse_members(parse_reset("earliest"), "g", "in", [Member("console", "/10.0.0.9", (0, 2))])
    assert p.reason == FOREIGN_MEMBERS
    assert "client console on /10.0.0.9 holding partition(s) 0, 2 of in" in p.message


def test_move_text_and_status():
    from tspipe.replay import moves_status, moves_text

    ms = [Move(0, 100, 0), Move(1, -1, 0)]
    assert moves_text(ms) == "partition 0 100 -> 0, partition 1 none -> 0"
    assert moves_status(ms) == [{"partition": 0, "from": 100, "to": 0}, {"partition": 1, "from": -1, "to": 0}]


# --- the reconcile passes -------------------------------------------------------------------


class ResetAdmin(FakeAdmin):
    """The broker's side of a reset: partitions, members, commits."""

    def __init__(self):
        super().__init__()
        self.parts = [PartitionState(0, 0, 120, 100), PartitionState(1, 0, 5, 5)]
        self.members = []
        self.open_txns = []
        self.committed = []

    def reset_state(self, brokers, group, topic, at_ms, txn_topics=()):
        self._check("reset_state")
        return list(self.parts), list(self.members), list(self.open_txns)

    def commit_offsets(self, brokers, group, topic, offsets):
        self._check("commit_offsets")
        self.committed.append((group, topic, dict(offsets)))
        return {}


ROUTER_POD = {
    "metadata": {
        "name": "timestamps-router-5d4f8b7c9-x2x7q",
        "labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": "timestamps"},
    }
}


def stopped(kube):
    """The router's pods gone (what the ReplicaSet controller and the kubelet do)."""
    _ready(kube)
    kube.pods = []


def settled():
    kube, ctl = make()
    ctl.admin = ctl.clients.admin = ResetAdmin()
    run(ctl.reconcile("ns", "timestamps"))
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    pipe = kube.pipelines["timestamps"]
    assert pipe["status"]["phase"] == "Running"
    kube.pods = [ROUTER_POD]
    kube.writes.clear()
    kube.events.clear()
    return kube, ctl, pipe


def annotate(pipe, value):
    pipe["metadata"].setdefault("annotations", {})["tspipe.io/reset-offsets"] = value


def router_replicas(kube):
    return kube.deps["timestamps-router"]["spec"]["replicas"]


def conds(pipe):
    return {c["type"]: c for c in pipe["status"]["conditions"]}


def test_a_reset_stops_the_router_sets_the_offsets_and_starts_it_again():
    kube, ctl, pipe = settled()
    admin = ctl.admin
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    # 1. The router is held at zero; nothing is written to Kafka while it has pods.
    assert router_replicas(kube) == 0 and admin.committed == []
    assert pipe["metadata"]["annotations"]["tspipe.io/reset-offsets"] == "earliest"
    st = pipe["status"]
    assert (st["phase"], conds(pipe)["OffsetReset"]["status"], st["offsetReset"]["state"]) == (
        "Progressing",
        "True",
        "StoppingRouter",
    )
    assert "stopping the router" in st["offsetReset"]["message"]
    assert [e[:2] for e in kube.events if e[1] == "ResettingOffsets"] == [("Normal", "ResettingOffsets")]
    run(ctl.reconcile("ns", "timestamps"))
    assert admin.committed == [], "the Deployment still has its pod"
    # 2. Its pod gone (what the ReplicaSet controller does): the offsets, then the router back.
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert admin.committed == [("timeStampStream", "timeDest", {0: 0, 1: 0})]
    assert router_replicas(kube) == 1
    assert "tspipe.io/reset-offsets" not in pipe["metadata"]["annotations"]
    entry = pipe["status"]["history"][-1]["offsetReset"]
    assert entry == {
        "request": "earliest",
        "group": "timeStampStream",
        "topic": "timeDest",
        "partitions": [{"partition": 0, "from": 100, "to": 0}, {"partition": 1, "from": 5, "to": 0}],
    }
    cond = conds(pipe)["OffsetReset"]
    assert (cond["status"], cond["reason"]) == ("False", "Completed")
    (event,) = [e for e in kube.events if e[1] == "OffsetsReset"]
    assert event[0] == "Normal" and "partition 0 100 -> 0, partition 1 5 -> 0" in event[2]
    # Consumed: nothing more happens.
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert len(admin.committed) == 1 and pipe["status"]["phase"] == "Running"


def test_a_foreign_member_refuses_the_reset_before_anything_changes():
    kube, ctl, pipe = settled()
    ctl.admin.members = [Member("console-consumer", "/10.1.2.3", (1,))]
    annotate(pipe, "latest")
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and router_replicas(kube) == 1
    assert not [w for w in kube.writes if w[0] in ("update", "create", "delete")]
    assert "tspipe.io/reset-offsets" not in pipe["metadata"]["annotations"]
    (warning,) = [e for e in kube.events if e[0] == "Warning"]
    assert warning[1] == "OffsetResetRejected" and "console-consumer" in warning[2] and "partition(s) 1" in warning[2]
    cond = conds(pipe)["OffsetReset"]
    assert (cond["status"], cond["reason"]) == ("False", FOREIGN_MEMBERS)
    assert pipe["status"]["offsetReset"]["state"] == "Rejected"
    assert "offsetReset" not in pipe["status"]["history"][-1]


def test_a_foreign_member_joining_while_the_router_stops_refuses_and_the_router_comes_back():
    kube, ctl, pipe = settled()
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    assert router_replicas(kube) == 0
    ctl.admin.members = [Member("someone", "/10.1.2.3")]
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and router_replicas(kube) == 1
    assert conds(pipe)["OffsetReset"]["reason"] == FOREIGN_MEMBERS


def test_a_member_on_a_router_pod_ip_is_the_routers_own():
    kube, ctl, pipe = settled()
    kube.pods = [{**ROUTER_POD, "status": {"podIP": "10.0.0.7"}}]
    ctl.admin.members = [Member("kafka-python-2.0.2", "/10.0.0.7", (0,))]
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    assert router_replicas(kube) == 0 and pipe["status"]["offsetReset"]["state"] == "StoppingRouter"


def test_the_log_sinks_in_the_same_group_are_held_too_and_start_again():
    """SCDF gives every consumer of a stream the stream's name as its group, so the log
    sinks are members of the router's group: the broker sets the group's offsets only
    once they are gone too. Their members (known by their pods' IPs) are the pipeline's
    own; they are held at zero with the router and come back with it."""
    kube, ctl, pipe = settled()
    sinks = [
        {"metadata": {**ROUTER_POD["metadata"], "name": f"timestamps-{s}logger-7c9d8-{s[0]}x"}, "status": {"podIP": ip}}
        for s, ip in (("even", "10.0.0.8"), ("odd", "10.0.0.9"))
    ]
    kube.pods = [ROUTER_POD, *sinks]
    ctl.admin.members = [
        Member("consumer-timeStampStream-2", "/10.0.0.8", ()),
        Member("consumer-timeStampStream-2", "/10.0.0.9", ()),
    ]
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    replicas = {n: d["spec"]["replicas"] for n, d in kube.deps.items()}
    assert replicas == {
        "timestamps-time": 1,
        "timestamps-router": 0,
        "timestamps-evenlogger": 0,
        "timestamps-oddlogger": 0,
    }, replicas
    st = pipe["status"]["offsetReset"]
    assert st["state"] == "StoppingRouter" and "log sinks" in st["message"], st
    assert ctl.admin.committed == []
    # The router is gone, a sink's pod still stops (its member not gone yet): wait.
    stopped(kube)
    kube.pods = [sinks[0]]
    ctl.admin.members = ctl.admin.members[:1]
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and pipe["status"]["offsetReset"]["state"] == "StoppingRouter"
    kube.pods, ctl.admin.members = [], []
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [("timeStampStream", "timeDest", {0: 0, 1: 0})]
    assert pipe["status"]["offsetReset"]["state"] == "Completed"
    replicas = {n: d["spec"]["replicas"] for n, d in kube.deps.items()}
    assert replicas == {
        "timestamps-time": 1,
        "timestamps-router": 1,
        "timestamps-evenlogger": 1,
        "timestamps-oddlogger": 1,
    }, replicas


def test_the_router_own_consumer_still_in_the_group_is_waited_for():
    kube, ctl, pipe = settled()
    annotate(pipe, "latest")
    run(ctl.reconcile("ns", "timestamps"))
    stopped(kube)
    # A killed pod's consumer stays a member until its session times out: ours, so wait.
    ctl.admin.members = [Member("tsrouter-timestamps-router-5d4f8b7c9-x2x7q", "/10.0.0.7")]
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and router_replicas(kube) == 0
    st = pipe["status"]["offsetReset"]
    assert st["state"] == "StoppingRouter" and "waiting for its consumers to leave the group" in st["message"]
    ctl.admin.members = []
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [("timeStampStream", "timeDest", {0: 120, 1: 5})]


def test_removing_the_annotation_midway_cancels_and_the_router_comes_back():
    kube, ctl, pipe = settled()
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    del pipe["metadata"]["annotations"]["tspipe.io/reset-offsets"]
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and router_replicas(kube) == 1
    assert pipe["status"]["offsetReset"]["state"] == "Cancelled"
    assert [e[1] for e in kube.events if e[1].startswith("OffsetReset")] == ["OffsetResetCancelled"]


def test_malformed_is_refused_without_reading_the_broker():
    kube, ctl, pipe = settled()
    annotate(pipe, "0:x")
    run(ctl.reconcile("ns", "timestamps"))
    assert "reset_state" not in ctl.admin.calls and router_replicas(kube) == 1
    assert conds(pipe)["OffsetReset"]["reason"] == MALFORMED


def with_credentials(pipe):
    pipe["spec"]["kafka"]["credentials"] = {"secretName": "kafka-user", "mechanism": "SCRAM-SHA-512"}
    pipe["spec"]["kafka"]["topics"]["manage"] = False
    pipe["metadata"]["generation"] = 2


def job_done(kube, name, message, state="Complete"):
    """What the Job controller and the kubelet leave: the Job's condition, its pod's
    terminated container with the termination message."""
    kube.jobs[name]["status"] = {
        "conditions": [
            {
                "type": state,
                "status": "True",
                "reason": "BackoffLimitExceeded" if state == "Failed" else "",
                "message": "Job has reached the specified backoff limit" if state == "Failed" else "",
            }
        ]
    }
    kube.pods = [
        {
            "metadata": {"name": f"{name}-abcde", "labels": {"batch.kubernetes.io/job-name": name}},
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0 if state == "Complete" else 3, "message": message}}}
                ]
            },
        }
    ]


def test_with_credentials_a_job_of_the_router_image_resets_and_its_result_is_recorded():
    kube, ctl, pipe = settled()
    with_credentials(pipe)
    run(ctl.reconcile("ns", "timestamps"))
    stopped(kube)
    kube.pods = [ROUTER_POD]
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    # The router is held at zero; no Job while its pods are there; the broker is never read.
    assert router_replicas(kube) == 0 and kube.jobs == {}
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    (name,) = kube.jobs
    job = kube.jobs[name]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["tsp-router", "reset-offsets"] and "--reset.to=earliest" in c["args"]
    assert pipe["status"]["offsetReset"]["job"] == name and router_replicas(kube) == 0
    assert "reset_state" not in ctl.admin.calls and "commit_offsets" not in ctl.admin.calls
    run(ctl.reconcile("ns", "timestamps"))  # still running: nothing changes
    assert router_replicas(kube) == 0 and pipe["status"]["offsetReset"]["state"] == "StoppingRouter"
    job_done(kube, name, '{"group":"timeStampStream","topic":"timeDest","committed":true,"moves":[[0,40,0],[1,-1,0]]}')
    run(ctl.reconcile("ns", "timestamps"))
    st = pipe["status"]
    assert router_replicas(kube) == 1 and "tspipe.io/reset-offsets" not in pipe["metadata"]["annotations"]
    assert st["offsetReset"]["state"] == "Completed" and st["offsetReset"]["job"] == name
    assert st["offsetReset"]["partitions"] == [
        {"partition": 0, "from": 40, "to": 0},
        {"partition": 1, "from": -1, "to": 0},
    ]
    entry = st["history"][-1]
    assert entry["offsetReset"] == {
        "request": "earliest",
        "group": "timeStampStream",
        "topic": "timeDest",
        "partitions": st["offsetReset"]["partitions"],
    }
    assert "OffsetsReset" in [e[1] for e in kube.events]


def test_with_credentials_a_refused_or_failed_job_is_a_refusal_with_its_message():
    kube, ctl, pipe = settled()
    with_credentials(pipe)
    annotate(pipe, "0:999")
    run(ctl.reconcile("ns", "timestamps"))  # the router held at zero
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    (name,) = kube.jobs
    said = "tspipe.io/reset-offsets='0:999' refused: partition 0 of timeDest: offset 999 is outside 0..40"
    job_done(
        kube,
        name,
        f'{{"group":"g","topic":"timeDest","committed":false,"reason":"OffsetOutOfRange","message":"{said}"}}',
        "Failed",
    )
    run(ctl.reconcile("ns", "timestamps"))
    cond = conds(pipe)["OffsetReset"]
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "OffsetOutOfRange", said)
    assert router_replicas(kube) == 1 and "tspipe.io/reset-offsets" not in pipe["metadata"]["annotations"]
    assert "OffsetResetRejected" in [e[1] for e in kube.events]
    # A Job that died without a result (an image without the subcommand): its condition says why.
    annotate(pipe, "latest")
    run(ctl.reconcile("ns", "timestamps"))
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    (name2,) = set(kube.jobs) - {name}
    job_done(kube, name2, "exec: tsp-router: not found", "Failed")
    run(ctl.reconcile("ns", "timestamps"))
    cond = conds(pipe)["OffsetReset"]
    assert cond["reason"] == "ResetJobFailed" and f"Job {name2} failed (BackoffLimitExceeded" in cond["message"]
    assert "tsp-router: not found" in cond["message"]


def test_the_router_that_does_not_stop_in_time_is_refused_and_restarted():
    kube, ctl, pipe = settled()
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    ctl.admin.open_txns = ["evenDest-0"]
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and router_replicas(kube) == 0
    assert "waiting for its open transactions to end" in pipe["status"]["offsetReset"]["message"]
    ctl.clients.now = lambda: datetime(2026, 1, 1, 0, 6, tzinfo=UTC)  # 6 minutes later
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [] and router_replicas(kube) == 1
    cond = conds(pipe)["OffsetReset"]
    assert cond["reason"] == "RouterNotStopped" and "did not stop within 300s" in cond["message"]
    assert "a transaction is open on evenDest-0" in cond["message"]


def test_a_reset_during_a_rollout_verification_is_refused():
    kube, ctl, pipe = settled()
    pipe["status"]["rollout"] = {"generation": 1, "verdict": "Verifying", "reason": "WindowOpen"}
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    assert "reset_state" not in ctl.admin.calls and router_replicas(kube) == 1
    cond = conds(pipe)["OffsetReset"]
    assert cond["reason"] == "RolloutVerifying" and "once status.rollout has its verdict" in cond["message"]


def test_the_autoscaler_stands_aside_during_a_reset():
    kube, ctl, pipe = settled()
    pipe["spec"]["router"]["autoscaling"] = {"targetLagPerReplica": 10, "maxReplicas": 3}
    pipe["metadata"]["generation"] = 2
    run(ctl.reconcile("ns", "timestamps"))
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    cond = conds(pipe)["Autoscaling"]
    assert (cond["status"], cond["reason"]) == ("False", "OffsetReset")
    assert "tspipe.io/reset-offsets is under way" in cond["message"]
    assert router_replicas(kube) == 0


def test_a_waiting_pass_reads_the_held_deployments_with_one_list():
    """While the reset waits (a recheck every second), each pass reads the held
    Deployments with one list of the pipeline's Deployments, not one GET each."""
    kube, ctl, pipe = settled()
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))  # held: the Deployments asked for zero
    kube.deps["timestamps-evenlogger"]["status"] = {"replicas": 1}  # not there yet
    reads = []
    for fn in ("get_deployment", "list_deployments"):
        real = getattr(kube, fn)
        setattr(kube, fn, lambda *a, _fn=fn, _real=real: reads.append(_fn) or _real(*a))
    run(ctl.reconcile("ns", "timestamps"))
    st = pipe["status"]["offsetReset"]
    assert st["state"] == "StoppingRouter" and "waiting for its Deployment to scale to zero" in st["message"], st
    # One list for the reset's check, one for the children phase (the fakes have no watch cache).
    assert reads == ["list_deployments", "list_deployments"], reads
    stopped(kube)
    reads.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.committed == [("timeStampStream", "timeDest", {0: 0, 1: 0})]
    assert reads.count("get_deployment") == 0, reads


def job_started(value):
    """A pipeline with credentials whose reset Job for `value` runs: (kube, ctl, pipe, job name)."""
    kube, ctl, pipe = settled()
    with_credentials(pipe)
    run(ctl.reconcile("ns", "timestamps"))
    annotate(pipe, value)
    run(ctl.reconcile("ns", "timestamps"))  # the apps held
    stopped(kube)
    run(ctl.reconcile("ns", "timestamps"))
    (name,) = kube.jobs
    return kube, ctl, pipe, name


EARLIEST_DONE = '{"group":"timeStampStream","topic":"timeDest","committed":true,"moves":[[0,40,0]]}'


def test_a_new_value_while_the_reset_job_runs_waits_for_its_result_then_runs():
    """Never two reset Jobs at once, and nothing lost: the running Job's result is
    recorded, then the new value runs as a request of its own, the apps held throughout."""
    kube, ctl, pipe, first = job_started("earliest")
    annotate(pipe, "latest")
    for _ in range(2):
        run(ctl.reconcile("ns", "timestamps"))
        assert list(kube.jobs) == [first] and router_replicas(kube) == 0
        st = pipe["status"]["offsetReset"]
        assert (st["state"], st["request"], st["job"], st["pending"]) == ("StoppingRouter", "earliest", first, "latest")
        assert f"tspipe.io/reset-offsets='latest' waits: Job {first}" in st["message"], st["message"]
        assert st["message"].count("waits") == 1, st["message"]
        assert "waits" in conds(pipe)["OffsetReset"]["message"]
    waiting = [e for e in kube.events if e[1] == "OffsetResetWaiting"]
    assert len(waiting) == 1 and waiting[0][0] == "Normal", waiting  # once per value given
    assert pipe["metadata"]["annotations"]["tspipe.io/reset-offsets"] == "latest"

    # The first Job's result: recorded as its own; the new value stays, the apps stay held.
    job_done(kube, first, EARLIEST_DONE)
    run(ctl.reconcile("ns", "timestamps"))
    st = pipe["status"]
    assert (st["offsetReset"]["state"], st["offsetReset"]["request"]) == ("Completed", "earliest")
    assert "pending" not in st["offsetReset"]
    assert st["history"][-1]["offsetReset"]["request"] == "earliest"
    assert any(e[1] == "OffsetsReset" and first in e[2] for e in kube.events)
    assert pipe["metadata"]["annotations"]["tspipe.io/reset-offsets"] == "latest"
    assert router_replicas(kube) == 0 and kube.deps["timestamps-evenlogger"]["spec"]["replicas"] == 0

    # Then the new value: its own Job, its own result, and the apps back.
    kube.pods = []
    run(ctl.reconcile("ns", "timestamps"))
    (second,) = set(kube.jobs) - {first}
    c = kube.jobs[second]["spec"]["template"]["spec"]["containers"][0]
    assert "--reset.to=latest" in c["args"] and router_replicas(kube) == 0
    assert pipe["status"]["offsetReset"]["job"] == second
    job_done(kube, second, '{"group":"timeStampStream","topic":"timeDest","committed":true,"moves":[[0,0,40]]}')
    run(ctl.reconcile("ns", "timestamps"))
    st = pipe["status"]
    assert (st["offsetReset"]["state"], st["offsetReset"]["request"]) == ("Completed", "latest")
    assert [h["offsetReset"]["request"] for h in st["history"] if "offsetReset" in h] == ["earliest", "latest"]
    assert "tspipe.io/reset-offsets" not in pipe["metadata"]["annotations"]
    assert router_replicas(kube) == 1


def test_a_value_given_back_while_the_job_runs_is_that_jobs_request_again():
    kube, ctl, pipe, first = job_started("earliest")
    annotate(pipe, "latest")
    run(ctl.reconcile("ns", "timestamps"))
    assert pipe["status"]["offsetReset"]["pending"] == "latest"
    annotate(pipe, "earliest")
    run(ctl.reconcile("ns", "timestamps"))
    st = pipe["status"]["offsetReset"]
    assert "pending" not in st and "waits" not in st["message"], st
    job_done(kube, first, EARLIEST_DONE)
    run(ctl.reconcile("ns", "timestamps"))
    assert list(kube.jobs) == [first] and router_replicas(kube) == 1
    assert "tspipe.io/reset-offsets" not in pipe["metadata"]["annotations"]
    assert pipe["status"]["offsetReset"]["state"] == "Completed"


def test_the_running_jobs_result_is_recorded_when_the_annotation_or_the_credentials_go():
    """Once its Job exists a reset is no longer cancelled: it may have set the offsets.
    Nor does a spec without credentials start an in-process reset beside it."""
    kube, ctl, pipe, first = job_started("earliest")
    del pipe["spec"]["kafka"]["credentials"]
    pipe["metadata"]["generation"] = 3
    run(ctl.reconcile("ns", "timestamps"))
    assert router_replicas(kube) == 0 and pipe["status"]["offsetReset"]["state"] == "StoppingRouter"
    assert "reset_state" not in ctl.admin.calls and "commit_offsets" not in ctl.admin.calls
    del pipe["metadata"]["annotations"]["tspipe.io/reset-offsets"]
    run(ctl.reconcile("ns", "timestamps"))
    assert router_replicas(kube) == 0 and pipe["status"]["offsetReset"]["state"] == "StoppingRouter"
    job_done(kube, first, EARLIEST_DONE)
    run(ctl.reconcile("ns", "timestamps"))
    st = pipe["status"]
    assert st["offsetReset"]["state"] == "Completed" and st["history"][-1]["offsetReset"]["request"] == "earliest"
    assert "OffsetResetCancelled" not in [e[1] for e in kube.events]
    assert router_replicas(kube) == 1
