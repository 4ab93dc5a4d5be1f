"""Configuration parsing: SCDF's three entry-point styles, precedence, malformed values."""

import json
import os
import subprocess
import sys

import pytest

from tsrouter.config import ConfigError, HelpRequested, RouterConfig, canonical, load

DEST = "spring.cloud.stream.bindings.{}.destination"


def test_defaults():
    cfg = load([], {})
    assert (cfg.input_topic, cfg.even_topic, cfg.odd_topic) == ("input", "even", "odd")
    assert cfg.group == "tsp-router"
    assert cfg.dead_letter_topic == "error.input.tsp-router"
    assert cfg.brokers == ("localhost:9092",)
    assert cfg.server_port == 8080
    assert cfg.even_prefix == "Even timestamp:" and cfg.odd_prefix == "Odd timestamp:"
    assert cfg.processing_guarantee == "at-least-once" and not cfg.exactly_once
    assert cfg.auto_create_topics is True


def test_throughput_settings_defaults_and_each_style():
    cfg = load([], {})
    assert (cfg.max_poll_records, cfg.producer_batch_size, cfg.batch_send, cfg.fast_fetch) == (
        5000,
        256 * 1024,
        True,
        True,
    )
    assert (cfg.eos_commit_interval_ms, cfg.eos_commit_records) == (100, 20_000)
    cfg = load(
        ["--tsrouter.eos-commit-interval-ms=250", "--tsrouter.batch-send=false", "--tsrouter.fast-fetch=false"],
        {
            "TSROUTER_EOS_COMMIT_RECORDS": "5000",
            "SPRING_APPLICATION_JSON": json.dumps({"tsrouter": {"producer-batch-size": 65536}}),
        },
    )
    assert (cfg.eos_commit_interval_ms, cfg.eos_commit_records) == (250, 5000)
    assert (cfg.producer_batch_size, cfg.batch_send, cfg.fast_fetch) == (65536, False, False)


def test_exec_style_args():
    cfg = load(
        [
            f"--{DEST.format('input')}=timeDest",
            f"--{DEST.format('even')}=evenDest",
            f"--{DEST.format('odd')}=oddDest",
            "--spring.cloud.stream.kafka.binder.brokers=k1:9093,k2",
            "--spring.cloud.dataflow.stream.name=timeStampStream",
            "--spring.cloud.dataflow.stream.app.label=python-router",
            "--server.port=9000",
        ],
        {},
    )
    assert (cfg.input_topic, cfg.even_topic, cfg.odd_topic) == ("timeDest", "evenDest", "oddDest")
    assert cfg.brokers == ("k1:9093", "k2:9092")
    assert cfg.group == "timeStampStream"  # stream name is the default group
    assert cfg.dead_letter_topic == "error.timeDest.timeStampStream"
    assert cfg.app_label == "python-router" and cfg.server_port == 9000


def test_shell_style_env():
    env = {
        "SPRING_CLOUD_STREAM_BINDINGS_INPUT_DESTINATION": "timeDest",
        "SPRING_CLOUD_STREAM_BINDINGS_EVEN_DESTINATION": "evenDest",
        "SPRING_CLOUD_STREAM_BINDINGS_ODD_DESTINATION": "oddDest",
        "SPRING_CLOUD_STREAM_BINDINGS_INPUT_GROUP": "g1",
        "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS": "kafka:9092",
        "SPRING_CLOUD_APPLICATION_GUID": "abc-123",
        "SPRING_CLOUD_APPLICATION_GROUP": "ts",
        "TSROUTER_EVEN_PREFIX": "E:",
        "TSROUTER_PROCESSINGGUARANTEE": "exactly-once",
        "SERVER_PORT": "8181",
        "PATH": "/usr/bin",
    }
    cfg = load([], env)
    assert (cfg.input_topic, cfg.even_topic, cfg.odd_topic, cfg.group) == ("timeDest", "evenDest", "oddDest", "g1")
    assert cfg.brokers == ("kafka:9092",)
    assert cfg.app_guid == "abc-123" and cfg.app_group == "ts"
    assert cfg.even_prefix == "E:" and cfg.exactly_once and cfg.server_port == 8181
    assert cfg.transactional_id  # derived, stable per host


def test_boot_style_json_nested_and_flat():
    nested = {
        "spring": {
            "cloud": {
                "stream": {
                    "bindings": {"input": {"destination": "a"}, "even": {"destination": "b"}},
                    "kafka": {"binder": {"brokers": "h:1"}},
                }
            }
        },
        "server": {"port": 8282},
        "tsrouter": {"autoCreateTopics": False, "topic-partitions": 3},
    }
    cfg = load([], {"SPRING_APPLICATION_JSON": json.dumps(nested)})
    assert (cfg.input_topic, cfg.even_topic, cfg.odd_topic) == ("a", "b", "odd")
    assert cfg.brokers == ("h:1",) and cfg.server_port == 8282
    assert cfg.auto_create_topics is False and cfg.topic_partitions == 3
    flat = {DEST.format("odd"): "c", "spring.cloud.stream.kafka.binder.brokers": "h:2", "tsrouter.odd-prefix": "O:"}
    cfg = load([], {"SPRING_APPLICATION_JSON": json.dumps(flat)})
    assert cfg.odd_topic == "c" and cfg.brokers == ("h:2",) and cfg.odd_prefix == "O:"


def test_precedence_args_over_json_over_env_over_defaults():
    key = DEST.format("even")
    env = {
        "SPRING_CLOUD_STREAM_BINDINGS_EVEN_DESTINATION": "fromEnv",
        "SPRING_APPLICATION_JSON": json.dumps({key: "fromJson"}),
    }
    assert load([f"--{key}=fromArgs"], env).even_topic == "fromArgs"
    assert load([], env).even_topic == "fromJson"
    del env["SPRING_APPLICATION_JSON"]
    assert load([], env).even_topic == "fromEnv"
    assert load([], {}).even_topic == "even"
    # an env var for another key still applies when args set a different key
    env = {"SPRING_CLOUD_STREAM_BINDINGS_ODD_DESTINATION": "oddEnv"}
    cfg = load([f"--{key}=x"], env)
    assert (cfg.even_topic, cfg.odd_topic) == ("x", "oddEnv")


def test_relaxed_binding_forms():
    assert canonical("tsrouter.even-prefix") == canonical("tsrouter.evenPrefix") == canonical("TSROUTER.EVEN_PREFIX")
    assert load(["--tsrouter.evenPrefix=X"], {}).even_prefix == "X"
    assert load(["--tsrouter.even_prefix=Y"], {}).even_prefix == "Y"


def test_unknown_keys_ignored():
    cfg = load(["--no.such.key=1", "--spring.cloud.stream.bindings.other.destination=zzz"], {"SOMETHING_ELSE": "x"})
    assert cfg == RouterConfig(transactional_id=None)


def test_value_with_equals_sign_and_empty_prefix():
    cfg = load(["--tsrouter.even-prefix=a=b", "--tsrouter.odd-prefix="], {})
    assert cfg.even_prefix == "a=b" and cfg.odd_prefix == ""


def test_security_properties_parsed_and_not_exposed():
    base = "spring.cloud.stream.kafka.binder.configuration."
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cr\\"et";'
    cfg = load(
        [
            f"--{base}security.protocol=SASL_PLAINTEXT",
            f"--{base}sasl.mechanism=SCRAM-SHA-256",
            f"--{base}sasl.jaas.config={jaas}",
        ],
        {},
    )
    assert cfg.kafka_client["security_protocol"] == "SASL_PLAINTEXT"
    assert cfg.kafka_client["sasl_mechanism"] == "SCRAM-SHA-256"
    assert cfg.kafka_client["sasl_plain_username"] == "alice"
    assert cfg.kafka_client["sasl_plain_password"] == 's3cr\\"et'
    assert "s3cr" not in repr(cfg) and "alice" not in repr(cfg)
    assert "s3cr" not in json.dumps(cfg.public_info()) and "alice" not in json.dumps(cfg.public_info())
    # env style, PLAIN implied by the login module
    env = {
        "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_JAAS_CONFIG": (
            'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";'
        ),
        "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SECURITY_PROTOCOL": "sasl_plaintext",
    }
    cfg = load([], env)
    assert cfg.kafka_client == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }


def test_help():
    with pytest.raises(HelpRequested):
        load(["--help"], {})


BAD = [
    (["--server.port=abc"], {}, "server.port"),
    (["--server.port=70000"], {}, "server.port"),
    (["--server.port="], {}, "server.port"),
    ([], {"SERVER_PORT": "x"}, "SERVER_PORT"),
    (["--spring.cloud.stream.kafka.binder.brokers="], {}, "spring.cloud.stream.kafka.binder.brokers"),
    (["--spring.cloud.stream.kafka.binder.brokers= , "], {}, "spring.cloud.stream.kafka.binder.brokers"),
    (["--spring.cloud.stream.kafka.binder.brokers=h:notaport"], {}, "spring.cloud.stream.kafka.binder.brokers"),
    ([], {"SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS": ""}, "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS"),
    (["--spring.cloud.stream.bindings.input.destination"], {}, "spring.cloud.stream.bindings.input.destination"),
    (["positional"], {}, "positional"),
    (["--=x"], {}, "empty key"),
    (
        ["--spring.cloud.stream.bindings.even.destination=bad topic!"],
        {},
        "spring.cloud.stream.bindings.even.destination",
    ),
    (["--spring.cloud.stream.bindings.input.group=  "], {}, "spring.cloud.stream.bindings.input.group"),
    (["--tsrouter.processing-guarantee=maybe"], {}, "tsrouter.processing-guarantee"),
    (["--tsrouter.auto-create-topics=perhaps"], {}, "tsrouter.auto-create-topics"),
    (["--tsrouter.topic-partitions=0"], {}, "tsrouter.topic-partitions"),
    (["--tsrouter.topic-replication-factor=0"], {}, "tsrouter.topic-replication-factor"),
    (["--tsrouter.log-level=LOUD"], {}, "tsrouter.log-level"),
    (["--tsrouter.log-format=xml"], {}, "tsrouter.log-format"),
    (["--server.address=not-an-ip"], {}, "server.address"),
    ([], {"SPRING_APPLICATION_JSON": "{not json"}, "SPRING_APPLICATION_JSON"),
    ([], {"SPRING_APPLICATION_JSON": "[1,2]"}, "SPRING_APPLICATION_JSON"),
    ([], {"SPRING_APPLICATION_JSON": json.dumps({"server": {"port": "eighty"}})}, "server.port"),
    (
        ["--spring.cloud.stream.kafka.binder.configuration.security.protocol=TLS"],
        {},
        "spring.cloud.stream.kafka.binder.configuration.security.protocol",
    ),
    (
        ["--spring.cloud.stream.kafka.binder.configuration.sasl.jaas.config=Krb5LoginModule required;"],
        {},
        "spring.cloud.stream.kafka.binder.configuration.sasl.jaas.config",
    ),
    (["--tsrouter.producer-batch-size=2000000"], {}, "tsrouter.producer-batch-size"),
    (["--tsrouter.eos-commit-interval-ms=0"], {}, "tsrouter.eos-commit-interval-ms"),
    (["--tsrouter.eos-commit-records=many"], {}, "tsrouter.eos-commit-records"),
    (["--tsrouter.batch-send=sometimes"], {}, "tsrouter.batch-send"),
    (["--tsrouter.fast-fetch=1.5"], {}, "tsrouter.fast-fetch"),
]


@pytest.mark.parametrize("argv,env,key", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_malformed_values_name_the_key(argv, env, key):
    with pytest.raises(ConfigError) as err:
        load(argv, env)
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_secret_values_never_in_errors():
    jaas = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u";'
    with pytest.raises(ConfigError) as err:
        load([f"--spring.cloud.stream.kafka.binder.configuration.sasl.jaas.config={jaas}"], {})
    assert "PlainLoginModule required" not in str(err.value)


@pytest.mark.parametrize("argv,env,key", BAD[:4] + BAD[8:9] + BAD[20:21])
def test_cli_exits_2_with_one_line_and_no_traceback(argv, env, key):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRING_", "SERVER_", "TSROUTER_"))}
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "tsrouter", *argv], env=full_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""
