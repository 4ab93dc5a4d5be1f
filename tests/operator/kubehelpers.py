"""Helpers for the operator tests on the real control plane: kubectl, the operator
as a real subprocess, bounded waits, audit-log write counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from localinfra.kube import audit_events
from localinfra.operatorproc import OperatorProcess, manager_argv
from localinfra.proc import wait_for  # noqa: F401  (re-exported for the tests)
from samples import CRD_FILE, SAMPLE_NAME, sample_pipeline  # noqa: F401  (CRD_FILE re-exported)

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_AGENTS = ("tspipe-operator/", "kopf/")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


class Kubectl:
    def __init__(self, cp, namespace: str | None = None):
        self.cp = cp
        self.namespace = namespace

    def __call__(self, *args, check=True, input=None):  # noqa: A002 - subprocess.run's name
        ns = ("-n", self.namespace) if self.namespace else ()
        return self.cp.kubectl(*ns, *args, check=check, input=input)

    def json(self, *args):
        return json.loads(self("get", *args, "-o", "json").stdout)

    def get_or_none(self, kind, name):
        proc = self("get", kind, name, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return json.loads(proc.stdout)

    def apply(self, obj: dict):
        return self("apply", "-f", "-", input=yaml.safe_dump(obj))

    def deployments(self, selector="app.kubernetes.io/managed-by=tspipe-operator"):
        return {d["metadata"]["name"]: d for d in self.json("deployments", "-l", selector)["items"]}


class AuditLog:
    """Write requests in the API server's audit log (JSON lines), from an offset on."""

    def __init__(self, path: str):
        self.path = path

    def offset(self) -> int:
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def writes(self, since: int = 0, namespace: str | None = None, agents=OPERATOR_AGENTS) -> list[dict]:
        out = []
        for ev in audit_events(self.path, since):
            if ev.get("verb") not in WRITE_VERBS:
                continue
            if not any((ev.get("userAgent") or "").startswith(a) for a in agents):
                continue
            if namespace and (ev.get("objectRef") or {}).get("namespace") != namespace:
                continue
            out.append(ev)
        return out


def describe(ev: dict) -> str:
    ref = ev.get("objectRef") or {}
    return f"{ev['verb']} {ref.get('resource')}/{ref.get('subresource', '') or ''}{ref.get('name', '')}"


class Operator(OperatorProcess):
    """`python -m tspipe.manager --namespace NS` at debug level (the tests read its lines)."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path, extra=(), standalone: bool = True):
        super().__init__(
            manager_argv(namespace, standalone=standalone, extra=("--log-level", "debug", *extra)),
            log_path,
            kubeconfig=kubeconfig,
        )
        self.namespace = namespace

    def reconciles(self, name: str) -> list[str]:
        needle = f"reconciled {self.namespace}/{name}:"
        return [ln for ln in self.log().splitlines() if needle in ln]


def no_broker_pipeline(**spec) -> dict:
    """The sample with topic management off: no broker needed, no broker warnings."""
    obj = sample_pipeline(**spec)
    obj["spec"]["kafka"]["topics"]["manage"] = False
    return obj


def conditions(obj: dict) -> dict:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def settled(k, phase, name=SAMPLE_NAME):
    """A probe for wait_for: the pipeline once its status reports `phase` for its current generation."""

    def probe():
        obj = k.get_or_none("tsp", name)
        st = (obj or {}).get("status") or {}
        if st.get("phase") == phase and st.get("observedGeneration") == obj["metadata"]["generation"]:
            return obj
        return None

    return probe


def generations(k, name=SAMPLE_NAME) -> dict:
    """metadata.generation of each of the pipeline's Deployments, by component."""
    return {
        n.rsplit("-", 1)[1]: d["metadata"]["generation"]
        for n, d in k.deployments(f"app.kubernetes.io/instance={name}").items()
    }


def produce(bootstrap: str, topic: str, n: int) -> None:
    """Write `n` timestamps (the time source's format) to `topic`, acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(n):
        producer.send(topic, f"11/27/26 00:00:{i % 60:02d}".encode())
    producer.flush()
    producer.close()
