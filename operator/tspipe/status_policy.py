"""When a status change is worth a write of its own, and which changes deserve an Event.

The write budget: a change that only moves counters (same phase, same condition states)
waits for the next significant one; Events go out for failures and for changes a user
wants to hear about (a phase change into or out of Degraded or Paused, topics turning
not ready, reconciliation resuming), never for every pass.
"""

from __future__ import annotations

from typing import Any

from .conditions import Condition, Phase
from .status_fields import Key

Event = tuple[str, str, str]  # (type, reason, message)


def significant(status: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a status change worth writing at once: phase and condition states."""
    return (
        status.get(Key.PHASE),
        status.get(Key.OBSERVED_GENERATION),
        tuple((c["type"], c["status"], c["reason"]) for c in status.get(Key.CONDITIONS) or []),
        tuple((t.get("name"), t.get("state"), t.get("partitions")) for t in status.get(Key.TOPICS) or []),
        len(status.get(Key.HISTORY) or []),
        (status.get(Key.PAUSE) or {}).get("sourceStoppedAt"),
        (status.get(Key.AUTOSCALING) or {}).get("desiredReplicas"),
        tuple((status.get(Key.ROLLOUT) or {}).get(k) for k in ("generation", "verdict", "reason")),
        ((status.get(Key.ROLLOUT) or {}).get("window") or {}).get("opened"),
        # A shadow release's stages (a handful per release): the next pass acts on them.
        tuple(((status.get(Key.ROLLOUT) or {}).get("shadow") or {}).get(k) for k in ("state", "verdict", "readyAt")),
        ((((status.get(Key.ROLLOUT) or {}).get("shadow") or {}).get("window")) or {}).get("opened"),
        # What a reset-offsets waits for (a few stages per reset): the user sees it at once.
        (status.get(Key.OFFSET_RESET) or {}).get("message"),
        # Why an app's pods are not ready: worth a write when it appears or changes.
        tuple(
            sorted((k, (c.get("notReady") or {}).get("reason")) for k, c in (status.get(Key.COMPONENTS) or {}).items())
        ),
    )


def held(status: dict[str, Any]) -> bool:
    """The status says reconciliation is held (the ReconciliationPaused condition is True)."""
    return any(
        c.get("type") == Condition.RECONCILIATION_PAUSED and c.get("status") == "True"
        for c in status.get(Key.CONDITIONS) or []
    )


def events(old: dict[str, Any], new: dict[str, Any], *, spec_valid: bool) -> list[Event]:
    """The Events a written status change deserves, in the order they are posted."""
    out: list[Event] = []
    if held(old):
        out.append(("Normal", "ReconciliationResumed", "reconciling again: catching up with the spec"))
    if old and spec_valid:
        out.extend(_transition(old, new))
    out.extend(_topics(old, new))
    return out


def _topics(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """A Warning when the topics turn not ready (or for a new reason)."""

    def cond(st: dict[str, Any]) -> dict[str, Any] | None:
        return next((c for c in st.get("conditions") or [] if c["type"] == Condition.TOPICS_READY), None)

    before, after = cond(old), cond(new)
    if after is None or after["status"] == "True":
        return []
    if before and (before["status"], before["reason"], before["message"]) == (
        after["status"],
        after["reason"],
        after["message"],
    ):
        return []
    return [("Warning", after["reason"], after["message"])]


def _transition(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """One Event for a phase change a user would want to hear about."""
    before, after = old.get("phase"), new.get("phase")
    if before == after:
        return []
    conds = {c["type"]: c for c in new.get("conditions") or []}
    if after == Phase.DEGRADED:
        d = conds.get(Condition.DEGRADED) or {}
        return [("Warning", d.get("reason", Phase.DEGRADED), d.get("message", ""))]
    if after == Phase.PAUSED:
        return [("Normal", "Paused", "every app scaled to zero")]
    if before == Phase.PAUSED:
        return [("Normal", "Resumed", "replica counts restored from the spec")]
    return []
