"""A pipeline with Kafka credentials on the real control plane: the operator renders
references only, so no Secret value appears in Deployments, pods, the pipeline's status,
Events or the operator's log."""

from __future__ import annotations

import json
import secrets

import pytest
import yaml
from kubehelpers import Kubectl, Operator, wait_for

pytestmark = pytest.mark.kube


@pytest.fixture
def ns_kubectl(control_plane, crd_installed, namespace):
    return Kubectl(control_plane, namespace)


def _pipeline(name: str, **credentials) -> dict:
    return {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": name},
        "spec": {
            "kafka": {
                "brokers": ["kafka.kafka.svc:9096"],
                "topics": {"manage": False},
                "credentials": {
                    "secretName": "kafka-creds",
                    "mechanism": "SCRAM-SHA-512",
                    "protocol": "SASL_SSL",
                    "caSecretName": "kafka-ca",
                    **credentials,
                },
            }
        },
    }


def _secret(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": data}


def test_no_secret_value_in_deployments_pods_status_events_or_operator_log(
    ns_kubectl, kubeconfig, control_plane, tmp_path
):
    k = ns_kubectl
    username, password = f"user-{secrets.token_hex(6)}", secrets.token_urlsafe(24)
    ca_body = secrets.token_hex(24)
    k.apply(_secret("kafka-creds", {"username": username, "password": password}))
    k.apply(_secret("kafka-ca", {"ca.crt": f"-----BEGIN CERTIFICATE-----\n{ca_body}\n-----END CERTIFICATE-----\n"}))
    values = [username, password, ca_body]

    op = Operator(kubeconfig, k.namespace, tmp_path / "operator.log").start()
    try:
        k.apply(_pipeline("creds"))
        deployments = wait_for(lambda: len(k.deployments()) == 4 and k.deployments(), 90, "four Deployments")
        wait_for(
            lambda: (k.json("tsp", "creds").get("status") or {}).get("readyComponents") == "4/4",
            120,
            "pipeline 4/4 ready",
        )
        for d in deployments.values():
            c = d["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e for e in c["env"]}
            assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds", "key": "password"}
            assert (
                "$(KAFKA_SASL_PASSWORD)"
                in env["SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_JAAS_CONFIG"]["value"]
            )
        # A change of the Secret reference rolls out, still by reference.
        k(
            "patch",
            "tsp",
            "creds",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"kafka": {"credentials": {"passwordKey": "pw"}}}}),
        )
        wait_for(
            lambda: all(
                {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}["KAFKA_SASL_PASSWORD"][
                    "valueFrom"
                ]["secretKeyRef"]["key"]
                == "pw"
                for d in k.deployments().values()
            ),
            90,
            "rolled-out passwordKey",
        )

        texts = {
            "deployments": k("get", "deploy", "-o", "yaml").stdout,
            "replicasets": k("get", "rs", "-o", "yaml").stdout,
            "pods": k("get", "pods", "-o", "yaml").stdout,
            "pipeline": k("get", "tsp", "creds", "-o", "yaml").stdout,
            "events": k("get", "events", "-o", "yaml").stdout,
            "operator log": op.log(since_start=False),
        }
        assert "kafka-creds" in texts["deployments"]  # the reference is there...
        leaks = [f"{where} contains a secret value" for where, text in texts.items() for v in values if v in text]
        assert leaks == []  # ...the values are not
    finally:
        op.stop()
    # That the operator cannot read Secrets at all (RBAC without secrets) is checked in
    # tests/install/test_install_kube.py; the local audit log records writes only.


@pytest.mark.parametrize(
    "credentials,topics,needle",
    [
        ({"mechanism": "GSSAPI"}, {}, "spec.kafka.credentials.mechanism"),
        ({"protocol": "SASL_PLAINTEXT"}, {}, "spec.kafka.credentials.caSecretName"),
        ({}, {"manage": True}, "spec.kafka.topics.manage"),
    ],
)
def test_api_server_rejects_invalid_credentials_naming_the_field(ns_kubectl, credentials, topics, needle):
    obj = _pipeline("bad", **credentials)
    obj["spec"]["kafka"]["topics"].update(topics)
    proc = ns_kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert proc.returncode != 0 and needle in proc.stderr, proc.stderr
