"""The router pods' own counters, read from their /actuator/prometheus through the API
server's pod proxy: the operator's view of the data of a pipeline whose broker needs
credentials (it never reads their Secret, so it cannot read the broker itself)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

METRICS_PATH = "actuator/prometheus"

# Sample name -> counter key (rollback.COUNTER_KEYS); routed is split by its channel label.
_TOTALS = {
    "tsrouter_records_committed_total": "committed",
    "tsrouter_records_dead_lettered_total": "deadLetter",
    "tsrouter_consumer_lag": "lag",
}


class NoCommittedCounter(ValueError):
    """A router that does not report tsrouter_records_committed (an image older than it)."""


def router_counters(text: str) -> dict[str, int]:
    """{committed, even, odd, deadLetter, lag} from one router pod's exposition (its
    workers already summed by the pod). Raises NoCommittedCounter without the committed
    counter: loss cannot be judged from such a router."""
    out = {"committed": 0, "even": 0, "odd": 0, "deadLetter": 0, "lag": 0}
    seen = False
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = _TOTALS.get(s.name)
            if s.name == "tsrouter_records_routed_total":
                key = s.labels.get("channel")
            if key in out:
                out[key] += int(s.value)
                seen = seen or key == "committed"
    if not seen:
        raise NoCommittedCounter("its /actuator/prometheus has no tsrouter_records_committed_total")
    return out
