"""Unit tests: pipeline parsing/validation (model) and the wiring contract (wiring)."""

import copy

import pytest
from samples import SAMPLE_FILE as SAMPLE

from tspipe import wiring
from tspipe.model import Pipeline, PipelineError, load_pipeline_file

MINIMAL = {
    "apiVersion": "tspipe.io/v1alpha1",
    "kind": "TimestampPipeline",
    "metadata": {"name": "ts", "namespace": "ns1"},
    "spec": {"kafka": {"brokers": ["kafka:9092"]}},
}


def with_spec(**patch):
    obj = copy.deepcopy(MINIMAL)
    for dotted, value in patch.items():
        node = obj["spec"]
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return obj


def test_defaults_match_the_seed():
    p = Pipeline.from_resource(MINIMAL)
    assert p.name == "ts" and p.namespace == "ns1" and p.stream_name == "ts"
    assert (p.kafka.topics.input, p.kafka.topics.even, p.kafka.topics.odd) == ("timeDest", "evenDest", "oddDest")
    assert p.time.image == "springcloudstream/time-source-kafka:5.1.1"
    assert p.even_logger.image == p.odd_logger.image == "springcloudstream/log-sink-kafka:5.1.1"
    assert p.router.image == "ghcr.io/tspipe/router:0.1.0"
    assert p.time.date_format == "MM/dd/yy HH:mm:ss" and p.time.fixed_delay_seconds == 1
    assert p.router.replicas == 1 and p.router.processing_guarantee == "at_least_once"
    assert (p.even_logger.level, p.even_logger.expression) == ("INFO", "payload")


def test_sample_file_loads():
    p = load_pipeline_file(SAMPLE)
    assert p.name == "timestamps" and p.stream_name == "timeStampStream"
    assert p.kafka.brokers == ("kafka.kafka.svc:9092",)


def test_from_resource_does_not_mutate_input():
    obj = copy.deepcopy(MINIMAL)
    Pipeline.from_resource(obj)
    assert obj == MINIMAL


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"kafka__topics__input": "bad topic"}, "spec.kafka.topics.input"),
        ({"kafka__topics__even": ".."}, "spec.kafka.topics.even"),
        ({"kafka__topics__odd": "x" * 250}, "spec.kafka.topics.odd"),
        ({"kafka__topics__even": "timeDest"}, "spec.kafka.topics"),
        ({"kafka__brokers": ["kafka"]}, "spec.kafka.brokers[0]"),
        ({"kafka__brokers": ["kafka:9092", "kafka:70000"]}, "spec.kafka.brokers[1]"),
        ({"kafka__brokers": []}, "spec.kafka.brokers"),
        ({"kafka__topics__partitions": 0}, "spec.kafka.topics.partitions"),
        ({"router__replicas": 65}, "spec.router.replicas"),
        ({"router__replicas": -1}, "spec.router.replicas"),
        ({"router__processingGuarantee": "at_most_once"}, "spec.router.processingGuarantee"),
        ({"time__image": ""}, "spec.time.image"),
        ({"evenLogger__image": "has space:1"}, "spec.evenLogger.image"),
        ({"oddLogger__level": "LOUD"}, "spec.oddLogger.level"),
        ({"time__fixedDelaySeconds": 0}, "spec.time.fixedDelaySeconds"),
        ({"time__dateFormat": ""}, "spec.time.dateFormat"),
        ({"streamName": "1abc"}, "spec.streamName"),
        ({"router__properties": {"tsrouter.evenPrefix": "x"}}, "spec.router.properties[tsrouter.evenPrefix]"),
        (
            {"time__properties": {"spring.cloud.stream.bindings.output.destination": "x"}},
            "spec.time.properties[spring.cloud.stream.bindings.output.destination]",
        ),
        ({"time__properties": {"a": 1}}, "spec.time.properties[a]"),
        ({"oddLogger__env": [{"name": "SPRING_CLOUD_APPLICATION_GROUP", "value": "x"}]}, "spec.oddLogger.env[0].name"),
        ({"router__bogus": 1}, "spec.router.bogus"),
    ],
)
def test_invalid_pipelines_name_their_field(patch, field):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(with_spec(**patch))
    assert err.value.field == field
    assert field in str(err.value)


def test_missing_kafka_and_long_name():
    with pytest.raises(PipelineError, match=r"^spec.kafka"):
        Pipeline.from_resource({"metadata": {"name": "x"}, "spec": {}})
    obj = copy.deepcopy(MINIMAL)
    obj["metadata"]["name"] = "n" * 43
    with pytest.raises(PipelineError, match=r"^metadata.name"):
        Pipeline.from_resource(obj)


def test_valid_broker_forms():
    for b in ["127.0.0.1:9092", "[::1]:9092", "kafka-0.kafka.svc.cluster.local:65535", "k:1"]:
        Pipeline.from_resource(with_spec(kafka__brokers=[b]))


def test_wiring_contract_per_app():
    p = load_pipeline_file(SAMPLE)
    props = wiring.app_properties(p)
    assert tuple(props) == wiring.APP_LABELS
    for label, app in props.items():
        assert app["spring.cloud.stream.kafka.binder.brokers"] == "kafka.kafka.svc:9092"
        assert app["spring.cloud.dataflow.stream.name"] == "timeStampStream"
        assert app["spring.cloud.dataflow.stream.app.label"] == label
    assert props["time"]["spring.cloud.stream.bindings.output.destination"] == "timeDest"
    assert props["time"]["time.date-format"] == "MM/dd/yy HH:mm:ss"
    assert props["time"]["spring.integration.poller.fixed-delay"] == "1000"
    r = props["python-router"]
    assert r["spring.cloud.stream.bindings.input.destination"] == "timeDest"
    assert r["spring.cloud.stream.bindings.input.group"] == "timeStampStream"
    assert r["spring.cloud.stream.bindings.even.destination"] == "evenDest"
    assert r["spring.cloud.stream.bindings.odd.destination"] == "oddDest"
    assert r["tsrouter.processing-guarantee"] == "at-least-once"
    assert r["tsrouter.even-prefix"] == "Even timestamp:" and r["tsrouter.odd-prefix"] == "Odd timestamp:"
    assert props["evenLogger"]["spring.cloud.stream.bindings.input.destination"] == "evenDest"
    assert props["oddLogger"]["spring.cloud.stream.bindings.input.destination"] == "oddDest"
    for lg in ("evenLogger", "oddLogger"):
        assert props[lg]["log.consumer.level"] == "INFO" and props[lg]["log.consumer.expression"] == "payload"
    # No app carries another app's bindings.
    assert "spring.cloud.stream.bindings.input.destination" not in props["time"]
    assert "spring.cloud.stream.bindings.output.destination" not in props["evenLogger"]


def test_user_properties_and_multiple_brokers():
    p = Pipeline.from_resource(
        with_spec(
            kafka__brokers=["a:1", "b:2"],
            time__fixedDelaySeconds=5,
            oddLogger__properties={"logging.level.root": "WARN"},
        )
    )
    props = wiring.app_properties(p)
    assert props["time"]["spring.cloud.stream.kafka.binder.brokers"] == "a:1,b:2"
    assert props["time"]["spring.integration.poller.fixed-delay"] == "5000"
    assert props["oddLogger"]["logging.level.root"] == "WARN"
    assert "logging.level.root" not in props["evenLogger"]


def test_deployment_properties_and_definition():
    p = load_pipeline_file(SAMPLE)
    flat = wiring.deployment_properties(p)
    assert flat["app.time.spring.cloud.stream.bindings.output.destination"] == "timeDest"
    assert flat["app.python-router.spring.cloud.stream.bindings.even.destination"] == "evenDest"
    assert flat["app.oddLogger.spring.cloud.stream.bindings.input.destination"] == "oddDest"
    assert len(flat) == sum(len(v) for v in wiring.app_properties(p).values())
    assert wiring.STREAM_DEFINITION == "time || python-router || evenLogger: log || oddLogger: log"
    assert wiring.app_images(p)["python-router"] == "ghcr.io/tspipe/router:0.1.0"


def test_router_reads_the_wiring_it_is_given():
    """The router's own config parser accepts exactly what the operator renders."""
    tsconfig = pytest.importorskip("tsrouter.config")
    p = Pipeline.from_resource(
        with_spec(router__processingGuarantee="exactly_once", router__evenPrefix="E:", kafka__topics__partitions=3)
    )
    args = [f"--{k}={v}" for k, v in wiring.app_properties(p)["python-router"].items()]
    cfg = tsconfig.load(args, {})
    assert (cfg.input_topic, cfg.even_topic, cfg.odd_topic) == ("timeDest", "evenDest", "oddDest")
    assert cfg.group == "ts" and cfg.brokers == ("kafka:9092",)
    assert cfg.processing_guarantee == "exactly-once" and cfg.even_prefix == "E:"
    assert cfg.topic_partitions == 3 and cfg.app_label == "python-router"


def test_null_fields_count_as_absent():
    # The API server prunes nulls (no field is nullable) before defaulting; a pipeline
    # file checked or rendered without it must read them the same way (found by mypy:
    # a null string used to crash the parser or reach the container args as "None").
    nulls = with_spec(
        streamName=None,
        kafka__topics__input=None,
        kafka__topics__partitions=None,
        kafka__topics__manage=None,
        router__evenPrefix=None,
        router__replicas=None,
        time__dateFormat=None,
        oddLogger__level=None,
        pod__serviceAccountName=None,
        paused=None,
    )
    assert Pipeline.from_resource(nulls) == Pipeline.from_resource(MINIMAL)
    assert "None" not in str(wiring.deployment_properties(Pipeline.from_resource(nulls)))
    creds = {"secretName": "s", "mechanism": "PLAIN", "caKey": None, "usernameKey": None}
    p = Pipeline.from_resource(with_spec(kafka__credentials=creds, kafka__topics__manage=False))
    assert (p.kafka.credentials.ca_key, p.kafka.credentials.username_key) == ("ca.crt", "username")
    with pytest.raises(PipelineError, match=r"^spec.kafka.credentials.secretName: required"):
        Pipeline.from_resource(with_spec(kafka__credentials={**creds, "secretName": None}))


@pytest.mark.parametrize(
    "patch, field",
    [
        # The API server's RE2 `$` is the end of the text; Python's also matches before a
        # final newline, which let these through before the parser used fullmatch.
        ({"kafka__brokers": ["kafka:9092\n"]}, "spec.kafka.brokers[0]"),
        ({"kafka__topics__input": "timeDest\n"}, "spec.kafka.topics.input"),
        ({"time__image": "img:1\n"}, "spec.time.image"),
        ({"router__properties": {"a.b\n": "x"}}, "spec.router.properties[a.b\n]"),
        ({"oddLogger__env": [{"name": "X\n", "value": "1"}]}, "spec.oddLogger.env[0].name"),
        # Bounds the CRD always had and the parser now applies too (one declaration each).
        ({"time__dateFormat": "y" * 257}, "spec.time.dateFormat"),
        ({"router__evenPrefix": "p" * 257}, "spec.router.evenPrefix"),
        ({"evenLogger__expression": "e" * 1025}, "spec.evenLogger.expression"),
        ({"time__image": "i" * 513}, "spec.time.image"),
        ({"pod__serviceAccountName": "Not_A_Name"}, "spec.pod.serviceAccountName"),
        ({"router__properties": {"k" * 254: "x"}}, f"spec.router.properties[{'k' * 254}]"),
    ],
)
def test_parser_applies_the_crd_rules(patch, field):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(with_spec(**patch))
    assert err.value.field == field
