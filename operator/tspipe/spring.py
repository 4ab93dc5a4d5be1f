"""Spring and SCDF names the wiring uses: property keys, their env-var forms, relaxed binding.

Pure constants. The keys are the ones SCDF's deployers and the prebuilt stream apps read;
`components.py` says which app gets which, `wiring.py` gives them values.
"""

from __future__ import annotations

# Set on every app (SCDF's common application properties plus the binder's topic settings).
BROKERS_KEY = "spring.cloud.stream.kafka.binder.brokers"
STREAM_NAME_KEY = "spring.cloud.dataflow.stream.name"
APP_LABEL_KEY = "spring.cloud.dataflow.stream.app.label"
REPLICATION_FACTOR_KEY = "spring.cloud.stream.kafka.binder.replication-factor"
MIN_PARTITIONS_KEY = "spring.cloud.stream.kafka.binder.min-partition-count"
SERVER_PORT_KEY = "server.port"  # the actuator port; the Deployment's probes need it fixed
COMMON_RESERVED = (
    BROKERS_KEY,
    STREAM_NAME_KEY,
    APP_LABEL_KEY,
    REPLICATION_FACTOR_KEY,
    MIN_PARTITIONS_KEY,
    SERVER_PORT_KEY,
)

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


def canonical_key(key: str) -> str:
    """Spring's relaxed binding treats `a.dateFormat`, `a.date-format`, `a.date_format` alike.

    The operator's one canonical form (model and wiring). The router, a separate
    distribution, keeps its own in tsrouter.config (it also reads env-var spellings)."""
    return key.replace("-", "").replace("_", "").lower()


# Environment variables the operator sets on every container; users may not set them.
BROKERS_ENV = "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS"
GUID_ENV = "SPRING_CLOUD_APPLICATION_GUID"  # SCDF's per-instance id
GROUP_ENV = "SPRING_CLOUD_APPLICATION_GROUP"  # SCDF's stream name
RESERVED_ENV = (BROKERS_ENV, GUID_ENV, GROUP_ENV)

# The Kafka binder's security settings, as properties and as the env vars the operator
# sets from spec.kafka.credentials (render.credential_env).
BINDER_CONFIGURATION = "spring.cloud.stream.kafka.binder.configuration."
BINDER_CONFIGURATION_ENV = "SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_"
SASL_USERNAME_ENV = "KAFKA_SASL_USERNAME"
SASL_PASSWORD_ENV = "KAFKA_SASL_PASSWORD"
CREDENTIAL_SETTINGS = (
    "security.protocol",
    "sasl.mechanism",
    "sasl.jaas.config",
    "ssl.truststore.type",
    "ssl.truststore.location",
)


def binder_env(setting: str) -> str:
    """`sasl.jaas.config` -> SPRING_CLOUD_STREAM_KAFKA_BINDER_CONFIGURATION_SASL_JAAS_CONFIG."""
    return BINDER_CONFIGURATION_ENV + setting.replace(".", "_").upper()


CREDENTIAL_ENV = (SASL_USERNAME_ENV, SASL_PASSWORD_ENV) + tuple(binder_env(s) for s in CREDENTIAL_SETTINGS)
CREDENTIAL_PROPERTIES = frozenset(canonical_key(BINDER_CONFIGURATION + s) for s in CREDENTIAL_SETTINGS)
