"""The router on the real broker's SASL listener, configured the way the operator renders it.

The Deployment comes from tspipe.render with spec.kafka.credentials; its env is resolved
from a Secret's data and `$(VAR)`-expanded like the kubelet does (localinfra.runner), so
the credentials reach the router only as the operator hands them over."""
from __future__ import annotations

import json

import pytest

from credhelpers import SECRET, mount_secret_volumes, pipeline, router_deployment, router_from_deployment
from routerproc import produce, read_all, timestamps, unique, wait_for

pytestmark = pytest.mark.kafka


def _leaks(router, secret_values) -> list[str]:
    """Every place (log, actuator endpoint) where one of the secret values shows up."""
    places = {"log": router.output()}
    for path in ("/actuator/info", "/actuator/health", "/actuator/health/readiness",
                 "/actuator/health/liveness", "/actuator/prometheus", "/actuator"):
        _status, body = router.get(path)
        places[path] = body if isinstance(body, str) else json.dumps(body)
    return [f"{where} contains a credential" for where, text in places.items()
            for v in secret_values if v in text]


@pytest.mark.parametrize("mechanism,user", [("PLAIN", "alice"), ("SCRAM-SHA-256", "bob"), ("SCRAM-SHA-512", "alice")])
def test_router_routes_through_the_sasl_listener_with_credentials_from_a_secret(sasl_broker, mechanism, user):
    password = sasl_broker.sasl_users[user]
    topics = {"input": unique("in"), "even": unique("even"), "odd": unique("odd")}
    deployment = router_deployment(pipeline(sasl_broker.sasl_bootstrap, mechanism, topics=topics))
    rendered = json.dumps(deployment)
    assert password not in rendered and "$(KAFKA_SASL_PASSWORD)" in rendered
    router = router_from_deployment(deployment, {SECRET: {"username": user, "password": password}})
    # The router knows only the SASL address: it has no other way to the broker.
    assert f"--spring.cloud.stream.kafka.binder.brokers={sasl_broker.sasl_bootstrap}" in router.args
    router.start()
    try:
        router.wait_ready(90)
        values = timestamps(10)
        produce(sasl_broker.bootstrap, topics["input"], values)   # test data via the plain listener
        even = read_all(sasl_broker.bootstrap, topics["even"], 5)
        odd = read_all(sasl_broker.bootstrap, topics["odd"], 5)
        assert sorted(r.value for r in even) == sorted(b"Even timestamp:" + v for v in values if v[-1] % 2 == 0)
        assert sorted(r.value for r in odd) == sorted(b"Odd timestamp:" + v for v in values if v[-1] % 2 == 1)
        status, info = router.get("/actuator/info")
        assert status == 200 and info["securityProtocol"] == "SASL_PLAINTEXT"
        assert _leaks(router, [password]) == []
    finally:
        router.stop()


def test_wrong_password_readiness_down_with_a_clear_reason_and_no_crash_loop(sasl_broker):
    wrong = "wrong-" + sasl_broker.sasl_users["alice"][::-1]
    deployment = router_deployment(pipeline(sasl_broker.sasl_bootstrap, "SCRAM-SHA-512"))
    router = router_from_deployment(deployment, {SECRET: {"username": "alice", "password": wrong}})
    router.start()
    try:
        def reason():
            status, body = router.get("/actuator/health")
            if status is None:
                return None
            return body.get("components", {}).get("kafka", {}).get("details", {}).get("state")

        wait_for(lambda: reason() == "authentication failed", 90, "readiness reason 'authentication failed'")
        # It keeps retrying with backoff in the same process: several failed attempts, no exit.
        wait_for(lambda: router.output().count("kafka authentication failed") >= 3, 90, "three retries")
        assert router.proc.poll() is None
        assert router.get("/actuator/health/readiness")[0] == 503
        assert router.get("/actuator/health/liveness")[0] == 200
        assert reason() == "authentication failed"
        assert _leaks(router, [wrong]) == []
    finally:
        router.stop()


def test_router_over_sasl_ssl_trusting_the_ca_from_a_mounted_secret(sasl_broker, tmp_path):
    password = sasl_broker.sasl_users["bob"]
    topics = {"input": unique("in"), "even": unique("even"), "odd": unique("odd")}
    deployment = router_deployment(pipeline(sasl_broker.tls_bootstrap, "SCRAM-SHA-256", topics=topics,
                                            protocol="SASL_SSL", ca_secret="kafka-ca"))
    secrets = {SECRET: {"username": "bob", "password": password},
               "kafka-ca": {"ca.crt": sasl_broker.ca_file.read_text()}}
    router = router_from_deployment(mount_secret_volumes(deployment, secrets, tmp_path), secrets)
    assert router.env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SSL_TRUSTSTORE_LOCATION"] == \
        str(tmp_path / "kafka-ca" / "ca.crt")
    router.start()
    try:
        router.wait_ready(90)
        values = timestamps(6)
        produce(sasl_broker.bootstrap, topics["input"], values)
        routed = read_all(sasl_broker.bootstrap, topics["even"], 3) + read_all(sasl_broker.bootstrap, topics["odd"], 3)
        assert len(routed) == 6
        assert router.get("/actuator/info")[1]["securityProtocol"] == "SASL_SSL"
        assert _leaks(router, [password]) == []
    finally:
        router.stop()


def test_router_without_the_ca_cannot_connect_over_tls(sasl_broker):
    # The same TLS listener without the CA: the certificate is not trusted, so not ready.
    deployment = router_deployment(pipeline(sasl_broker.tls_bootstrap, "PLAIN", protocol="SASL_SSL"))
    router = router_from_deployment(deployment, {SECRET: {"username": "alice",
                                                          "password": sasl_broker.sasl_users["alice"]}})
    router.start()
    try:
        wait_for(lambda: router.output().count("kafka error") >= 2, 90, "two failed connection attempts")
        assert router.proc.poll() is None and router.get("/actuator/health/readiness")[0] == 503
    finally:
        router.stop()
