"""Kubernetes API calls the operator makes (synchronous; run them in a thread).

Objects go in and come out as plain dicts exactly as the API server serves them, so
the pure diff sees what the server has. Every request carries the operator's user
agent, which is how the API server's audit log attributes the writes.
"""
from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import kubernetes
from kubernetes.client.rest import ApiException

from .model import API_GROUP, API_VERSION, KIND, PLURAL
from .render import MANAGER

USER_AGENT = "tspipe-operator/0.1.0"

__all__ = ["Kube", "ApiException", "USER_AGENT", "load_client_config"]


def load_client_config() -> kubernetes.client.Configuration:
    """Kubeconfig ($KUBECONFIG or ~/.kube/config) if present, else the in-cluster service account."""
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=cfg)
    except (kubernetes.config.ConfigException, FileNotFoundError, OSError):
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    return cfg


def _json(resp) -> dict:
    return json.loads(resp.data)


def _ts(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    def __init__(self, configuration: kubernetes.client.Configuration | None = None):
        self.client = kubernetes.client.ApiClient(configuration or load_client_config())
        self.client.user_agent = USER_AGENT
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.instance = socket.gethostname()

    def close(self) -> None:
        self.client.close()

    # --- pipelines ---------------------------------------------------------------
    def get_pipeline(self, namespace: str, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def write_status(self, namespace: str, name: str, status: dict) -> None:
        # JSON patch replacing the whole status: fields that went away are removed too.
        self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, PLURAL, name,
            [{"op": "add", "path": "/status", "value": status}])

    # --- deployments -------------------------------------------------------------
    def list_deployments(self, namespace: str, selector: str) -> list[dict]:
        resp = self.apps.list_namespaced_deployment(namespace, label_selector=selector, _preload_content=False)
        return _json(resp).get("items", [])

    def get_deployment(self, namespace: str, name: str) -> dict | None:
        try:
            return _json(self.apps.read_namespaced_deployment(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_deployment(self, namespace: str, body: dict) -> dict:
        return _json(self.apps.create_namespaced_deployment(namespace, body, field_manager=MANAGER,
                                                            _preload_content=False))

    def replace_deployment(self, namespace: str, name: str, body: dict) -> dict:
        # body carries metadata.resourceVersion: a concurrent change fails with 409.
        return _json(self.apps.replace_namespaced_deployment(name, namespace, body, field_manager=MANAGER,
                                                             _preload_content=False))

    def delete_deployment(self, namespace: str, name: str, resource_version: str | None) -> None:
        opts = kubernetes.client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=kubernetes.client.V1Preconditions(resource_version=resource_version)
            if resource_version else None)
        try:
            self.apps.delete_namespaced_deployment(name, namespace, body=opts)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- events ------------------------------------------------------------------
    def post_event(self, pipeline: dict, type_: str, reason: str, message: str, now: datetime) -> None:
        meta = pipeline["metadata"]
        ts = _ts(now)
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        self.core.create_namespaced_event(meta["namespace"], body)
