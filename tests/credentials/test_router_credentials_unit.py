"""Router credential handling without a broker: parsing, the auth-failure watch, no leaks."""

import json
import logging
import subprocess
import sys

import pytest

from tsrouter import authwatch
from tsrouter.config import ConfigError, load

BASE = "spring.cloud.stream.kafka.binder.configuration."
JAAS_PLAIN = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="pw-PLAIN-1";'
JAAS_SCRAM = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="bob" password="pw-SCRAM-2";'


# The three entry point styles: (argv, environment).
@pytest.mark.parametrize(
    "argv, env",
    [
        (
            [
                f"--{BASE}security.protocol=SASL_PLAINTEXT",
                f"--{BASE}sasl.mechanism=SCRAM-SHA-256",
                f"--{BASE}sasl.jaas.config={JAAS_SCRAM}",
            ],
            {},
        ),
        (
            [],
            {
                "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_MECHANISM": "SCRAM-SHA-256",
                "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_JAAS_CONFIG": JAAS_SCRAM,
            },
        ),
        (
            [],
            {
                "SPRING_APPLICATION_JSON": json.dumps(
                    {
                        "spring": {
                            "cloud": {
                                "stream": {
                                    "kafka": {
                                        "binder": {
                                            "configuration": {
                                                "security.protocol": "SASL_PLAINTEXT",
                                                "sasl.mechanism": "SCRAM-SHA-256",
                                                "sasl.jaas.config": JAAS_SCRAM,
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                )
            },
        ),
    ],
    ids=["exec", "shell", "boot"],
)
def test_three_entry_point_styles_give_the_same_client_settings(argv, env):
    want = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "bob",
        "sasl_plain_password": "pw-SCRAM-2",
    }
    cfg = load(argv, env)
    assert {k: cfg.kafka_client[k] for k in want} == want


def test_pem_truststore_file_and_inline_certificates(tmp_path):
    cfg = load(
        [
            f"--{BASE}security.protocol=SASL_SSL",
            f"--{BASE}ssl.truststore.type=PEM",
            f"--{BASE}ssl.truststore.location=/etc/kafka-ca/ca.crt",
            f"--{BASE}sasl.jaas.config={JAAS_PLAIN}",
        ],
        {},
    )
    assert cfg.kafka_client["ssl_cafile"] == "/etc/kafka-ca/ca.crt"
    assert cfg.kafka_client["security_protocol"] == "SASL_SSL"
    with pytest.raises(ConfigError) as err:
        load([f"--{BASE}ssl.truststore.certificates=-----BEGIN CERTIFICATE-----\nnot-a-cert\n"], {})
    assert "ssl.truststore.certificates" in str(err.value) and "not-a-cert" not in str(err.value)


def test_credentials_stay_out_of_repr_and_public_info():
    cfg = load([f"--{BASE}sasl.jaas.config={JAAS_PLAIN}", f"--{BASE}security.protocol=SASL_PLAINTEXT"], {})
    assert "pw-PLAIN-1" not in repr(cfg)
    assert "pw-PLAIN-1" not in repr(cfg.public_info()) and "alice" not in repr(cfg.public_info())


def test_config_error_names_the_key_never_the_password():
    jaas = 'org.apache.kafka.common.security.plain.PlainLoginModule required password="only-pw-3";'
    proc = subprocess.run(
        [sys.executable, "-m", "tsrouter", f"--{BASE}sasl.jaas.config={jaas}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "sasl.jaas.config" in proc.stderr
    assert "only-pw-3" not in proc.stderr + proc.stdout


def test_auth_watch_recognises_kafka_python_auth_failures_only():
    clock = iter(range(100)).__next__
    watch = authwatch.AuthFailureWatch(clock=clock)
    t0 = watch.now()
    lg = logging.getLogger("test.authwatch")
    lg.addHandler(watch)
    lg.propagate = False
    try:
        lg.error(
            "%s: Connection lost: %s",
            "<KafkaConnection node_id=bootstrap-0>",
            "KafkaConnectionError: socket disconnected",
        )
        assert not watch.failed_since(t0)
        lg.error(
            "%s: Connection lost: %s",
            "<KafkaConnection node_id=bootstrap-0>",
            "[Error 58] SaslAuthenticationFailedError: Authentication failed during authentication "
            "due to invalid credentials with SASL mechanism SCRAM-SHA-256",
        )
        assert watch.failed_since(t0)
        assert not watch.failed_since(watch.now())  # a later attempt starts clean
    finally:
        lg.removeHandler(watch)


def test_install_is_idempotent_and_keeps_kafka_records_off_the_console_by_default():
    a = authwatch.install(debug=False)
    b = authwatch.install(debug=False)
    assert a is b
    lg = logging.getLogger("kafka.net.connection")
    assert lg.propagate is False and lg.isEnabledFor(logging.ERROR)
