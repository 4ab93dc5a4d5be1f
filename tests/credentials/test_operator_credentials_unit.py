"""spec.kafka.credentials: model validation, rendering by reference only, SCDF refusal."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tspipe.model import Credentials, Pipeline, PipelineError
from tspipe.render import CA_MOUNT_PATH, render_deployments
from tspipe.scdf.render import RenderError, render_script, stream_plan

CREDS = {"secretName": "kafka-creds", "mechanism": "SCRAM-SHA-512"}


def resource(credentials=None, manage=False, **spec):
    kafka = {"brokers": ["kafka:9093"], "topics": {"manage": manage}}
    if credentials is not None:
        kafka["credentials"] = credentials
    return {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": "ts", "namespace": "apps", "uid": "u-1"},
        "spec": {"kafka": kafka, **spec},
    }


def test_defaults_and_all_fields():
    p = Pipeline.from_resource(resource(CREDS))
    assert p.kafka.credentials == Credentials(
        "kafka-creds", "SCRAM-SHA-512", "SASL_SSL", "username", "password", None, "ca.crt"
    )
    p = Pipeline.from_resource(
        resource(
            {**CREDS, "mechanism": "PLAIN", "protocol": "SASL_PLAINTEXT", "usernameKey": "user", "passwordKey": "pass"}
        )
    )
    assert (p.kafka.credentials.protocol, p.kafka.credentials.username_key) == ("SASL_PLAINTEXT", "user")
    assert Pipeline.from_resource(resource()).kafka.credentials is None


def test_sasl_plaintext_credentials_as_the_api_server_defaults_them_are_valid():
    # The CRD's structural defaults fill caKey in even without caSecretName.
    served = {
        **CREDS,
        "protocol": "SASL_PLAINTEXT",
        "usernameKey": "username",
        "passwordKey": "password",
        "caKey": "ca.crt",
    }
    assert Pipeline.from_resource(resource(served)).kafka.credentials.ca_secret_name is None


@pytest.mark.parametrize(
    "credentials,manage,field",
    [
        ({"mechanism": "PLAIN"}, False, "spec.kafka.credentials.secretName"),
        ({"secretName": "Bad_Name", "mechanism": "PLAIN"}, False, "spec.kafka.credentials.secretName"),
        ({"secretName": "s"}, False, "spec.kafka.credentials.mechanism"),
        ({**CREDS, "mechanism": "GSSAPI"}, False, "spec.kafka.credentials.mechanism"),
        ({**CREDS, "protocol": "SSL"}, False, "spec.kafka.credentials.protocol"),
        ({**CREDS, "passwordKey": "a/b"}, False, "spec.kafka.credentials.passwordKey"),
        ({**CREDS, "protocol": "SASL_PLAINTEXT", "caSecretName": "ca"}, False, "spec.kafka.credentials.caSecretName"),
        ({**CREDS, "caKey": "x.pem"}, False, "spec.kafka.credentials.caKey"),
        ({**CREDS, "password": "inline"}, False, "spec.kafka.credentials.password"),
        (CREDS, True, "spec.kafka.topics.manage"),
    ],
)
def test_invalid_credentials_name_the_field(credentials, manage, field):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(resource(credentials, manage=manage))
    assert err.value.field == field


def test_user_env_and_properties_may_not_shadow_the_credentials():
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(resource(CREDS, router={"env": [{"name": "KAFKA_SASL_PASSWORD", "value": "x"}]}))
    assert err.value.field == "spec.router.env[0].name"
    with pytest.raises(PipelineError) as err:
        Pipeline.from_resource(
            resource(
                CREDS, time={"properties": {"spring.cloud.stream.kafka.binder.configuration.sasl.jaas.config": "x"}}
            )
        )
    assert err.value.field.startswith("spec.time.properties[")
    # Without credentials the user may wire security themselves.
    Pipeline.from_resource(resource(None, router={"env": [{"name": "KAFKA_SASL_PASSWORD", "value": "x"}]}))


def _env(container):
    return {e["name"]: e for e in container["env"]}


def test_every_app_gets_the_secret_by_reference_in_binder_property_names():
    for d in render_deployments(resource({**CREDS, "caSecretName": "kafka-ca", "caKey": "root.pem"})):
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = _env(c)
        names = [e["name"] for e in c["env"]]
        assert env["KAFKA_SASL_USERNAME"]["valueFrom"] == {"secretKeyRef": {"name": "kafka-creds", "key": "username"}}
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "kafka-creds", "key": "password"}}
        jaas = env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_JAAS_CONFIG"]
        assert jaas["value"] == (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            'username="$(KAFKA_SASL_USERNAME)" password="$(KAFKA_SASL_PASSWORD)";'
        )
        # $(VAR) only expands from variables defined earlier in the list.
        assert names.index("KAFKA_SASL_PASSWORD") < names.index(jaas["name"])
        assert env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SSL_TRUSTSTORE_TYPE"]["value"] == "PEM"
        assert (
            env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SSL_TRUSTSTORE_LOCATION"]["value"]
            == f"{CA_MOUNT_PATH}/root.pem"
        )
        assert {"name": "kafka-ca", "mountPath": CA_MOUNT_PATH, "readOnly": True} in c["volumeMounts"]
        assert {
            "name": "kafka-ca",
            "secret": {
                "secretName": "kafka-ca",
                "items": [{"key": "root.pem", "path": "root.pem"}],
                "defaultMode": 0o444,
            },
        } in pod["volumes"]
        assert not any("sasl" in a.lower() or "security" in a.lower() for a in c["args"])


def test_plain_mechanism_uses_the_plain_login_module_and_no_ca_no_volume():
    for d in render_deployments(resource({**CREDS, "mechanism": "PLAIN", "protocol": "SASL_PLAINTEXT"})):
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert _env(c)["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_JAAS_CONFIG"]["value"].startswith(
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
        )
        assert [v["name"] for v in d["spec"]["template"]["spec"]["volumes"]] == ["tmp"]


def test_credentials_change_the_desired_hash_so_they_roll_out():
    a = render_deployments(resource(CREDS))[1]["metadata"]["annotations"]
    b = render_deployments(resource({**CREDS, "secretName": "other"}))[1]["metadata"]["annotations"]
    assert a != b


def test_scdf_fallback_refuses_credentials_rather_than_carrying_them():
    p = Pipeline.from_resource(resource(CREDS))
    with pytest.raises(RenderError, match=r"^spec.kafka.credentials: the SCDF fallback does not carry"):
        stream_plan(p)
    with pytest.raises(RenderError):
        render_script(p)


def test_scdf_cli_render_refuses_with_one_clear_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(resource(CREDS)))
    r = subprocess.run(
        [sys.executable, "-m", "tspipe.cli", "scdf", "render", "-f", str(f)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert "spec.kafka.credentials" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run(
        [sys.executable, "-m", "tspipe.cli", "scdf", "deploy", "-f", str(f), "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "spec.kafka.credentials" in r.stderr


def test_crd_schema_carries_the_credentials_field_and_its_rules():
    from tspipe.crd import crd

    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    kafka = spec["properties"]["kafka"]
    cred = kafka["properties"]["credentials"]
    assert cred["required"] == ["secretName", "mechanism"]
    assert cred["properties"]["mechanism"]["enum"] == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert "password" not in cred["properties"]  # values never live in the pipeline
    assert any("spec.kafka.topics.manage" in r["message"] for r in kafka["x-kubernetes-validations"])
