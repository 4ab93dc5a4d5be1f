"""Topic auto-creation: classify CreateTopics results (pure) and a thin shell around the admin client."""

from __future__ import annotations

import logging

log = logging.getLogger("tsrouter.topics")

# Kafka protocol error codes that matter here.
_NONE = 0
_TOPIC_EXISTS = 36
_FORBIDDEN = {29, 31}  # TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED


def classify(result: dict) -> dict[str, str]:
    """CreateTopics response dict -> {topic: created | exists | forbidden | error:<code> <message>}."""
    out = {}
    for t in result.get("topics", []):
        code = t.get("error_code", 0)
        name = t.get("name")
        if code == _NONE:
            out[name] = "created"
        elif code == _TOPIC_EXISTS:
            out[name] = "exists"
        elif code in _FORBIDDEN:
            out[name] = "forbidden"
        else:
            out[name] = f"error:{code} {t.get('error_message') or ''}".strip()
    return out


def still_missing(outcome: dict[str, str], existing: set[str]) -> list[str]:
    """Topics neither created nor present: creation being forbidden is fine if they exist."""
    return sorted(t for t, s in outcome.items() if s not in ("created", "exists") and t not in existing)


class TopicsMissing(RuntimeError):
    pass


def ensure_topics(admin, names: list[str], partitions: int, replication: int) -> dict[str, str]:
    specs = {n: {"num_partitions": partitions, "replication_factor": replication} for n in dict.fromkeys(names)}
    result = admin.create_topics(specs, timeout_ms=10_000, raise_errors=False)
    outcome = classify(result)
    missing = []
    if any(s not in ("created", "exists") for s in outcome.values()):
        existing = set(admin.list_topics())
        missing = still_missing(outcome, existing)
    for name, state in outcome.items():
        if state not in ("created", "exists") and name not in missing:
            log.info("topic %s exists (creation: %s)", name, state)
    if missing:
        raise TopicsMissing("cannot create topics " + ", ".join(f"{t} ({outcome[t]})" for t in missing))
    created = [t for t, s in outcome.items() if s == "created"]
    if created:
        admin.wait_for_topics(created, timeout_ms=15_000)
    return outcome
