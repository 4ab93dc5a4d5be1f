"""The watch cache (issue 26): the passes read the pipeline's Deployments and pods from the
watch events instead of LISTing them. The store itself (versions, deletions, groups,
what is kept), then a controller over it: no LIST once primed, read-your-writes, and a
stale cache that never makes a wrong write."""

import asyncio
import copy
import json
import logging

from controllerfakes import _ready, eventually, make, run
from samples import SAMPLE_NAME, sample_pipeline

from tspipe.kube import ApiException
from tspipe.watchcache import TOMBSTONE_SECONDS, WatchCache, inputs, owner_of, slim_pod


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def dep(name, rv, owner="p", ns="ns", **extra):
    meta = {
        "name": name,
        "namespace": ns,
        "resourceVersion": str(rv),
        "uid": f"u-{name}",
        "labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": owner},
        "ownerReferences": [
            {
                "apiVersion": "tspipe.io/v1alpha1",
                "kind": "TimestampPipeline",
                "name": owner,
                "uid": "p-uid",
                "controller": True,
            }
        ],
        "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate"}},
        "status": {},
        **extra,
    }


def pod(name, rv, instance="p", ns="ns"):
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": str(rv),
            "labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": instance},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x", "env": [{"name": "A"}] * 50}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}], "podIP": "10.0.0.1"},
    }


def names(objs):
    return sorted(o["metadata"]["name"] for o in objs)


def test_groups_by_owner_and_keeps_all_but_managed_fields():
    c = WatchCache(Clock())
    assert c.deployments.upsert(dep("p-time", 5))
    c.deployments.upsert(dep("q-time", 6, owner="q"))
    c.deployments.upsert(dep("p-time", 5, ns="other"))
    [d] = c.deployments.group("ns", "p")
    assert "managedFields" not in d["metadata"] and d["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert d["metadata"]["ownerReferences"] and d["status"] == {}, "what a PUT copies back stays whole"
    assert names(c.deployments.group("ns", "q")) == ["q-time"] and c.deployments.group("ns", "nope") == []
    assert len(c.deployments) == 3


def test_owner_is_the_controller_reference_then_the_labels():
    d = dep("x", 1, owner="p")
    assert owner_of(d) == "p"
    d["metadata"]["ownerReferences"] = []
    assert owner_of(d) == "p"
    d["metadata"]["labels"] = {}
    assert owner_of(d) is None


def test_an_older_copy_never_replaces_a_newer_one():
    c = WatchCache(Clock())
    c.deployments.upsert(dep("p-time", 10, replicas_seen=2))
    assert not c.deployments.upsert(dep("p-time", 9))  # a watch event behind our write's answer
    assert c.deployments.get("ns", "p-time")["metadata"]["resourceVersion"] == "10"
    assert c.deployments.upsert(dep("p-time", 10))  # the same version again: fine
    assert c.deployments.upsert(dep("p-time", 11))
    assert c.deployments.get("ns", "p-time")["metadata"]["resourceVersion"] == "11"


def test_a_deletion_removes_and_refuses_late_older_copies_for_a_while():
    clock = Clock()
    c = WatchCache(clock)
    c.deployments.upsert(dep("p-time", 10))
    assert c.deployments.delete(dep("p-time", 12))
    assert c.deployments.group("ns", "p") == [] and c.deployments.get("ns", "p-time") is None
    # A write's answer from before the deletion arrives after it: refused.
    assert not c.deployments.upsert(dep("p-time", 11))
    # A new object under that name (a later version) is taken.
    assert c.deployments.upsert(dep("p-time", 13))
    assert names(c.deployments.group("ns", "p")) == ["p-time"]
    # Tombstones expire (memory stays bounded).
    c.deployments.delete(dep("p-time", 14))
    clock.t += TOMBSTONE_SECONDS + 1
    c.deployments.delete(dep("other", 15))  # prunes the expired ones
    assert ("ns", "p-time") not in c.deployments._tombstones


def test_a_deletion_of_an_older_object_leaves_the_newer_one():
    # Our re-create's answer (v20) came before the watch's DELETED of the old object (v15).
    c = WatchCache(Clock())
    c.deployments.upsert(dep("p-router", 20))
    assert not c.deployments.delete(dep("p-router", 15))
    assert names(c.deployments.group("ns", "p")) == ["p-router"]


def test_an_owner_change_moves_the_object_between_groups():
    c = WatchCache(Clock())
    c.deployments.upsert(dep("x", 1, owner="p"))
    c.deployments.upsert(dep("x", 2, owner="q"))
    assert c.deployments.group("ns", "p") == [] and names(c.deployments.group("ns", "q")) == ["x"]
    assert "p" not in {g for _, g in c.deployments._groups}, "an empty group is dropped"


def test_seen_names_stay_after_the_object_leaves_the_watch_until_the_pipeline_goes():
    c = WatchCache(Clock())
    c.deployments.upsert(dep("p-time", 1))
    c.deployments.delete(dep("p-time", 2))  # labels edited away: the API server's DELETED
    assert c.deployments.seen("ns", "p") == {"p-time"}
    c.deployments.saw("ns", "p", "p-router")
    assert c.deployments.seen("ns", "p") == {"p-time", "p-router"}
    c.forget("ns", "p")
    assert c.deployments.seen("ns", "p") == set()


def test_pods_keep_metadata_and_status_only_and_no_names():
    c = WatchCache(Clock())
    c.pods.upsert(pod("p-router-abc", 3))
    [p] = c.pods.group("ns", "p")
    assert p == slim_pod(pod("p-router-abc", 3))
    assert set(p) == {"metadata", "status", "spec"} and p["spec"] == {"nodeName": "n1"}
    assert "managedFields" not in p["metadata"] and p["status"]["podIP"] == "10.0.0.1"
    c.pods.delete(pod("p-router-abc", 4))
    assert c.pods.group("ns", "p") == [] and c.pods.seen("ns", "p") == set()


def test_a_refresh_from_a_list_drops_what_it_did_not_return():
    c = WatchCache(Clock())
    c.deployments.upsert(dep("p-time", 5))
    c.deployments.upsert(dep("p-router", 9))
    c.deployments.upsert(dep("q-time", 5, owner="q"))
    c.deployments.refresh("ns", "p", [dep("p-router", 8), dep("p-odd", 7)])
    assert names(c.deployments.group("ns", "p")) == ["p-odd", "p-router"]
    assert c.deployments.get("ns", "p-router")["metadata"]["resourceVersion"] == "9", "the newer copy stays"
    assert names(c.deployments.group("ns", "q")) == ["q-time"]


# --- a controller over the cache ----------------------------------------------------


def counting(kube):
    calls = []
    for fn in ("list_deployments", "get_deployment", "list_pods"):
        orig = getattr(kube, fn)
        setattr(kube, fn, lambda *a, _f=fn, _o=orig: calls.append(_f) or _o(*a))
    return calls


def watch(ctl, kube):
    """What the watches would deliver: every Deployment and pod as the fake has it."""
    for d in kube.deps.values():
        ctl.cache.deployments.upsert(copy.deepcopy(d))
    for p in kube.pods:
        ctl.cache.pods.upsert(copy.deepcopy(p))


def test_until_primed_a_pass_lists_then_reads_the_cache_with_its_own_writes_in_it():
    kube, ctl = make()
    calls = counting(kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert len(kube.deps) == 4 and "list_deployments" in calls, "not primed: LIST as before"
    ctl.cache.primed = True
    calls.clear()
    before = {n: copy.deepcopy(d) for n, d in kube.deps.items()}
    out = run(ctl.reconcile("ns", "timestamps"))
    assert calls == [] and out.writes == 0, "the created Deployments are in the cache: no reads, no writes"
    _ready(kube)
    watch(ctl, kube)
    out = run(ctl.reconcile("ns", "timestamps"))
    assert calls == [] and kube.pipelines["timestamps"]["status"]["phase"] == "Running"
    assert {n: d["spec"] for n, d in kube.deps.items()} == {n: d["spec"] for n, d in before.items()}
    for d in ctl.cache.deployments.group("ns", "timestamps"):
        assert d == {**kube.deps[d["metadata"]["name"]], "metadata": d["metadata"]}, "the passes modify nothing"


def test_a_fresh_pipeline_from_the_cache_costs_no_read_and_after_its_writes_none_either():
    kube, ctl = make()
    ctl.cache.primed = True
    calls = counting(kube)
    out = run(ctl.reconcile("ns", "timestamps"))
    assert len(kube.deps) == 4 and out.error is None
    # Nothing seen yet: no GET of the four names; unready apps: pods from the cache.
    assert calls == []


def test_a_stale_update_fails_with_a_conflict_and_the_next_pass_reads_from_the_api():
    kube, ctl = make()
    ctl.cache.primed = True
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    watch(ctl, kube)
    # Someone scales the router; the watch has not delivered it yet.
    router = kube.deps["timestamps-router"]
    router["spec"]["replicas"] = 5
    router["metadata"]["resourceVersion"] = kube._rv()
    # And the user's spec changes the router's env: the pass updates from the stale copy.
    kube.pipelines["timestamps"]["spec"].setdefault("router", {})["env"] = [{"name": "X", "value": "1"}]
    calls = counting(kube)
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert ("update", "timestamps-router") not in kube.writes, "the stale PUT was refused (409)"
    assert out.retry_after is not None and out.retry_after <= 1
    assert "list_deployments" in calls, "after the conflict the pass re-read from the API"
    calls.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert "list_deployments" in calls, "the next pass too"
    assert ("update", "timestamps-router") in kube.writes
    d = kube.deps["timestamps-router"]
    assert {"name": "X", "value": "1"} in d["spec"]["template"]["spec"]["containers"][0]["env"]
    assert (
        ctl.cache.deployments.get("ns", "timestamps-router")["metadata"]["resourceVersion"]
        == d["metadata"]["resourceVersion"]
    ), "the update's answer is in the cache"
    calls.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert "list_deployments" not in calls, "then the cache again"


def test_a_stale_missing_child_fails_to_create_with_already_exists_then_is_found():
    kube, ctl = make()
    ctl.cache.primed = True
    run(ctl.reconcile("ns", "timestamps"))
    # A child whose labels were edited away while no operator ran: never in this cache.
    ctl.cache.deployments.delete({"metadata": {"namespace": "ns", "name": "timestamps-time", "resourceVersion": "999"}})
    ctl.cache.deployments.forget("ns", "timestamps")
    kube.deps["timestamps-time"]["metadata"]["labels"] = {}
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert [w for w in kube.writes if w[0] == "create"] == [], "AlreadyExists: nothing created"
    assert out.retry_after is not None
    run(ctl.reconcile("ns", "timestamps"))
    assert ("update", "timestamps-time") in kube.writes, "found by name, adopted back"
    assert kube.deps["timestamps-time"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "timestamps"


def test_a_child_seen_and_then_lost_from_the_watch_is_looked_up_by_name():
    kube, ctl = make()
    ctl.cache.primed = True
    run(ctl.reconcile("ns", "timestamps"))
    calls = counting(kube)
    # Labels edited away: the API server's watch says DELETED.
    kube.deps["timestamps-odd".replace("odd", "oddlogger")]["metadata"]["labels"] = {}
    d = kube.deps["timestamps-oddlogger"]
    d["metadata"]["resourceVersion"] = kube._rv()
    ctl.cache.deployments.delete(copy.deepcopy(d))
    kube.writes.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert calls == ["get_deployment"] and kube.writes[0] == ("update", "timestamps-oddlogger")


def test_a_deleted_child_is_recreated_and_a_recreate_waits_for_the_old_one():
    kube, ctl = make()
    ctl.cache.primed = True
    run(ctl.reconcile("ns", "timestamps"))
    gone = kube.deps.pop("timestamps-time")
    ctl.cache.deployments.delete({**gone, "metadata": {**gone["metadata"], "resourceVersion": kube._rv()}})
    kube.writes.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert ("create", "timestamps-time") in kube.writes


def test_a_settled_pipelines_periodic_pass_reads_the_cache_not_the_api():
    # As client-go's resync: a Deployment deleted while a watch was down (no DELETED) is
    # caught by the watch's relist instead (the relist test below). Managed topics: a pass
    # that read Kafka too, so it runs whole rather than stopping early.
    kube, ctl, gets = watched_pipeline(manage_topics=True)
    run(ctl.reconcile("ns", "timestamps"))
    rolled_out(ctl, kube)
    run(ctl.reconcile("ns", "timestamps"))
    calls, key = counting(kube), ("ns", "timestamps")
    kube.writes.clear()

    async def periodic():
        q = ctl.queue
        q.known.add(key)
        due = q.clock() - q.reread_seconds
        q.settled_at[key] = due  # its periodic pass is due
        q.resync_round()
        await eventually(lambda: q.settled_at.get(key, due) > due and key not in q._workers, "the periodic pass")
        await ctl.stop()

    asyncio.run(periodic())
    assert calls == [] and gets == [] and kube.writes == [], "no GET of the pipeline, no LIST, no write"


def test_a_deleted_pipeline_leaves_nothing_in_the_queue_or_the_cache():
    async def scenario():
        kube, ctl = make()
        ctl.cache.primed = True
        ctl.enqueue("ns", "timestamps")
        await eventually(lambda: ctl.cache.deployments.seen("ns", "timestamps"), "the first pass's Deployments")
        del kube.pipelines["timestamps"]
        ctl.enqueue("ns", "timestamps")  # the pass finds it gone and forgets it
        q = ctl.queue
        await eventually(lambda: not q.known and not q._workers, "the pass that finds the pipeline gone, ended")
        assert ("ns", "timestamps") not in q.state
        assert not ctl._memory and ctl.cache.deployments.seen("ns", "timestamps") == set()
        await ctl.stop()

    asyncio.run(scenario())


def test_a_pipeline_with_managed_topics_settles():
    kube, ctl = make()
    ctl.cache.primed = True
    run(ctl.reconcile("ns", "timestamps"))
    _ready(kube)
    watch(ctl, kube)
    run(ctl.reconcile("ns", "timestamps"))
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 0 and out.error is None and out.retry_after is None
    assert out.recheck_after is not None and 0 < out.recheck_after <= 300, "the topics' recheck"


def test_api_errors_are_still_reported():
    kube, ctl = make()
    ctl.cache.primed = True

    def refuse(ns, body):
        raise ApiException(status=403, reason="Forbidden")

    kube.create_deployment = refuse
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.error and "403" in out.error


def test_a_relist_makes_each_pipelines_next_pass_read_from_the_api_once():
    kube, ctl = make()
    run(ctl.reconcile("ns", "timestamps"))  # not primed: LIST
    ctl.cache.relisted()
    assert ctl.cache.epoch == 0, "the first list is not a relist"
    ctl.cache.primed = True
    run(ctl.reconcile("ns", "timestamps"))
    kube.deps.pop("timestamps-router")  # deleted while the watch was down: no DELETED
    ctl.cache.relisted()
    calls = counting(kube)
    kube.writes.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert "list_deployments" in calls and ("create", "timestamps-router") in kube.writes
    calls.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert "list_deployments" not in calls


def test_a_kept_deployment_is_equal_but_its_own_and_each_read_a_copy():
    c = WatchCache(Clock())
    a = dep("p-time", 1)
    c.deployments.upsert(a)
    kept = c.deployments.get("ns", "p-time")
    assert kept == {**a, "metadata": {k: v for k, v in a["metadata"].items() if k != "managedFields"}}
    a["spec"]["strategy"]["type"] = "Recreate"
    assert kept["spec"]["strategy"]["type"] == "RollingUpdate", "the watch's object is not shared"
    kept["spec"]["replicas"] = 7
    assert c.deployments.group("ns", "p")[0]["spec"]["replicas"] == 1, "a reader's change stays its own"
    assert c.deployments.versions("ns", "p") == (("p-time", "1"),)


def test_kept_pipelines_share_their_strings():
    c = WatchCache(Clock())
    a, b = sample_pipeline(stored=True), sample_pipeline(stored=True, metadata={"name": "other"})
    c.pipelines.upsert(a)
    c.pipelines.upsert(b)
    kept, other = c.pipelines.get("ns", SAMPLE_NAME), c.pipelines.get("ns", "other")
    assert kept == {**a, "metadata": {k: v for k, v in a["metadata"].items() if k != "managedFields"}}
    assert kept["spec"]["streamName"] is other["spec"]["streamName"]


# --- the pipeline from its watch, and a pass that stops when nothing it reads changed --


def watched_pipeline(manage_topics=False):
    """A controller whose cache is primed and holds the pipeline as its watch delivered it
    (topics unmanaged unless asked: a managed topic's recheck is a timer); the fake's
    status write answers with the pipeline as written, at a new version."""
    kube, ctl = make()
    ctl.cache.primed = True
    p = kube.pipelines["timestamps"]
    p["spec"]["kafka"].setdefault("topics", {})["manage"] = manage_topics
    p["metadata"]["resourceVersion"] = kube._rv()
    gets, write = [], kube.write_status
    kube.get_pipeline = lambda ns, name, _g=kube.get_pipeline: gets.append(name) or json.loads(json.dumps(_g(ns, name)))

    def write_status(ns, name, status):
        write(ns, name, status)
        kube.pipelines[name]["metadata"]["resourceVersion"] = kube._rv()
        return json.loads(json.dumps(kube.pipelines[name]))  # as served: JSON

    kube.write_status = write_status
    ctl.cache.pipelines.upsert(copy.deepcopy(p))
    return kube, ctl, gets


def rolled_out(ctl, kube):
    """The Deployment controller's work, each a new version, delivered by the watch."""
    _ready(kube)
    for d in kube.deps.values():
        d["metadata"]["resourceVersion"] = kube._rv()
    watch(ctl, kube)


def test_inputs_are_the_versions_read_in_any_order_and_pods_only_when_read():
    a, b = dep("p-time", 3), dep("p-router", 4)
    pipe = {"metadata": {"name": "p", "resourceVersion": "9"}}
    assert inputs(pipe, [a, b], None) == inputs(pipe, [b, a], None) == ("9", (("p-router", "4"), ("p-time", "3")), None)
    assert inputs(pipe, [a, b], []) != inputs(pipe, [a, b], None)
    assert inputs(pipe, [a], None) != inputs(pipe, [a, b], None)
    assert inputs({"metadata": {"name": "p", "resourceVersion": "10"}}, [a, b], None) != inputs(pipe, [a, b], None)


def test_a_pipeline_its_watch_delivered_is_read_without_a_get_and_its_status_answer_is_kept():
    kube, ctl, gets = watched_pipeline()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 5 and gets == [], "4 creates and the status, the pipeline from the cache"
    cached = ctl.cache.pipelines.get("ns", "timestamps")
    assert cached["status"] == kube.pipelines["timestamps"]["status"], "the status write's answer is cached"
    before = copy.deepcopy(cached)
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 0 and gets == [], "its own status seen: not written again"
    rolled_out(ctl, kube)
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 1 and kube.pipelines["timestamps"]["status"]["phase"] == "Running" and gets == []
    assert before["spec"] == ctl.cache.pipelines.get("ns", "timestamps")["spec"], "the passes modify nothing"


def test_a_pass_over_what_the_last_one_read_stops_before_its_phases():
    kube, ctl, gets = watched_pipeline()
    run(ctl.reconcile("ns", "timestamps"))
    rolled_out(ctl, kube)
    assert run(ctl.reconcile("ns", "timestamps")).writes == 1  # Running
    calls = counting(kube)
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))  # the echo of its own status write
    assert out.unchanged and out.writes == 0 and calls == [] and gets == []
    # A new version of a Deployment (its status moved): a full pass.
    d = kube.deps["timestamps-router"]
    d["metadata"]["resourceVersion"] = kube._rv()
    d["status"]["readyReplicas"] = d["status"]["availableReplicas"] = 0
    watch(ctl, kube)
    out = run(ctl.reconcile("ns", "timestamps"))
    assert not out.unchanged and ("status", "timestamps") in kube.writes, "the router is not available: status written"
    assert run(ctl.reconcile("ns", "timestamps")).unchanged
    # A spec change delivered by the watch: a full pass that updates the Deployment.
    p = json.loads(json.dumps(kube.pipelines["timestamps"]))
    p["spec"]["router"] = {**p["spec"].get("router", {}), "replicas": 1, "env": [{"name": "X", "value": "1"}]}
    p["metadata"]["resourceVersion"], p["metadata"]["generation"] = kube._rv(), 2
    kube.pipelines["timestamps"] = copy.deepcopy(p)
    ctl.cache.pipelines.upsert(p)
    out = run(ctl.reconcile("ns", "timestamps"))
    assert not out.unchanged and ("update", "timestamps-router") in kube.writes


def test_a_pass_stopped_at_the_inputs_check_logs_one_line_saying_so(caplog):
    """One "reconciled" line per pass: tests count them (a demoted replica's pass under
    way), and so do the benches (two lines hid that the full passes fell, issue 26)."""
    kube, ctl, _ = watched_pipeline()
    run(ctl.reconcile("ns", "timestamps"))
    rolled_out(ctl, kube)
    run(ctl.reconcile("ns", "timestamps"))
    caplog.set_level(logging.DEBUG, logger="tspipe.controller")
    run(ctl._work(("ns", "timestamps")))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconciled ")]
    assert lines == ["reconciled ns/timestamps: nothing it reads changed since the last pass: 0 writes"]


def test_a_pass_that_read_elsewhere_or_asked_for_a_timer_is_never_skipped():
    kube, ctl, _ = watched_pipeline(manage_topics=True)  # the topics: Kafka, and a recheck timer
    run(ctl.reconcile("ns", "timestamps"))
    rolled_out(ctl, kube)
    run(ctl.reconcile("ns", "timestamps"))
    assert not run(ctl.reconcile("ns", "timestamps")).unchanged
    assert ctl._memory[("ns", "timestamps")].inputs is None


def test_a_deleted_pipeline_leaves_no_cached_copy():
    _, ctl, gets = watched_pipeline()
    run(ctl.reconcile("ns", "timestamps"))
    ctl.forget("ns", "timestamps")
    assert ctl.cache.pipelines.get("ns", "timestamps") is None
    run(ctl.reconcile("ns", "timestamps"))
    assert gets == ["timestamps"], "not in the cache: from the API"


def test_the_spec_hashes_are_computed_once_per_spec_and_again_when_it_changes(monkeypatch):
    from tspipe import render

    renders = []
    real = render.stamp_hash
    monkeypatch.setattr(render, "stamp_hash", lambda d: renders.append(1) or real(d))
    kube, ctl, _ = watched_pipeline()
    run(ctl.reconcile("ns", "timestamps"))  # renders, writes the status: a new version
    rolled_out(ctl, kube)
    run(ctl.reconcile("ns", "timestamps"))  # the status write's version: rendered again
    n = len(renders)
    d = kube.deps["timestamps-router"]
    d["metadata"]["resourceVersion"] = kube._rv()
    watch(ctl, kube)
    out = run(ctl.reconcile("ns", "timestamps"))  # woken by a Deployment: same pipeline version
    assert not out.unchanged and len(renders) == n and out.writes == 0
    p = json.loads(json.dumps(kube.pipelines["timestamps"]))
    p["spec"]["router"] = {**p["spec"].get("router", {}), "env": [{"name": "X", "value": "1"}]}
    p["metadata"]["resourceVersion"], p["metadata"]["generation"] = kube._rv(), 2
    kube.pipelines["timestamps"] = copy.deepcopy(p)
    ctl.cache.pipelines.upsert(p)
    kube.writes.clear()
    run(ctl.reconcile("ns", "timestamps"))
    assert len(renders) == n + 4 and ("update", "timestamps-router") in kube.writes


def test_a_pipeline_is_parsed_once_per_version(monkeypatch):
    from tspipe import controller as controller_module

    parses = []
    parse = controller_module.Pipeline.from_resource
    monkeypatch.setattr(controller_module.Pipeline, "from_resource", lambda obj: parses.append(1) or parse(obj))
    kube, ctl, _ = watched_pipeline(manage_topics=True)  # read Kafka: every pass runs whole
    run(ctl.reconcile("ns", "timestamps"))
    run(ctl.reconcile("ns", "timestamps"))
    run(ctl.reconcile("ns", "timestamps"))
    assert len(parses) == 2, "the first pass, then the version its status write made"
    p = json.loads(json.dumps(kube.pipelines["timestamps"]))
    p["spec"]["router"] = {**p["spec"].get("router", {}), "replicas": 1, "env": [{"name": "X", "value": "1"}]}
    p["metadata"]["resourceVersion"], p["metadata"]["generation"] = kube._rv(), 2
    kube.pipelines["timestamps"] = copy.deepcopy(p)
    ctl.cache.pipelines.upsert(p)
    run(ctl.reconcile("ns", "timestamps"))
    env = kube.deps["timestamps-router"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert len(parses) == 3 and {"name": "X", "value": "1"} in env, "a new version: parsed again, its change rendered"
