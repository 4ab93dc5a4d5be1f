"""Prometheus metrics of the operator (one process-wide registry).

Exposed by `--metrics-port`; names follow Prometheus conventions (`_total`, `_seconds`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "tspipe_reconciles_total", "Reconcile passes, by result (ok, error).", ["result"], registry=REGISTRY
)
ERRORS = Counter("tspipe_reconcile_errors_total", "Reconcile passes that ended with an error.", registry=REGISTRY)
WRITES = Counter("tspipe_api_writes_total", "Kubernetes API writes made by reconcile passes.", registry=REGISTRY)
DURATION = Histogram(
    "tspipe_reconcile_duration_seconds",
    "Duration of one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
PIPELINES = Gauge("tspipe_pipelines", "Pipelines by phase.", ["phase"], registry=REGISTRY)
KAFKA_CALLS = Counter(
    "tspipe_kafka_admin_calls_total", "Kafka admin round trips, by result.", ["result"], registry=REGISTRY
)

PHASES = ("Pending", "Progressing", "Running", "Degraded", "Paused", "Failed")
_phase_of: dict[tuple[str, str], str] = {}
for _p in PHASES:
    PIPELINES.labels(_p).set(0)


def observe_reconcile(seconds: float, writes: int, error: str | None) -> None:
    RECONCILES.labels("error" if error else "ok").inc()
    if error:
        ERRORS.inc()
    WRITES.inc(writes)
    DURATION.observe(seconds)


def set_phase(namespace: str, name: str, phase: str) -> None:
    old = _phase_of.get((namespace, name))
    if old == phase:
        return
    if old is not None:
        PIPELINES.labels(old).dec()
    _phase_of[(namespace, name)] = phase
    PIPELINES.labels(phase).inc()


def forget_pipeline(namespace: str, name: str) -> None:
    old = _phase_of.pop((namespace, name), None)
    if old is not None:
        PIPELINES.labels(old).dec()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)
