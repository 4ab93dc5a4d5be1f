"""Reading what Skipper reports from its platform per app (pure): `tspipe scdf status`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from tspipe.scdf.runtime import parse_runtime, summary

# Data Flow 2.11.5's answer to GET /runtime/streams?names=ts1 with Skipper 2.8.0 on
# Kubernetes, recorded on the real node while the apps started (links left out).
RECORDED = json.loads((Path(__file__).parent / "data" / "runtime-streams.json").read_text())


def test_apps_in_stream_order_with_their_instances():
    apps = parse_runtime(RECORDED, "ts1")
    assert [a.label for a in apps] == ["time", "python-router", "evenLogger", "oddLogger"]
    router = apps[1]
    assert (router.state, router.deployed_instances, len(router.instances)) == ("deployed", 1, 1)
    assert router.deployment_id == "ts1-python-router-v1"
    assert summary(apps) == "apps: 1 of 4 deployed"


def test_a_starting_app_names_its_pod_and_what_the_phase_means():
    time_app = parse_runtime(RECORDED, "ts1")[0]
    line = time_app.line()
    assert line.startswith("time: deploying, 0/1 instances deployed (ts1-time-v1)")
    assert "ts1-time-v1-546bc85dcf-hlgd6: deploying, phase Running: running, not ready yet" in line


def test_a_pending_pod_points_at_the_image_or_the_schedule():
    body = copy.deepcopy(RECORDED)
    inst = body["_embedded"]["streamStatusResourceList"][0]["applications"]["_embedded"]["appStatusResourceList"][1][
        "instances"
    ]["_embedded"]["appInstanceStatusResourceList"][0]
    inst.update(state="deploying")
    inst["attributes"]["phase"] = "Pending"
    router = parse_runtime(body, "ts1")[1]
    assert router.state == "deployed"  # the app's state is Skipper's, unchanged here
    assert "phase Pending: its container has not started: the image is missing on the node" in router.line()


def test_all_deployed_and_missing_apps():
    body = copy.deepcopy(RECORDED)
    apps_json = body["_embedded"]["streamStatusResourceList"][0]["applications"]["_embedded"]["appStatusResourceList"]
    for a in apps_json:
        a["state"] = "deployed"
        for i in a["instances"]["_embedded"]["appInstanceStatusResourceList"]:
            i["state"] = "deployed"
    assert summary(parse_runtime(body, "ts1")) == "apps: 4 of 4 deployed"
    del apps_json[0]  # the recorded answer lists oddLogger first
    assert summary(parse_runtime(body, "ts1")) == "apps: 3 of 4 deployed (no report for oddLogger)"


def test_an_app_without_instances_says_so():
    body = {
        "_embedded": {
            "streamStatusResourceList": [
                {
                    "name": "s",
                    "applications": {
                        "_embedded": {
                            "appStatusResourceList": [{"deploymentId": "s-time-v1", "state": "failed", "name": "time"}]
                        }
                    },
                }
            ]
        }
    }
    (app,) = parse_runtime(body, "s")
    assert app.line() == "time: failed, 0/0 instances deployed (s-time-v1)\n    the platform reports no instance"


def test_other_streams_and_odd_answers_are_ignored():
    assert parse_runtime({}, "s") == []
    assert parse_runtime({"_embedded": {"streamStatusResourceList": [{"name": "other"}]}}, "s") == []
    assert parse_runtime("not json we know", "s") == []


def test_an_unreadable_platform_names_every_app_and_the_reason():
    from tspipe.scdf.runtime import unknown_lines

    assert unknown_lines(["oddLogger", "time"], "reading the runtime status failed:\n HTTP 500: refused") == [
        "apps: the platform's status could not be read: reading the runtime status failed: HTTP 500: refused",
        "  time: unknown (no report from the platform)",
        "  oddLogger: unknown (no report from the platform)",
    ]
