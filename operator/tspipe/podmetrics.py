"""The router pods' own counters, read from their /actuator/prometheus: the operator's
view of the data of a pipeline whose broker needs credentials (it never reads their
Secret, so it cannot read the broker itself). Read directly at the pod's IP by default,
or through the API server's pod proxy when the operator is told to (defaults.py)."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .defaults import ROUTER_METRICS_PROXY

METRICS_PATH = "actuator/prometheus"
# No proxy from the environment (HTTP_PROXY): a pod IP is reached directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def path_description(path: str) -> str:
    """How the counters were read, for a condition's message."""
    if path == ROUTER_METRICS_PROXY:
        return "through the API server's pod proxy"
    return "at their pod IPs"


def pod_url(pod: dict[str, Any], port: int) -> str:
    """http://<pod IP>:<port>/actuator/prometheus; ValueError for a pod without an IP."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise ValueError("the pod has no IP")
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/{METRICS_PATH}"


def read_direct(pod: dict[str, Any], port: int, timeout: float) -> str:
    """GET a router pod's /actuator/prometheus at its pod IP (no API server between).
    Raises OSError (urllib's errors are OSErrors) or ValueError."""
    with _OPENER.open(
        # http:// and a pod IP only (pod_url), never a scheme from outside.
        urllib.request.Request(pod_url(pod, port), headers={"Accept": "text/plain"}),  # noqa: S310
        timeout=timeout,
    ) as resp:
        return resp.read().decode("utf-8", "replace")


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
