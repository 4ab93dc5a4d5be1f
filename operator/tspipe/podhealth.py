"""Why a component's pods are not Ready, from their status (pure): what a user would
otherwise find only with `kubectl describe pod`.

Two kinds of answer. A container the kubelet cannot start or keep running says so in
its waiting state (ImagePullBackOff, ErrImagePull, CrashLoopBackOff with the last exit,
CreateContainerConfigError, ...): reported at once. A container that runs but is not
Ready has a readiness probe that has not passed; the pod's status does not carry the
probe's answers (the kubelet posts them as Events), so this is reported once the probe
has had its full chance (initial delay plus period times failure threshold), naming the
probe the operator rendered, and not during an ordinary start: a rollout costs no extra
status write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .components import Probe
from .names import LABEL_COMPONENT, LABEL_INSTANCE
from .stamps import parse_time

# Waiting reasons of a container that is on its way: not a problem to report.
STARTING = frozenset({"ContainerCreating", "PodInitializing"})
READINESS_PROBE_FAILING = "ReadinessProbeFailing"


def grace_seconds(probe: Probe) -> int:
    """How long a started container may run unready before its probe has surely failed."""
    return probe.initial_delay + probe.period * probe.failure_threshold


def describe(probe: Probe, server_port: int) -> str:
    port = probe.port or server_port
    return f"GET {probe.path} on port {port}" if probe.path else f"TCP connect to port {port}"


def live_pods(pods: Sequence[dict[str, Any]], pipeline_name: str, suffix: str) -> list[dict[str, Any]]:
    """A component's pods that are not being deleted."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        lbl = meta.get("labels") or {}
        if meta.get("deletionTimestamp") or lbl.get(LABEL_INSTANCE) != pipeline_name:
            continue
        if lbl.get(LABEL_COMPONENT) == suffix:
            out.append(pod)
    return out


def _pods(pods: Sequence[dict[str, Any]], pipeline_name: str, suffix: str) -> list[dict[str, Any]]:
    """A component's live pods that are scheduled and not Ready, newest first: during a
    rollout the new pods run the spec the user just changed, so their reason is the news."""
    out = []
    for pod in live_pods(pods, pipeline_name, suffix):
        conds = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        if conds.get("PodScheduled") == "True" and conds.get("Ready") != "True":
            out.append(pod)

    def newest_first(pod: dict[str, Any]) -> tuple[str, str]:
        meta = pod.get("metadata") or {}
        return str(meta.get("creationTimestamp", "")), str(meta.get("name", ""))

    return sorted(out, key=newest_first, reverse=True)


def _running_for(state: dict[str, Any], now: datetime) -> float | None:
    started = (state.get("running") or {}).get("startedAt")
    return (now - parse_time(started)).total_seconds() if started else None


def _why(pod: dict[str, Any], probe: Probe, server_port: int, now: datetime) -> tuple[str, str] | None:
    """(reason, message) for one unready pod, or None while it is still starting normally."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("ready"):
            continue
        state = cs.get("state") or {}
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") not in STARTING:
            message = waiting.get("message") or ""
            last = (cs.get("lastState") or {}).get("terminated")
            if last:
                exit_ = f"last exit: {last.get('reason') or 'Error'} (code {last.get('exitCode')})"
                message = f"{exit_}; {message}" if message else exit_
            return str(waiting.get("reason")), message
        terminated = state.get("terminated")
        if terminated:
            return str(terminated.get("reason") or "Terminated"), f"exit code {terminated.get('exitCode')}"
        running = _running_for(state, now)
        if running is not None and running > grace_seconds(probe):
            return READINESS_PROBE_FAILING, (
                f"running {int(running)}s but its readiness probe ({describe(probe, server_port)}) has not passed "
                f"(kubectl describe pod {(pod.get('metadata') or {}).get('name')} shows its answers)"
            )
    return None


def not_ready(
    pods: Sequence[dict[str, Any]],
    pipeline_name: str,
    suffix: str,
    readiness: Probe,
    server_port: int,
    now: datetime,
) -> dict[str, Any] | None:
    """{pods, reason, message} for a component's pods that are not Ready for a reason a
    user must act on (the newest such pod's), or None."""
    found = [w for pod in _pods(pods, pipeline_name, suffix) if (w := _why(pod, readiness, server_port, now))]
    if not found:
        return None
    reason, message = found[0]
    return {"pods": len(found), "reason": reason, "message": message}


def recheck_after(
    pods: Sequence[dict[str, Any]], pipeline_name: str, suffix: str, readiness: Probe, now: datetime
) -> float | None:
    """Seconds until a running, unready pod of the component has had its probe's full
    chance (no pod event marks that moment, so the pass asks to run again then)."""
    waits = []
    for pod in _pods(pods, pipeline_name, suffix):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            running = _running_for(cs.get("state") or {}, now)
            if running is not None and not cs.get("ready") and running <= grace_seconds(readiness):
                waits.append(grace_seconds(readiness) - running + 1)
    return min(waits) if waits else None
