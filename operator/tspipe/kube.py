"""Kubernetes API calls the operator makes (synchronous; run them in a thread).

Objects go in and come out as plain dicts exactly as the API server serves them, so
the pure diff sees what the server has. Every request carries the operator's user
agent, which is how the API server's audit log attributes the writes.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.rest import ApiException

from .names import API_GROUP, API_VERSION, GROUP_VERSION, KIND, MANAGER, PLURAL, USER_AGENT
from .stamps import format_time

__all__ = ["ApiException", "Kube", "load_client_config"]

POD_PROXY_TIMEOUT_S = 5


def load_client_config() -> kubernetes.client.Configuration:
    """Kubeconfig ($KUBECONFIG or ~/.kube/config) if present, else the in-cluster service account."""
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=cfg)
    except (kubernetes.config.ConfigException, FileNotFoundError, OSError):
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    return cfg


class Kube:
    def __init__(self, configuration: kubernetes.client.Configuration | None = None):
        self.client = kubernetes.client.ApiClient(configuration or load_client_config())
        self.client.user_agent = USER_AGENT
        self.instance = socket.gethostname()

    def close(self) -> None:
        self.client.close()

    def _request(
        self, method: str, path: str, *, body=None, query: list | None = None, content_type: str = "application/json"
    ):
        """One raw JSON request: plain dicts both ways, no typed models (they would drop
        or reshape fields the diff compares). Raises ApiException for non-2xx."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method_, url, headers, body_, _ = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.client.call_api(method_, url, header_params=headers, body=body_, _request_timeout=60)
        resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
        return json.loads(resp.data) if resp.data else None

    def _get_or_none(self, path: str) -> dict | None:
        try:
            return self._request("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- pipelines ---------------------------------------------------------------
    def _pipeline_path(self, namespace: str, name: str) -> str:
        return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"

    def get_pipeline(self, namespace: str, name: str) -> dict | None:
        return self._get_or_none(self._pipeline_path(namespace, name))

    def write_status(self, namespace: str, name: str, status: dict) -> dict | None:
        # JSON patch replacing the whole status: fields that went away are removed too.
        # The answer (the pipeline as written) goes into the watch cache.
        return self._request(
            "PATCH",
            self._pipeline_path(namespace, name) + "/status",
            body=[{"op": "add", "path": "/status", "value": status}],
            query=[("fieldManager", MANAGER)],
            content_type="application/json-patch+json",
        )

    def set_finalizers(self, namespace: str, name: str, finalizers: list[str], resource_version: str) -> dict | None:
        # JSON patch guarded by the resourceVersion read: a concurrent change fails (409)
        # instead of losing someone else's finalizer.
        return self._request(
            "PATCH",
            self._pipeline_path(namespace, name),
            body=[
                {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
                {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
            ],
            query=[("fieldManager", MANAGER)],
            content_type="application/json-patch+json",
        )

    def remove_annotation(self, namespace: str, name: str, key: str, value: str) -> dict | None:
        # JSON patch guarded by the value read: if the user changed the annotation in the
        # meantime the patch fails (the new value is acted on in the next pass), never lost.
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        return self._request(
            "PATCH",
            self._pipeline_path(namespace, name),
            body=[{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}],
            query=[("fieldManager", MANAGER)],
            content_type="application/json-patch+json",
        )

    def get_peering(self, namespace: str | None, name: str) -> dict | None:
        if namespace:
            return self._get_or_none(f"/apis/kopf.dev/v1/namespaces/{quote(namespace)}/kopfpeerings/{quote(name)}")
        return self._get_or_none(f"/apis/kopf.dev/v1/clusterkopfpeerings/{quote(name)}")

    # --- deployments -------------------------------------------------------------
    @staticmethod
    def _deployments(namespace: str, name: str | None = None) -> str:
        path = f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments"
        return f"{path}/{quote(name)}" if name else path

    def list_deployments(self, namespace: str, selector: str) -> list[dict]:
        return (
            self._request("GET", self._deployments(namespace), query=[("labelSelector", selector)]).get("items") or []
        )

    def get_deployment(self, namespace: str, name: str) -> dict | None:
        return self._get_or_none(self._deployments(namespace, name))

    def create_deployment(self, namespace: str, body: dict) -> dict:
        return self._request("POST", self._deployments(namespace), body=body, query=[("fieldManager", MANAGER)])

    def replace_deployment(self, namespace: str, name: str, body: dict) -> dict:
        # body carries metadata.resourceVersion: a concurrent change fails with 409.
        return self._request("PUT", self._deployments(namespace, name), body=body, query=[("fieldManager", MANAGER)])

    def delete_deployment(self, namespace: str, name: str, resource_version: str | None) -> None:
        opts: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if resource_version:
            opts["preconditions"] = {"resourceVersion": resource_version}
        try:
            self._request("DELETE", self._deployments(namespace, name), body=opts)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- pods (read only: why an app's pods are not running) ----------------------
    def list_pods(self, namespace: str, selector: str) -> list[dict]:
        path = f"/api/v1/namespaces/{quote(namespace)}/pods"
        return self._request("GET", path, query=[("labelSelector", selector)]).get("items") or []

    def pod_proxy_text(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET a path of a pod's HTTP port through the API server's pod proxy (RBAC
        `pods/proxy` get): the router's own counters, where the operator cannot read the
        broker. Short timeout: a pod that does not answer is left out, not waited for."""
        resource = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}:{port}/proxy/{path.lstrip('/')}"
        method_, url, headers, _, _ = self.client.param_serialize(
            method="GET",
            resource_path=resource,
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        )
        resp = self.client.call_api(method_, url, header_params=headers, _request_timeout=POD_PROXY_TIMEOUT_S)
        resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
        return (resp.data or b"").decode("utf-8", "replace")

    # --- jobs (the one-shot offset reset with credentials: resetjob.py) -------------
    @staticmethod
    def _jobs(namespace: str, name: str | None = None) -> str:
        path = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
        return f"{path}/{quote(name)}" if name else path

    def get_job(self, namespace: str, name: str) -> dict | None:
        return self._get_or_none(self._jobs(namespace, name))

    def create_job(self, namespace: str, body: dict) -> dict:
        return self._request("POST", self._jobs(namespace), body=body, query=[("fieldManager", MANAGER)])

    # --- pod disruption budgets --------------------------------------------------
    @staticmethod
    def _pdbs(namespace: str, name: str | None = None) -> str:
        path = f"/apis/policy/v1/namespaces/{quote(namespace)}/poddisruptionbudgets"
        return f"{path}/{quote(name)}" if name else path

    def get_pdb(self, namespace: str, name: str) -> dict | None:
        return self._get_or_none(self._pdbs(namespace, name))

    def create_pdb(self, namespace: str, body: dict) -> dict:
        return self._request("POST", self._pdbs(namespace), body=body, query=[("fieldManager", MANAGER)])

    def replace_pdb(self, namespace: str, name: str, body: dict) -> dict:
        # body carries metadata.resourceVersion: a concurrent change fails with 409.
        return self._request("PUT", self._pdbs(namespace, name), body=body, query=[("fieldManager", MANAGER)])

    def delete_pdb(self, namespace: str, name: str, resource_version: str | None) -> None:
        opts: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version:
            opts["preconditions"] = {"resourceVersion": resource_version}
        try:
            self._request("DELETE", self._pdbs(namespace, name), body=opts)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- autoscalers -------------------------------------------------------------
    def list_hpas(self, namespace: str) -> list[dict]:
        """The namespace's HorizontalPodAutoscalers (KEDA's ScaledObjects make one too)."""
        path = f"/apis/autoscaling/v2/namespaces/{quote(namespace)}/horizontalpodautoscalers"
        return list(self._request("GET", path).get("items") or [])

    # --- events ------------------------------------------------------------------
    def post_event(self, pipeline: dict, type_: str, reason: str, message: str, now: datetime) -> None:
        meta = pipeline["metadata"]
        ts = format_time(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": GROUP_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
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
        self._request("POST", f"/api/v1/namespaces/{quote(meta['namespace'])}/events", body=body)
