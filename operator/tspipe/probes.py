"""An app's probes (`spec.<app>.probes`), declared once: the parser, the CRD's schema and
the rendered container probes come from here.

Any image written to SCDF's contract must run under the operator, and not every one
serves Boot 3's `/actuator/health/readiness` (the recipe's own Python router answers
only `/actuator/health` and `/actuator/info`). Each probe is a subset of Kubernetes'
own Probe: an HTTP GET (`httpGet.path`, `httpGet.port`) or a TCP connect
(`tcpSocket.port`), and its timing. Every field left out keeps what the operator
renders by default for that app (components.py), field by field, so the spec says only
what differs; the defaults stay the operator's, not stored in each object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .components import Component, Probe
from .fields import Int, PipelineError, Str

KINDS = ("readiness", "liveness", "startup")

PATH = Str(
    "path",
    "path",
    "HTTP path to GET (any 2xx or 3xx answer passes).",
    min_length=1,
    max_length=2048,
    pattern=r"^/[^\s]*$",
    invalid="must be an absolute HTTP path (starting with '/', no spaces), got {value!r}",
)
PORT = Int("port", "port", "Container port (default: the app's server port, 8080).", 8080, 1, 65535)
TIMING: tuple[Int, ...] = (
    Int(
        "initialDelaySeconds", "initial_delay", "Seconds after the container starts before the first probe.", 0, 0, 3600
    ),
    Int("periodSeconds", "period", "Seconds between probes.", 10, 1, 3600),
    Int("timeoutSeconds", "timeout", "Seconds before a probe counts as failed.", 2, 1, 3600),
    Int("failureThreshold", "failure_threshold", "Failures in a row that count.", 3, 1, 1000),
)
PURPOSE = {
    "readiness": "Ready pods get traffic and count as available (rollouts, the PodDisruptionBudget, the "
    "pipeline's Ready condition).",
    "liveness": "The kubelet restarts a container that fails it.",
    "startup": "Holds the other two until it passes once (for slow starts); none by default.",
}
BOTH_ACTIONS = "set httpGet or tcpSocket, not both"


@dataclass(frozen=True)
class AppProbes:
    readiness: Probe
    liveness: Probe
    startup: Probe | None = None


def defaults(c: Component) -> AppProbes:
    return AppProbes(readiness=c.readiness, liveness=c.liveness)


def _int(field: Int, obj: dict[str, Any], path: str, default: int) -> int:
    return default if obj.get(field.name) is None else field.parse(obj, path)


def _probe(value: Any, path: str, base: Probe) -> Probe:
    if not isinstance(value, dict):
        raise PipelineError(path, "must be an object")
    for key in value:
        if key not in {"httpGet", "tcpSocket"} | {f.name for f in TIMING}:
            raise PipelineError(f"{path}.{key}", "unknown field")
    http, tcp = value.get("httpGet"), value.get("tcpSocket")
    if http is not None and tcp is not None:
        raise PipelineError(path, BOTH_ACTIONS)
    probe = base
    if http is not None:
        hpath = f"{path}.httpGet"
        if not isinstance(http, dict):
            raise PipelineError(hpath, "must be an object")
        _only(http, hpath, {"path", "port"})
        probe = replace(
            probe,
            path=PATH.parse_optional(http, hpath) or base.path or "/",
            port=PORT.parse(http, hpath) if http.get("port") is not None else base.port,
        )
    elif tcp is not None:
        tpath = f"{path}.tcpSocket"
        if not isinstance(tcp, dict):
            raise PipelineError(tpath, "must be an object")
        _only(tcp, tpath, {"port"})
        probe = replace(probe, path=None, port=PORT.parse(tcp, tpath) if tcp.get("port") is not None else base.port)
    delay, period, timeout, threshold = (_int(f, value, path, getattr(base, f.attr)) for f in TIMING)
    return replace(probe, initial_delay=delay, period=period, timeout=timeout, failure_threshold=threshold)


def _only(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise PipelineError(f"{path}.{key}", "unknown field")


def parse(value: Any, path: str, c: Component) -> AppProbes:
    """`spec.<app>.probes` over the app's defaults; PipelineError naming the field."""
    out = defaults(c)
    if value is None:
        return out
    if not isinstance(value, dict):
        raise PipelineError(path, "must be an object")
    _only(value, path, set(KINDS))
    for kind in KINDS:  # in order: startup is parsed over the liveness probe as given
        if value.get(kind) is not None:
            # A startup probe starts from the liveness probe: it guards the same endpoint.
            base = out.liveness if kind == "startup" else getattr(out, kind)
            out = replace(out, **{kind: _probe(value[kind], f"{path}.{kind}", base)})
    return out


def kubernetes(probe: Probe, server_port: int) -> dict[str, Any]:
    """The container probe the Deployment carries."""
    port = probe.port or server_port
    action: dict[str, Any] = (
        {"tcpSocket": {"port": port}}
        if probe.path is None
        else {"httpGet": {"path": probe.path, "port": port, "scheme": "HTTP"}}
    )
    return {
        **action,
        "initialDelaySeconds": probe.initial_delay,
        "periodSeconds": probe.period,
        "timeoutSeconds": probe.timeout,
        "failureThreshold": probe.failure_threshold,
    }


def _no_default(field: Int | Str) -> dict[str, Any]:
    # Defaults are the app's (components.py), applied by the operator: not in the schema.
    out = field.schema()
    out.pop("default", None)
    return out


def _default_text(probe: Probe | None) -> str:
    if probe is None:
        return "none"
    action = f"GET {probe.path}" if probe.path else "TCP"
    return (
        f"{action} on {probe.port or 'the server port'}, initialDelaySeconds {probe.initial_delay}, "
        f"periodSeconds {probe.period}, timeoutSeconds {probe.timeout}, failureThreshold {probe.failure_threshold}"
    )


def schema(c: Component) -> dict[str, Any]:
    base = defaults(c)
    timing = {f.name: _no_default(f) for f in TIMING}
    one = {
        "httpGet": {
            "type": "object",
            "properties": {"path": _no_default(PATH), "port": _no_default(PORT)},
        },
        "tcpSocket": {"type": "object", "properties": {"port": _no_default(PORT)}},
        **timing,
    }

    def probe(kind: str) -> dict[str, Any]:
        return {
            "type": "object",
            "description": f"{PURPOSE[kind]} Default: {_default_text(getattr(base, kind))}.",
            "properties": one,
            "x-kubernetes-validations": [
                {"rule": "!(has(self.httpGet) && has(self.tcpSocket))", "message": BOTH_ACTIONS}
            ],
        }

    return {
        "type": "object",
        "description": "The app's container probes (a subset of Kubernetes' Probe). A field left out keeps the "
        "operator's default for this app; SCDF's deployer equivalents are deployer.<app>.kubernetes."
        "<kind>{Http,Tcp}Probe{Path,Port,Delay,Period,Timeout,Failure} (docs/scdf.md).",
        "properties": {kind: probe(kind) for kind in KINDS},
    }
