"""Reaction time: how long a spec change to one of N running pipelines takes to reach its
Deployment (issue 26's aim: p50 <= 0.5 s, p99 <= 2 s at N=2,000).

Measured by the API server's own clock, from its audit log: from the moment the patch of
the TimestampPipeline completed (its `stageTimestamp`) to the moment the operator's write
of the router's Deployment arrived (its `requestReceivedTimestamp`). The pure part (which
pipelines to touch, audit events -> latencies, percentiles) is here; `operator_bench
--reaction K` drives it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

CHANGE_SPACING = 0.5  # seconds between two changes: one at a time, never a burst
SETTLE_SECONDS = 60.0  # how long the last change may take before the run gives up on it


def targets(names: list[str], k: int) -> list[str]:
    """`k` pipelines spread evenly over `names` (all of them when k >= len(names))."""
    if k >= len(names):
        return list(names)
    step = len(names) / k
    return [names[int(i * step)] for i in range(k)]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def latencies(
    events: Iterable[dict[str, Any]], changed: dict[str, str], namespace: str, operator_agents: tuple[str, ...]
) -> dict[str, float | None]:
    """Seconds from each pipeline's change to the operator's next write of the Deployment
    `changed[pipeline]` (None: no such write in `events`). A pipeline changed once."""
    patched: dict[str, float] = {}
    out: dict[str, float | None] = dict.fromkeys(changed)
    by_deployment = {d: p for p, d in changed.items()}
    for ev in events:
        ref = ev.get("objectRef") or {}
        if ref.get("namespace") != namespace or ev.get("verb") not in ("patch", "update"):
            continue
        name = ref.get("name")
        if ref.get("resource") == "timestamppipelines" and not ref.get("subresource") and name in changed:
            if not (ev.get("userAgent") or "").startswith(operator_agents) and name not in patched:
                patched[name] = _ts(ev["stageTimestamp"])
        elif ref.get("resource") == "deployments" and name in by_deployment:
            p = by_deployment[name]
            if (ev.get("userAgent") or "").startswith(operator_agents) and p in patched and out[p] is None:
                out[p] = max(0.0, _ts(ev["requestReceivedTimestamp"]) - patched[p])
    return out


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(found: dict[str, float | None]) -> dict[str, Any]:
    done = [v for v in found.values() if v is not None]
    out: dict[str, Any] = {"changes": len(found), "reached": len(done)}
    if done:
        out.update(
            p50_s=round(percentile(done, 50), 3), p99_s=round(percentile(done, 99), 3), max_s=round(max(done), 3)
        )
    return out


def drive(patch, names: list[str], k: int, spacing: float = CHANGE_SPACING) -> list[str]:
    """Change `k` pipelines, one every `spacing` seconds, with `patch(name, j)`; the names changed."""
    chosen = targets(names, k)
    for j, name in enumerate(chosen):
        patch(name, j)
        time.sleep(spacing)
    return chosen
