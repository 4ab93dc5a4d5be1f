"""The pipeline's revision history in status (pure): what changed, when, which images.

A revision is a new `metadata.generation` (the API server bumps it on every spec
change, including `kubectl scale` through the scale subresource). A restart asked with
the `tspipe.io/restart` annotation is no spec change but is recorded too, as an entry
of the same generation naming the apps in `restarted`; so is an offset reset
(`tspipe.io/reset-offsets`), in `offsetReset`, and a shadow release's verdict, in
`shadow`. To name the fields
that changed without keeping old specs anywhere, the status holds a digest of the
current spec: one short hash per field path, compared with the next spec's digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .stamps import digest
from .status_fields import Key

HISTORY_LIMIT = 5
DEPTH = 3  # field paths as deep as router.properties.<key>; deeper values hash as a whole


def spec_digest(spec: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(node: object, path: tuple[str, ...]) -> None:
        if isinstance(node, dict) and node and len(path) < DEPTH:
            for k, v in node.items():
                walk(v, path + (str(k),))
        else:
            out[".".join(path)] = digest(node, 8)

    walk(spec or {}, ())
    return out


def changed_fields(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def next_history(
    resource: dict[str, Any],
    images: dict[str, str],
    now: str,
    limit: int = HISTORY_LIMIT,
    restarted: Sequence[str] = (),
    offset_reset: dict[str, Any] | None = None,
    shadow: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(status.history, status.specDigest) for `resource`, given its previous status.

    `restarted`: apps restarted in this pass (spec field names), recorded as an entry.
    `offset_reset`: the router group's offsets reset in this pass (request, group, topic
    and per partition from which offset to which), recorded as an entry too; so is
    `shadow`: a shadow release's verdict given in this pass.
    Unchanged generation and no restart: the previous values, untouched (no status write)."""
    status = resource.get("status") or {}
    history = list(status.get(Key.HISTORY) or [])
    old_digest = status.get(Key.SPEC_DIGEST) or {}
    generation = (resource.get("metadata") or {}).get("generation")
    if history and history[-1].get("generation") == generation:
        # Most passes: the generation recorded, its digest kept (not hashed again).
        digest = old_digest or spec_digest(resource.get("spec") or {})
    else:
        digest = spec_digest(resource.get("spec") or {})
        history.append(
            {
                "generation": generation,
                "time": now,
                "images": dict(images),
                "changed": changed_fields(old_digest, digest) if history else [],
            }
        )
    if restarted:
        history.append(
            {"generation": generation, "time": now, "images": dict(images), "changed": [], "restarted": list(restarted)}
        )
    if offset_reset:
        history.append(
            {"generation": generation, "time": now, "images": dict(images), "changed": [], "offsetReset": offset_reset}
        )
    if shadow:
        history.append({"generation": generation, "time": now, "images": dict(images), "changed": [], "shadow": shadow})
    return history[-limit:], digest
