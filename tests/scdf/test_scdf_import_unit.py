"""`tspipe scdf import`'s parsing (pure): a stream's definition and release manifest, as
Skipper records them, back into a TimestampPipeline; and what is refused, named."""

from __future__ import annotations

import copy

import pytest
from recipe import IMAGES as RECIPE_IMAGES
from recipe import PROPERTIES as RECIPE_PROPERTIES
from samples import sample_pipeline

from tspipe import wiring
from tspipe.components import COMPONENTS, STREAM_DEFINITION
from tspipe.model import Pipeline
from tspipe.render import render_deployments
from tspipe.scdf.importer import ImportRefused, import_stream
from tspipe.scdf.render import stream_plan

# What Data Flow adds to every app of a stream itself (seen in a real 2.11.5 manifest).
SCDF_OWN = {
    "management.endpoints.web.exposure.include": "health,info,bindings",
    "wavefront.application.name": "${spring.cloud.dataflow.stream.name:unknown}",
    "spring.cloud.dataflow.stream.app.type": "app",
}


def manifest_of(properties: dict[str, str], images: dict[str, str], stream: str) -> dict[str, dict]:
    """The release manifest Skipper records for a deploy with these properties."""
    out = {}
    for c in COMPONENTS:
        uri = images[c.label]
        resource, version = uri.rsplit(":", 1)
        app = {k.removeprefix(f"app.{c.label}."): v for k, v in properties.items() if k.startswith(f"app.{c.label}.")}
        dep = {
            "spring.cloud.deployer." + k.removeprefix(f"deployer.{c.label}."): v
            for k, v in properties.items()
            if k.startswith(f"deployer.{c.label}.")
        }
        dep |= {"spring.cloud.deployer.group": stream, "spring.cloud.deployer.bootVersion": "2"}
        out[c.label] = {
            "resource": resource,
            "version": version,
            "applicationProperties": {**SCDF_OWN, **app},
            "deploymentProperties": dep,
        }
    return out


def same_pipeline(a: dict, b: dict) -> None:
    """What the operator runs for both is the same: every rendered Deployment."""

    def rendered(doc):
        doc = {**doc, "metadata": {"name": "x", "namespace": "ns", "uid": "u"}}
        return render_deployments(doc)

    assert rendered(a) == rendered(b)
    pa, pb = Pipeline.from_resource(a), Pipeline.from_resource(b)
    assert (pa.stream_name, pa.kafka, pa.router.replicas) == (pb.stream_name, pb.kafka, pb.router.replicas)


def imported(doc: dict) -> dict:
    p = Pipeline.from_resource(doc)
    plan = stream_plan(p)
    images = {label: f"docker:{img}" for label, img in wiring.app_images(p).items()}
    return import_stream(
        p.stream_name,
        STREAM_DEFINITION,
        manifest_of(plan.all_properties, images, p.stream_name),
        name=doc["metadata"]["name"],
    ).resource


def test_the_sample_round_trips():
    doc = sample_pipeline()
    out = imported(doc)
    same_pipeline(doc, out)
    assert out["spec"]["router"]["image"] == "ghcr.io/tspipe/router:0.1.0"
    assert "probes" not in out["spec"]["router"]  # the operator's defaults: nothing to say
    assert "podTemplate" not in out["spec"]["time"]


def test_a_pipeline_with_everything_round_trips():
    from test_scdf_podshape_unit import ENV, FULL

    def mutate(spec):
        spec["streamName"] = "tsStream"
        spec["kafka"]["brokers"] = ["k1:9092", "k2:9093"]
        spec["kafka"]["topics"] = {"input": "in", "even": "ev", "odd": "od", "partitions": 4, "replicationFactor": 3}
        spec["time"] = {"dateFormat": "HH:mm:ss", "fixedDelaySeconds": 2, "properties": {"logging.level.root": "WARN"}}
        spec["time"]["env"] = copy.deepcopy(ENV)
        spec["router"] = {
            "replicas": 3,
            "evenPrefix": "E:",
            "oddPrefix": "O:",
            "processingGuarantee": "exactly_once",
            "podTemplate": copy.deepcopy(FULL),
            "probes": {
                "readiness": {"httpGet": {"path": "/actuator/health"}, "timeoutSeconds": 4},
                "startup": {"httpGet": {"path": "/s", "port": 9090}, "failureThreshold": 40},
            },
        }
        spec["evenLogger"] = {"level": "WARN", "expression": "payload.toUpperCase()"}
        spec["oddLogger"] = {
            "probes": {
                "readiness": {"tcpSocket": {}, "timeoutSeconds": 1},
                "liveness": {"tcpSocket": {"port": 8081}, "timeoutSeconds": 1},
            }
        }
        spec["podTemplate"] = {"nodeSelector": {"pool": "stream"}, "labels": {"team": "data"}}

    doc = sample_pipeline()
    mutate(doc["spec"])
    out = imported(doc)
    same_pipeline(doc, out)
    assert out["spec"]["streamName"] == "tsStream"
    assert out["spec"]["router"]["replicas"] == 3
    assert out["spec"]["time"]["properties"] == {"logging.level.root": "WARN"}
    assert out["spec"]["time"]["fixedDelaySeconds"] == 2


def test_the_recipes_own_stream_imports_with_notes():
    props = dict(RECIPE_PROPERTIES)
    manifest = manifest_of(props, RECIPE_IMAGES, "timeStampStream")
    with pytest.raises(
        ImportRefused,
        match=r"no app of stream 'timeStampStream' sets "
        r"spring\.cloud\.stream\.kafka\.binder\.brokers .*--brokers",
    ):
        import_stream("timeStampStream", STREAM_DEFINITION, manifest)
    result = import_stream("timeStampStream", STREAM_DEFINITION, manifest, brokers=["kafka:9092"])
    doc = result.resource
    assert doc["metadata"] == {"name": "timestampstream"}
    assert doc["spec"]["streamName"] == "timeStampStream"
    assert doc["spec"]["router"]["image"] == "springcloud/polyglot-python-app:0.2"
    assert doc["spec"]["time"]["image"] == "springcloudstream/time-source-kafka:2.1.0.RELEASE"
    assert doc["spec"]["kafka"] == {
        "brokers": ["kafka:9092"],
        "topics": {"input": "timeDest", "even": "evenDest", "odd": "oddDest"},
    }
    # The recipe's pods get the deployer's default probes; the pipeline says so explicitly.
    assert doc["spec"]["router"]["probes"]["readiness"]["httpGet"] == {"path": "/actuator/info"}
    assert doc["spec"]["router"]["probes"]["liveness"]["httpGet"] == {"path": "/actuator/health"}
    p = Pipeline.from_resource(doc)
    assert p.router.probes.readiness.path == "/actuator/info" and p.router.probes.startup.initial_delay == 30
    assert any("app.python-router.spring.cloud.stream.bindings.input.group is not set" in n for n in result.notes)
    assert any("has no resources in SCDF" in n for n in result.notes)


def recipe(**changes) -> dict:
    return {**RECIPE_PROPERTIES, "app.time.spring.cloud.stream.kafka.binder.brokers": "k:9092", **changes}


@pytest.mark.parametrize(
    "definition,manifest,message",
    [
        (
            "time | log",
            manifest_of(recipe(), RECIPE_IMAGES, "s"),
            "stream 's' is 'time | log', not the recipe's shape 'time || python-router || evenLogger: log || "
            "oddLogger: log'",
        ),
        (
            STREAM_DEFINITION,
            manifest_of({k: v for k, v in recipe().items() if "odd.destination" not in k}, RECIPE_IMAGES, "s"),
            "app.python-router.spring.cloud.stream.bindings.odd.destination is not set",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(
                recipe(**{"app.evenLogger.spring.cloud.stream.bindings.input.destination": "x"}), RECIPE_IMAGES, "s"
            ),
            "app.evenLogger.spring.cloud.stream.bindings.input.destination=x but "
            "app.python-router.spring.cloud.stream.bindings.even.destination=evenDest",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(
                recipe(**{"app.python-router.spring.cloud.stream.bindings.input.group": "g"}), RECIPE_IMAGES, "s"
            ),
            "app.python-router.spring.cloud.stream.bindings.input.group=g: the operator's consumer group is the "
            "stream name",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(
                recipe(**{"app.oddLogger.spring.cloud.stream.kafka.binder.brokers": "o:1"}), RECIPE_IMAGES, "s"
            ),
            "spring.cloud.stream.kafka.binder.brokers differs between apps",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(recipe(**{"deployer.evenLogger.count": "2"}), RECIPE_IMAGES, "s"),
            "deployer.evenLogger.count=2: the operator runs one evenLogger",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(recipe(**{"deployer.time.memory": "1g"}), RECIPE_IMAGES, "s"),
            "deployer.time.memory: a deployer property the pipeline has no field for",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(recipe(**{"deployer.time.kubernetes.hostNetwork": "true"}), RECIPE_IMAGES, "s"),
            "deployer.time.kubernetes.hostNetwork: a deployer property the pipeline has no field for",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(
                recipe(
                    **{"deployer.time.kubernetes.environmentVariables": "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS=x:1"}
                ),
                RECIPE_IMAGES,
                "s",
            ),
            "the imported pipeline would be invalid: spec.time.env[0].name: SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS "
            "is set "
            "by the operator",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(recipe(), {**RECIPE_IMAGES, "time": "maven://org.x:time:1.0"}, "s"),
            "app time: 'maven://org.x:time' is not a container image",
        ),
        (
            STREAM_DEFINITION,
            manifest_of(recipe(**{"app.time.spring.integration.poller.fixed-delay": "1500"}), RECIPE_IMAGES, "s"),
            "app.time.spring.integration.poller.fixed-delay: '1500' is not a whole number of seconds",
        ),
    ],
)
def test_a_stream_of_another_shape_is_refused_naming_what_differs(definition, manifest, message):
    with pytest.raises(ImportRefused) as ei:
        import_stream("s", definition, manifest)
    assert str(ei.value).startswith(message), str(ei.value)


def test_an_app_missing_from_the_release_is_named():
    manifest = manifest_of(recipe(), RECIPE_IMAGES, "s")
    del manifest["oddLogger"]
    with pytest.raises(ImportRefused, match=r"release holds apps \['evenLogger', 'python-router', 'time'\]"):
        import_stream("s", STREAM_DEFINITION, manifest)


def test_a_stream_deployed_by_tspipe_names_its_pipeline_back():
    doc = sample_pipeline()
    doc["metadata"]["namespace"] = "apps"
    p = Pipeline.from_resource(doc)
    plan = stream_plan(p)
    images = {label: f"docker:{img}" for label, img in wiring.app_images(p).items()}
    manifest = manifest_of(plan.all_properties, images, p.stream_name)
    from tspipe.scdf.render import description_marker

    out = import_stream(p.stream_name, STREAM_DEFINITION, manifest, description=description_marker(p)).resource
    assert out["metadata"] == {"name": doc["metadata"]["name"], "namespace": "apps"}
    # Another description says nothing about a pipeline: the stream's name, no namespace.
    out = import_stream(p.stream_name, STREAM_DEFINITION, manifest, description="made by hand").resource
    assert out["metadata"] == {"name": p.stream_name.lower()}
    # --name and --namespace win over the marker.
    out = import_stream(
        p.stream_name, STREAM_DEFINITION, manifest, description=description_marker(p), name="other", namespace="ns2"
    ).resource
    assert out["metadata"] == {"name": "other", "namespace": "ns2"}
