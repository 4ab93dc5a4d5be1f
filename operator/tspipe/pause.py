"""Pausing and resuming a pipeline (pure): which replica count each app gets now.

Pausing stops the source first, so nothing new enters the input topic; then, once the
router has drained the input (its consumer group's lag is 0) or the drain bound
(`spec.rollout.pauseDrainSeconds`) has passed since the source stopped, the router and
both loggers go to zero too. Every consumer is a durable group, so a pause loses
nothing even when the bound cuts the drain short. Un-pausing restores the spec's
replica counts in one step.

How the drain ended is kept in status (Numaflow's pauses could wait forever on a drain
nobody confirmed): Confirmed (lag 0: an idle input is drained at once), TimedOut (the
bound passed first; the records left wait in the topic) or Skipped (the router has no
replicas, so nothing could drain; its records wait in the topic too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .components import COMPONENTS, ROUTER, SOURCE
from .model import Pipeline
from .render import spec_replicas
from .stamps import format_time, parse_time

RUNNING, STOPPING_SOURCE, DRAINING, STOPPING, PAUSED = "Running", "StoppingSource", "Draining", "Stopping", "Paused"
# Per component spec field: the source stops first, the rest once the input is drained.
DOWNSTREAM = tuple(c.spec_field for c in COMPONENTS if not c.source)
# How the drain ended (status.pause.drain).
DRAIN_CONFIRMED, DRAIN_TIMED_OUT, DRAIN_SKIPPED = "Confirmed", "TimedOut", "Skipped"


@dataclass(frozen=True)
class PauseState:
    replicas: dict[str, int]  # per component (spec field): what the Deployment should ask for
    stage: str  # RUNNING, STOPPING_SOURCE, DRAINING, STOPPING or PAUSED
    source_stopped_at: str | None  # when the source had no pods left (kept in status)
    message: str = ""
    recheck_after: float | None = None  # seconds; while draining
    needs_lag: bool = False  # the caller should measure the router's lag and call again
    drain: str | None = None  # DRAIN_*: how the drain ended (kept in status)
    records_left: int | None = None  # the lag when the bound cut the drain short (if measured)


def _spec_replicas(d: dict[str, Any] | None) -> int | None:
    return None if d is None else (d.get("spec") or {}).get("replicas", 1)


def _pods(d: dict[str, Any] | None) -> int:
    return 0 if d is None else ((d.get("status") or {}).get("replicas") or 0)


def pause_state(
    p: Pipeline,
    actual: dict[str, dict[str, Any] | None],
    now: datetime,
    *,
    source_stopped_at: str | None = None,
    lag: int | None = None,
    drain: tuple[str, int | None] | None = None,
) -> PauseState:
    """`actual`: component spec field -> its Deployment (or None).

    `source_stopped_at` and `drain` (how it ended, records left): from the previous
    status; `lag`: the router group's lag on the input topic if measured (None: not
    measured or the broker is unreachable).
    """
    spec = {c.spec_field: spec_replicas(p, c) for c in COMPONENTS}
    if not p.paused:
        return PauseState(spec, RUNNING, None)

    replicas = dict(spec)
    replicas[SOURCE.spec_field] = 0
    # Once a downstream app is at zero it stays there while paused (an operator
    # restart mid-pause must not start the router again).
    for f in DOWNSTREAM:
        if _spec_replicas(actual.get(f)) == 0:
            replicas[f] = 0
    source = actual.get(SOURCE.spec_field)
    if _spec_replicas(source) != 0 or _pods(source) > 0:
        return PauseState(replicas, STOPPING_SOURCE, None, "pausing: stopping the time source")

    stopped_at = source_stopped_at or format_time(now)
    ended, left = drain or (None, None)
    waited = (now - parse_time(stopped_at)).total_seconds()
    if any(replicas[f] for f in DOWNSTREAM) and ended is None:
        if replicas[ROUTER.spec_field] == 0 and _pods(actual.get(ROUTER.spec_field)) == 0:
            ended, left = DRAIN_SKIPPED, None
        elif lag != 0 and waited < p.pause_drain_seconds:
            what = "measuring" if lag is None else f"{lag} records left"
            return PauseState(
                replicas,
                DRAINING,
                stopped_at,
                f"pausing: router draining the input topic ({what})",
                recheck_after=max(0.5, min(2.0, p.pause_drain_seconds - waited)),
                needs_lag=lag is None,
            )
        else:
            ended, left = (DRAIN_CONFIRMED, None) if lag == 0 else (DRAIN_TIMED_OUT, lag)
    if ended is not None:
        for f in DOWNSTREAM:
            replicas[f] = 0
    how = f" (drain {_drain_text(ended, left)})" if ended else ""
    if any(_spec_replicas(actual.get(f)) != 0 or _pods(actual.get(f)) > 0 for f in DOWNSTREAM):
        return PauseState(
            replicas,
            STOPPING,
            stopped_at,
            f"pausing: stopping the router and the loggers{how}",
            drain=ended,
            records_left=left,
        )
    return PauseState(
        replicas, PAUSED, stopped_at, f"paused: every app scaled to zero{how}", drain=ended, records_left=left
    )


def _drain_text(ended: str, left: int | None) -> str:
    if ended == DRAIN_CONFIRMED:
        return "confirmed: the router's group had no lag"
    if ended == DRAIN_SKIPPED:
        return "skipped: the router has no replicas; its input waits in the topic"
    what = "an unknown number of" if left is None else str(left)
    return f"timed out: {what} records wait in the input topic for the resume"
