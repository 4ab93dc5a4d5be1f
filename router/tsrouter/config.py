"""Pure configuration parsing: SCDF's three entry-point styles into one RouterConfig.

Sources, highest precedence first (as in Spring Boot):
  1. command-line arguments ``--key=value`` (SCDF *exec* style)
  2. ``SPRING_APPLICATION_JSON`` (SCDF *boot* style; nested or flat keys)
  3. environment variables ``SPRING_CLOUD_STREAM_...`` (SCDF *shell* style)
  4. defaults

Keys are compared in Spring's relaxed canonical form: lower case, dashes removed,
and for environment variables underscores read as dots. Unknown keys are ignored.
Nothing here does I/O; ``load()`` takes argv and env as plain values.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

__all__ = ["USAGE", "ConfigError", "HelpRequested", "RouterConfig", "canonical", "load"]


class ConfigError(ValueError):
    """A configuration value is malformed; the message is one line naming the key."""


class HelpRequested(Exception):
    """``--help`` was given."""


DEFAULT_GROUP = "tsp-router"
DEFAULT_APP_NAME = "python-router"  # SCDF app label when none is given (the operator always gives one)
GUARANTEES = ("at-least-once", "exactly-once")
LOG_LEVELS = {
    "TRACE": "DEBUG",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERROR": "ERROR",
    "FATAL": "CRITICAL",
    "OFF": "CRITICAL",
}
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

USAGE = """usage: tsp-router [--key=value ...]
       tsp-router reset-offsets --reset.to=VALUE [--reset.router=DEPLOYMENT] [--key=value ...]

Even/odd timestamp router (Spring Cloud Data Flow compatible).
Configuration from --key=value arguments, SPRING_APPLICATION_JSON, or environment
variables (SPRING_CLOUD_STREAM_BINDINGS_INPUT_DESTINATION=...), in that precedence.

Main keys:
  spring.cloud.stream.bindings.{input,even,odd}.destination  topics (default: binding name)
  spring.cloud.stream.bindings.input.group                    consumer group
  spring.cloud.stream.kafka.binder.brokers                     host:port[,host:port] (localhost:9092)
  server.port, server.address                                  actuator port (8080), address (0.0.0.0)
  tsrouter.even-prefix / tsrouter.odd-prefix                   output prefixes
  tsrouter.dead-letter-topic                                   (error.<input>.<group>)
  tsrouter.processing-guarantee                                at-least-once | exactly-once
  tsrouter.eos-commit-interval-ms, tsrouter.eos-commit-records one transaction per 100 ms / 20,000 records
  tsrouter.max-poll-records, tsrouter.producer-batch-size     5000, 262144 (bytes, at most 524288)
  tsrouter.batch-send                                          true: whole batches into the producer
  tsrouter.fast-fetch                                          true: polled records left encoded, no ConsumerRecord
  tsrouter.workers                                             router processes in this pod (1)
  tsrouter.auto-create-topics, tsrouter.topic-partitions, tsrouter.topic-replication-factor
  tsrouter.log-level, tsrouter.log-format (text|json)
"""


def canonical(key: str) -> str:
    """Spring's relaxed-binding canonical form of a property name.

    The operator has its own (tspipe.spring.canonical_key): the router is a separate
    distribution and imports nothing from it (.importlinter)."""
    return key.strip().lower().replace("-", "").replace("_", "")


def _env_canonical(name: str) -> str:
    # SPRING_CLOUD_STREAM_BINDINGS_EVEN_DESTINATION -> spring.cloud.stream.bindings.even.destination
    return name.lower().replace("__", "_").replace("_", ".").replace("-", "")


def _flatten_json(obj: object, prefix: str, out: dict[str, str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten_json(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _flatten_json(v, f"{prefix}[{i}]", out)
    elif obj is None:
        return
    elif isinstance(obj, bool):
        out[prefix] = "true" if obj else "false"
    else:
        out[prefix] = str(obj)


def _parse_args(argv: Sequence[str]) -> dict[str, tuple[str, str]]:
    """--key=value list -> {canonical: (original key, value)}."""
    out: dict[str, tuple[str, str]] = {}
    for arg in argv:
        if arg in ("--help", "-h"):
            raise HelpRequested()
        if not arg.startswith("--"):
            raise ConfigError(f"argument {arg!r}: expected --key=value")
        body = arg[2:]
        if "=" not in body:
            raise ConfigError(f"argument --{body}: missing '=value' (expected --{body}=value)")
        key, value = body.split("=", 1)
        if not key.strip():
            raise ConfigError(f"argument {arg!r}: empty key")
        out[canonical(key)] = (key, value)
    return out


def _parse_application_json(text: str) -> dict[str, tuple[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"SPRING_APPLICATION_JSON: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict):
        raise ConfigError("SPRING_APPLICATION_JSON: must be a JSON object")
    flat: dict[str, str] = {}
    _flatten_json(data, "", flat)
    return {canonical(k): (k, v) for k, v in flat.items()}


def _loose(key: str) -> str:
    return "~" + canonical(key).replace(".", "")


def _parse_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Env names by Spring's rule (TSROUTER_EVENPREFIX) and, as a fallback, with the
    dashes written as underscores (TSROUTER_EVEN_PREFIX): the loose '~' keys ignore dots."""
    out: dict[str, tuple[str, str]] = {}
    loose: dict[str, tuple[str, str]] = {}
    for name, value in env.items():
        if name == "SPRING_APPLICATION_JSON":
            continue
        out[canonical(_env_canonical(name))] = (name, value)
        loose[_loose(name)] = (name, value)
    out.update(loose)
    return out


class _Props:
    """Merged view over the three sources, remembering where each value came from."""

    def __init__(self, layers: list[dict[str, tuple[str, str]]]):
        self._layers = layers  # highest precedence first

    def raw(self, *keys: str) -> tuple[str, str] | None:
        """First hit for any of keys (aliases in priority order), respecting source precedence."""
        wanted = [canonical(k) for k in keys] + [_loose(k) for k in keys]
        for layer in self._layers:
            for ck in wanted:
                if ck in layer:
                    return layer[ck]
        return None

    @overload
    def text(self, *keys: str, default: str) -> str: ...
    @overload
    def text(self, *keys: str, default: None = None) -> str | None: ...
    def text(self, *keys: str, default: str | None = None) -> str | None:
        hit = self.raw(*keys)
        return default if hit is None else hit[1]

    def with_prefix(self, prefix: str) -> dict[str, tuple[str, str]]:
        """All keys under prefix (canonical), lower layers first so higher ones win."""
        cp = canonical(prefix) + "."
        merged: dict[str, tuple[str, str]] = {}
        for layer in reversed(self._layers):
            for ck, (orig, val) in layer.items():
                if ck.startswith(cp):
                    merged[ck[len(cp) :]] = (orig, val)
        return merged

    def integer(self, *keys: str, default: int, lo: int, hi: int) -> int:
        hit = self.raw(*keys)
        if hit is None:
            return default
        orig, val = hit
        try:
            n = int(val.strip(), 10)
        except ValueError:
            raise ConfigError(f"{orig}: {val!r} is not an integer") from None
        if not lo <= n <= hi:
            raise ConfigError(f"{orig}: {n} out of range [{lo}, {hi}]")
        return n

    def boolean(self, *keys: str, default: bool) -> bool:
        hit = self.raw(*keys)
        if hit is None:
            return default
        orig, val = hit
        v = val.strip().lower()
        if v in ("true", "yes", "on", "1"):
            return True
        if v in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{orig}: {val!r} is not a boolean (true/false)")


def _topic(props: _Props, key: str, default: str) -> str:
    hit = props.raw(key)
    if hit is None:
        return default
    orig, val = hit
    val = val.strip()
    if not _TOPIC_RE.match(val) or val in (".", ".."):
        raise ConfigError(f"{orig}: {val!r} is not a valid Kafka topic name")
    return val


def _brokers(props: _Props) -> tuple[str, ...]:
    port_default = props.integer("spring.cloud.stream.kafka.binder.default-broker-port", default=9092, lo=1, hi=65535)
    hit = props.raw("spring.cloud.stream.kafka.binder.brokers", "spring.kafka.bootstrap-servers")
    if hit is None:
        return (f"localhost:{port_default}",)
    orig, val = hit
    items = [b.strip() for b in val.split(",") if b.strip()]
    if not items:
        raise ConfigError(f"{orig}: empty broker list")
    out = []
    for item in items:
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, str(port_default)
        if (
            not host
            or any(c.isspace() or c in "/@" for c in host)
            or not port.isascii()
            or not port.isdigit()
            or not 1 <= int(port) <= 65535
        ):
            raise ConfigError(f"{orig}: {item!r} is not host:port")
        out.append(f"{host}:{int(port)}")
    return tuple(out)


def _jaas_credentials(orig: str, jaas: str) -> tuple[str, str]:
    """username/password from a PLAIN or SCRAM sasl.jaas.config line (values never echoed)."""
    if not re.search(r"(PlainLoginModule|ScramLoginModule)", jaas):
        raise ConfigError(f"{orig}: only PlainLoginModule/ScramLoginModule are supported")
    creds = dict(re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', jaas))
    if "username" not in creds or "password" not in creds:
        raise ConfigError(f"{orig}: username and password are required")
    return creds["username"], creds["password"]


def _kafka_client_settings(props: _Props) -> dict[str, Any]:
    """spring.cloud.stream.kafka.binder.configuration.* -> kafka-python keyword arguments."""
    raw = props.with_prefix("spring.cloud.stream.kafka.binder.configuration")
    if not raw:
        return {}
    # canonical keys lost their dashes/underscores; Kafka security keys have neither.
    get = dict(raw)
    out = _sasl_settings(get) | _ssl_settings(get)
    if out.get("sasl_mechanism") and "sasl_plain_username" not in out:
        raise ConfigError(
            "spring.cloud.stream.kafka.binder.configuration.sasl.jaas.config: required when sasl.mechanism is set"
        )
    return out


def _sasl_settings(get: dict[str, tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "security.protocol" in get:
        orig, val = get["security.protocol"]
        v = val.strip().upper()
        if v not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(f"{orig}: {val!r} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        out["security_protocol"] = v
    if "sasl.mechanism" in get:
        orig, val = get["sasl.mechanism"]
        v = val.strip().upper()
        if v not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ConfigError(f"{orig}: {val!r} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        out["sasl_mechanism"] = v
    if "sasl.jaas.config" in get:
        orig, val = get["sasl.jaas.config"]
        user, password = _jaas_credentials(orig, val)
        out["sasl_plain_username"] = user
        out["sasl_plain_password"] = password
        out.setdefault("sasl_mechanism", "SCRAM-SHA-512" if "Scram" in val else "PLAIN")
    return out


def _ssl_settings(get: dict[str, tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "ssl.truststore.location" in get:
        orig, val = get["ssl.truststore.location"]
        ttype = get.get("ssl.truststore.type", (None, "PEM"))[1].strip().upper()
        if ttype != "PEM":
            raise ConfigError(f"{orig}: truststore type {ttype} unsupported by kafka-python; use PEM")
        out["ssl_cafile"] = val.strip()
    if "ssl.truststore.certificates" in get:
        # Inline PEM CA certificates (Kafka's PEM truststore); kafka-python takes them as a context.
        import ssl

        orig, val = get["ssl.truststore.certificates"]
        try:
            out["ssl_context"] = ssl.create_default_context(cadata=val.strip())
        except (ssl.SSLError, ValueError):
            raise ConfigError(f"{orig}: not valid PEM certificates") from None
    if "ssl.keystore.location" in get:
        orig, val = get["ssl.keystore.location"]
        ktype = get.get("ssl.keystore.type", (None, "PEM"))[1].strip().upper()
        if ktype != "PEM":
            raise ConfigError(f"{orig}: keystore type {ktype} unsupported by kafka-python; use PEM")
        out["ssl_certfile"] = val.strip()
    for pw in ("ssl.key.password", "ssl.keystore.password"):
        if pw in get:
            out["ssl_password"] = get[pw][1]
    if "ssl.endpoint.identification.algorithm" in get:
        out["ssl_check_hostname"] = get["ssl.endpoint.identification.algorithm"][1].strip() != ""
    return out


@dataclass(frozen=True)
class RouterConfig:
    input_topic: str = "input"
    even_topic: str = "even"
    odd_topic: str = "odd"
    group: str = DEFAULT_GROUP
    dead_letter_topic: str = f"error.input.{DEFAULT_GROUP}"
    brokers: tuple[str, ...] = ("localhost:9092",)
    server_port: int = 8080
    server_address: str = "0.0.0.0"
    even_prefix: str = "Even timestamp:"
    odd_prefix: str = "Odd timestamp:"
    processing_guarantee: str = "at-least-once"
    transactional_id: str | None = None
    auto_create_topics: bool = True
    topic_partitions: int = 1
    topic_replication_factor: int = -1
    log_level: str = "INFO"
    log_format: str = "text"
    fetch_max_wait_ms: int = 20
    # Each poll costs kafka-python two hand-offs to its network thread whatever it returns; at
    # 5000 instead of 2000, side by side, at-least-once and exactly-once ran about 10% faster.
    max_poll_records: int = 5000
    batch_send: bool = True  # whole record batches into the producer (tsrouter.kafka_private.fastsend)
    fast_fetch: bool = True  # polled records left encoded, no ConsumerRecord each (tsrouter.kafka_private.fastfetch)
    producer_batch_size: int = 256 * 1024
    eos_commit_interval_ms: int = 100
    eos_commit_records: int = 20_000
    workers: int = 1  # router processes in this pod (tsrouter.workers says when)
    shutdown_timeout_ms: int = 20000
    liveness_stall_ms: int = 60000
    stream_name: str | None = None
    app_label: str | None = None
    app_guid: str | None = None
    app_group: str | None = None
    instance_index: int | None = None
    # kafka-python security keyword arguments; values may be secrets, so keep out of repr.
    kafka_client: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly-once"

    def bindings(self) -> dict[str, str]:
        return {"input": self.input_topic, "even": self.even_topic, "odd": self.odd_topic}

    def public_info(self) -> dict[str, Any]:
        """What /actuator/info and the startup log may show: never credentials."""
        return {
            "stream": self.stream_name,
            "label": self.app_label,
            "guid": self.app_guid,
            "group": self.app_group,
            "instanceIndex": self.instance_index,
            "bindings": self.bindings(),
            "consumerGroup": self.group,
            "deadLetterTopic": self.dead_letter_topic,
            "brokers": list(self.brokers),
            "processingGuarantee": self.processing_guarantee,
            "securityProtocol": self.kafka_client.get("security_protocol", "PLAINTEXT"),
        }


def load(argv: Sequence[str], env: Mapping[str, str]) -> RouterConfig:
    """Build a RouterConfig; raises ConfigError (one line, naming the key) or HelpRequested."""
    props = _sources(argv, env)
    stream_name = props.text("spring.cloud.dataflow.stream.name")
    input_topic = _topic(props, "spring.cloud.stream.bindings.input.destination", "input")
    even_topic = _topic(props, "spring.cloud.stream.bindings.even.destination", "even")
    odd_topic = _topic(props, "spring.cloud.stream.bindings.odd.destination", "odd")
    group = _group(props, stream_name)
    dlq = _dead_letter_topic(props, input_topic, group)
    guarantee = _guarantee(props)
    log_level, log_format = _logging(props)
    instance_index = _instance_index(props)
    txn_id = _transactional_id(props, guarantee, group, input_topic, instance_index)
    return RouterConfig(
        input_topic=input_topic,
        even_topic=even_topic,
        odd_topic=odd_topic,
        group=group,
        dead_letter_topic=dlq,
        brokers=_brokers(props),
        server_port=props.integer("server.port", default=8080, lo=0, hi=65535),
        server_address=_address(props),
        even_prefix=props.text("tsrouter.even-prefix", default="Even timestamp:"),
        odd_prefix=props.text("tsrouter.odd-prefix", default="Odd timestamp:"),
        processing_guarantee=guarantee,
        transactional_id=txn_id,
        auto_create_topics=props.boolean(
            "tsrouter.auto-create-topics", "spring.cloud.stream.kafka.binder.auto-create-topics", default=True
        ),
        topic_partitions=props.integer(
            "tsrouter.topic-partitions",
            "spring.cloud.stream.kafka.binder.min-partition-count",
            default=1,
            lo=1,
            hi=100_000,
        ),
        topic_replication_factor=_replication(props),
        log_level=log_level,
        log_format=log_format,
        fetch_max_wait_ms=props.integer("tsrouter.fetch-max-wait-ms", default=20, lo=0, hi=60_000),
        max_poll_records=props.integer("tsrouter.max-poll-records", default=5000, lo=1, hi=100_000),
        batch_send=props.boolean("tsrouter.batch-send", default=True),
        fast_fetch=props.boolean("tsrouter.fast-fetch", default=True),
        # At most 512 KiB: below the broker's default message.max.bytes (tsrouter.kafka_private.fastsend says why).
        producer_batch_size=props.integer("tsrouter.producer-batch-size", default=256 * 1024, lo=1024, hi=512 * 1024),
        eos_commit_interval_ms=props.integer("tsrouter.eos-commit-interval-ms", default=100, lo=1, hi=10_000),
        eos_commit_records=props.integer("tsrouter.eos-commit-records", default=20_000, lo=1, hi=1_000_000),
        workers=props.integer("tsrouter.workers", default=1, lo=1, hi=64),
        shutdown_timeout_ms=props.integer("tsrouter.shutdown-timeout-ms", default=20_000, lo=100, hi=600_000),
        liveness_stall_ms=props.integer("tsrouter.liveness-stall-ms", default=60_000, lo=1000, hi=3_600_000),
        stream_name=stream_name,
        app_label=props.text("spring.cloud.dataflow.stream.app.label"),
        app_guid=props.text("spring.cloud.application.guid"),
        app_group=props.text("spring.cloud.application.group"),
        instance_index=instance_index,
        kafka_client=_kafka_client_settings(props),
    )


def _sources(argv: Sequence[str], env: Mapping[str, str]) -> _Props:
    """The three entry-point styles, highest precedence first: args, SPRING_APPLICATION_JSON, env."""
    args = _parse_args(argv)
    app_json = (
        _parse_application_json(env["SPRING_APPLICATION_JSON"])
        if env.get("SPRING_APPLICATION_JSON", "").strip()
        else {}
    )
    return _Props([args, app_json, _parse_env(env)])


def _group(props: _Props, stream_name: str | None) -> str:
    """The consumer group: as bound, else the stream's name (as SCDF sets it), else a default."""
    group_hit = props.raw("spring.cloud.stream.bindings.input.group")
    if group_hit is None:
        return (stream_name or "").strip() or DEFAULT_GROUP
    group = group_hit[1].strip()
    if not group:
        raise ConfigError(f"{group_hit[0]}: empty consumer group")
    return group


def _dead_letter_topic(props: _Props, input_topic: str, group: str) -> str:
    dlq_default = f"error.{input_topic}.{group}"  # the Kafka binder's default DLQ name
    if not _TOPIC_RE.match(dlq_default):
        dlq_default = f"error.{input_topic}"[:249]
    dlq = _topic(props, "tsrouter.dead-letter-topic", "")
    if not dlq:
        dlq = _topic(props, "spring.cloud.stream.kafka.bindings.input.consumer.dlq-name", dlq_default)
    return dlq


def _guarantee(props: _Props) -> str:
    hit = props.raw("tsrouter.processing-guarantee")
    if hit is None:
        return "at-least-once"
    guarantee = hit[1].strip().lower().replace("_", "-")
    if guarantee not in GUARANTEES:
        raise ConfigError(f"{hit[0]}: {hit[1]!r} is not one of {', '.join(GUARANTEES)}")
    return guarantee


def _logging(props: _Props) -> tuple[str, str]:
    """(Python log level, text|json)."""
    level_hit = props.raw("tsrouter.log-level", "logging.level.tsrouter", "logging.level.root")
    log_level = "INFO"
    if level_hit is not None:
        lv = level_hit[1].strip().upper()
        if lv not in LOG_LEVELS:
            raise ConfigError(f"{level_hit[0]}: {level_hit[1]!r} is not a log level")
        log_level = LOG_LEVELS[lv]
    fmt_hit = props.raw("tsrouter.log-format")
    log_format = "text"
    if fmt_hit is not None:
        log_format = fmt_hit[1].strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"{fmt_hit[0]}: {fmt_hit[1]!r} is not text or json")
    return log_level, log_format


def _instance_index(props: _Props) -> int | None:
    if props.raw("spring.cloud.stream.instance-index", "instance.index") is None:
        return None
    return props.integer("spring.cloud.stream.instance-index", "instance.index", default=0, lo=0, hi=1_000_000)


def _transactional_id(
    props: _Props, guarantee: str, group: str, input_topic: str, instance_index: int | None
) -> str | None:
    txn_id = props.text("tsrouter.transactional-id")
    txn_hit = props.raw("tsrouter.transactional-id")
    if txn_hit is not None and not txn_hit[1].strip():
        raise ConfigError(f"{txn_hit[0]}: empty transactional id")
    if guarantee == "exactly-once" and not txn_id:
        # Stable across restarts of the same instance so init_transactions fences the old one.
        who = str(instance_index) if instance_index is not None else socket.gethostname()
        txn_id = f"tsrouter-{group}-{input_topic}-{who}"
    return txn_id.strip() if txn_id else None


def _replication(props: _Props) -> int:
    n = props.integer(
        "tsrouter.topic-replication-factor",
        "spring.cloud.stream.kafka.binder.replication-factor",
        default=-1,
        lo=-1,
        hi=1000,
    )
    hit = props.raw("tsrouter.topic-replication-factor", "spring.cloud.stream.kafka.binder.replication-factor")
    if n == 0 and hit is not None:
        raise ConfigError(f"{hit[0]}: 0 is not a replication factor (use -1 for the broker default)")
    return n


def _address(props: _Props) -> str:
    hit = props.raw("server.address")
    if hit is None:
        return "0.0.0.0"
    addr = hit[1].strip()
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    except OSError:
        raise ConfigError(f"{hit[0]}: {hit[1]!r} is not an IP address") from None
    return addr
