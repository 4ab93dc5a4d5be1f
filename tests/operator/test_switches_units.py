"""Unit tests: the annotation switches (hold reconciliation, restart apps) and what they
do to the rendered Deployments, the status and its history (pure functions)."""

import copy
from datetime import UTC, datetime

import pytest
from samples import sample_pipeline

from tspipe.childdiff import UPDATE, plan
from tspipe.render import render_deployments, restarted_at, with_restart
from tspipe.status import compute_status, held_status
from tspipe.switches import reconcile_held, restart_request

NOW = datetime(2026, 11, 30, 7, 0, 0, tzinfo=UTC)
LATER = "2026-11-30T07:05:00Z"


def conditions(status):
    return {c["type"]: c for c in status.get("conditions") or []}


# --- hold -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, held",
    [
        ("true", True),
        ("True", True),
        (" TRUE ", True),
        ("false", False),
        ("", False),
        ("yes", False),
        ("1", False),
        (None, False),
    ],
)
def test_hold_only_on_true(value, held):
    ann = {} if value is None else {"tspipe.io/reconcile-paused": value}
    assert reconcile_held(sample_pipeline(stored=True, metadata={"annotations": ann})) is held


def test_held_status_keeps_the_last_reconciled_status_and_adds_the_condition():
    obj = sample_pipeline(stored=True)
    obj["status"] = compute_status(obj, [], NOW)
    obj["metadata"]["generation"] = 2  # the spec changed while held
    st = held_status(obj, LATER)
    paused = conditions(st)["ReconciliationPaused"]
    assert (paused["status"], paused["reason"], paused["observedGeneration"]) == ("True", "ReconciliationPaused", 2)
    assert "tspipe.io/reconcile-paused" in paused["message"] and paused["lastTransitionTime"] == LATER
    # Everything else as last reconciled: observedGeneration says generation 2 is not applied.
    assert {k: v for k, v in st.items() if k != "conditions"} == {
        k: v for k, v in obj["status"].items() if k != "conditions"
    }
    assert st["observedGeneration"] == 1
    assert [c for c in st["conditions"] if c["type"] != "ReconciliationPaused"] == obj["status"]["conditions"]
    # Idempotent: held again later, the same status (no write).
    obj["status"] = st
    assert held_status(obj, "2026-11-30T08:00:00Z") == st


def test_released_status_has_no_paused_condition():
    obj = sample_pipeline(stored=True)
    obj["status"] = held_status(sample_pipeline(stored=True), NOW)
    assert "ReconciliationPaused" not in conditions(compute_status(obj, [], NOW))


# --- restart ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, apps, unknown",
    [
        ("router", ["router"], []),
        ("evenLogger", ["evenLogger"], []),
        ("evenlogger", ["evenLogger"], []),  # the Deployment's suffix spelling works too
        ("oddLogger, time ,router,router", ["time", "router", "oddLogger"], []),  # stream order, once each
        ("router,bogus", ["router"], ["bogus"]),
        ("python-router", [], ["python-router"]),  # the SCDF label is not the spec's app name
    ],
)
def test_restart_request_parsing(value, apps, unknown):
    r = restart_request(sample_pipeline(stored=True, metadata={"annotations": {"tspipe.io/restart": value}}))
    assert (r.labels, list(r.unknown), r.value) == (apps, unknown, value)


def test_no_annotation_no_request():
    assert restart_request(sample_pipeline(stored=True)) is None
    assert restart_request(sample_pipeline(stored=True, metadata={"annotations": {"other": "x"}})) is None


def test_an_unknown_name_refuses_the_whole_request_naming_it():
    problem = restart_request(
        sample_pipeline(stored=True, metadata={"annotations": {"tspipe.io/restart": "router,bogus"}})
    ).problem()
    assert "'bogus'" in problem and "nothing restarted" in problem and "evenLogger" in problem
    assert (
        "names no app"
        in restart_request(
            sample_pipeline(stored=True, metadata={"annotations": {"tspipe.io/restart": " , "}})
        ).problem()
    )
    assert (
        restart_request(
            sample_pipeline(stored=True, metadata={"annotations": {"tspipe.io/restart": "router"}})
        ).problem()
        == ""
    )


def served(deps):
    """The Deployments as the API server returns them."""
    out = []
    for d in copy.deepcopy(deps):
        d["metadata"].update(resourceVersion="5", uid="u", generation=1)
        d["spec"]["template"]["spec"]["restartPolicy"] = "Always"
        out.append(d)
    return out


def test_restart_stamps_one_template_and_the_diff_rolls_only_that_app():
    obj = sample_pipeline(stored=True)
    desired = render_deployments(obj)
    actual = served(desired)
    assert plan(obj, desired, actual).actions == []
    stamped = [with_restart(d, LATER) if d["metadata"]["name"] == "timestamps-router" else d for d in desired]
    assert stamped[1]["metadata"]["annotations"] == desired[1]["metadata"]["annotations"], "hash unchanged"
    (a,) = plan(obj, stamped, actual).actions
    assert (a.verb, a.name) == (UPDATE, "timestamps-router")
    assert restarted_at(a.body) == LATER
    # Once written, later passes (no stamp in the render) leave it alone: no second restart.
    after = served([a.body if d["metadata"]["name"] == a.name else d for d in desired])
    assert plan(obj, desired, after).actions == []
    # ...and a drift repair keeps the stamp (an update does not undo the restart).
    after[1]["spec"]["replicas"] = 5
    (fix,) = plan(obj, desired, after).actions
    assert restarted_at(fix.body) == LATER
    assert restarted_at(None) is None and restarted_at(desired[0]) is None


# --- status and history ------------------------------------------------------------------------


IMAGES = {
    "time": "springcloudstream/time-source-kafka:5.1.1",
    "router": "ghcr.io/tspipe/router:0.1.0",
    "evenLogger": "springcloudstream/log-sink-kafka:5.1.1",
    "oddLogger": "springcloudstream/log-sink-kafka:5.1.1",
}


def test_restart_is_recorded_in_history_without_a_new_generation():
    obj = sample_pipeline(stored=True)
    obj["status"] = compute_status(obj, [], NOW)
    assert [h["generation"] for h in obj["status"]["history"]] == [1]
    st = compute_status(obj, [], LATER, restarted=["router"])
    assert st["history"][-1] == {
        "generation": 1,
        "time": LATER,
        "images": IMAGES,
        "changed": [],
        "restarted": ["router"],
    }
    assert st["specDigest"] == obj["status"]["specDigest"]
    obj["status"] = st
    assert compute_status(obj, [], "2026-11-30T09:00:00Z")["history"] == st["history"], "recorded once"
    # The next spec change is a revision of its own, naming what changed since the last one.
    obj["spec"]["router"]["image"] = "ghcr.io/tspipe/router:0.2.0"
    obj["metadata"]["generation"] = 2
    nxt = compute_status(obj, [], "2026-11-30T09:00:00Z")["history"][-1]
    assert (nxt["generation"], nxt["changed"]) == (2, ["router.image"]) and "restarted" not in nxt


def test_spec_change_and_restart_in_one_pass_are_two_entries():
    obj = sample_pipeline(stored=True)
    obj["status"] = compute_status(obj, [], NOW)
    obj["spec"]["time"]["image"] = "t:2"
    obj["metadata"]["generation"] = 2
    hist = compute_status(obj, [], LATER, restarted=["router", "evenLogger"])["history"]
    assert [(h["generation"], h["changed"], h.get("restarted")) for h in hist] == [
        (1, [], None),
        (2, ["time.image"], None),
        (2, [], ["router", "evenLogger"]),
    ]


def test_rejected_restart_condition_lasts_until_a_restart_or_a_spec_change():
    obj = sample_pipeline(stored=True)
    problem = restart_request(
        sample_pipeline(stored=True, metadata={"annotations": {"tspipe.io/restart": "bogus"}})
    ).problem()
    obj["status"] = compute_status(obj, [], NOW, restart_rejected=problem)
    rej = conditions(obj["status"])["RestartRejected"]
    assert (rej["status"], rej["reason"], rej["message"]) == ("True", "UnknownApp", problem)
    assert compute_status(obj, [], LATER) == obj["status"], "kept, unchanged: no write"
    assert "RestartRejected" not in conditions(compute_status(obj, [], LATER, restarted=["router"]))
    obj["metadata"]["generation"] = 2
    assert "RestartRejected" not in conditions(compute_status(obj, [], LATER))
