"""`tspipe scdf` against real Skipper + Data Flow servers (hack/localinfra/scdf.py).

What these tests can and cannot show: there is no Docker engine here, so Skipper's local
deployer cannot start the `docker:` apps (it runs `docker run ...`, which fails) and every
app of a deployed stream ends in state `failed`. So the tests assert what SCDF *recorded*:
the app registrations, the stream definition, and the Skipper release manifest holding
each app's resource, version and application properties. Reads go through plain HTTP
requests, not through the client under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from localinfra.scdf import free_port
from samples import sample_pipeline

from tspipe import wiring
from tspipe.model import Pipeline
from tspipe.scdf.client import Credentials, DataFlowClient, ScdfHttpError
from tspipe.scdf.render import stream_plan

pytestmark = pytest.mark.scdf

DEFINITION = "time || python-router || evenLogger: log || oddLogger: log"
# SCDF's common application properties (server-core's
# META-INF/application-stream-common-properties-defaults.yml) plus the app type it sets;
# the only keys besides the contract's that may appear in a recorded app.
SCDF_OWN_PREFIXES = ("management.", "wavefront.")
# instanceCount: SCDF derives it from `deployer.python-router.count`, which tspipe sends.
SCDF_OWN_KEYS = {"spring.cloud.dataflow.stream.app.type", "spring.cloud.stream.instanceCount"}


# ---------------------------------------------------------------- helpers


def write_pipeline(tmp_path: Path, mutate=None, name: str | None = None) -> tuple[Path, Pipeline]:
    doc = sample_pipeline()
    doc["spec"]["streamName"] = name or f"tsp-{uuid.uuid4().hex[:8]}"
    if mutate:
        mutate(doc["spec"])
    path = tmp_path / f"{doc['spec']['streamName']}-{uuid.uuid4().hex[:4]}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, Pipeline.from_resource(doc)


def tspipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tspipe.cli", *args], capture_output=True, text=True, timeout=300)


def get(url: str, path: str, **params):
    return requests.get(f"{url}{path}", params=params, timeout=30)


def registered(url: str) -> dict[tuple[str, str], dict]:
    body = get(url, "/apps", size=2000).json()
    regs = (body.get("_embedded") or {}).get("appRegistrationResourceList") or []
    return {(r["name"], r["version"]): r for r in regs}


def history(url: str, stream: str) -> list[dict]:
    r = get(url, f"/streams/deployments/history/{stream}")
    return r.json() if r.status_code == 200 else []


def recorded_manifest(url: str, stream: str, version: int) -> dict[str, dict]:
    text = get(url, f"/streams/deployments/manifest/{stream}/{version}").json()
    return {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(text) if d}


def newest(url: str, stream: str) -> dict:
    return max(history(url, stream), key=lambda r: r["version"])


def assert_records_exactly_the_contract(url: str, p: Pipeline, version: int) -> None:
    """The release's manifest holds, per app, exactly the contract's properties (plus SCDF's own)."""
    manifest = recorded_manifest(url, p.stream_name, version)
    assert set(manifest) == set(wiring.APP_LABELS)
    flat_recorded = {}
    for label, spec in manifest.items():
        assert f"{spec['resource']}:{spec['version']}" == f"docker:{wiring.app_images(p)[label]}"
        for key, value in (spec.get("applicationProperties") or {}).items():
            if key.startswith(SCDF_OWN_PREFIXES) or key in SCDF_OWN_KEYS:
                continue
            flat_recorded[f"app.{label}.{key}"] = str(value)
    assert flat_recorded == wiring.deployment_properties(p)


# ---------------------------------------------------------------- the happy path


def test_deploy_records_the_seed_stream_then_undeploy_and_destroy(dataflow_url, tmp_path):
    url = dataflow_url
    path, p = write_pipeline(tmp_path)
    name = p.stream_name

    r = tspipe("scdf", "deploy", "-f", str(path), "--server", url, "--wait", "30")
    assert r.returncode == 0, r.stderr
    assert f"created stream definition '{name}': {DEFINITION}" in r.stdout
    # The wiring and the deployer properties (pod shape, router count).
    assert f"deployed stream '{name}' with {len(stream_plan(p).all_properties)} properties" in r.stdout
    assert f"stream '{name}' state: " in r.stdout

    # Apps: type app, with the images' URIs and tags as versions.
    regs = registered(url)
    for app_name, image in (("time", p.time.image), ("python-router", p.router.image), ("log", p.even_logger.image)):
        reg = regs[(app_name, image.rsplit(":", 1)[1])]
        assert reg["type"] == "app" and reg["uri"] == f"docker:{image}" and reg["defaultVersion"] is True

    # Definition: the labelled || DSL, as created.
    d = get(url, f"/streams/definitions/{name}").json()
    assert d["originalDslText"] == DEFINITION

    # Deployment: one Skipper release whose manifest carries exactly the contract.
    releases = history(url, name)
    assert [r["version"] for r in releases] == [1]
    assert_records_exactly_the_contract(url, p, 1)
    # The deployment resource reports the same app resources and versions.
    dep = get(url, f"/streams/deployments/{name}", **{"reuse-deployment-properties": "true"}).json()
    per_app = json.loads(dep["deploymentProperties"])
    assert {label: f"{v['resource']}:{v['version']}" for label, v in per_app.items()} == {
        label: f"docker:{img}" for label, img in wiring.app_images(p).items()
    }

    # Unchanged file: nothing changes (no registration, no new release, same definition).
    before = (registered(url), get(url, f"/streams/definitions/{name}").json(), history(url, name))
    r = tspipe("scdf", "deploy", "-f", str(path), "--server", url)
    assert r.returncode == 0, r.stderr
    assert f"stream '{name}': up to date, nothing changed" in r.stdout
    assert "registered" not in r.stdout and "deployed stream" not in r.stdout
    after = (registered(url), get(url, f"/streams/definitions/{name}").json(), history(url, name))
    assert after == before

    r = tspipe("scdf", "status", "-f", str(path), "--server", url)
    assert r.returncode == 0, r.stderr
    assert f"definition: {DEFINITION}" in r.stdout and "release: 1" in r.stdout
    assert f"python-router: docker:{p.router.image}" in r.stdout
    # Per app what the (local) platform reports: no Docker engine here, so not deployed.
    assert "apps: 0 of 4 deployed" in r.stdout, r.stdout
    for label in wiring.APP_LABELS:
        assert f"\n  {label}: " in r.stdout, r.stdout

    r = tspipe("scdf", "undeploy", "-f", str(path), "--server", url, "--wait", "30")
    assert r.returncode == 0, r.stderr
    assert get(url, f"/streams/definitions/{name}").json()["status"] == "undeployed"
    assert newest(url, name)["info"]["status"]["statusCode"] == "DELETED"

    r = tspipe("scdf", "destroy", "-f", str(path), "--server", url)
    assert r.returncode == 0, r.stderr
    assert get(url, f"/streams/definitions/{name}").status_code == 404
    r = tspipe("scdf", "destroy", "-f", str(path), "--server", url)
    assert r.returncode == 0 and "does not exist; nothing to destroy" in r.stdout


def test_changed_file_updates_only_what_differs(dataflow_url, tmp_path):
    url = dataflow_url
    path, p = write_pipeline(tmp_path)
    name = p.stream_name
    assert tspipe("scdf", "deploy", "-f", str(path), "--server", url, "--wait", "0").returncode == 0

    # 1. A changed value: a stream update (Skipper upgrade) with just that property.
    path2, p2 = write_pipeline(tmp_path, lambda s: s["router"].update(evenPrefix="EVEN:"), name=name)
    r = tspipe("scdf", "deploy", "-f", str(path2), "--server", url, "--wait", "60")
    assert f"updated deployed stream '{name}': 1 changed properties" in r.stdout
    assert "registered" not in r.stdout and "created" not in r.stdout
    # Skipper records the upgrade as release 2 and then waits for the new apps to be
    # healthy; they cannot start here (no Docker engine), so it marks release 2 FAILED and
    # keeps release 1. The CLI says exactly that and exits non-zero.
    assert r.returncode == 1
    assert "Skipper recorded release 2 as FAILED" in r.stderr and "release 1 is still deployed" in r.stderr
    assert_records_exactly_the_contract(url, p2, 2)
    assert_records_exactly_the_contract(url, p, 1)

    # 2. A removed property: SCDF would keep it (in the stored definition and through
    # updates), so the stream is destroyed, created and deployed, and the CLI says so.
    path3, p3 = write_pipeline(
        tmp_path, lambda s: s["time"].update(properties={"logging.level.root": "WARN"}), name=name
    )
    tspipe("scdf", "destroy", "-f", str(path3), "--server", url)
    r = tspipe("scdf", "deploy", "-f", str(path3), "--server", url, "--wait", "0")
    assert r.returncode == 0, r.stderr
    v_with = newest(url, name)["version"]
    assert_records_exactly_the_contract(url, p3, v_with)
    r = tspipe("scdf", "deploy", "-f", str(path), "--server", url, "--wait", "0")
    assert r.returncode == 0, r.stderr
    assert "note: properties no longer wanted are still deployed (app.time.logging.level.root)" in r.stdout
    assert f"destroyed stream '{name}'" in r.stdout and f"created stream definition '{name}'" in r.stdout
    v_without = newest(url, name)["version"]
    assert v_without > v_with
    assert_records_exactly_the_contract(url, p, v_without)

    # 3. A new image tag: registered as a new version, made the default, deployed.
    path4, p4 = write_pipeline(tmp_path, lambda s: s["router"].update(image="ghcr.io/tspipe/router:9.9.9"), name=name)
    r = tspipe("scdf", "deploy", "-f", str(path4), "--server", url, "--wait", "0")
    assert "registered app 'python-router' version 9.9.9 as docker:ghcr.io/tspipe/router:9.9.9" in r.stdout
    assert "made version 9.9.9 the default of app 'python-router'" in r.stdout
    assert "updated deployed stream" in r.stdout and "new versions for python-router (9.9.9)" in r.stdout
    regs = registered(url)
    assert regs[("python-router", "9.9.9")]["defaultVersion"] is True
    assert regs[("python-router", "0.1.0")]["defaultVersion"] is False
    assert_records_exactly_the_contract(url, p4, newest(url, name)["version"])

    # Put the default back for the other tests, then clean up.
    requests.put(f"{url}/apps/app/python-router/0.1.0", timeout=30).raise_for_status()
    assert tspipe("scdf", "destroy", "-f", str(path), "--server", url).returncode == 0


# ---------------------------------------------------------------- error paths


def test_unknown_app_in_a_definition(dataflow_url):
    client = DataFlowClient(dataflow_url, Credentials())
    name = f"tsp-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ScdfHttpError) as ei:
        client.create_definition(name, "time || no-such-app")
    assert ei.value.status == 400
    assert str(ei.value).startswith(f"creating stream definition '{name}' failed: HTTP 400: ")
    assert "Application name 'no-such-app' with type 'app' does not exist in the app registry" in str(ei.value)


def test_bad_definition(dataflow_url):
    client = DataFlowClient(dataflow_url, Credentials())
    with pytest.raises(ScdfHttpError) as ei:
        client.create_definition(f"tsp-{uuid.uuid4().hex[:8]}", "time ||| log")
    assert ei.value.status == 400 and "creating stream definition" in str(ei.value)
    assert ei.value.detail and ei.value.detail != "Bad Request"  # SCDF's parser message


def test_name_clash(dataflow_url, tmp_path):
    url = dataflow_url
    path, p = write_pipeline(tmp_path)
    name = p.stream_name
    client = DataFlowClient(url, Credentials())
    # Someone else's stream under the same name (apps registered by them).
    client.register_app("time", "5.1.1", f"docker:{p.time.image}", None, force=True)
    client.register_app("log", "5.1.1", f"docker:{p.even_logger.image}", None, force=True)
    client.create_definition(name, "time || log", "not ours")

    # SCDF's own answer to a second definition with that name.
    with pytest.raises(ScdfHttpError) as ei:
        client.create_definition(name, DEFINITION)
    assert ei.value.status == 409 and name in ei.value.detail

    # The CLI refuses to replace it, names why, and changes nothing.
    before = registered(url)
    r = tspipe("scdf", "deploy", "-f", str(path), "--server", url)
    assert r.returncode == 1
    assert f"stream '{name}' already exists on the server with a different definition ('time || log')" in r.stderr
    assert "Nothing was changed on the server." in r.stderr
    assert get(url, f"/streams/definitions/{name}").json()["originalDslText"] == "time || log"
    assert registered(url) == before
    client.destroy(name)


def test_failure_halfway_says_what_was_already_created(dataflow_url, tmp_path):
    # SCDF limits runtime app names (stream-label-v<N>) to 58 characters, which only the
    # deploy request checks: registration and create succeed first.
    path, p = write_pipeline(tmp_path, name="a" + "b" * 62)
    r = tspipe("scdf", "deploy", "-f", str(path), "--server", dataflow_url)
    try:
        assert r.returncode == 1
        err = r.stderr
        assert f"deploying stream '{p.stream_name}' failed: HTTP 400: " in err
        assert "should not exceed 58 in length" in err
        assert "Already done before this failure (nothing was rolled back):" in err
        assert f"  - created stream definition '{p.stream_name}': {DEFINITION}" in err
        assert get(dataflow_url, f"/streams/definitions/{p.stream_name}").status_code == 200
    finally:
        tspipe("scdf", "destroy", "-f", str(path), "--server", dataflow_url)


@pytest.mark.parametrize("cmd", ["deploy", "status", "undeploy", "destroy"])
def test_unreachable_server(tmp_path, cmd):
    path, _ = write_pipeline(tmp_path)
    port = free_port()  # bound and released: nothing listens there
    r = tspipe("scdf", cmd, "-f", str(path), "--server", f"http://127.0.0.1:{port}")
    assert r.returncode == 1, (cmd, r.stdout, r.stderr)
    assert f"cannot reach the Data Flow server at http://127.0.0.1:{port} (connection refused)" in r.stderr
    assert r.stderr.count("\n") <= 2, "one clear message, no traceback"


def test_unreachable_server_deploy_changes_nothing(tmp_path):
    path, _ = write_pipeline(tmp_path)
    port = free_port()  # bound and released: nothing listens there
    assert (
        "Nothing was changed on the server."
        in tspipe("scdf", "deploy", "-f", str(path), "--server", f"http://127.0.0.1:{port}").stderr
    )


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["spec"]["kafka"].pop("brokers"), "spec.kafka.brokers: at least one host:port is required"),
        (
            lambda d: d["spec"]["router"].update(image="ghcr.io/tspipe/router"),
            "spec.router.image: image 'ghcr.io/tspipe/router' has no tag",
        ),
        (
            lambda d: d["spec"]["oddLogger"].update(image="springcloudstream/log-sink-kafka:5.0.0"),
            "oddLogger and evenLogger are both the SCDF app 'log'",
        ),
        (lambda d: d["spec"].update(bogus=1), "spec.bogus: unknown field"),
    ],
)
def test_invalid_pipeline_file_against_the_server(dataflow_url, tmp_path, mutate, message):
    doc = sample_pipeline()
    doc["spec"]["streamName"] = f"tsp-{uuid.uuid4().hex[:8]}"
    mutate(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = tspipe("scdf", "deploy", "-f", str(path), "--server", dataflow_url)
    assert r.returncode == 2
    assert r.stderr.startswith(f"tspipe: invalid pipeline file {path}: ") and message in r.stderr
    assert get(dataflow_url, f"/streams/definitions/{doc['spec']['streamName']}").status_code == 404
