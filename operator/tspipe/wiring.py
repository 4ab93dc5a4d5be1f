"""The wiring contract: which Spring properties each app gets (pure).

What SCDF's Kubernetes deployer would give the four apps of the stream
`time || python-router || evenLogger: log || oddLogger: log` with the recipe's
deployment properties: each binding's destination (and, for consumers, the stream's
consumer group), the broker list, SCDF's identity keys, and each app's own settings
from the spec (components.COMPONENTS says which).

The operator renders container args from `app_properties` (SCDF's exec entry-point
style) and the SCDF fallback sends `deployment_properties`, so the two deployment
paths cannot disagree.
"""

from __future__ import annotations

from .components import APP_LABELS, COMPONENTS, STREAM_DEFINITION, Component
from .model import AppCommon, Pipeline
from .spring import (
    APP_LABEL_KEY,
    BROKERS_KEY,
    MIN_PARTITIONS_KEY,
    REPLICATION_FACTOR_KEY,
    STREAM_NAME_KEY,
    binding_key,
)

__all__ = [
    "APP_LABELS",
    "STREAM_DEFINITION",
    "app_images",
    "app_properties",
    "component_properties",
    "deployment_properties",
]


def app_images(p: Pipeline) -> dict[str, str]:
    return {c.label: p.app(c).image for c in COMPONENTS}


def component_properties(p: Pipeline, c: Component) -> dict[str, str]:
    """Spring properties of one app, without SCDF's `app.<label>.` prefix."""
    spec: AppCommon = p.app(c)
    t = p.kafka.topics
    props = {
        STREAM_NAME_KEY: p.stream_name,
        APP_LABEL_KEY: c.label,
        BROKERS_KEY: ",".join(p.kafka.brokers),
        REPLICATION_FACTOR_KEY: str(t.replication_factor),
        MIN_PARTITIONS_KEY: str(t.partitions),
    }
    for b in c.bindings:
        props[binding_key(b.name)] = t.name(b.topic)
        if b.consumer:
            props[binding_key(b.name, "group")] = p.stream_name
    for s in c.settings:
        props[s.key] = s.text(getattr(spec, s.attr))
    # User properties come last; the model already rejected reserved keys.
    props.update(spec.properties)
    return props


def app_properties(p: Pipeline) -> dict[str, dict[str, str]]:
    """Spring properties per app label, without SCDF's `app.<label>.` prefix."""
    return {c.label: component_properties(p, c) for c in COMPONENTS}


def deployment_properties(p: Pipeline) -> dict[str, str]:
    """Flat SCDF deployment-properties map: `app.<label>.<key>` -> value."""
    flat = {}
    for label, props in app_properties(p).items():
        for key, value in props.items():
            flat[f"app.{label}.{key}"] = value
    return flat
