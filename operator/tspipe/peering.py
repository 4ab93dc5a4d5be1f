"""Is this replica the active one? (pure) From kopf's peering object status.

kopf pauses its watches on a replica when a live peer has a higher priority, but the
controller's own timers (resync, retries) are not kopf's: they ask this instead, so a
replica demoted by a newer, higher-priority peer stops reconciling too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .stamps import parse_time


def is_standby(peering: dict[str, Any] | None, priority: int, now: datetime) -> bool:
    """True if a live peer outranks (or ties with) `priority`; our own entry has our
    priority, and kopf pauses every replica of a tie, so a tie counts as standby only
    when two entries carry our priority."""
    if not peering:
        return False
    live = []
    for info in (peering.get("status") or {}).values():
        if not isinstance(info, dict) or "priority" not in info:
            continue
        seen = info.get("lastseen")
        lifetime = timedelta(seconds=int(info.get("lifetime", 60)))
        if seen is None or parse_time(seen) + lifetime > now:
            live.append(int(info["priority"]))
    return any(p > priority for p in live) or live.count(priority) > 1
