"""How the operator writes times and digests (pure): one format for each.

Times are RFC 3339 in UTC to the second (what `metav1.Time` serializes to); digests are
a prefix of the SHA-256 of an object's canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as the API server writes it (`...Z` or with an offset); naive means UTC."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def digest(value: object, length: int) -> str:
    """The first `length` hex digits of the SHA-256 of `value` as canonical JSON."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:length]
