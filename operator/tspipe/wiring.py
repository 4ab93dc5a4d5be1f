"""The wiring contract (DESIGN.md section 2): which Spring properties each app gets.

Pure functions of a `Pipeline`. The operator renders container args from
`app_properties` (SCDF's exec entry-point style) and the SCDF fallback sends
`deployment_properties`, so the two deployment paths cannot disagree.
"""

from __future__ import annotations

from .model import AppCommon, Pipeline

APP_LABELS = ("time", "python-router", "evenLogger", "oddLogger")
# SCDF app names the labels are registered under (`evenLogger: log`).
APP_NAMES = {"time": "time", "python-router": "python-router", "evenLogger": "log", "oddLogger": "log"}

BROKERS_KEY = "spring.cloud.stream.kafka.binder.brokers"
STREAM_NAME_KEY = "spring.cloud.dataflow.stream.name"
APP_LABEL_KEY = "spring.cloud.dataflow.stream.app.label"
REPLICATION_FACTOR_KEY = "spring.cloud.stream.kafka.binder.replication-factor"
MIN_PARTITIONS_KEY = "spring.cloud.stream.kafka.binder.min-partition-count"

# Time source (stream-applications 5.x): the trigger is Spring Boot's poller, a Duration
# whose bare numbers are milliseconds.
TIME_DATE_FORMAT_KEY = "time.date-format"
TIME_FIXED_DELAY_KEY = "spring.integration.poller.fixed-delay"

# Router's own keys (router/tsrouter/config.py reads them in all three entry-point
# styles; its guarantee values are spelled with dashes).
ROUTER_EVEN_PREFIX_KEY = "tsrouter.even-prefix"
ROUTER_ODD_PREFIX_KEY = "tsrouter.odd-prefix"
ROUTER_GUARANTEE_KEY = "tsrouter.processing-guarantee"

# Log sink 5.x binds its options under `log.consumer` (LogConsumerProperties; checked
# against the real 5.1.1 jar in tests/operator/test_wiring_spring_apps.py). The
# `log.level` / `log.expression` of older app generations are not bound by it.
LOG_LEVEL_KEY = "log.consumer.level"
LOG_EXPRESSION_KEY = "log.consumer.expression"


def binding_key(binding: str, what: str = "destination") -> str:
    return f"spring.cloud.stream.bindings.{binding}.{what}"


# Keys the operator owns per app; user `properties` may not set them (in any relaxed
# spelling), else a typo'd override could silently break the wiring.
_COMMON_RESERVED = (
    BROKERS_KEY,
    STREAM_NAME_KEY,
    APP_LABEL_KEY,
    REPLICATION_FACTOR_KEY,
    MIN_PARTITIONS_KEY,
    "server.port",
)
RESERVED_KEYS = {
    "time": _COMMON_RESERVED + (binding_key("output"), TIME_DATE_FORMAT_KEY, TIME_FIXED_DELAY_KEY),
    "python-router": _COMMON_RESERVED
    + (
        binding_key("input"),
        binding_key("input", "group"),
        binding_key("even"),
        binding_key("odd"),
        ROUTER_EVEN_PREFIX_KEY,
        ROUTER_ODD_PREFIX_KEY,
        ROUTER_GUARANTEE_KEY,
    ),
    "evenLogger": _COMMON_RESERVED
    + (binding_key("input"), binding_key("input", "group"), LOG_LEVEL_KEY, LOG_EXPRESSION_KEY),
    "oddLogger": _COMMON_RESERVED
    + (binding_key("input"), binding_key("input", "group"), LOG_LEVEL_KEY, LOG_EXPRESSION_KEY),
}
# Field names in the CRD spec, per app label.
SPEC_FIELDS = {"time": "time", "python-router": "router", "evenLogger": "evenLogger", "oddLogger": "oddLogger"}


def canonical_key(key: str) -> str:
    """Spring's relaxed binding treats `a.dateFormat`, `a.date-format`, `a.date_format` alike."""
    return key.replace("-", "").replace("_", "").lower()


def _specs(p: Pipeline) -> dict[str, AppCommon]:
    return {"time": p.time, "python-router": p.router, "evenLogger": p.even_logger, "oddLogger": p.odd_logger}


def reserved_property_conflicts(p: Pipeline) -> list[tuple[str, str]]:
    """(field path, key) for each user property that would override the wiring."""
    out = []
    for label, spec in _specs(p).items():
        reserved = {canonical_key(k) for k in RESERVED_KEYS[label]}
        for key in spec.properties:
            if canonical_key(key) in reserved:
                out.append((f"spec.{SPEC_FIELDS[label]}.properties[{key}]", key))
    return out


def stream_definition(p: Pipeline) -> str:
    return "time || python-router || evenLogger: log || oddLogger: log"


def app_images(p: Pipeline) -> dict[str, str]:
    return {label: spec.image for label, spec in _specs(p).items()}


def app_properties(p: Pipeline) -> dict[str, dict[str, str]]:
    """Spring properties per app label, without SCDF's `app.<label>.` prefix."""
    t = p.kafka.topics

    def common(label: str) -> dict[str, str]:
        return {
            STREAM_NAME_KEY: p.stream_name,
            APP_LABEL_KEY: label,
            BROKERS_KEY: ",".join(p.kafka.brokers),
            REPLICATION_FACTOR_KEY: str(t.replication_factor),
            MIN_PARTITIONS_KEY: str(t.partitions),
        }

    props = {
        "time": {
            **common("time"),
            binding_key("output"): t.input,
            TIME_DATE_FORMAT_KEY: p.time.date_format,
            TIME_FIXED_DELAY_KEY: str(p.time.fixed_delay_seconds * 1000),
        },
        "python-router": {
            **common("python-router"),
            binding_key("input"): t.input,
            # One consumer group per stream, as SCDF does, so replicas share the work
            # and offsets are committed.
            binding_key("input", "group"): p.stream_name,
            binding_key("even"): t.even,
            binding_key("odd"): t.odd,
            ROUTER_EVEN_PREFIX_KEY: p.router.even_prefix,
            ROUTER_ODD_PREFIX_KEY: p.router.odd_prefix,
            ROUTER_GUARANTEE_KEY: p.router.processing_guarantee.replace("_", "-"),
        },
        "evenLogger": {
            **common("evenLogger"),
            binding_key("input"): t.even,
            # Durable, like every consumer SCDF wires in a stream: without a group the
            # binder's anonymous consumer starts at `latest` and drops what it missed.
            binding_key("input", "group"): p.stream_name,
            LOG_LEVEL_KEY: p.even_logger.level,
            LOG_EXPRESSION_KEY: p.even_logger.expression,
        },
        "oddLogger": {
            **common("oddLogger"),
            binding_key("input"): t.odd,
            binding_key("input", "group"): p.stream_name,
            LOG_LEVEL_KEY: p.odd_logger.level,
            LOG_EXPRESSION_KEY: p.odd_logger.expression,
        },
    }
    for label, spec in _specs(p).items():
        # User properties come last; the model already rejected reserved keys.
        props[label].update(spec.properties)
    return props


def deployment_properties(p: Pipeline) -> dict[str, str]:
    """Flat SCDF deployment-properties map: `app.<label>.<key>` -> value."""
    flat = {}
    for label, props in app_properties(p).items():
        for key, value in props.items():
            flat[f"app.{label}.{key}"] = value
    return flat
