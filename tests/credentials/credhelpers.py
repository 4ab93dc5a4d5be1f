"""Build the router's process exactly as the operator renders it and a kubelet would start it."""

from __future__ import annotations

from pathlib import Path

from localinfra.runner import program_for, with_port
from routerproc import RouterProc

from tspipe.render import render_deployments

SECRET = "kafka-creds"


def pipeline(
    brokers: str,
    mechanism: str,
    name: str = "sasl",
    topics: dict | None = None,
    protocol: str = "SASL_PLAINTEXT",
    ca_secret: str | None = None,
) -> dict:
    credentials = {"secretName": SECRET, "mechanism": mechanism, "protocol": protocol}
    if ca_secret:
        credentials["caSecretName"] = ca_secret
    return {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": name, "namespace": "apps", "uid": "u-1"},
        "spec": {
            "kafka": {"brokers": [brokers], "topics": {"manage": False, **(topics or {})}, "credentials": credentials}
        },
    }


def router_deployment(resource: dict) -> dict:
    return next(d for d in render_deployments(resource) if d["metadata"]["name"].endswith("-router"))


def secret_resolver(secrets: dict[str, dict[str, str]]):
    """Reads secretKeyRef values from {secret name: data}, as the runner reads the real Secret."""

    def resolve(namespace, value_from):
        ref = value_from.get("secretKeyRef")
        return secrets[ref["name"]][ref["key"]] if ref else None

    return resolve


def router_from_deployment(deployment: dict, secrets: dict[str, dict[str, str]]) -> RouterProc:
    """A RouterProc with exactly the container's args and env ($(VAR) expanded like the kubelet)."""
    prog = program_for(deployment, secret_resolver(secrets))
    proc = RouterProc(env=dict(prog.env))
    proc.args = with_port(prog.args, proc.port) + ["--server.address=127.0.0.1"]
    return proc


def mount_secret_volumes(deployment: dict, secrets: dict[str, dict[str, str]], root: Path) -> dict:
    """The local stand-in for the kubelet's Secret volumes: write each mounted Secret's
    items under `root` and point env values at that path instead of the mount path.
    Returns the adapted Deployment (the mount path is the only thing changed)."""
    import copy

    d = copy.deepcopy(deployment)
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in c.get("volumeMounts") or []:
        src = volumes[mount["name"]].get("secret")
        if not src:
            continue
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        for item in src.get("items") or [{"key": k, "path": k} for k in secrets[src["secretName"]]]:
            (local / item["path"]).write_text(secrets[src["secretName"]][item["key"]])
        for e in c.get("env") or []:
            if "value" in e and e["value"].startswith(mount["mountPath"] + "/"):
                e["value"] = str(local) + e["value"][len(mount["mountPath"]) :]
    return d
