"""The four apps of the pipeline, declared once (pure).

    time ──input──▶ python-router ──even──▶ evenLogger (log sink)
                                  └─odd───▶ oddLogger  (log sink)

Everything that differs between the apps is a column of `COMPONENTS`: the model's
parser and the CRD generator read the spec field and default image; the wiring reads
the bindings and settings; render reads names, probes, replicas and default resources; pause reads which
app is the source; status and the SCDF renderer read labels and app names. Adding a
field or an app means changing this table (and, for a new kind of app, its spec type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .spring import (
    COMMON_RESERVED,
    LOG_EXPRESSION_KEY,
    LOG_LEVEL_KEY,
    ROUTER_EVEN_PREFIX_KEY,
    ROUTER_GUARANTEE_KEY,
    ROUTER_ODD_PREFIX_KEY,
    TIME_DATE_FORMAT_KEY,
    TIME_FIXED_DELAY_KEY,
    binding_key,
)

Kind = Literal["time", "router", "logger"]  # which spec type (model) and extra schema (crd) an app has


@dataclass(frozen=True)
class Binding:
    """A Spring Cloud Stream binding of an app and the topic it is bound to."""

    name: str  # the binding (`output`, `input`, `even`, `odd`)
    topic: str  # the topic's role in spec.kafka.topics (`input`, `even`, `odd`)
    # Consumers join one group per stream, as SCDF wires every consumer of a stream: the
    # router's replicas share the work and commit offsets, and a logger is durable (an
    # anonymous consumer would start at `latest` and drop what it missed).
    consumer: bool = False

    def keys(self) -> tuple[str, ...]:
        dest = binding_key(self.name)
        return (dest, binding_key(self.name, "group")) if self.consumer else (dest,)


@dataclass(frozen=True)
class Setting:
    """An app property the operator sets from a field of that app's spec."""

    key: str  # the Spring property
    attr: str  # the attribute of the app's spec (model) it comes from
    text: Callable[[Any], str] = str  # how the value is written


@dataclass(frozen=True)
class Probe:
    """A container probe as the operator renders it (spec.<app>.probes overrides it)."""

    path: str | None  # the HTTP GET path; None: a TCP connect to `port`
    initial_delay: int
    period: int
    timeout: int = 2
    failure_threshold: int = 3
    port: int | None = None  # None: the app's server port


# Default container resources (a podTemplate's `resources` replaces them whole). No CPU
# limit: a CFS quota throttles a JVM's start (class loading, JIT) many times over, and
# requests already share the CPU fairly. Memory requests equal the limits: the apps'
# footprint is steady, and a pod that fits where it is scheduled is not OOM-killed for
# a neighbour's burst. The CPU requests are what the apps use at a timestamp a second;
# a JVM's start bursts above them (no limit), which is what requests allow.
# Spring Boot 3 time source / log sink (Kafka binder): a JVM whose container defaults
# give it a heap of 25% of the limit (192 MiB here), plus metaspace, threads and buffers.
JVM_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "768Mi"}, "limits": {"memory": "768Mi"}}
# The Python router: one process (kafka-python, Flask on waitress), no JVM.
PYTHON_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}

# SCDF's Kubernetes deployer defaults for Boot apps.
BOOT_READINESS = Probe("/actuator/info", 10, 10)
BOOT_LIVENESS = Probe("/actuator/health", 10, 60)


@dataclass(frozen=True)
class Component:
    label: str  # SCDF app label: in the stream definition and the `app.<label>.` prefix
    scdf_app: str  # SCDF app the label is registered as (`evenLogger: log`)
    kind: Kind
    spec_field: str  # field under .spec (and key under .status.components)
    attr: str  # the model.Pipeline attribute holding that app's spec
    suffix: str  # Deployment name suffix and app.kubernetes.io/component
    app_name: str  # app.kubernetes.io/name
    default_image: str
    bindings: tuple[Binding, ...]
    settings: tuple[Setting, ...]
    readiness: Probe = BOOT_READINESS
    liveness: Probe = BOOT_LIVENESS
    resources: Mapping[str, Any] = field(default_factory=lambda: JVM_RESOURCES)  # default container resources
    source: bool = False  # pausing stops it first and waits for the rest to drain
    scalable: bool = False  # replicas from the spec (and the scale subresource); others run one

    @property
    def reserved_keys(self) -> tuple[str, ...]:
        """Keys the operator owns for this app; user `properties` may not set them (in any
        relaxed spelling), else a typo'd override could silently break the wiring."""
        keys: tuple[str, ...] = COMMON_RESERVED
        for b in self.bindings:
            keys += b.keys()
        return keys + tuple(s.key for s in self.settings)


def _log_sink(which: str) -> Component:
    """evenLogger / oddLogger: the prebuilt log sink on the router's `which` topic."""
    return Component(
        f"{which}Logger",
        "log",
        "logger",
        spec_field=f"{which}Logger",
        attr=f"{which}_logger",
        suffix=f"{which}logger",
        app_name="log-sink",
        default_image="springcloudstream/log-sink-kafka:5.1.1",
        bindings=(Binding("input", which, consumer=True),),
        settings=(Setting(LOG_LEVEL_KEY, "level"), Setting(LOG_EXPRESSION_KEY, "expression")),
    )


COMPONENTS = (
    Component(
        "time",
        "time",
        "time",
        spec_field="time",
        attr="time",
        suffix="time",
        app_name="time-source",
        default_image="springcloudstream/time-source-kafka:5.1.1",
        bindings=(Binding("output", "input"),),
        settings=(
            Setting(TIME_DATE_FORMAT_KEY, "date_format"),
            Setting(TIME_FIXED_DELAY_KEY, "fixed_delay_seconds", lambda seconds: str(seconds * 1000)),
        ),
        source=True,
    ),
    Component(
        "python-router",
        "python-router",
        "router",
        spec_field="router",
        attr="router",
        suffix="router",
        app_name="tsp-router",
        default_image="ghcr.io/tspipe/router:0.1.0",
        bindings=(Binding("input", "input", consumer=True), Binding("even", "even"), Binding("odd", "odd")),
        settings=(
            Setting(ROUTER_EVEN_PREFIX_KEY, "even_prefix"),
            Setting(ROUTER_ODD_PREFIX_KEY, "odd_prefix"),
            Setting(ROUTER_GUARANTEE_KEY, "processing_guarantee", lambda g: g.replace("_", "-")),
        ),
        # The router's own Boot-style health groups.
        readiness=Probe("/actuator/health/readiness", 5, 10),
        liveness=Probe("/actuator/health/liveness", 10, 30),
        resources=PYTHON_RESOURCES,
        scalable=True,
    ),
    _log_sink("even"),
    _log_sink("odd"),
)

APP_LABELS = tuple(c.label for c in COMPONENTS)
SOURCE = next(c for c in COMPONENTS if c.source)
# The apps that consume in the stream's consumer group (the router and the log sinks:
# SCDF gives every consumer of a stream the stream's name as its group).
GROUP_CONSUMERS = tuple(c for c in COMPONENTS if any(b.consumer for b in c.bindings))
ROUTER = next(c for c in COMPONENTS if c.scalable)
# `time || python-router || evenLogger: log || oddLogger: log`: `||` leaves the wiring
# to the deployment properties; a label differing from its app is written `label: app`.
STREAM_DEFINITION = " || ".join(c.label if c.label == c.scdf_app else f"{c.label}: {c.scdf_app}" for c in COMPONENTS)


def by_label(label: str) -> Component:
    return next(c for c in COMPONENTS if c.label == label)
