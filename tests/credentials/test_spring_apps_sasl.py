"""The real prebuilt Spring apps (time source, log sink 5.1.1) read the credentials the
operator renders: each runs with exactly its Deployment's args and env, the env resolved
from a Secret's data and `$(VAR)`-expanded like the kubelet, against the SASL listener only."""

from __future__ import annotations

import uuid

import pytest
from credhelpers import SECRET, pipeline, secret_resolver
from localinfra.kube import free_port
from localinfra.runner import program_for, with_port
from routerproc import produce, read_all, wait_for

from tspipe.render import render_deployments

pytestmark = pytest.mark.kafka


def test_time_source_and_log_sink_authenticate_with_scram_from_the_rendered_env(sasl_broker, tmp_path):
    from localinfra import springapps

    suffix = uuid.uuid4().hex[:6]
    password = sasl_broker.sasl_users["alice"]
    topics = {"input": f"t-{suffix}", "even": f"e-{suffix}", "odd": f"o-{suffix}"}
    obj = pipeline(sasl_broker.sasl_bootstrap, "SCRAM-SHA-512", name="spring", topics=topics)
    deps = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in render_deployments(obj)}
    resolve = secret_resolver({SECRET: {"username": "alice", "password": password}})
    procs = []
    try:
        for comp, app in (("time", "time-source-kafka"), ("evenlogger", "log-sink-kafka")):
            prog = program_for(deps[comp], resolve)
            env = {**dict(prog.env), "SPRING_CLOUD_APPLICATION_GUID": str(uuid.uuid4())}
            log = tmp_path / f"{comp}.log"
            procs.append(
                (
                    comp,
                    log,
                    springapps.start_app(app, prog.version, with_port(prog.args, free_port()), env=env, log_path=log),
                )
            )
        for _comp, log, proc in procs:
            springapps.wait_started(proc, log, timeout=240)

        # time -> input topic, through SASL (read back via the plain listener).
        assert len(read_all(sasl_broker.bootstrap, topics["input"], 2, timeout=90)) >= 2
        # even topic -> the log sink, through SASL.
        marker = f"Even timestamp:sasl-{suffix}"
        produce(sasl_broker.bootstrap, topics["even"], [marker.encode()])
        even_log = procs[1][1]
        wait_for(
            lambda: (
                marker in "\n".join(springapps.log_sink_payloads(even_log.read_text(errors="replace").splitlines()))
            ),
            120,
            "the log sink printing the payload",
        )
        for comp, log, _ in procs:
            assert password not in log.read_text(errors="replace"), f"{comp} logged the password"
    finally:
        for _, _, proc in procs:
            springapps.stop_app(proc)
