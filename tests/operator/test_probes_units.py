"""spec.<app>.probes (pure): the defaults render what the operator always rendered, every
field reaches the Deployment, a field left out keeps the app's default, and bad values
name the field."""

import pytest
from samples import sample_pipeline

from tspipe import crd, probes
from tspipe.components import COMPONENTS
from tspipe.model import Pipeline, PipelineError
from tspipe.render import render_deployments


def resource(**apps):
    return sample_pipeline(stored=True, **{app: {"probes": p} for app, p in apps.items()})


def containers(obj):
    return {
        d["metadata"]["name"].rsplit("-", 1)[1]: d["spec"]["template"]["spec"]["containers"][0]
        for d in render_deployments(obj)
    }


def test_without_probes_each_app_renders_the_defaults_it_always_had():
    got = containers(resource())
    assert got["router"]["readinessProbe"] == {
        "httpGet": {"path": "/actuator/health/readiness", "port": 8080, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    assert got["router"]["livenessProbe"]["httpGet"]["path"] == "/actuator/health/liveness"
    for app in ("time", "evenlogger", "oddlogger"):  # SCDF's deployer defaults for Boot apps
        assert got[app]["readinessProbe"]["httpGet"]["path"] == "/actuator/info"
        assert got[app]["livenessProbe"] == {
            "httpGet": {"path": "/actuator/health", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "periodSeconds": 60,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        }
    assert not any("startupProbe" in c for c in got.values())


def test_every_probe_field_reaches_the_container_and_a_field_left_out_keeps_the_default():
    got = containers(
        resource(
            router={
                "readiness": {
                    "httpGet": {"path": "/actuator/health", "port": 8081},
                    "initialDelaySeconds": 1,
                    "periodSeconds": 2,
                    "timeoutSeconds": 3,
                    "failureThreshold": 4,
                },
                "liveness": {"tcpSocket": {"port": 8082}},
                "startup": {"failureThreshold": 30},
            },
            time={"readiness": {"httpGet": {"path": "/actuator/health"}}},
        )
    )
    r = got["router"]
    assert r["readinessProbe"] == {
        "httpGet": {"path": "/actuator/health", "port": 8081, "scheme": "HTTP"},
        "initialDelaySeconds": 1,
        "periodSeconds": 2,
        "timeoutSeconds": 3,
        "failureThreshold": 4,
    }
    assert r["livenessProbe"] == {
        "tcpSocket": {"port": 8082},
        "initialDelaySeconds": 10,
        "periodSeconds": 30,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    # A startup probe starts from the liveness probe (same endpoint), with its own threshold.
    assert r["startupProbe"] == {**r["livenessProbe"], "failureThreshold": 30}
    assert got["time"]["readinessProbe"] == {
        "httpGet": {"path": "/actuator/health", "port": 8080, "scheme": "HTTP"},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    assert got["evenlogger"]["readinessProbe"]["httpGet"]["path"] == "/actuator/info", "other apps unchanged"


@pytest.mark.parametrize(
    "app, probes_, field, message",
    [
        ("router", {"readiness": {"periodSeconds": 0}}, "spec.router.probes.readiness.periodSeconds", "between 1"),
        (
            "time",
            {"liveness": {"httpGet": {"path": "/a"}, "tcpSocket": {}}},
            "spec.time.probes.liveness",
            probes.BOTH_ACTIONS,
        ),
        (
            "router",
            {"readiness": {"httpGet": {"path": "health"}}},
            "spec.router.probes.readiness.httpGet.path",
            "absolute HTTP path",
        ),
        (
            "evenLogger",
            {"startup": {"tcpSocket": {"port": 0}}},
            "spec.evenLogger.probes.startup.tcpSocket.port",
            "between 1 and 65535",
        ),
        ("oddLogger", {"ready": {}}, "spec.oddLogger.probes.ready", "unknown field"),
        (
            "router",
            {"readiness": {"exec": {"command": ["true"]}}},
            "spec.router.probes.readiness.exec",
            "unknown field",
        ),
    ],
)
def test_a_bad_probe_is_refused_naming_the_field(app, probes_, field, message):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(resource(**{app: probes_}))
    assert err.value.field == field and message in err.value.message


def test_the_crd_declares_probes_per_app_with_that_apps_defaults_and_no_stored_default():
    schema = crd.spec_schema()["properties"]
    for c in COMPONENTS:
        p = schema[c.spec_field]["properties"]["probes"]
        assert set(p["properties"]) == {"readiness", "liveness", "startup"}
        assert c.readiness.path in p["properties"]["readiness"]["description"]
        one = p["properties"]["readiness"]["properties"]
        assert one["periodSeconds"]["minimum"] == 1 and "default" not in one["periodSeconds"]
        assert one["httpGet"]["properties"]["port"]["maximum"] == 65535


def test_the_recipe_router_sample_gets_the_probes_scdfs_deployer_would_give_it():
    import yaml
    from kubehelpers import ROOT

    obj = yaml.safe_load((ROOT / "manifests" / "samples" / "recipe-router.yaml").read_text())
    obj["metadata"].update(namespace="ns", uid="uid-1", generation=1)
    router = containers(obj)["router"]
    assert router["image"] == "springcloud/polyglot-python-app:0.2"
    assert router["readinessProbe"]["httpGet"]["path"] == "/actuator/info"
    assert router["livenessProbe"]["httpGet"]["path"] == "/actuator/health"
    assert router["readinessProbe"]["httpGet"]["port"] == router["livenessProbe"]["httpGet"]["port"] == 8080
