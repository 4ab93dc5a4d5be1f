"""Shadow releases (spec.rollout.strategy: Shadow): the pure core (names, the shadow
Deployment, the comparison, the stages) and the controller over in-memory fakes."""

import copy
from datetime import UTC, datetime, timedelta

import pytest
from controllerfakes import _ready, make, run
from samples import STORED, sample_pipeline
from test_status_schema_units import STATUS_SCHEMA, prune

from tspipe import rollback, shadow
from tspipe.model import Pipeline, PipelineError
from tspipe.names import HASH_ANNOTATION as HASH
from tspipe.names import MANAGER
from tspipe.render import render_deployments
from tspipe.stamps import format_time
from tspipe.status import compute_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PREFIXES = {"even": "Even timestamp:", "odd": "Odd timestamp:"}


def pipeline(**rollout):
    obj = sample_pipeline(
        metadata={**STORED, "generation": 3}, rollout={"autoRollback": True, "strategy": "Shadow", **rollout}
    )
    return obj, Pipeline.from_resource(obj)


def test_the_strategy_defaults_to_rolling_and_shadow_needs_auto_rollback():
    assert Pipeline.from_resource(sample_pipeline()).rollout_strategy == "RollingUpdate"
    assert pipeline()[1].rollout_strategy == "Shadow"
    with pytest.raises(PipelineError, match="autoRollback"):
        Pipeline.from_resource(sample_pipeline(rollout={"strategy": "Shadow"}))
    with pytest.raises(PipelineError, match="must be one of"):
        Pipeline.from_resource(sample_pipeline(rollout={"strategy": "BlueGreen"}))


def test_the_shadow_deployment_is_the_new_router_with_its_own_group_topics_and_labels():
    obj, p = pipeline()
    obj["spec"]["router"]["properties"] = {"tsrouter.dead_letter_topic": "mine", "tsrouter.workers": "1"}
    p = Pipeline.from_resource(obj)
    n = shadow.names(p, 3)
    t = p.kafka.topics
    assert n.deployment == f"{p.name}-router-shadow" and n.group == f"{p.stream_name}-shadow-3"
    assert n.topics == [f"{t.even}.shadow-3", f"{t.odd}.shadow-3", f"{t.dead_letter(p.stream_name)}.shadow-3"]
    d = shadow.render(obj, p, n)
    router = next(x for x in render_deployments(obj) if x["metadata"]["name"] == f"{p.name}-router")
    assert d["metadata"]["name"] == n.deployment
    assert d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "router-shadow"
    assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "router-shadow"
    assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tspipe-operator"
    args = d["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--spring.cloud.stream.bindings.input.group={n.group}" in args
    assert f"--spring.cloud.stream.bindings.even.destination={n.even}" in args
    assert f"--spring.cloud.stream.bindings.odd.destination={n.odd}" in args
    assert f"--tsrouter.dead-letter-topic={n.dead_letter}" in args
    assert "--tsrouter.auto-create-topics=false" in args
    assert not any(a.startswith(f"--spring.cloud.stream.bindings.even.destination={t.even}=") for a in args)
    assert "--tsrouter.dead_letter_topic=mine" not in args, "the user's spelling of an overridden key goes"
    assert "--tsrouter.workers=1" in args
    rest = [
        a
        for a in router["spec"]["template"]["spec"]["containers"][0]["args"]
        if "destination" not in a and ".group=" not in a and "dead_letter" not in a
    ]
    assert all(a in args for a in rest), "otherwise the router's own wiring"
    assert d["metadata"]["annotations"][HASH] != router["metadata"]["annotations"][HASH]


def rec(partition, offset, value, headers=()):
    return (partition, offset, value, list(headers))


def outputs(records, prefixes=PREFIXES, swap=False, dead=()):
    """What a router with `prefixes` writes for input `records` (swap: each side to the other)."""
    out = {"even": [], "odd": [], "deadLetter": []}
    for p, o, v, _ in records:
        if o in dead or not v[-1:].isdigit():
            out["deadLetter"].append(
                rec(
                    p,
                    len(out["deadLetter"]),
                    v,
                    [("x-original-partition", str(p).encode()), ("x-original-offset", str(o).encode())],
                )
            )
            continue
        side = "even" if int(v[-1:]) % 2 == 0 else "odd"
        if swap:
            side = "odd" if side == "even" else "even"
        out[side].append(rec(p, len(out[side]), prefixes[side].encode() + v))
    return out


INPUTS = [rec(0, 10 + i, b"11/27/26 %08d" % i) for i in range(20)] + [rec(0, 30, b"not a timestamp")]


def test_equal_outputs_pass_through_a_prefix_change_and_extra_records_do_not_matter():
    new = {"even": "EVEN:", "odd": "ODD:"}
    stable = outputs(INPUTS)
    ours = outputs([rec(0, 5, b"11/27/26 99999995")] + INPUTS, new)  # it started earlier: one more record
    c = shadow.compare(INPUTS, stable, ours, PREFIXES, new)
    assert (c.compared, c.differing, c.differences) == (21, 0, [])


def test_a_misrouting_shadow_differs_at_the_first_offset_with_both_outputs_shown():
    c = shadow.compare(INPUTS, outputs(INPUTS), outputs(INPUTS, swap=True), PREFIXES, PREFIXES)
    assert c.compared == 21 and c.differing == 20 and len(c.differences) == shadow.MAX_DIFFERENCES
    d = c.differences[0]
    assert (d["partition"], d["offset"]) == (0, 10)
    assert d["stable"] == "even: 'Even timestamp:11/27/26 00000000'"
    assert d["shadow"] == "odd: 'Odd timestamp:11/27/26 00000000'"


def test_the_comparison_counts_each_input_partition_on_its_own():
    two = [rec(i % 2, 10 + i // 2, b"11/27/26 %08d" % i) for i in range(20)]
    stable = outputs(two)
    half = outputs([r for r in two if r[0] == 0]) | {"deadLetter": []}
    for side in ("even", "odd"):  # partition 1 misrouted: its records on the other side
        half[side] += outputs([r for r in two if r[0] == 1], swap=True)[side]
    c = shadow.compare(two, stable, half, PREFIXES, PREFIXES)
    assert c.partitions == [[0, 10, 0], [1, 10, 10]] and (c.compared, c.differing) == (20, 10)
    bad = shadow.judged(stable_rollout() | {"shadow": {"state": shadow.RUNNING}}, c, True, True, T0)
    assert bad["shadow"]["partitions"] == [
        {"partition": 0, "compared": 10, "differing": 0},
        {"partition": 1, "compared": 10, "differing": 10},
    ]


def test_swapped_prefixes_a_changed_text_a_missing_record_and_dead_letters_differ():
    swapped = {"even": PREFIXES["odd"], "odd": PREFIXES["even"]}
    c = shadow.compare(INPUTS, outputs(INPUTS), outputs(INPUTS, swapped), PREFIXES, swapped)
    assert c.differing == 20 and "prefix of the other side" in c.differences[0]["why"]
    changed = outputs(INPUTS)
    changed["even"] = [
        (p, o, v.upper().replace(b"EVEN TIMESTAMP:", b"Even timestamp:"), h) for p, o, v, h in changed["even"]
    ]
    changed["even"][0] = (0, 0, b"Even timestamp:11/27/26 0000000X", [])
    c = shadow.compare(INPUTS, outputs(INPUTS), changed, PREFIXES, PREFIXES)
    assert c.differing == 1 and c.differences[0]["shadow"].startswith("nothing")
    c = shadow.compare(INPUTS, outputs(INPUTS), outputs(INPUTS, dead={12}), PREFIXES, PREFIXES)
    assert c.differing == 1 and c.differences[0]["offset"] == 12
    assert c.differences[0]["shadow"].startswith("deadLetter:")


def test_records_whose_stable_output_was_not_read_are_not_compared():
    stable = outputs(INPUTS[5:])
    c = shadow.compare(INPUTS, stable, outputs(INPUTS), PREFIXES, PREFIXES)
    assert (c.compared, c.differing) == (16, 0)


def test_json_string_inputs_are_matched_by_their_content():
    inputs = [rec(1, 0, b'"11/27/26 00000002"')]
    c = shadow.compare(
        inputs,
        {"even": [rec(1, 0, b"Even timestamp:11/27/26 00000002")]},
        {"even": [rec(1, 0, b"E:11/27/26 00000002")]},
        PREFIXES,
        {"even": "E:", "odd": "O:"},
    )
    assert (c.compared, c.differing) == (1, 0)


def stable_rollout(templates="old"):
    return {
        "generation": 2,
        "templates": templates,
        "verdict": rollback.STABLE,
        "reason": "ChecksPassed",
        "stable": {"generation": 2, "templates": templates, "time": "2026-01-01T00:00:00Z", "spec": {"v": 1}},
    }


def test_the_stages_from_start_to_a_verdict():
    _, p = pipeline()
    prev = stable_rollout()
    assert shadow.starts(prev, "new", "Shadow", True, True)
    assert not shadow.starts(prev, "new", "RollingUpdate", True, True)
    assert not shadow.starts(prev, "new", "Shadow", False, True), "only a change to the router"
    assert not shadow.starts(prev, "new", "Shadow", True, False), "not with credentials"
    assert not shadow.starts(prev, "old", "Shadow", True, True)
    assert not shadow.starts({}, "new", "Shadow", True, True), "nothing to compare with"
    r = shadow.start(prev, 3, "new", shadow.names(p, 3), T0)
    assert r["verdict"] == rollback.VERIFYING and r["shadow"]["state"] == shadow.STARTING
    assert shadow.holds(r, "new") and not shadow.wants_deployment(r, "new")
    r = shadow.started(r, [10, -1], T0)
    assert shadow.wants_deployment(r, "new") and not shadow.wants_deployment(r, "newer")
    same, need = shadow.step(r, False, T0 + timedelta(seconds=5), 30, 60)
    assert need is None and same["shadow"]["state"] == shadow.RUNNING
    late, need = shadow.step(r, False, T0 + timedelta(seconds=61), 30, 60)
    assert late["verdict"] == shadow.SHADOW_REJECTED and late["reason"] == shadow.DEADLINE
    assert late["shadow"]["state"] == shadow.REMOVING and shadow.holds(late, "new")
    assert not shadow.wants_deployment(late, "new")
    r, need = shadow.step(r, True, T0 + timedelta(seconds=5), 30, 60)
    assert need == shadow.WAIT_PROGRESS and r["shadow"]["readyAt"]
    assert not shadow.moved([10, -1], [10, -1], [20, 0])
    assert shadow.moved([10, -1], [11, -1], [20, 0])
    assert shadow.moved([10, -1], [10, -1], [10, 0]), "nothing waiting: nothing to move on"
    assert shadow.not_moving(r, T0 + timedelta(seconds=10), 30)["verdict"] == rollback.VERIFYING, "may still"
    assert shadow.not_moving(r, T0 + timedelta(seconds=36), 30)["reason"] == shadow.NOT_CONSUMING
    snap = {"committed": [12, -1], "input": [20, 0], "even": [100], "odd": [90], "deadLetter": [0]}
    r = shadow.opened(r, snap, T0 + timedelta(seconds=6), 30)
    assert shadow.step(r, True, T0 + timedelta(seconds=20), 30, 60)[1] is None
    assert shadow.step(r, True, T0 + timedelta(seconds=36), 30, 60)[1] == shadow.JUDGE
    end = {"committed": [900, 4], "input": [900, 4]}
    ranges, moved = shadow.compare_ranges(snap, end, [700, -1])
    assert ranges == {0: (12, 12 + shadow.SAMPLE_PER_PARTITION)} and moved
    ranges, _ = shadow.compare_ranges(snap | {"shadowCommitted": [40, -1]}, end, [700, -1])
    assert ranges == {0: (40, 40 + shadow.SAMPLE_PER_PARTITION)}, "from where both had committed"
    cost = shadow.load([10, -1], [700, 3], {"a": [400, 0], "b": [300, 3], "c": [0, 0]}, 1500)
    assert cost == {"consumed": 693, "written": 703, "read": 1500}
    ok = shadow.judged(r, shadow.Comparison(20, [], 0), True, True, T0, cost)
    assert ok["shadow"]["load"] == cost
    assert ok["shadow"]["verdict"] == shadow.PROMOTED and ok["verdict"] == rollback.VERIFYING
    assert not shadow.holds(ok, "new") and shadow.event(r, ok)[1] == "ShadowPromoted"
    bad = shadow.judged(
        r,
        shadow.Comparison(20, [{"partition": 0, "offset": 12, "stable": "a", "shadow": "b", "why": "another side"}], 3),
        True,
        True,
        T0,
    )
    assert bad["verdict"] == shadow.SHADOW_REJECTED and bad["reason"] == shadow.OUTPUTS_DIFFER
    assert "3 of 20" in bad["message"] and "offset 12" in bad["message"]
    assert shadow.event(r, bad)[:2] == ("Warning", "ShadowRejected")
    idle = shadow.judged(r, shadow.Comparison(0, [], 0), True, False, T0)
    assert idle["reason"] == shadow.NOT_CONSUMING
    quiet = shadow.judged(r, shadow.Comparison(0, [], 0), False, False, T0)
    assert quiet["shadow"]["verdict"] == shadow.PROMOTED and quiet["shadow"]["reason"] == shadow.NO_TRAFFIC
    gone = shadow.removed(bad)
    assert gone["shadow"]["state"] == shadow.DONE and shadow.holds(gone, "new"), "rejected: still held"
    # A new change while a shadow runs: the old one's topics and group are deleted with the new one's.
    newer = shadow.start(r, 4, "newer", shadow.names(p, 4), T0)
    topics, groups = shadow.to_delete(newer["shadow"])
    assert f"{p.stream_name}-shadow-3" in groups and f"{p.stream_name}-shadow-4" in groups
    assert len(topics) == 6


def test_a_shadows_status_survives_the_api_servers_pruning_and_says_degraded_when_rejected():
    obj, p = pipeline()
    r = shadow.started(shadow.start(stable_rollout(), 3, "new", shadow.names(p, 3), T0), [10], T0)
    r, _ = shadow.step(r, True, T0, 30, 60)
    snap = {"committed": [12], "input": [20], "inputStart": [0], "even": [100], "odd": [90], "deadLetter": [0]}
    r = shadow.opened(r, snap, T0, 30)
    bad = shadow.judged(
        r,
        shadow.Comparison(
            20, [{"partition": 0, "offset": 12, "stable": "even: 'x'", "shadow": "odd: 'x'", "why": "another side"}], 3
        ),
        True,
        True,
        T0,
    )
    bad = shadow.start(bad, 4, "newer", shadow.names(p, 4), T0) | {
        "shadow": {**bad["shadow"], "leftover": [{"group": "g", "topics": ["t"]}]}
    }
    loaded = shadow.judged(r, shadow.Comparison(5, [], 0), True, True, T0, {"consumed": 1, "written": 2, "read": 3})
    for rollout in (r, bad, loaded, shadow.skipped(stable_rollout(), "new", 3)):
        status = compute_status(obj, render_deployments(obj), T0, rollout=copy.deepcopy(rollout), pipeline=p)
        assert prune(status, STATUS_SCHEMA) == status
    rejected = shadow.judged(
        r,
        shadow.Comparison(1, [{"partition": 0, "offset": 1, "stable": "s", "shadow": "h", "why": "w"}], 1),
        True,
        True,
        T0,
    )
    deps = render_deployments(obj)
    for d in deps:
        n = d["spec"]["replicas"]
        d["metadata"]["generation"] = 1
        d["status"] = {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
    status = compute_status(obj, deps, T0, rollout=rejected, pipeline=p)
    conds = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Degraded" and conds["Degraded"]["reason"] == "ShadowRejected"
    assert conds["ShadowRelease"]["status"] == "False" and conds["ShadowRelease"]["reason"] == "OutputsDiffer"


# --- the controller, with fakes ---------------------------------------------------------------------

from controllerfakes import FakeAdmin  # noqa: E402
from test_rollback_units import Now, offsets  # noqa: E402


class ShadowAdmin(FakeAdmin):
    """FakeAdmin plus what a shadow release reads and writes."""

    def __init__(self):
        super().__init__()
        self.start, self.shadow_committed, self.input_end = [10], [10], [30]
        self.by_topic = {}  # topic -> records as (partition, offset, value, headers)
        self.groups_deleted = []
        self.members = {}  # group -> still has members

    def shadow_start(self, brokers, stable_group, shadow_group, topic, like, create, rf):
        self._check("shadow_start")
        for name in create:
            self.topics[name] = (1, rf)
        return list(self.start), {}

    def committed(self, brokers, group, topic):
        self._check("committed")
        return list(self.shadow_committed)

    def ends(self, brokers, topics):
        self._check("ends")
        return {t: list(self.input_end) if t not in self.by_topic else [len(self.by_topic[t])] for t in topics}

    def read_records(self, brokers, topic, ranges, timeout_s, read_committed=False):
        self._check("read_records")
        return list(self.by_topic.get(topic, []))

    def delete_group(self, brokers, group):
        self._check("delete_group")
        if self.members.get(group):
            return False
        self.groups_deleted.append(group)
        return True


def _shadow_pipeline():
    now = Now()
    kube, ctl = make(now=now)
    ctl.admin = ctl.clients.admin = ShadowAdmin()
    obj = kube.pipelines["timestamps"]
    obj["metadata"]["resourceVersion"] = "1"
    obj["spec"]["rollout"] = {"autoRollback": True, "verifySeconds": 30, "strategy": "Shadow"}
    return kube, ctl, now


def _pass(kube, ctl, ready=True):
    run(ctl.reconcile("ns", "timestamps"))
    if ready:
        _ready(kube)


def _router(kube, name="timestamps-router"):
    return kube.deps[name]["spec"]["template"]["spec"]["containers"][0]


def _change(kube, obj, spec_router, generation):
    obj["spec"]["router"].update(spec_router)
    obj["metadata"]["generation"] = generation


def _shadow_run(kube, ctl, now, obj, admin, shadow_prefixes, swap=False, stable_prefixes=PREFIXES):
    """From a change to the router to the shadow's verdict; returns the status then."""
    t = obj["spec"]["kafka"]["topics"]
    _pass(kube, ctl)  # the shadow starts: its names in the status; the pipeline stays at the stable revision
    assert obj["status"]["rollout"]["shadow"]["state"] == shadow.STARTING and "shadow_start" not in admin.calls
    _pass(kube, ctl)  # its topics and offsets
    st = obj["status"]
    assert st["rollout"]["shadow"]["state"] == shadow.RUNNING, st["rollout"]
    assert "shadow_start" in admin.calls
    _pass(kube, ctl)  # the children phase creates the shadow Deployment
    assert "timestamps-router-shadow" in kube.deps
    admin.shadow_committed = [12]
    admin.offsets_value = offsets([12], [100], [100]) | {"input": [30], "inputStart": [0]}
    _pass(kube, ctl)  # available and moving: the window opens
    assert obj["status"]["rollout"]["shadow"]["window"]["start"]["committed"] == [12]
    now.t += timedelta(seconds=31)
    admin.offsets_value = offsets([32], [110], [110]) | {"input": [32], "inputStart": [0]}
    admin.shadow_committed = [32]
    inputs = [rec(0, 12 + i, b"11/27/26 %08d" % i) for i in range(20)]
    stable = outputs(inputs, stable_prefixes)
    n = shadow.names(Pipeline.from_resource(obj), obj["metadata"]["generation"])
    ours = outputs(inputs, shadow_prefixes, swap=swap)
    admin.by_topic = {
        t["input"]: inputs,
        t["even"]: stable["even"],
        t["odd"]: stable["odd"],
        n.even: ours["even"],
        n.odd: ours["odd"],
        n.dead_letter: [],
    }
    _pass(kube, ctl)  # the window ends: compared, a verdict
    return obj["status"], n


@pytest.mark.parametrize("counters", [shadow.COUNTERS_FOREIGN, shadow.COUNTERS_UNREAD])
def test_a_ready_shadow_that_writes_but_never_commits_is_not_compared_and_rolls_by_readiness(counters):
    _, p = pipeline()
    r = shadow.started(shadow.start(stable_rollout(), 3, "new", shadow.names(p, 3), T0), [10], T0)
    r, _ = shadow.step(r, True, T0, 30, 60)
    r = shadow.not_moving(r, T0 + timedelta(seconds=2), 30, outputs=4)  # the start: what was there already
    assert not shadow.suspect_foreign(r, T0 + timedelta(seconds=20), 30, 90), "not before verifySeconds"
    assert not shadow.suspect_foreign(r, T0 + timedelta(seconds=31), 30, 4), "nothing written"
    assert shadow.suspect_foreign(r, T0 + timedelta(seconds=31), 30, 90)
    out = shadow.not_moving(r, T0 + timedelta(seconds=31), 30, outputs=90, counters=counters)
    sh = out["shadow"]
    assert (sh["verdict"], sh["reason"], sh["state"]) == (shadow.NOT_COMPARED, shadow.GROUP_UNUSED, shadow.REMOVING)
    assert "86 records reached the shadow's topics" in sh["message"] and p.stream_name in sh["message"]
    assert out["verdict"] == rollback.VERIFYING and out["reason"] == rollback.WAITING_FOR_READY
    assert "rolling strategy" in out["message"]
    assert not shadow.holds(out, "new") and not shadow.wants_deployment(out, "new"), "the router rolls"
    assert shadow.judged_by_readiness(out) and not shadow.judged_by_readiness({**out, "templates": "newer"})
    assert shadow.event(r, out)[:2] == ("Warning", "ShadowNotCompared")
    assert shadow.history_entry(r, out) == {"generation": 3, "verdict": "NotCompared", "reason": "GroupNotUsed"}
    assert shadow.to_delete(out["shadow"])[1] == [f"{p.stream_name}-shadow-3"], "its group and topics still go"


def test_a_shadow_of_this_projects_router_that_stalls_is_still_rejected_as_not_consuming():
    _, p = pipeline()
    r = shadow.started(shadow.start(stable_rollout(), 3, "new", shadow.names(p, 3), T0), [10], T0)
    r, _ = shadow.step(r, True, T0, 30, 60)
    r = shadow.not_moving(r, T0, 30, outputs=0)
    idle = shadow.not_moving(r, T0 + timedelta(seconds=31), 30, outputs=0, counters=shadow.COUNTERS_FOREIGN)
    assert idle["verdict"] == shadow.SHADOW_REJECTED and idle["reason"] == shadow.NOT_CONSUMING, "writes nothing"
    stuck = shadow.not_moving(r, T0 + timedelta(seconds=31), 30, outputs=50, counters=shadow.COUNTERS_OURS)
    assert stuck["verdict"] == shadow.SHADOW_REJECTED and stuck["reason"] == shadow.NOT_CONSUMING
    assert "wrote 50 records" in stuck["message"] and "counters" in stuck["message"]
    assert shadow.judged_by_readiness(stuck) is None


def test_a_shadow_that_wrote_in_its_window_but_never_committed_is_judged_by_its_counters():
    # Opened with nothing waiting (an idle input), then records came: the stable group
    # moved, the shadow's did not, but its topics gained records.
    _, p = pipeline()
    n = shadow.names(p, 3)
    r = shadow.started(shadow.start(stable_rollout(), 3, "new", n, T0), [10], T0)
    r = shadow.opened(r, {"committed": [10], "input": [10], "shadowEven": [0], "shadowOdd": [2]}, T0, 30)
    written = shadow.written_in_window(r, {n.even: [4], n.odd: [5], n.dead_letter: [0]}, n)
    assert written == 7
    none = shadow.Comparison(0, [], 0)
    assert shadow.judge_suspects_foreign(none, True, False, written)
    assert not shadow.judge_suspects_foreign(none, True, False, 0) and not shadow.judge_suspects_foreign(
        none, True, True, 7
    )
    later = T0 + timedelta(seconds=31)
    foreign = shadow.judged(r, none, True, False, later, written=written, counters=shadow.COUNTERS_FOREIGN)
    assert (foreign["shadow"]["verdict"], foreign["shadow"]["reason"]) == (shadow.NOT_COMPARED, shadow.GROUP_UNUSED)
    assert "7 records reached the shadow's topics in the window" in foreign["shadow"]["message"]
    assert "window" not in foreign["shadow"] and foreign["verdict"] == rollback.VERIFYING
    ours = shadow.judged(r, none, True, False, later, written=written, counters=shadow.COUNTERS_OURS)
    assert ours["verdict"] == shadow.SHADOW_REJECTED and ours["reason"] == shadow.NOT_CONSUMING
    silent = shadow.judged(r, none, True, False, later, written=0, counters=shadow.COUNTERS_FOREIGN)
    assert silent["reason"] == shadow.NOT_CONSUMING, "wrote nothing: not consuming, whatever its image"


def test_a_stable_router_that_does_not_use_its_group_skips_the_shadow_naming_why():
    stable = stable_rollout()
    assert not shadow.stable_group_unused(stable)
    unused = {**stable, "verdict": rollback.STABLE, "reason": rollback.GROUP_UNUSED}
    assert shadow.stable_group_unused(unused) and not shadow.starts(unused, "new", "Shadow", True, True)
    assert not shadow.stable_group_unused({**unused, "verdict": rollback.VERIFYING})
    out = shadow.skipped({"verdict": rollback.VERIFYING}, "new", 4, shadow.GROUP_UNUSED)
    assert (out["shadow"]["state"], out["shadow"]["reason"]) == (shadow.SKIPPED, "GroupNotUsed")
    assert "does not use its consumer group" in out["shadow"]["message"]


def test_the_controller_rolls_a_router_that_ignores_its_group_instead_of_rejecting_it():
    kube, ctl, now = _shadow_pipeline()
    admin, obj = ctl.admin, kube.pipelines["timestamps"]
    _stable_first(kube, ctl, now)
    _change(kube, obj, {"image": "springcloud/polyglot-python-app:0.2"}, 2)
    _pass(kube, ctl)  # the shadow starts: its names in the status
    _pass(kube, ctl)  # its topics and group
    _pass(kube, ctl)  # its Deployment
    assert "timestamps-router-shadow" in kube.deps
    n = shadow.names(Pipeline.from_resource(obj), 2)
    admin.shadow_committed = [10]  # never moves past the stable group's offsets it was given
    admin.by_topic = {n.even: [], n.odd: [], n.dead_letter: []}
    _pass(kube, ctl)  # available, not moving: its topics' ends noted
    assert obj["status"]["rollout"]["shadow"]["outputsAtReady"] == 0
    now.t += timedelta(seconds=31)
    admin.by_topic = {n.even: [rec(0, i, b"Even timestamp: 2") for i in range(7)], n.odd: [], n.dead_letter: []}
    _pass(kube, ctl)
    st = obj["status"]
    sh = st["rollout"]["shadow"]
    assert (sh["verdict"], sh["reason"]) == (shadow.NOT_COMPARED, shadow.GROUP_UNUSED), sh
    assert prune(st, STATUS_SCHEMA) == st, "every key the fallback writes is in the status schema"
    assert ("Warning", "ShadowNotCompared") in [e[:2] for e in kube.events]
    assert not any(e[1] == shadow.SHADOW_REJECTED for e in kube.events)
    _pass(kube, ctl)  # the shadow Deployment goes, the router rolls to the new revision
    assert "timestamps-router-shadow" not in kube.deps
    assert _router(kube)["image"] == "springcloud/polyglot-python-app:0.2"
    _pass(kube, ctl)  # its group and topics deleted; the rolled router available: judged by readiness
    _pass(kube, ctl)
    st = obj["status"]
    assert n.group in admin.groups_deleted and not any(x in admin.topics for x in n.topics)
    assert st["phase"] == "Running", st["conditions"]
    r = st["rollout"]
    assert (r["verdict"], r["reason"]) == (rollback.STABLE, rollback.GROUP_UNUSED), r
    assert "judged by readiness" in r["message"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["ShadowRelease"]["status"], conds["ShadowRelease"]["reason"]) == ("False", "GroupNotUsed")
    assert "never committed in the shadow's consumer group" in conds["ShadowRelease"]["message"]
    assert conds["RolloutVerified"]["status"] == "True"
    # The next change: the stable router uses no group, so no shadow is started.
    admin.calls.clear()
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 3)
    _pass(kube, ctl)
    assert "shadow_start" not in admin.calls and "timestamps-router-shadow" not in kube.deps
    assert "--tsrouter.even-prefix=EVEN:" in _router(kube)["args"], "rolled at once"
    cond = {c["type"]: c for c in obj["status"]["conditions"]}["ShadowRelease"]
    assert (cond["status"], cond["reason"]) == ("False", "GroupNotUsed")


def test_the_controller_promotes_a_harmless_shadow_and_rejects_a_misrouting_one():
    kube, ctl, now = _shadow_pipeline()
    admin, obj = ctl.admin, kube.pipelines["timestamps"]
    t = obj["spec"]["kafka"]["topics"]
    # 1. The first revision: judged by autoRollback's window as ever (nothing to compare with).
    admin.offsets_value = offsets([0], [0], [0])
    _pass(kube, ctl)
    _pass(kube, ctl)
    now.t += timedelta(seconds=31)
    admin.offsets_value = offsets([10], [5], [5])
    admin.records = {
        t["even"]: [b"Even timestamp:11/27/26 00:00:02"],
        t["odd"]: [],
        t["input"]: [b"11/27/26 00:00:0%d" % i for i in range(10)],
    }
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["verdict"] == rollback.STABLE and "shadow" not in obj["status"]["rollout"]
    stable_args = list(_router(kube)["args"])

    # 2. A new prefix: run as a shadow, equal through the prefix, promoted, then rolled.
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    st, n = _shadow_run(kube, ctl, now, obj, admin, {"even": "EVEN:", "odd": "Odd timestamp:"})
    assert _router(kube)["args"] == stable_args, "the real router did not change while the shadow ran"
    sh = st["rollout"]["shadow"]
    assert sh["verdict"] == shadow.PROMOTED and sh["compared"] == 20 and sh["state"] == shadow.REMOVING, sh
    assert ("Normal", "ShadowPromoted") in [e[:2] for e in kube.events]
    entry = st["history"][-1]["shadow"]
    assert prune(st, STATUS_SCHEMA) == st, "every key the shadow writes is in the status schema"
    assert entry == {"generation": 2, "verdict": "Promoted", "reason": "OutputsEqual", "compared": 20, "differing": 0}
    admin.members[n.group] = True  # its consumer still in the group (a pod not yet gone)
    _pass(kube, ctl)  # the shadow Deployment goes, the router rolls to the new revision
    assert "timestamps-router-shadow" not in kube.deps
    assert "--tsrouter.even-prefix=EVEN:" in _router(kube)["args"]
    assert all(x in admin.topics for x in n.topics) and obj["status"]["rollout"]["shadow"]["state"] == "Removing"
    admin.members[n.group] = False
    _pass(kube, ctl)  # its group empty: group and topics deleted
    assert obj["status"]["rollout"]["shadow"]["state"] == shadow.DONE
    assert n.group in admin.groups_deleted and not any(x in admin.topics for x in n.topics)
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["ShadowRelease"] == "True"
    # autoRollback's window then judges the rolled router as usual.
    admin.offsets_value = offsets([40], [120], [120])
    _pass(kube, ctl)
    now.t += timedelta(seconds=31)
    admin.offsets_value = offsets([50], [125], [125])
    admin.records = {
        t["even"]: [b"EVEN:11/27/26 00:00:02"],
        t["odd"]: [],
        t["input"]: [b"11/27/26 00:00:0%d" % i for i in range(10)],
    }
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["verdict"] == rollback.STABLE, obj["status"]["rollout"]
    promoted_args = list(_router(kube)["args"])

    # 3. A misrouting release (each side to the other's topic): rejected, the router never changes.
    admin.calls.clear()
    _change(kube, obj, {"image": "ghcr.io/tspipe/router:9.9.9-misroute"}, 3)
    st, n = _shadow_run(
        kube,
        ctl,
        now,
        obj,
        admin,
        {"even": "EVEN:", "odd": "Odd timestamp:"},
        swap=True,
        stable_prefixes={"even": "EVEN:", "odd": "Odd timestamp:"},
    )
    assert st["rollout"]["verdict"] == shadow.SHADOW_REJECTED and st["rollout"]["reason"] == shadow.OUTPUTS_DIFFER
    d = st["rollout"]["shadow"]["differences"][0]
    assert (d["partition"], d["offset"]) == (0, 12) and d["stable"].startswith("even: 'EVEN:")
    assert ("Warning", "ShadowRejected") in [e[:2] for e in kube.events]
    assert st["history"][-1]["shadow"]["verdict"] == "ShadowRejected"
    assert prune(st, STATUS_SCHEMA) == st
    assert sum("shadow" in h for h in obj["status"]["history"]) == 2, "one entry per verdict"
    _pass(kube, ctl)
    _pass(kube, ctl)
    st = obj["status"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert st["phase"] == "Degraded" and conds["Degraded"]["reason"] == "ShadowRejected", conds["Degraded"]
    assert "offset 12" in conds["Degraded"]["message"]
    assert _router(kube)["args"] == promoted_args and _router(kube)["image"] != "ghcr.io/tspipe/router:9.9.9-misroute"
    assert st["rollout"]["shadow"]["state"] == shadow.DONE and "timestamps-router-shadow" not in kube.deps
    assert n.group in admin.groups_deleted


def test_with_credentials_a_change_to_the_router_rolls_instead_and_the_condition_says_why():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    obj["spec"]["kafka"]["credentials"] = {"secretName": "kafka-user", "mechanism": "SCRAM-SHA-512"}
    obj["spec"]["kafka"]["topics"]["manage"] = False
    _pass(kube, ctl)
    _pass(kube, ctl)  # a window on the router pods' counters (none here: readiness only)
    now.t += timedelta(seconds=31)
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["verdict"] == rollback.STABLE
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    _pass(kube, ctl)
    assert "--tsrouter.even-prefix=EVEN:" in _router(kube)["args"], "rolled at once"
    assert "timestamps-router-shadow" not in kube.deps and "shadow_start" not in ctl.admin.calls
    st = obj["status"]
    assert st["rollout"]["shadow"]["state"] == shadow.SKIPPED and st["rollout"]["verdict"] == rollback.VERIFYING
    cond = {c["type"]: c for c in st["conditions"]}["ShadowRelease"]
    assert (cond["status"], cond["reason"]) == ("False", "CredentialsNotReadable") and "Secret" in cond["message"]


def _stable_first(kube, ctl, now):
    """The first revision judged Stable by autoRollback's window (nothing to compare with)."""
    admin, obj = ctl.admin, kube.pipelines["timestamps"]
    t = obj["spec"]["kafka"]["topics"]
    admin.offsets_value = offsets([0], [0], [0])
    _pass(kube, ctl)
    _pass(kube, ctl)
    now.t += timedelta(seconds=31)
    admin.offsets_value = offsets([10], [5], [5])
    admin.records = {
        t["even"]: [b"Even timestamp:11/27/26 00:00:02"],
        t["odd"]: [],
        t["input"]: [b"11/27/26 00:00:0%d" % i for i in range(10)],
    }
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["verdict"] == rollback.STABLE


def _crashing_pod(restarts, waiting=True):
    """A shadow router pod as the kubelet reports a container that exits at start."""
    state = (
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=router"}}
        if waiting
        else {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    )
    return {
        "metadata": {
            "name": "timestamps-router-shadow-abc",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {
                "app.kubernetes.io/instance": "timestamps",
                "app.kubernetes.io/component": "router-shadow",
                "app.kubernetes.io/managed-by": MANAGER,
            },
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "router",
                    "ready": False,
                    "restartCount": restarts,
                    "state": state,
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 2}},
                }
            ],
        },
    }


def test_what_the_pods_of_an_unavailable_shadow_say_names_the_crash():
    _, p = pipeline()
    probe = p.app(shadow.ROUTER).probes.readiness
    looping = shadow.unavailable_why([_crashing_pod(3)], p.name, probe, T0)
    assert looping.startswith("1 pod(s) CrashLoopBackOff: last exit: Error (code 2)"), looping
    # Between two crashes the container runs for a moment: its history still names them.
    again = shadow.unavailable_why([_crashing_pod(3, waiting=False)], p.name, probe, T0)
    assert again == "restarted 3 time(s), last exit: Error (code 2)", again
    pending = _crashing_pod(0)
    pending["status"] = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    assert shadow.unavailable_why([pending], p.name, probe, T0).startswith("Unschedulable")
    router = _crashing_pod(3)
    router["metadata"]["labels"]["app.kubernetes.io/component"] = "router"
    assert shadow.unavailable_why([router], p.name, probe, T0) == "", "the real router's pods are not the shadow's"


def test_a_shadow_that_crash_loops_is_rejected_at_the_deadline_naming_the_crash():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    obj["spec"]["rollout"]["progressDeadlineSeconds"] = 30
    _stable_first(kube, ctl, now)
    stable_args = list(_router(kube)["args"])
    _change(kube, obj, {"properties": {"tsrouter.workers": "0"}}, 2)
    _pass(kube, ctl)  # the shadow starts: its names in the status
    _pass(kube, ctl)  # its topics and group
    _pass(kube, ctl, ready=False)  # its Deployment: never available
    kube.pods = [_crashing_pod(2)]
    now.t += timedelta(seconds=20)
    _pass(kube, ctl, ready=False)
    assert obj["status"]["rollout"]["shadow"].get("verdict") is None, "not before the deadline"
    now.t += timedelta(seconds=15)
    _pass(kube, ctl, ready=False)
    r = obj["status"]["rollout"]
    assert r["verdict"] == shadow.SHADOW_REJECTED and r["reason"] == shadow.DEADLINE, r
    assert "progressDeadlineSeconds (30s): 1 pod(s) CrashLoopBackOff: last exit: Error (code 2)" in r["message"]
    warning = next(e for e in kube.events if e[1] == "ShadowRejected")
    assert "CrashLoopBackOff" in warning[2]
    kube.pods = []
    _pass(kube, ctl)
    _pass(kube, ctl)
    st = obj["status"]
    cond = {c["type"]: c for c in st["conditions"]}["Degraded"]
    assert st["phase"] == "Degraded" and cond["reason"] == "ShadowRejected" and "CrashLoopBackOff" in cond["message"]
    assert _router(kube)["args"] == stable_args, "the real router never changed"
    assert st["rollout"]["shadow"]["state"] == shadow.DONE and "timestamps-router-shadow" not in kube.deps
    n = shadow.names(Pipeline.from_resource(obj), 2)
    assert not any(x in ctl.admin.topics for x in n.topics) and n.group in ctl.admin.groups_deleted


def test_the_shadow_runs_the_autoscalers_count_not_the_specs():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    obj["spec"]["router"]["autoscaling"] = {"mode": "Enforce", "maxReplicas": 4, "scaleUpStabilizationSeconds": 0}
    ctl.admin.partitions, ctl.admin.lag_value = 3, 10_000
    _stable_first(kube, ctl, now)
    assert obj["spec"]["router"]["replicas"] == 1 and kube.deps["timestamps-router"]["spec"]["replicas"] == 3
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    _pass(kube, ctl)  # the shadow starts: its names in the status
    _pass(kube, ctl)  # its topics and group
    _pass(kube, ctl)  # its Deployment
    assert kube.deps["timestamps-router-shadow"]["spec"]["replicas"] == 3, "as many consumers as the real router"
    ctl.admin.lag_value = 0  # the autoscaler scales the router down: the shadow follows
    now.t += timedelta(seconds=400)
    ctl.clock.t += 400
    _pass(kube, ctl)
    _pass(kube, ctl)
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 1
    assert kube.deps["timestamps-router-shadow"]["spec"]["replicas"] == 1


def test_a_pause_stops_the_shadow_with_the_router_and_its_clock_until_the_resume():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    obj["spec"]["rollout"]["progressDeadlineSeconds"] = 60
    admin = ctl.admin
    _stable_first(kube, ctl, now)
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    _pass(kube, ctl)  # the shadow starts: its names in the status
    _pass(kube, ctl)  # its topics and group
    _pass(kube, ctl)  # its Deployment
    admin.shadow_committed = [12]
    admin.offsets_value = offsets([12], [100], [100]) | {"input": [30], "inputStart": [0]}
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["shadow"]["window"], "the window opened"
    # Paused: the source stops, the router drains and stops, and the shadow with it.
    obj["spec"]["paused"] = True
    obj["metadata"]["generation"] = 3
    for _ in range(4):
        _pass(kube, ctl)
    assert obj["status"]["phase"] == "Paused", obj["status"]["conditions"]
    assert kube.deps["timestamps-router"]["spec"]["replicas"] == 0
    assert kube.deps["timestamps-router-shadow"]["spec"]["replicas"] == 0
    sh = obj["status"]["rollout"]["shadow"]
    assert sh["heldSince"] and "window" not in sh and sh.get("verdict") is None, sh
    assert prune(obj["status"], STATUS_SCHEMA) == obj["status"]
    assert "the pipeline is paused" in obj["status"]["rollout"]["message"]
    # Long past its deadline and window: no verdict while paused, and no status write per pass.
    now.t += timedelta(seconds=600)
    writes = len(kube.writes)
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["shadow"].get("verdict") is None and len(kube.writes) == writes
    # Resumed: both run again; the deadline counts from the resume, a new window opens, a verdict follows.
    obj["spec"]["paused"] = False
    obj["metadata"]["generation"] = 4
    _pass(kube, ctl, ready=False)
    assert kube.deps["timestamps-router-shadow"]["spec"]["replicas"] == 1
    sh = obj["status"]["rollout"]["shadow"]
    assert "heldSince" not in sh and sh["since"] == "2026-01-01T00:10:31Z", sh
    _ready(kube)
    admin.shadow_committed = [40]
    admin.offsets_value = offsets([40], [120], [120]) | {"input": [60], "inputStart": [0]}
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["shadow"]["window"]["start"]["committed"] == [40]
    now.t += timedelta(seconds=31)
    admin.shadow_committed = [60]
    admin.offsets_value = offsets([60], [130], [130]) | {"input": [60], "inputStart": [0]}
    _pass(kube, ctl)
    assert obj["status"]["rollout"]["shadow"]["verdict"] in (shadow.PROMOTED, shadow.SHADOW_REJECTED)


def test_deleting_the_pipeline_mid_shadow_deletes_its_deployment_then_its_group_and_topics():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    admin = ctl.admin
    _stable_first(kube, ctl, now)
    assert "finalizers" not in obj["metadata"] or not obj["metadata"]["finalizers"], "deleteOnRemoval is off"
    at_start = []
    create = admin.shadow_start

    def shadow_start(*args):
        at_start.append(list(obj["metadata"].get("finalizers") or []))
        return create(*args)

    admin.shadow_start = shadow_start
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    _pass(kube, ctl)  # the shadow starts: its names in the status
    _pass(kube, ctl)  # its topics and group
    n = shadow.names(Pipeline.from_resource(obj), 2)
    assert at_start == [["tspipe.io/delete-topics"]], "the finalizer before the shadow's topics exist"
    assert all(x in admin.topics for x in n.topics)
    _pass(kube, ctl)
    assert "timestamps-router-shadow" in kube.deps
    # Deleted mid-shadow: the shadow Deployment goes first; its pods hold the topics until gone.
    obj["metadata"]["deletionTimestamp"] = format_time(now.t)
    kube.pods = [_crashing_pod(0, waiting=False)]
    out = run(ctl.reconcile("ns", "timestamps"))
    assert "timestamps-router-shadow" not in kube.deps and out.retry_after == shadow.RECHECK_SECONDS
    assert all(x in admin.topics for x in n.topics) and obj["metadata"]["finalizers"]
    kube.pods = []
    admin.members[n.group] = True  # its consumer not yet out of the group
    run(ctl.reconcile("ns", "timestamps"))
    assert obj["metadata"]["finalizers"] and all(x in admin.topics for x in n.topics)
    admin.members[n.group] = False
    run(ctl.reconcile("ns", "timestamps"))
    assert n.group in admin.groups_deleted and not any(x in admin.topics for x in n.topics)
    assert obj["metadata"]["finalizers"] == []
    assert obj["spec"]["kafka"]["topics"]["input"] in admin.topics, "its own topics stay (no deleteOnRemoval)"


def test_a_pipeline_deleted_after_its_shadows_topics_exist_deletes_them_though_that_pass_left_no_status():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    admin = ctl.admin
    _stable_first(kube, ctl, now)
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    _pass(kube, ctl)  # the shadow starts: its names in the status, nothing on the broker yet
    n = shadow.names(Pipeline.from_resource(obj), 2)
    named = copy.deepcopy(obj["status"])
    assert named["rollout"]["shadow"]["topics"] == n.topics and not any(x in admin.topics for x in n.topics)
    _pass(kube, ctl)  # its topics and group
    assert all(x in admin.topics for x in n.topics) and obj["metadata"]["finalizers"]
    # That pass's status never landed (the operator stopped mid-pass), then the pipeline is deleted.
    obj["status"] = named
    obj["metadata"]["deletionTimestamp"] = format_time(now.t)
    run(ctl.reconcile("ns", "timestamps"))
    assert n.group in admin.groups_deleted and not any(x in admin.topics for x in n.topics)
    assert obj["metadata"]["finalizers"] == []


def test_the_finalizer_comes_off_once_the_shadows_topics_are_deleted():
    kube, ctl, now = _shadow_pipeline()
    obj = kube.pipelines["timestamps"]
    _stable_first(kube, ctl, now)
    _change(kube, obj, {"evenPrefix": "EVEN:"}, 2)
    _shadow_run(kube, ctl, now, obj, ctl.admin, {"even": "EVEN:", "odd": "Odd timestamp:"})
    assert obj["metadata"]["finalizers"] == ["tspipe.io/delete-topics"]
    _pass(kube, ctl)  # the shadow removed: Done
    assert obj["status"]["rollout"]["shadow"]["state"] == shadow.DONE
    _pass(kube, ctl)
    assert obj["metadata"]["finalizers"] == [], "nothing of the operator's left to delete with the pipeline"
