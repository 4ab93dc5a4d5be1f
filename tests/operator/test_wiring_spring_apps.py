"""The rendered wiring against the real prebuilt apps (time-source-kafka and
log-sink-kafka 5.1.1 jars) and a real broker: each app runs with exactly the args and
env of its rendered Deployment, and its actuator shows every property bound where the
contract says (bindings, date format, poller delay, log level/expression), the probe
endpoints answer, and the payloads follow the date format."""

from __future__ import annotations

import json
import urllib.request
import uuid
from datetime import datetime

import pytest
from kubehelpers import wait_for
from samples import sample_pipeline

from tspipe.render import render_deployments

pytestmark = pytest.mark.kafka

# Test-only: expose configprops (the apps' security starter guards all but health/info).
EXPOSE = [
    "--management.endpoints.web.exposure.include=health,info,bindings,configprops",
    "--management.endpoint.configprops.show-values=always",
    "--spring.cloud.streamapp.security.enabled=false",
]


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, json.load(r)


def _configprops(port, prefix):
    _, doc = _get(port, "/actuator/configprops")
    seen = []
    for ctx in doc["contexts"].values():
        for bean in ctx["beans"].values():
            if bean["prefix"] == prefix:
                return bean["properties"]
            seen.append(bean["prefix"])
    raise AssertionError(f"no @ConfigurationProperties with prefix {prefix!r} in {sorted(seen)}")


def _run(springapps, app, deployment, port, log_path):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--server.port=8080" in c["args"]
    # Local adaptation only: each app needs its own port on the shared loopback.
    args = [a if a != "--server.port=8080" else f"--server.port={port}" for a in c["args"]] + EXPOSE
    env = {e["name"]: e.get("value", str(uuid.uuid4())) for e in c["env"]}  # GUID: a pod UID stand-in
    return springapps.start_app(app, c["image"].rsplit(":", 1)[1], args, env=env, log_path=log_path)


def test_rendered_args_bind_in_the_real_spring_apps(kafka_bootstrap, tmp_path):
    from localinfra import springapps
    from localinfra.kube import free_port

    suffix = uuid.uuid4().hex[:6]
    obj = sample_pipeline(stored=True)
    obj["spec"]["kafka"] = {
        "brokers": [kafka_bootstrap],
        "topics": {"input": f"t-{suffix}", "even": f"e-{suffix}", "odd": f"o-{suffix}"},
    }
    obj["spec"]["time"].update(dateFormat="yyyy-MM-dd HH:mm:ss", fixedDelaySeconds=2)
    obj["spec"]["evenLogger"].update(level="WARN", expression="'E:' + payload")
    deps = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in render_deployments(obj)}

    ports = {"time": free_port(), "evenlogger": free_port()}
    procs = []
    try:
        for comp, app in (("time", "time-source-kafka"), ("evenlogger", "log-sink-kafka")):
            procs.append((comp, _run(springapps, app, deps[comp], ports[comp], tmp_path / f"{comp}.log")))
        for comp, proc in procs:
            springapps.wait_started(proc, tmp_path / f"{comp}.log", timeout=180)

        # Probes as rendered: the paths the Deployment names answer 200 on the app's port.
        for comp in ports:
            c = deps[comp]["spec"]["template"]["spec"]["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                status, _ = _get(ports[comp], c[probe]["httpGet"]["path"])
                assert status == 200, (comp, probe)

        # time: output binding, date format, poller delay.
        bindings = {b["bindingName"]: b for b in _get(ports["time"], "/actuator/bindings")[1]}
        assert bindings["output"]["name"] == f"t-{suffix}"
        assert _configprops(ports["time"], "time")["dateFormat"] == "yyyy-MM-dd HH:mm:ss"
        poller = _configprops(ports["time"], "spring.integration")["poller"]
        assert poller["fixedDelay"] in ("PT2S", 2000, "2000ms", 2.0), poller  # "2000" bound as a Duration of 2 s
        # evenLogger: input binding, level and expression.
        bindings = {b["bindingName"]: b for b in _get(ports["evenlogger"], "/actuator/bindings")[1]}
        assert bindings["input"]["name"] == f"e-{suffix}"
        log_props = _configprops(ports["evenlogger"], "log.consumer")
        assert log_props["level"] == "WARN" and log_props["expression"] == "'E:' + payload"
        # And the payloads really follow the rendered date format.
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            f"t-{suffix}",
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=f"check-{suffix}",
            enable_auto_commit=False,
        )
        try:
            values = []
            wait_for(
                lambda: (
                    values.extend(r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs)
                    or len(values) >= 2
                ),
                60,
                "two timestamps",
            )
        finally:
            consumer.close()
        for v in values:
            datetime.strptime(v.decode(), "%Y-%m-%d %H:%M:%S")
    finally:
        for _, proc in procs:
            springapps.stop_app(proc)
