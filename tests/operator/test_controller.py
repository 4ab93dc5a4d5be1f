"""Unit tests of the controller's decisions with an in-memory stand-in for the API
(the real API server is exercised in test_operator_kube.py)."""

import asyncio
import copy

from controllerfakes import _ready, make, run

from tspipe.kube import ApiException


def test_first_pass_creates_then_steady_state_writes_nothing():
    kube, ctl = make()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert sorted(w for w in kube.writes if w[0] == "create") == [
        ("create", f"timestamps-{s}") for s in ("evenlogger", "oddlogger", "router", "time")
    ]
    assert ("status", "timestamps") in kube.writes and out.error is None
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert kube.writes == [] and out.writes == 0


def test_drift_update_and_foreign_name_is_an_error_with_one_event():
    kube, ctl = make()
    run(ctl.reconcile("ns", "timestamps"))
    kube.deps["timestamps-router"]["spec"]["replicas"] = 7
    kube.deps["timestamps-time"]["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "X", "name": "x", "uid": "other", "controller": True}
    ]
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert ("update", "timestamps-router") in kube.writes
    assert out.error and "timestamps-time" in out.error
    assert kube.pipelines["timestamps"]["status"]["phase"] == "Failed"
    assert kube.writes.count(("event", "ReconcileFailed")) == 1
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.error and kube.writes == []  # same error again: no new Event, same status


def test_backoff_grows_and_resets():
    _kube, ctl = make()

    async def scenario():
        from tspipe.controller import Outcome

        key = ("ns", "timestamps")
        ctl.queue.known.add(key)
        delays = []
        for _ in range(4):
            ctl.queue.schedule(key, Outcome(error="boom"))
            st = ctl.queue.state[key]
            delays.append(round(st.timer.when() - asyncio.get_running_loop().time()))
        ctl.queue.schedule(key, Outcome())
        assert ctl.queue.state[key].timer is None and ctl.queue.state[key].failures == 0
        return delays

    assert run(scenario()) == [1, 2, 4, 8]


def test_deleted_pipeline_is_forgotten():
    kube, ctl = make()
    kube.pipelines.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 0 and kube.writes == [] and ("ns", "timestamps") not in ctl.queue.known


def test_deployment_events_map_to_their_pipeline():
    from tspipe.handlers import owner_of

    owned = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "tspipe.io/v1alpha1", "kind": "TimestampPipeline", "name": "p1", "controller": True}
            ],
            "labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": "other"},
        }
    }
    assert owner_of(owned) == "p1"
    labelled = {
        "metadata": {"labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": "p2"}}
    }
    assert owner_of(labelled) == "p2"
    foreign = {
        "metadata": {
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "controller": True}],
            "labels": {"app.kubernetes.io/instance": "p3"},
        }
    }
    assert owner_of(foreign) is None


# --- lifecycle ---------------------------------------------------------------------------


def test_first_creation_costs_creates_and_two_status_writes_no_events():
    kube, ctl = make()
    run(ctl.reconcile("ns", "timestamps"))
    assert [w for w in kube.writes if w[0] == "event"] == []
    assert kube.pipelines["timestamps"]["status"]["phase"] == "Progressing"
    # One of four becomes ready: only counters move, so that is not written by itself.
    _ready(kube)
    for d in list(kube.deps.values())[1:]:
        d["status"]["availableReplicas"] = 0
        d["status"]["conditions"][0]["reason"] = "ReplicaSetUpdated"
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.writes.count(("status", "timestamps")) == 1
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))  # phase changes: written at once
    assert kube.pipelines["timestamps"]["status"]["phase"] == "Running"
    assert len(kube.writes) == 4 + 2, kube.writes


def test_topics_ensured_once_per_spec_and_rechecked_slowly():
    kube, ctl = make(topic_recheck_seconds=300)
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.calls == ["ensure"]
    assert ctl.admin.topics == {
        "timeDest": (1, 1),
        "evenDest": (1, 1),
        "oddDest": (1, 1),
        "error.timeDest.timeStampStream": (1, 1),
    }
    st = kube.pipelines["timestamps"]["status"]
    assert {t["state"] for t in st["topics"]} == {"Created"}
    ctl.clock.t += 3  # created: look again soon to see them as they are
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.calls == ["ensure", "ensure"]
    ctl.clock.t += 3
    kube.writes.clear()
    for _ in range(3):
        run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.calls == ["ensure", "ensure"], "no broker call while nothing changed"
    # The spec grows the partitions: ensured at once.
    kube.pipelines["timestamps"]["spec"]["kafka"]["topics"]["partitions"] = 3
    kube.pipelines["timestamps"]["metadata"]["generation"] = 2
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.topics["timeDest"] == (3, 1) and len(ctl.admin.calls) == 3
    ctl.clock.t += 301
    run(ctl.reconcile("ns", "timestamps"))
    assert len(ctl.admin.calls) == 4


def test_unreachable_broker_is_a_condition_with_backoff_and_no_rewrites():
    kube, ctl = make()
    ctl.admin.down = True
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.error is None and len(kube.deps) == 4, "the apps are deployed anyway"
    cond = {c["type"]: c for c in kube.pipelines["timestamps"]["status"]["conditions"]}["TopicsReady"]
    assert cond["status"] == "False" and cond["reason"] == "BrokerUnreachable"
    # The broker's backoff is a topics recheck: it fires, but leaves the pipeline settled.
    assert out.retry_after is None and 0 < out.recheck_after <= 5
    kube.writes.clear()
    ctl.clock.t += 6
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.calls == ["ensure", "ensure"] and kube.writes == []
    ctl.admin.down = False
    ctl.clock.t += 11
    run(ctl.reconcile("ns", "timestamps"))
    cond = {c["type"]: c for c in kube.pipelines["timestamps"]["status"]["conditions"]}["TopicsReady"]
    assert cond["status"] == "True"


def test_unmanaged_topics_never_call_the_broker():
    kube, ctl = make()
    kube.pipelines["timestamps"]["spec"]["kafka"]["topics"]["manage"] = False
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.calls == [] and "topics" not in kube.pipelines["timestamps"]["status"]


def test_pause_sequence_and_resume():
    kube, ctl = make()
    pipe = kube.pipelines["timestamps"]
    pipe["spec"]["router"]["replicas"] = 2
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    pipe["spec"]["paused"] = True
    pipe["metadata"]["generation"] = 2
    ctl.admin.lag_value = 5
    run(ctl.reconcile("ns", "timestamps"))
    reps = lambda: {n.split("-")[1]: d["spec"]["replicas"] for n, d in kube.deps.items()}  # noqa: E731
    assert reps() == {"time": 0, "router": 2, "evenlogger": 1, "oddlogger": 1}
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))  # source gone: draining, lag 5
    assert reps()["router"] == 2 and "lag" in ctl.admin.calls
    assert "5 records left" in {c["type"]: c for c in pipe["status"]["conditions"]}["Progressing"]["message"]
    ctl.admin.lag_value = 0
    run(ctl.reconcile("ns", "timestamps"))
    assert reps() == {"time": 0, "router": 0, "evenlogger": 0, "oddlogger": 0}
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert pipe["status"]["phase"] == "Paused" and ("event", "Paused") in kube.writes
    pipe["spec"]["paused"] = False
    pipe["metadata"]["generation"] = 3
    run(ctl.reconcile("ns", "timestamps"))
    assert reps() == {"time": 1, "router": 2, "evenlogger": 1, "oddlogger": 1}
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert pipe["status"]["phase"] == "Running" and "pause" not in pipe["status"]


def test_finalizer_only_when_topics_are_deleted_with_the_pipeline():
    kube, ctl = make()
    pipe = kube.pipelines["timestamps"]
    run(ctl.reconcile("ns", "timestamps"))
    assert "finalizers" not in pipe["metadata"]
    pipe["spec"]["kafka"]["topics"]["deleteOnRemoval"] = True
    pipe["metadata"]["resourceVersion"] = "5"
    run(ctl.reconcile("ns", "timestamps"))
    assert pipe["metadata"]["finalizers"] == ["tspipe.io/delete-topics"]
    pipe["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    run(ctl.reconcile("ns", "timestamps"))
    assert ctl.admin.topics == {} and pipe["metadata"]["finalizers"] == []


def test_standby_replica_skips_its_own_retries():
    _kube, ctl = make()

    async def scenario():
        from tspipe.controller import Outcome

        key = ("ns", "timestamps")
        ctl.queue.known.add(key)
        ctl.standby = True
        ctl.queue.schedule(key, Outcome(error="boom"))
        ctl.queue.state[key].timer._run()  # the retry fires
        return key in ctl.queue.pending

    assert run(scenario()) is False


# --- annotation switches and the router's budget -----------------------------------------------


def _settled():
    """A pipeline reconciled to Running, and its fakes with the writes so far cleared."""
    kube, ctl = make()
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.pipelines["timestamps"]["status"]["phase"] == "Running"
    kube.writes.clear()
    kube.events.clear()
    return kube, ctl, kube.pipelines["timestamps"]


def _annotate(pipe, **ann):
    pipe["metadata"].setdefault("annotations", {}).update(
        {f"tspipe.io/{k.replace('_', '-')}": v for k, v in ann.items()}
    )


def test_held_pipeline_gets_only_the_condition_then_catches_up():
    kube, ctl, pipe = _settled()
    _annotate(pipe, reconcile_paused="true")
    pipe["spec"]["router"]["replicas"] = 3
    pipe["metadata"]["generation"] = 2
    kube.deps["timestamps-time"]["spec"]["replicas"] = 4  # drift
    for _ in range(3):
        run(ctl.reconcile("ns", "timestamps"))
    assert kube.writes == [("status", "timestamps"), ("event", "ReconciliationPaused")]
    st = pipe["status"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["ReconciliationPaused"] == "True"
    assert st["observedGeneration"] == 1 and st["phase"] == "Running"
    assert kube.deps["timestamps-time"]["spec"]["replicas"] == 4 and not kube.pdbs
    # A restart asked while held waits too.
    _annotate(pipe, restart="router")
    run(ctl.reconcile("ns", "timestamps"))
    assert pipe["metadata"]["annotations"]["tspipe.io/restart"] == "router"
    # Any other value releases it: drift repaired, spec applied, condition gone.
    _annotate(pipe, reconcile_paused="false")
    kube.writes.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.deps["timestamps-time"]["spec"]["replicas"] == 1
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 3 and "timestamps-router" in kube.pdbs
    assert "ReconciliationPaused" not in {c["type"] for c in pipe["status"]["conditions"]}
    assert ("event", "ReconciliationResumed") in kube.writes
    assert "tspipe.io/restart" not in pipe["metadata"]["annotations"], "the waiting restart is done now"


def test_router_budget_follows_the_replicas_and_the_pause():
    kube, ctl, pipe = _settled()
    assert not kube.pdbs
    pipe["spec"]["router"]["replicas"] = 2
    run(ctl.reconcile("ns", "timestamps"))
    assert ("create-pdb", "timestamps-router") in kube.writes
    assert kube.pdbs["timestamps-router"]["spec"]["maxUnavailable"] == 1
    kube.writes.clear()
    _ready(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert not [w for w in kube.writes if "pdb" in w[0]], "in sync: not rewritten"
    kube.pdbs["timestamps-router"]["spec"]["maxUnavailable"] = 0  # drift
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.pdbs["timestamps-router"]["spec"]["maxUnavailable"] == 1
    pipe["spec"]["router"]["replicas"] = 1
    run(ctl.reconcile("ns", "timestamps"))
    assert not kube.pdbs and ("delete-pdb", "timestamps-router") in kube.writes
    # Paused: the router goes to zero and its budget with it; resumed at 2, back.
    pipe["spec"]["router"]["replicas"] = 2
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    pipe["spec"]["paused"] = True
    for _ in range(3):
        run(ctl.reconcile("ns", "timestamps"))
        _ready(kube)
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 0 and not kube.pdbs


def test_a_one_replica_router_costs_no_budget_read_per_pass():
    kube, ctl, pipe = _settled()
    reads = kube.pdb_reads
    for _ in range(3):
        run(ctl.reconcile("ns", "timestamps"))
    assert kube.pdb_reads == reads, "known absent: not read again"
    pipe["spec"]["router"]["replicas"] = 2
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    assert "timestamps-router" in kube.pdbs
    # Back to one: a delete that fails is tried again on the next pass, not forgotten.
    pipe["spec"]["router"]["replicas"] = 1
    kube.fail_pdb_delete = True
    run(ctl.reconcile("ns", "timestamps"))
    assert "timestamps-router" in kube.pdbs
    kube.fail_pdb_delete = False
    run(ctl.reconcile("ns", "timestamps"))
    assert not kube.pdbs
    reads = kube.pdb_reads
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.pdb_reads == reads


def test_restart_rolls_one_app_consumes_the_annotation_and_is_recorded():
    kube, ctl, pipe = _settled()
    before = {n: copy.deepcopy(d["spec"]["template"]) for n, d in kube.deps.items()}
    _annotate(pipe, restart="evenLogger")
    run(ctl.reconcile("ns", "timestamps"))
    changed = [n for n, d in kube.deps.items() if d["spec"]["template"] != before[n]]
    assert changed == ["timestamps-evenlogger"]
    assert kube.deps["timestamps-evenlogger"]["spec"]["template"]["metadata"]["annotations"] == {
        "tspipe.io/restartedAt": "2026-01-01T00:00:00Z"
    }
    assert "tspipe.io/restart" not in pipe["metadata"]["annotations"]
    assert pipe["status"]["history"][-1]["restarted"] == ["evenLogger"]
    assert [e for e in kube.events if e[1] == "Restarted"] == [
        ("Normal", "Restarted", "restarted evenLogger (tspipe.io/restart): rolling Deployment timestamps-evenlogger")
    ]
    kube.writes.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert kube.writes == [], "consumed: no second restart"


def test_restart_of_a_list_waits_until_every_app_rolled():
    kube, ctl, pipe = _settled()
    _annotate(pipe, restart="time,router")
    real = kube.replace_deployment

    def conflict_on_time(ns, name, body):
        if name == "timestamps-time":
            raise ApiException(status=409, reason="Conflict")
        return real(ns, name, body)

    kube.replace_deployment = conflict_on_time
    out = run(ctl.reconcile("ns", "timestamps"))
    assert pipe["metadata"]["annotations"]["tspipe.io/restart"] == "time,router", "not consumed yet"
    assert out.retry_after is not None and out.retry_after <= 1
    kube.replace_deployment = real
    run(ctl.reconcile("ns", "timestamps"))
    assert "tspipe.io/restart" not in pipe["metadata"]["annotations"]
    assert pipe["status"]["history"][-1]["restarted"] == ["time", "router"]


def test_unknown_app_is_refused_with_a_warning_and_nothing_restarts():
    kube, ctl, pipe = _settled()
    _annotate(pipe, restart="router,bogus")
    run(ctl.reconcile("ns", "timestamps"))
    assert not [w for w in kube.writes if w[0] in ("update", "create", "delete")]
    assert "tspipe.io/restart" not in pipe["metadata"]["annotations"]
    (warning,) = [e for e in kube.events if e[0] == "Warning"]
    assert warning[1] == "RestartRejected" and "'bogus'" in warning[2]
    cond = {c["type"]: c for c in pipe["status"]["conditions"]}["RestartRejected"]
    assert cond["status"] == "True" and "'bogus'" in cond["message"]
    assert "restarted" not in pipe["status"]["history"][-1]


def test_restart_annotation_changed_meanwhile_is_not_lost():
    kube, ctl, pipe = _settled()
    _annotate(pipe, restart="router")
    real = kube.replace_deployment

    def user_changes_it_meanwhile(ns, name, body):
        pipe["metadata"]["annotations"]["tspipe.io/restart"] = "time"
        return real(ns, name, body)

    kube.replace_deployment = user_changes_it_meanwhile
    out = run(ctl.reconcile("ns", "timestamps"))
    kube.replace_deployment = real
    assert pipe["metadata"]["annotations"]["tspipe.io/restart"] == "time", "the guarded removal refused"
    assert out.retry_after == 1.0 and ("unannotate", "tspipe.io/restart") not in kube.writes
    run(ctl.reconcile("ns", "timestamps"))
    assert "tspipe.io/restart" not in pipe["metadata"]["annotations"]
    assert pipe["status"]["history"][-1]["restarted"] == ["time"]


def test_pods_are_read_only_while_a_component_is_not_ready_and_a_refusal_is_tolerated():
    kube, ctl = make()
    calls = []
    pending = {
        "metadata": {
            "name": "timestamps-time-x",
            "labels": {
                "app.kubernetes.io/managed-by": "tspipe-operator",
                "app.kubernetes.io/instance": "timestamps",
                "app.kubernetes.io/component": "time",
            },
        },
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available",
                }
            ]
        },
    }
    kube.pods = [pending]
    list_pods = kube.list_pods
    kube.list_pods = lambda ns, sel: calls.append(sel) or list_pods(ns, sel)
    run(ctl.reconcile("ns", "timestamps"))  # created: nothing ready yet
    assert calls == ["app.kubernetes.io/managed-by=tspipe-operator,app.kubernetes.io/instance=timestamps"]
    st = kube.pipelines["timestamps"]["status"]
    cond = {c["type"]: c for c in st["conditions"]}["PodsUnschedulable"]
    assert cond["reason"] == "Unschedulable" and cond["message"].startswith("time: 1 pod(s) not scheduled")
    # Every Deployment rolled out: no pod read.
    for d in kube.deps.values():
        n = d["spec"]["replicas"]
        d["status"] = {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
        }
        d["metadata"]["generation"] = 1
    calls.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert calls == [] and kube.pipelines["timestamps"]["status"]["phase"] == "Running"
    # An RBAC without pods: the status says less, the pass does not fail.
    kube.deps["timestamps-time"]["status"]["availableReplicas"] = 0

    def forbidden(ns, sel):
        raise ApiException(status=403, reason="Forbidden")

    kube.list_pods = forbidden
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.error is None and kube.pipelines["timestamps"]["status"]["phase"] == "Degraded"
