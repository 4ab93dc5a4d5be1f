"""Prometheus metrics of one operator (its own registry, like the router's, so tests and
benchmarks can make many controllers without sharing counters).

Exposed by `--metrics-port`; names follow Prometheus conventions (`_total`, `_seconds`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .conditions import PHASES


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "tspipe_reconciles_total", "Reconcile passes, by result (ok, error).", ["result"], registry=r
        )
        self.errors = Counter("tspipe_reconcile_errors_total", "Reconcile passes that ended with an error.", registry=r)
        self.writes = Counter("tspipe_api_writes_total", "Kubernetes API writes made by reconcile passes.", registry=r)
        self.duration = Histogram(
            "tspipe_reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.pipelines = Gauge("tspipe_pipelines", "Pipelines by phase.", ["phase"], registry=r)
        # One series per pipeline, its current phase (value 1; the series of an earlier phase
        # is removed), so an alert can name the pipeline and hold `for:` on that one pipeline.
        # Label `namespace` is the pipeline's (the operator's PodMonitor honours it).
        self.pipeline_phase = Gauge(
            "tspipe_pipeline_phase",
            "1 for each pipeline's current phase.",
            ["namespace", "pipeline", "phase"],
            registry=r,
        )
        self.kafka_calls = Counter(
            "tspipe_kafka_admin_calls_total", "Kafka admin round trips, by result.", ["result"], registry=r
        )
        self._phase_of: dict[tuple[str, str], str] = {}
        for phase in PHASES:
            self.pipelines.labels(phase).set(0)

    def observe_reconcile(self, seconds: float, writes: int, error: str | None) -> None:
        self.reconciles.labels("error" if error else "ok").inc()
        if error:
            self.errors.inc()
        self.writes.inc(writes)
        self.duration.observe(seconds)

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        old = self._phase_of.get((namespace, name))
        if old == phase:
            return
        if old is not None:
            self.pipelines.labels(old).dec()
            self.pipeline_phase.remove(namespace, name, old)
        self._phase_of[(namespace, name)] = phase
        self.pipelines.labels(phase).inc()
        self.pipeline_phase.labels(namespace, name, phase).set(1)

    def forget_pipeline(self, namespace: str, name: str) -> None:
        old = self._phase_of.pop((namespace, name), None)
        if old is not None:
            self.pipelines.labels(old).dec()
            self.pipeline_phase.remove(namespace, name, old)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
