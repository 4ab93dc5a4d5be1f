"""What Skipper reports from its platform about a stream's apps, as plain data (pure).

Data Flow's `GET /runtime/streams?names=NAME` passes on what Skipper's deployer reads
from the platform: per app its deployment id and state (deployed, deploying, partial,
failed, ...), per instance its state and attributes (on Kubernetes: the pod's name and
phase). `tspipe scdf status` prints one line per app from this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..components import APP_LABELS

# What a pod phase means for an instance that is not deployed yet. Skipper's Kubernetes
# deployer reports the phase, not the container's waiting reason: the hint says where
# that reason is (kubectl describe / the pod's events).
_PHASE_HINTS = {
    "Pending": "its container has not started: the image is missing on the node or cannot be pulled, "
    "or the pod cannot be scheduled (kubectl describe pod shows which)",
    "Running": "running, not ready yet (its readiness probe has not passed)",
    "Failed": "the pod failed (kubectl logs --previous shows why)",
    "Unknown": "the node stopped reporting this pod",
}


@dataclass(frozen=True)
class InstanceState:
    id: str
    state: str
    attributes: dict[str, str]

    def reason(self) -> str:
        pod = self.attributes.get("pod.name")
        phase = self.attributes.get("phase")
        text = f"{self.id}: {self.state}"
        if pod and pod != self.id:
            text += f", pod {pod}"
        if phase:
            text += f", phase {phase}"
            hint = _PHASE_HINTS.get(phase)
            if hint:
                text += f": {hint}"
        restarts = self.attributes.get("container.restartCount")
        if restarts and restarts != "0":
            text += f" ({restarts} restarts)"
        return text


@dataclass(frozen=True)
class AppState:
    label: str
    deployment_id: str
    state: str
    instances: tuple[InstanceState, ...]

    @property
    def deployed_instances(self) -> int:
        return sum(1 for i in self.instances if i.state == "deployed")

    def line(self) -> str:
        text = f"{self.label}: {self.state}, {self.deployed_instances}/{len(self.instances)} instances deployed"
        if self.deployment_id:
            text += f" ({self.deployment_id})"
        waiting = [i.reason() for i in self.instances if i.state != "deployed"]
        if not self.instances and self.state != "deployed":
            waiting.append("the platform reports no instance")
        return text + "".join(f"\n    {w}" for w in waiting)


def _embedded(body: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        items = (body.get("_embedded") or {}).get(key)
        if isinstance(items, list):
            return [i for i in items if isinstance(i, dict)]
    if isinstance(body, list):
        return [i for i in body if isinstance(i, dict)]
    return []


def _label(stream: str, deployment_id: str, name: str) -> str:
    """The app's label: `name` when it is one, else taken from `<stream>-<label>-v<N>`."""
    if name in APP_LABELS:
        return name
    for label in APP_LABELS:
        if deployment_id.lower().startswith(f"{stream}-{label}".lower()):
            return label
    return name or deployment_id


def parse_runtime(body: Any, stream: str) -> list[AppState]:
    """The apps of `stream` in a `/runtime/streams` answer, in stream order."""
    apps: list[AppState] = []
    for s in _embedded(body, "streamStatusResourceList"):
        if s.get("name") not in (None, stream):
            continue
        for a in _embedded(s.get("applications"), "appStatusResourceList"):
            deployment_id = str(a.get("deploymentId") or "")
            instances = tuple(
                InstanceState(
                    id=str(i.get("instanceId") or i.get("id") or "?"),
                    state=str(i.get("state") or "unknown"),
                    attributes={str(k): str(v) for k, v in (i.get("attributes") or {}).items()},
                )
                for i in _embedded(a.get("instances"), "appInstanceStatusResourceList")
            )
            apps.append(
                AppState(
                    label=_label(stream, deployment_id, str(a.get("name") or "")),
                    deployment_id=deployment_id,
                    state=str(a.get("state") or "unknown"),
                    instances=instances,
                )
            )
    order = {label: n for n, label in enumerate(APP_LABELS)}
    return sorted(apps, key=lambda a: order.get(a.label, len(order)))


def summary(apps: list[AppState]) -> str:
    """`4 of 4 apps deployed`, counting the stream's apps the platform knows nothing of."""
    deployed = sum(1 for a in apps if a.state == "deployed")
    missing = [label for label in APP_LABELS if label not in {a.label for a in apps}]
    text = f"apps: {deployed} of {len(APP_LABELS)} deployed"
    return text + (f" (no report for {', '.join(missing)})" if missing else "")


def unknown_lines(labels: list[str], reason: str) -> list[str]:
    """Status lines when the platform's report cannot be read (e.g. Skipper cannot reach its
    Kubernetes API server): every app of the release, named, with the reason."""
    order = {label: n for n, label in enumerate(APP_LABELS)}
    reason = " ".join(reason.split())
    return [f"apps: the platform's status could not be read: {reason}"] + [
        f"  {label}: unknown (no report from the platform)" for label in sorted(labels, key=lambda x: order.get(x, 99))
    ]
