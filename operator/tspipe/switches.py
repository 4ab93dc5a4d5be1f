"""The annotation switches a user flips on a pipeline (pure): hold reconciliation, restart apps.

Why annotations (Strimzi's `strimzi.io/pause-reconciliation` and `strimzi.io/restart`)
and not spec fields such as a Flink-style `spec.<app>.restartNonce`:

- A restart is an action, not desired state. A nonce stays in the spec forever, and
  re-applying an older manifest (a rollback, a GitOps sync) with a different nonce
  restarts the app again, unasked. The annotation is consumed: it acts once.
- Neither switch is a spec change, so neither bumps `metadata.generation`: the
  revision history, the rollout logic and the SCDF fallback (rendered from the spec)
  see only real spec changes, and the spec schema does not grow.
- `kubectl annotate tsp/NAME tspipe.io/restart=router` is one command with nothing to
  invent (no new nonce value), and the hold can be set on a pipeline whose spec is
  invalid or being edited, which is when it is needed.

The cost: annotations are not validated by the CRD schema, so the operator checks the
value and reports a bad one (Warning Event, condition). Keep them out of manifests
that a GitOps tool re-applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .components import COMPONENTS, Component
from .names import RECONCILE_PAUSED_ANNOTATION, RESTART_ANNOTATION


def _annotations(resource: dict[str, Any]) -> dict[str, str]:
    return (resource.get("metadata") or {}).get("annotations") or {}


def reconcile_held(resource: dict[str, Any]) -> bool:
    """`tspipe.io/reconcile-paused: "true"` (any case): hold. Any other value, or none: reconcile."""
    return str(_annotations(resource).get(RECONCILE_PAUSED_ANNOTATION, "")).strip().lower() == "true"


@dataclass(frozen=True)
class RestartRequest:
    value: str  # the annotation as set (the removal is guarded by it)
    apps: tuple[Component, ...]  # valid and unique, in stream order
    unknown: tuple[str, ...]  # names that are no app of the pipeline: the whole request is refused

    @property
    def labels(self) -> list[str]:
        """The apps as the spec names them (for the history and the Events)."""
        return [c.spec_field for c in self.apps]

    def problem(self) -> str:
        """Why the request is refused, naming the bad value ('' if it is valid)."""
        known = ", ".join(c.spec_field for c in COMPONENTS)
        if self.unknown:
            bad = ", ".join(repr(u) for u in self.unknown)
            return f"{RESTART_ANNOTATION}={self.value!r}: unknown app {bad} (apps: {known}); nothing restarted"
        if not self.apps:
            return f"{RESTART_ANNOTATION}={self.value!r} names no app (apps: {known}); nothing restarted"
        return ""


def restart_request(resource: dict[str, Any]) -> RestartRequest | None:
    """The pending restart (None: no annotation). Names are the spec's app fields
    (`router`, `evenLogger`), compared case-insensitively, comma-separated. One unknown
    name refuses the whole request: a typo must not restart half of a list."""
    value = _annotations(resource).get(RESTART_ANNOTATION)
    if value is None:
        return None
    by_name = {c.spec_field.lower(): c for c in COMPONENTS}
    wanted: set[str] = set()
    unknown: list[str] = []
    for raw in str(value).split(","):
        name = raw.strip()
        if not name:
            continue
        c = by_name.get(name.lower())
        if c is None:
            unknown.append(name)
        else:
            wanted.add(c.spec_field)
    apps = tuple(c for c in COMPONENTS if c.spec_field in wanted)
    return RestartRequest(str(value), apps, tuple(unknown))
