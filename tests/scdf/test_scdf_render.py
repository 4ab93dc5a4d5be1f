"""Rendering the SCDF shell script and the stream plan (pure)."""

from __future__ import annotations

import copy

import pytest
import yaml
from samples import SAMPLE_FILE as SAMPLE
from samples import sample_pipeline

from tspipe import wiring
from tspipe.model import Pipeline, load_pipeline_file
from tspipe.scdf.render import (
    RenderError,
    app_registrations,
    metadata_uri,
    render_script,
    split_image,
    stream_plan,
)

# The operator's pod shape as SCDF Kubernetes deployer properties, per app (written out
# by hand, as the script below is).
# Every field of each probe; the startup probe stands for "none" (the deployer always
# adds one): the liveness endpoint each second until liveness would have restarted it.
BOOT_PROBES = (
    "kubernetes.readinessHttpProbePath=/actuator/info",
    "kubernetes.readinessHttpProbePort=8080",
    "kubernetes.readinessHttpProbeDelay=10",
    "kubernetes.readinessHttpProbePeriod=10",
    "kubernetes.readinessHttpProbeTimeout=2",
    "kubernetes.readinessHttpProbeFailure=3",
    "kubernetes.livenessHttpProbePath=/actuator/health",
    "kubernetes.livenessHttpProbePort=8080",
    "kubernetes.livenessHttpProbeDelay=10",
    "kubernetes.livenessHttpProbePeriod=60",
    "kubernetes.livenessHttpProbeTimeout=2",
    "kubernetes.livenessHttpProbeFailure=3",
    "kubernetes.startupHttpProbePath=/actuator/health",
    "kubernetes.startupHttpProbePort=8080",
    "kubernetes.startupHttpProbeDelay=10",
    "kubernetes.startupHttpProbePeriod=1",
    "kubernetes.startupHttpProbeTimeout=2",
    "kubernetes.startupHttpProbeFailure=180",
)
ROUTER_PROBES = (
    "kubernetes.readinessHttpProbePath=/actuator/health/readiness",
    "kubernetes.readinessHttpProbePort=8080",
    "kubernetes.readinessHttpProbeDelay=5",
    "kubernetes.readinessHttpProbePeriod=10",
    "kubernetes.readinessHttpProbeTimeout=2",
    "kubernetes.readinessHttpProbeFailure=3",
    "kubernetes.livenessHttpProbePath=/actuator/health/liveness",
    "kubernetes.livenessHttpProbePort=8080",
    "kubernetes.livenessHttpProbeDelay=10",
    "kubernetes.livenessHttpProbePeriod=30",
    "kubernetes.livenessHttpProbeTimeout=2",
    "kubernetes.livenessHttpProbeFailure=3",
    "kubernetes.startupHttpProbePath=/actuator/health/liveness",
    "kubernetes.startupHttpProbePort=8080",
    "kubernetes.startupHttpProbeDelay=5",
    "kubernetes.startupHttpProbePeriod=1",
    "kubernetes.startupHttpProbeTimeout=2",
    "kubernetes.startupHttpProbeFailure=95",
)
POD_SHAPE = (
    "kubernetes.podSecurityContext={runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, fsGroup: 1000, "
    "seccompProfile: {type: RuntimeDefault}}",
    "kubernetes.containerSecurityContext={allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, "
    "privileged: false, readOnlyRootFilesystem: true, runAsNonRoot: true}",
    "kubernetes.volumes=[{name: tmp, emptyDir: {sizeLimit: 256Mi}}]",
    "kubernetes.volumeMounts=[{name: tmp, mountPath: /tmp}]",
)
JVM = ("kubernetes.requests.cpu=100m", "kubernetes.requests.memory=768Mi", "kubernetes.limits.memory=768Mi")
PYTHON = ("kubernetes.requests.cpu=100m", "kubernetes.requests.memory=256Mi", "kubernetes.limits.memory=256Mi")
# The operator's pods tolerate node loss for 30 s (podtemplate.NODE_LOSS_TOLERATION_SECONDS): so do SCDF's.
NODE_LOSS = (
    "kubernetes.tolerations=[{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, "
    "tolerationSeconds: 30}, {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, "
    "tolerationSeconds: 30}]",
)

# The seed's recipe, for the sample pipeline, exactly as a user would type it into the
# SCDF shell. Written out by hand: a change in the wiring must show up here.
SAMPLE_SCRIPT = (
    "app register --type app --name time --uri docker:springcloudstream/time-source-kafka:5.1.1"
    " --metadata-uri maven://org.springframework.cloud.stream.app:time-source-kafka:jar:metadata:5.1.1\n"
    "app register --type app --name python-router --uri docker:ghcr.io/tspipe/router:0.1.0\n"
    "app register --type app --name log --uri docker:springcloudstream/log-sink-kafka:5.1.1"
    " --metadata-uri maven://org.springframework.cloud.stream.app:log-sink-kafka:jar:metadata:5.1.1\n"
    'stream create --name timeStampStream --definition "time || python-router || evenLogger: log || oddLogger: log"\n'
    'stream deploy --name timeStampStream --properties "'
    "app.time.spring.cloud.dataflow.stream.name=timeStampStream,"
    "app.time.spring.cloud.dataflow.stream.app.label=time,"
    "app.time.spring.cloud.stream.kafka.binder.brokers=kafka.kafka.svc:9092,"
    "app.time.spring.cloud.stream.kafka.binder.replication-factor=1,"
    "app.time.spring.cloud.stream.kafka.binder.min-partition-count=1,"
    "app.time.spring.cloud.stream.bindings.output.destination=timeDest,"
    "app.time.time.date-format=MM/dd/yy HH:mm:ss,"
    "app.time.spring.integration.poller.fixed-delay=1000,"
    "app.python-router.spring.cloud.dataflow.stream.name=timeStampStream,"
    "app.python-router.spring.cloud.dataflow.stream.app.label=python-router,"
    "app.python-router.spring.cloud.stream.kafka.binder.brokers=kafka.kafka.svc:9092,"
    "app.python-router.spring.cloud.stream.kafka.binder.replication-factor=1,"
    "app.python-router.spring.cloud.stream.kafka.binder.min-partition-count=1,"
    "app.python-router.spring.cloud.stream.bindings.input.destination=timeDest,"
    "app.python-router.spring.cloud.stream.bindings.input.group=timeStampStream,"
    "app.python-router.spring.cloud.stream.bindings.even.destination=evenDest,"
    "app.python-router.spring.cloud.stream.bindings.odd.destination=oddDest,"
    "app.python-router.tsrouter.even-prefix=Even timestamp:,"
    "app.python-router.tsrouter.odd-prefix=Odd timestamp:,"
    "app.python-router.tsrouter.processing-guarantee=at-least-once,"
    "app.evenLogger.spring.cloud.dataflow.stream.name=timeStampStream,"
    "app.evenLogger.spring.cloud.dataflow.stream.app.label=evenLogger,"
    "app.evenLogger.spring.cloud.stream.kafka.binder.brokers=kafka.kafka.svc:9092,"
    "app.evenLogger.spring.cloud.stream.kafka.binder.replication-factor=1,"
    "app.evenLogger.spring.cloud.stream.kafka.binder.min-partition-count=1,"
    "app.evenLogger.spring.cloud.stream.bindings.input.destination=evenDest,"
    "app.evenLogger.spring.cloud.stream.bindings.input.group=timeStampStream,"
    "app.evenLogger.log.consumer.level=INFO,"
    "app.evenLogger.log.consumer.expression=payload,"
    "app.oddLogger.spring.cloud.dataflow.stream.name=timeStampStream,"
    "app.oddLogger.spring.cloud.dataflow.stream.app.label=oddLogger,"
    "app.oddLogger.spring.cloud.stream.kafka.binder.brokers=kafka.kafka.svc:9092,"
    "app.oddLogger.spring.cloud.stream.kafka.binder.replication-factor=1,"
    "app.oddLogger.spring.cloud.stream.kafka.binder.min-partition-count=1,"
    "app.oddLogger.spring.cloud.stream.bindings.input.destination=oddDest,"
    "app.oddLogger.spring.cloud.stream.bindings.input.group=timeStampStream,"
    "app.oddLogger.log.consumer.level=INFO,"
    "app.oddLogger.log.consumer.expression=payload,"
    + ",".join(
        f"deployer.{label}.{key}"
        for label, probes, resources in (
            ("time", BOOT_PROBES, JVM),
            ("python-router", ROUTER_PROBES, PYTHON),
            ("evenLogger", BOOT_PROBES, JVM),
            ("oddLogger", BOOT_PROBES, JVM),
        )
        for key in probes + POD_SHAPE + resources + NODE_LOSS + (("count=1",) if label == "python-router" else ())
    )
    + '"\n'
)


def pipeline(**spec) -> Pipeline:
    return Pipeline.from_resource(sample_pipeline(**spec))


def test_sample_script_is_exactly_the_seed_recipe():
    assert render_script(load_pipeline_file(SAMPLE)) == SAMPLE_SCRIPT


# The six lines of the seed's polyglot-python-app-deployment.properties.
@pytest.mark.parametrize(
    "line",
    [
        "app.time.spring.cloud.stream.bindings.output.destination=timeDest",
        "app.python-router.spring.cloud.stream.bindings.input.destination=timeDest",
        "app.python-router.spring.cloud.stream.bindings.even.destination=evenDest",
        "app.python-router.spring.cloud.stream.bindings.odd.destination=oddDest",
        "app.evenLogger.spring.cloud.stream.bindings.input.destination=evenDest",
        "app.oddLogger.spring.cloud.stream.bindings.input.destination=oddDest",
    ],
)
def test_the_seed_wiring_lines_are_in_the_deploy_properties(line):
    deploy_line = SAMPLE_SCRIPT.splitlines()[-1]
    assert line in deploy_line


def test_plan_uses_the_wiring_module_unchanged():
    p = pipeline(
        kafka={"brokers": ["a:9092", "b:9093"]},
        router={"evenPrefix": "E:"},
        time={"properties": {"logging.level.root": "WARN"}},
    )
    plan = stream_plan(p)
    assert plan.properties == wiring.deployment_properties(p)
    # Only `deployer.` keys beside them; the wiring is not touched.
    assert all(k.startswith("deployer.") for k in plan.deployer)
    assert plan.all_properties == {**plan.properties, **plan.deployer}
    assert plan.definition == wiring.STREAM_DEFINITION == "time || python-router || evenLogger: log || oddLogger: log"
    assert plan.stream_name == "timeStampStream"
    # Brokers keep their comma: SCDF's shell parser joins a comma-part without "app.x=".
    assert "app.time.spring.cloud.stream.kafka.binder.brokers=a:9092,b:9093," in render_script(p)


def test_apps_registered_once_per_scdf_name_with_tag_versions():
    p = pipeline(router={"image": "registry.local:5000/team/router:2.3.4"})
    regs = app_registrations(p)
    assert [(r.name, r.version, r.uri, r.labels) for r in regs] == [
        ("time", "5.1.1", "docker:springcloudstream/time-source-kafka:5.1.1", ("time",)),
        ("python-router", "2.3.4", "docker:registry.local:5000/team/router:2.3.4", ("python-router",)),
        ("log", "5.1.1", "docker:springcloudstream/log-sink-kafka:5.1.1", ("evenLogger", "oddLogger")),
    ]
    assert regs[1].metadata_uri is None


def test_loggers_with_different_images_cannot_share_the_log_app():
    with pytest.raises(
        RenderError, match=r"spec.oddLogger.image: oddLogger and evenLogger are both the SCDF app 'log'"
    ):
        app_registrations(pipeline(oddLogger={"image": "springcloudstream/log-sink-kafka:5.1.0"}))


@pytest.mark.parametrize(
    "image,expected",
    [
        ("springcloudstream/time-source-kafka:5.1.1", ("springcloudstream/time-source-kafka", "5.1.1")),
        ("localhost:5000/router:0.1.0", ("localhost:5000/router", "0.1.0")),
        ("ghcr.io/a/b:1.0@sha256:" + "a" * 64, ("ghcr.io/a/b", "1.0")),
    ],
)
def test_split_image(image, expected):
    assert split_image(image, "spec.x.image") == expected


@pytest.mark.parametrize("image", ["localhost:5000/router", "router", "ghcr.io/a/b@sha256:" + "a" * 64])
def test_images_need_a_tag(image):
    with pytest.raises(RenderError, match=r"spec.router.image: image .* has no tag"):
        app_registrations(pipeline(router={"image": image}))


def test_metadata_uri_only_for_spring_prebuilt_apps():
    assert (
        metadata_uri("springcloudstream/log-sink-kafka", "5.1.1")
        == "maven://org.springframework.cloud.stream.app:log-sink-kafka:jar:metadata:5.1.1"
    )
    assert (
        metadata_uri("docker.io/springcloudstream/log-sink-kafka", "4.0.0")
        == "maven://org.springframework.cloud.stream.app:log-sink-kafka:jar:metadata:4.0.0"
    )
    assert metadata_uri("myorg/log-sink-kafka", "1") is None
    assert metadata_uri("springcloudstream/a/b", "1") is None


@pytest.mark.parametrize(
    "value,why",
    [
        (" padded", "whitespace"),
        ('say "hi"', "double quote"),
        ("a,app.time.x=y", "reads as a new property"),
    ],
)
def test_values_the_shell_cannot_carry_are_refused_by_name(value, why):
    p = pipeline(time={"properties": {"custom.key": value}})
    with pytest.raises(RenderError, match=rf"property app\.time\.custom\.key: .*{why}"):
        render_script(p)
    # The REST path has no such limit: the plan still carries the value unchanged.
    assert stream_plan(p).properties["app.time.custom.key"] == value


def test_commas_and_equals_that_the_shell_keeps_are_allowed():
    p = pipeline(time={"properties": {"custom.list": "a,b=c,d"}})
    assert "app.time.custom.list=a,b=c,d" in render_script(p)


def test_stream_name_defaults_to_metadata_name():
    doc = sample_pipeline()
    del doc["spec"]["streamName"]
    p = Pipeline.from_resource(copy.deepcopy(doc))
    assert "stream create --name timestamps " in render_script(p)


def test_router_count_follows_spec_router_replicas():
    assert stream_plan(pipeline(router={"replicas": 3})).deployer["deployer.python-router.count"] == "3"
    assert stream_plan(pipeline(router={"replicas": 0})).deployer["deployer.python-router.count"] == "0"
    # The other apps run one instance each, SCDF's default: no count is sent for them.
    assert [k for k in stream_plan(pipeline()).deployer if k.endswith(".count")] == ["deployer.python-router.count"]


def test_deployer_pod_shape_is_the_operators():
    """The probes, security contexts and /tmp volume the operator renders, per app."""
    from tspipe.components import COMPONENTS
    from tspipe.render import render_deployments

    doc = sample_pipeline()
    doc["metadata"].update(namespace="ns", uid="u")
    p = Pipeline.from_resource(doc)
    deployer = stream_plan(p).deployer
    for c, d in zip(COMPONENTS, render_deployments(doc), strict=True):
        pod = d["spec"]["template"]["spec"]
        ctr = pod["containers"][0]
        props = {
            k.removeprefix(f"deployer.{c.label}.kubernetes."): v
            for k, v in deployer.items()
            if k.startswith(f"deployer.{c.label}.kubernetes.")
        }
        for kind in ("readiness", "liveness"):
            probe = ctr[f"{kind}Probe"]
            assert props[f"{kind}HttpProbePath"] == probe["httpGet"]["path"]
            assert props[f"{kind}HttpProbePort"] == str(probe["httpGet"]["port"])
            assert props[f"{kind}HttpProbeDelay"] == str(probe["initialDelaySeconds"])
            assert props[f"{kind}HttpProbePeriod"] == str(probe["periodSeconds"])
            assert props[f"{kind}HttpProbeTimeout"] == str(probe["timeoutSeconds"])
            assert props[f"{kind}HttpProbeFailure"] == str(probe["failureThreshold"])
        assert yaml.safe_load(props["podSecurityContext"]) == pod["securityContext"]
        assert yaml.safe_load(props["containerSecurityContext"]) == ctr["securityContext"]
        assert yaml.safe_load(props["volumes"]) == pod["volumes"]
        assert yaml.safe_load(props["volumeMounts"]) == ctr["volumeMounts"]
        assert {k: v for k, v in props.items() if k.startswith(("requests.", "limits."))} == {
            f"{section}.{res}": v for section in ("requests", "limits") for res, v in ctr["resources"][section].items()
        }
