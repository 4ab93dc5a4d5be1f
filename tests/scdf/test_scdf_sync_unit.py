"""Planning what to change on an SCDF server (pure), and the client's parsing helpers."""

from __future__ import annotations

import copy

import pytest
from samples import sample_pipeline

from tspipe import wiring
from tspipe.model import Pipeline
from tspipe.scdf.client import ScdfHttpError, error_detail, parse_manifest
from tspipe.scdf.render import stream_plan
from tspipe.scdf.sync import (
    Observed,
    PartialFailure,
    PlanError,
    apply_steps,
    description_marker,
    plan_steps,
    property_changes,
    scdf_common_keys,
    wait_for_release,
    wait_until_idle,
)

# What SCDF 2.11 adds to every app (its common application properties), as recorded.
SCDF_COMMON = {
    "management.endpoints.web.exposure.include": "health,info,bindings",
    "wavefront.application.name": "${spring.cloud.dataflow.stream.name:unknown}",
    "spring.cloud.dataflow.stream.app.type": "app",
}


def pipeline(mutate=None) -> Pipeline:
    doc = sample_pipeline()
    if mutate:
        mutate(doc["spec"])
    return Pipeline.from_resource(doc)


def deployer_recorded(plan, label: str) -> dict[str, str]:
    """`deployer.<label>.x` as Skipper's manifest records it: `spring.cloud.deployer.x`."""
    prefix = f"deployer.{label}."
    return {f"spring.cloud.deployer.{k[len(prefix) :]}": v for k, v in plan.deployer.items() if k.startswith(prefix)}


def server_holding(p: Pipeline) -> Observed:
    """What a server that deployed `p` with this tool reports."""
    plan = stream_plan(p)
    apps = {
        a.name: [{"name": a.name, "type": "app", "version": a.version, "uri": a.uri, "defaultVersion": True}]
        for a in plan.apps
    }
    manifest = {}
    for app in plan.apps:
        resource, version = app.uri.rsplit(":", 1)
        for label in app.labels:
            manifest[label] = {
                "resource": resource,
                "version": version,
                "applicationProperties": {**SCDF_COMMON, **wiring.app_properties(p)[label]},
                "deploymentProperties": {
                    "spring.cloud.deployer.group": p.stream_name,
                    **deployer_recorded(plan, label),
                },
            }
    return Observed(
        apps=apps,
        definition={
            "name": p.stream_name,
            "originalDslText": plan.definition,
            "description": description_marker(p),
            "status": "deployed",
        },
        release_version=1,
        manifest=manifest,
    )


def kinds(steps):
    return [s.kind for s in steps]


def test_empty_server_gets_everything():
    p = pipeline()
    steps, notes = plan_steps(p, stream_plan(p), Observed())
    assert kinds(steps) == ["register", "register", "register", "create", "deploy"]
    assert steps[-1].args == ({**wiring.deployment_properties(p), **stream_plan(p).deployer},)
    assert notes == []


def test_unchanged_pipeline_plans_nothing():
    p = pipeline()
    assert plan_steps(p, stream_plan(p), server_holding(p)) == ([], [])


def test_changed_router_replicas_is_an_update_of_just_its_count():
    before = pipeline()
    after = pipeline(lambda spec: spec["router"].update(replicas=2))
    held = server_holding(before)
    # SCDF records the count it derived on the app itself: not a leftover to drop.
    held.manifest["python-router"]["applicationProperties"]["spring.cloud.stream.instanceCount"] = "1"
    held.instances = {"time": 1, "python-router": 1, "evenLogger": 1, "oddLogger": 1}
    steps, notes = plan_steps(after, stream_plan(after), held)
    # Skipper refuses an upgrade that only changes a count: a scale of just the router.
    assert kinds(steps) == ["scale"] and notes == []
    assert steps[0].args == ("python-router", 2)
    # Once two run, nothing is left to do, though the release still records one.
    held.instances["python-router"] = 2
    assert plan_steps(after, stream_plan(after), held) == ([], [])


def test_replicas_changed_with_a_property_go_into_one_update():
    before = pipeline()
    after = pipeline(lambda spec: spec["router"].update(replicas=2, evenPrefix="E:"))
    steps, _ = plan_steps(after, stream_plan(after), server_holding(before))
    assert kinds(steps) == ["update"]
    assert steps[0].args == ({"app.python-router.tsrouter.even-prefix": "E:", "deployer.python-router.count": "2"},)


def test_changed_property_is_an_update_of_just_that_property():
    old = pipeline()

    def change(spec):
        spec["router"]["evenPrefix"] = "EVEN:"

    new = pipeline(change)
    steps, notes = plan_steps(new, stream_plan(new), server_holding(old))
    assert kinds(steps) == ["update"]
    assert steps[0].args == ({"app.python-router.tsrouter.even-prefix": "EVEN:"},)
    assert notes == []


def test_new_image_tag_registers_makes_default_and_updates_the_version():
    old = pipeline()

    def change(spec):
        spec["router"]["image"] = "ghcr.io/tspipe/router:0.2.0"

    new = pipeline(change)
    steps, _ = plan_steps(new, stream_plan(new), server_holding(old))
    assert kinds(steps) == ["register", "default", "update"]
    assert steps[0].args[0].uri == "docker:ghcr.io/tspipe/router:0.2.0" and steps[0].args[1] is False
    assert steps[2].args == ({"version.python-router": "0.2.0"},)


def test_same_version_new_uri_is_a_forced_reregistration():
    p = pipeline()
    obs = server_holding(p)
    obs.apps["log"][0]["uri"] = "docker:elsewhere/log-sink-kafka:5.1.1"
    steps, _ = plan_steps(p, stream_plan(p), obs)
    assert kinds(steps) == ["register"] and steps[0].args[1] is True
    assert "(was docker:elsewhere/log-sink-kafka:5.1.1)" in steps[0].summary


def test_removed_property_recreates_the_stream_and_says_why():
    def add(spec):
        spec["time"]["properties"] = {"logging.level.root": "WARN"}

    old = pipeline(add)
    new = pipeline()
    steps, notes = plan_steps(new, stream_plan(new), server_holding(old))
    assert kinds(steps) == ["destroy", "create", "deploy"]
    assert "app.time.logging.level.root" in notes[0] and "destroyed, created and deployed again" in notes[0]


def test_undeployed_stream_is_deployed():
    p = pipeline()
    obs = server_holding(p)
    obs.definition["status"] = "undeployed"
    obs.manifest = None
    assert kinds(plan_steps(p, stream_plan(p), obs)[0]) == ["deploy"]


def test_someone_elses_stream_with_the_same_name_is_refused():
    p = pipeline()
    obs = server_holding(p)
    obs.definition.update(originalDslText="time | log", description="")
    with pytest.raises(PlanError, match=r"already exists .* different definition \('time \| log'\).*refusing"):
        plan_steps(p, stream_plan(p), obs)


def test_own_stream_with_an_old_definition_is_recreated():
    p = pipeline()
    obs = server_holding(p)
    obs.definition["originalDslText"] = "time || log"
    steps, notes = plan_steps(p, stream_plan(p), obs)
    assert kinds(steps) == ["destroy", "create", "deploy"] and "definition changed" in notes[0]


def test_seed_script_definition_without_our_description_is_adopted():
    # A stream created by typing the rendered script has no description; same DSL is fine.
    p = pipeline()
    obs = server_holding(p)
    obs.definition["description"] = ""
    assert plan_steps(p, stream_plan(p), obs) == ([], [])


def test_scdf_common_keys_are_those_identical_in_every_app():
    m = {
        "a": {"applicationProperties": {"x": "1", "y": "2", "z": "3"}},
        "b": {"applicationProperties": {"x": "1", "y": "other", "z": "3"}},
    }
    assert scdf_common_keys(m) == {"x", "z"}


def test_property_changes_reports_missing_apps():
    p = pipeline()
    obs = server_holding(p)
    del obs.manifest["oddLogger"]
    changed, stale, versions, missing = property_changes(stream_plan(p), obs.manifest)
    assert (changed, stale, versions, missing) == ({}, [], {}, ["oddLogger"])


class FailingClient:
    """Accepts calls until the n-th, which fails like SCDF does."""

    def __init__(self, fail_at: int):
        self.calls, self.fail_at = [], fail_at

    def __getattr__(self, name):
        def call(*args, **kw):
            self.calls.append(name)
            if len(self.calls) == self.fail_at:
                raise ScdfHttpError(f"{name} stream", 400, "boom")

        return call


def test_failure_halfway_lists_what_was_already_done():
    p = pipeline()
    plan = stream_plan(p)
    steps, _ = plan_steps(p, plan, Observed())
    with pytest.raises(PartialFailure) as ei:
        apply_steps(FailingClient(fail_at=5), plan, steps, description_marker(p))
    text = str(ei.value)
    assert text.startswith("deploy stream failed: HTTP 400: boom\nAlready done before this failure")
    for s in steps[:4]:
        assert f"  - {s.summary}" in text
    assert steps[4].summary not in text
    with pytest.raises(PartialFailure, match="Nothing was changed on the server"):
        apply_steps(FailingClient(fail_at=1), plan, steps, description_marker(p))


class _Resp:
    def __init__(self, body, status=400, reason="Bad Request"):
        self._body, self.status_code, self.reason = body, status, reason
        self.text = body if isinstance(body, str) else ""

    def json(self):
        if isinstance(self._body, str):
            raise ValueError
        return copy.deepcopy(self._body)


def test_error_detail_reads_scdf_errors():
    vnd = {
        "_embedded": {
            "errors": [
                {
                    "message": "Application name 'x' with type 'app' does not exist.\n"
                    "Application name 'x' with type 'app' does not exist.",
                    "logref": "InvalidStreamDefinitionException",
                }
            ]
        }
    }
    assert (
        error_detail(_Resp(vnd)) == "Application name 'x' with type 'app' does not exist. "
        "Application name 'x' with type 'app' does not exist."
    )
    assert (
        error_detail(_Resp({"status": 404, "error": "Not Found", "message": "No message available"}))
        == "No message available"
    )
    assert error_detail(_Resp("<html>proxy error</html>")) == "<html>proxy error</html>"


def test_parse_manifest():
    text = (
        '"apiVersion": "skipper.spring.io/v1"\n"kind": "SpringCloudDeployerApplication"\n'
        '"metadata":\n  "name": "time"\n"spec":\n  "resource": "docker:a/b"\n  "version": "5.1.1"\n'
        '  "applicationProperties":\n    "k": "v"\n    "n": 1\n  "deploymentProperties":\n    "d": "e"\n---\n'
    )
    assert parse_manifest(text) == {
        "time": {
            "resource": "docker:a/b",
            "version": "5.1.1",
            "applicationProperties": {"k": "v", "n": "1"},
            "deploymentProperties": {"d": "e"},
        }
    }


class _FlakyHistory:
    """A client whose release history fails with `errors` first, then shows `release`."""

    def __init__(self, errors: list[int], release: dict):
        self.errors, self.release, self.reads = list(errors), release, 0

    def newest_release(self, name):
        self.reads += 1
        if self.errors:
            raise ScdfHttpError(f"reading release history of stream {name!r}", self.errors.pop(0), "boom")
        return self.release


DEPLOYED = {"version": 2, "info": {"status": {"statusCode": "DEPLOYED"}}}


def test_waits_poll_on_through_server_errors_from_the_release_history():
    client = _FlakyHistory([500, 503], DEPLOYED)
    sleeps = []
    wait_until_idle(client, "ts", timeout=60, sleep=sleeps.append)
    assert client.reads == 3 and sleeps == [1.0, 1.0]
    client = _FlakyHistory([500], DEPLOYED)
    assert wait_for_release(client, "ts", after_version=1, timeout=60, sleep=lambda s: None) == DEPLOYED


def test_waits_raise_client_errors_at_once_and_server_errors_when_time_is_up():
    with pytest.raises(ScdfHttpError, match="HTTP 400"):
        wait_until_idle(_FlakyHistory([400], DEPLOYED), "ts", timeout=60, sleep=lambda s: None)
    with pytest.raises(ScdfHttpError, match="HTTP 500"):
        wait_until_idle(_FlakyHistory([500] * 1000, DEPLOYED), "ts", timeout=0, sleep=lambda s: None)


def test_skippers_install_error_is_shortened_to_app_platform_and_reason():
    from tspipe.scdf.client import short_install_error

    # As Data Flow 2.11.5 relays it from Skipper 2.8.0 on Kubernetes (shortened in the middle).
    text = (
        "Could not install AppDeployRequest [[AppDeploymentRequest@300e42bd commandlineArguments = "
        "list[[empty]], deploymentProperties = map['spring.cloud.deployer.group' -> 'ts3'], definition = "
        "[AppDefinition@100a43b6 name = 'evenLogger-v1', properties = map['log.consumer.level' -> 'INFO']], "
        "resource = Docker Resource [docker:springcloudstream/log-sink-kafka:5.1.1]]]  to platform [default].  "
        "Error Message = [Failure executing: POST at: https://127.0.0.1:52839/api/v1/namespaces/nowhere/services. "
        'Message: namespaces "nowhere" not found. Received status: Status(apiVersion=v1, code=404, '
        "details=StatusDetails(causes=[], group=null), reason=NotFound, status=Failure).]"
    )
    assert short_install_error(text) == (
        "Skipper could not install app 'evenLogger-v1' on platform 'default': Failure executing: POST at: "
        'https://127.0.0.1:52839/api/v1/namespaces/nowhere/services. Message: namespaces "nowhere" not found.'
    )
    assert short_install_error("something else") == "something else"
    # An API server that does not answer: fabric8's operation, as Skipper relays it.
    unreachable = text.split("Error Message = [")[0] + (
        "Error Message = [Operation: [list]  for kind: [Service]  with name: [null]  in namespace: [ns]  failed.]"
    )
    assert short_install_error(unreachable) == (
        "Skipper could not install app 'evenLogger-v1' on platform 'default': "
        "Operation: [list] for kind: [Service] with name: [null] in namespace: [ns] failed."
    )
