"""The TimestampPipeline spec as plain, validated, defaulted Python values.

`Pipeline.from_resource` applies the same defaults and the same rules as the CRD's
schema and CEL rules (crds/timestamppipelines.tspipe.io.yaml), so a pipeline file can
be checked without an API server. Errors name the offending field, like the API server.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .api import KIND
from .components import COMPONENTS, Component, Kind
from .spring import CREDENTIAL_ENV, CREDENTIAL_PROPERTIES, RESERVED_ENV, canonical_key

DEFAULT_TOPICS = {"input": "timeDest", "even": "evenDest", "odd": "oddDest"}
DEFAULT_DATE_FORMAT = "MM/dd/yy HH:mm:ss"

# Bounds shared with the CRD schema.
MAX_NAME_LENGTH = 42  # "<name>-evenlogger" must stay a valid 63-char label value
MAX_ROUTER_REPLICAS = 64
MAX_PARTITIONS = 10000
MAX_REPLICATION_FACTOR = 32767
MAX_FIXED_DELAY_SECONDS = 86400
DEFAULT_PROGRESS_DEADLINE = 600  # the Deployment default
MAX_PROGRESS_DEADLINE = 86400
DEFAULT_PAUSE_DRAIN_SECONDS = 60
MAX_PAUSE_DRAIN_SECONDS = 3600
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
LOG_LEVELS = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")

TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
# host:port; host is a DNS name, an IPv4 address or a bracketed IPv6 address.
PORT_RE = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
BROKER_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?):" + PORT_RE + r"$")
STREAM_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
IMAGE_RE = re.compile(r"^[^\s]+$")
PROPERTY_KEY_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._\[\]-]*$")
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")
SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


class PipelineError(ValueError):
    """An invalid pipeline; `field` is the dotted path of the offending field."""

    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


@dataclass(frozen=True)
class Topics:
    input: str = DEFAULT_TOPICS["input"]
    even: str = DEFAULT_TOPICS["even"]
    odd: str = DEFAULT_TOPICS["odd"]
    partitions: int = 1
    replication_factor: int = 1
    manage: bool = True  # the operator ensures the topics exist
    delete_on_removal: bool = False  # and deletes them with the pipeline

    def name(self, role: str) -> str:
        """The topic of a role: `input`, `even` or `odd`."""
        return {"input": self.input, "even": self.even, "odd": self.odd}[role]

    def dead_letter(self, group: str) -> str:
        """The router's dead-letter topic (its default, tsrouter.config)."""
        name = f"error.{self.input}.{group}"
        return name if len(name) <= 249 else f"error.{self.input}"[:249]


@dataclass(frozen=True)
class Credentials:
    """Where the apps find their SASL credentials: names of Secrets and keys, never values.

    The operator never reads these Secrets; the kubelet hands them to the apps."""

    secret_name: str
    mechanism: str
    protocol: str = "SASL_SSL"
    username_key: str = "username"
    password_key: str = "password"
    ca_secret_name: str | None = None
    ca_key: str = "ca.crt"


@dataclass(frozen=True)
class Kafka:
    brokers: tuple[str, ...]
    topics: Topics = field(default_factory=Topics)
    credentials: Credentials | None = None


@dataclass(frozen=True)
class AppCommon:
    """Fields every app has. resources/env are corev1 shapes passed through as-is."""

    image: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    env: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class TimeSpec(AppCommon):
    date_format: str = DEFAULT_DATE_FORMAT
    fixed_delay_seconds: int = 1


@dataclass(frozen=True)
class RouterSpec(AppCommon):
    replicas: int = 1
    processing_guarantee: str = "at_least_once"
    even_prefix: str = "Even timestamp:"
    odd_prefix: str = "Odd timestamp:"


@dataclass(frozen=True)
class LoggerSpec(AppCommon):
    level: str = "INFO"
    expression: str = "payload"


@dataclass(frozen=True)
class PodOverrides:
    service_account_name: str | None = None
    image_pull_secrets: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Pipeline:
    name: str
    namespace: str
    stream_name: str
    kafka: Kafka
    time: TimeSpec
    router: RouterSpec
    even_logger: LoggerSpec
    odd_logger: LoggerSpec
    pod: PodOverrides = field(default_factory=PodOverrides)
    progress_deadline_seconds: int = DEFAULT_PROGRESS_DEADLINE
    paused: bool = False
    pause_drain_seconds: int = DEFAULT_PAUSE_DRAIN_SECONDS
    uid: str | None = None
    generation: int | None = None

    @classmethod
    def from_resource(cls, obj: Mapping[str, Any]) -> Pipeline:
        return _parse(copy.deepcopy(dict(obj)))

    def app(self, c: Component) -> AppCommon:
        """The spec of one app (components.COMPONENTS)."""
        spec: AppCommon = getattr(self, c.attr)
        return spec


def load_pipeline_file(path: str | Path) -> Pipeline:
    """Read one TimestampPipeline from a YAML/JSON file (the first matching document)."""
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == KIND:
            return Pipeline.from_resource(doc)
    raise PipelineError("kind", f"no {KIND} document in {path}")


# --- parsing helpers -------------------------------------------------------------------


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PipelineError(path, "must be an object")
    return value


def _known(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    # The CRD is structural and prunes unknown fields; here an unknown field is
    # almost always a typo in a pipeline file, so say so.
    for key in obj:
        if key not in allowed:
            raise PipelineError(f"{path}.{key}", "unknown field")


# A field set to null counts as absent, as for the API server, which prunes nulls
# (none of these fields is nullable) before it applies defaults.


def _opt_str(obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PipelineError(f"{path}.{key}", "required")
        return None
    if not isinstance(value, str):
        raise PipelineError(f"{path}.{key}", "must be a string")
    return value


def _str(obj: dict[str, Any], key: str, path: str, default: str) -> str:
    value = _opt_str(obj, key, path)
    return default if value is None else value


def _req_str(obj: dict[str, Any], key: str, path: str) -> str:
    value = _opt_str(obj, key, path, required=True)
    assert value is not None
    return value


def _int(obj: dict[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(key)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineError(f"{path}.{key}", "must be an integer")
    if not lo <= value <= hi:
        raise PipelineError(f"{path}.{key}", f"must be between {lo} and {hi}, got {value}")
    return value


def _bool(obj: dict[str, Any], key: str, path: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        value = default
    if not isinstance(value, bool):
        raise PipelineError(f"{path}.{key}", "must be a boolean")
    return value


def _nonempty(value: str, path: str) -> str:
    if not value:
        raise PipelineError(path, "must not be empty")
    return value


def _image(obj: dict[str, Any], path: str, default: str) -> str:
    value = _str(obj, "image", path, default)
    if not value or not IMAGE_RE.match(value):
        raise PipelineError(f"{path}.image", "must be a non-empty image reference without spaces")
    return value


def _properties(obj: dict[str, Any], path: str) -> dict[str, str]:
    props = _obj(obj.get("properties"), f"{path}.properties")
    out = {}
    for key, value in props.items():
        kpath = f"{path}.properties[{key}]"
        if not isinstance(key, str) or not PROPERTY_KEY_RE.match(key):
            raise PipelineError(kpath, "property names are letters, digits, '.', '-', '_', '[', ']'")
        if not isinstance(value, str):
            raise PipelineError(kpath, "property values must be strings (quote numbers and booleans)")
        out[key] = value
    return out


def _env(obj: dict[str, Any], path: str) -> tuple[dict[str, Any], ...]:
    env = obj.get("env") or []
    if not isinstance(env, list):
        raise PipelineError(f"{path}.env", "must be a list of EnvVar")
    seen = set()
    for i, var in enumerate(env):
        vpath = f"{path}.env[{i}]"
        if not isinstance(var, dict) or not isinstance(var.get("name"), str):
            raise PipelineError(f"{vpath}.name", "required")
        name = var["name"]
        if not ENV_NAME_RE.match(name):
            raise PipelineError(f"{vpath}.name", f"invalid environment variable name {name!r}")
        if name in RESERVED_ENV:
            raise PipelineError(f"{vpath}.name", f"{name} is set by the operator")
        if name in seen:
            raise PipelineError(f"{vpath}.name", f"duplicate environment variable {name}")
        seen.add(name)
    return tuple(env)


def _resources(obj: dict[str, Any], path: str) -> dict[str, Any]:
    res = _obj(obj.get("resources"), f"{path}.resources")
    _known(res, f"{path}.resources", {"limits", "requests", "claims"})
    return res


def _list(obj: dict[str, Any], key: str, path: str) -> tuple[Any, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise PipelineError(f"{path}.{key}", "must be a list")
    return tuple(value)


_APP_FIELDS = {"image", "resources", "properties", "env"}
_SPEC_FIELDS = {"streamName", "kafka", "pod", "rollout", "paused"} | {c.spec_field for c in COMPONENTS}


def _parse(obj: dict[str, Any]) -> Pipeline:
    meta = _obj(obj.get("metadata"), "metadata")
    name = _name(meta)
    spec = _obj(obj.get("spec"), "spec")
    _known(spec, "spec", _SPEC_FIELDS)
    stream_name = _stream_name(spec, name)
    kafka = _kafka(spec)
    apps: dict[str, Any] = {c.attr: _app(spec, c) for c in COMPONENTS}  # time=TimeSpec(...), ...
    pod = _pod(spec)
    ro = _obj(spec.get("rollout"), "spec.rollout")
    _known(ro, "spec.rollout", {"progressDeadlineSeconds", "pauseDrainSeconds"})
    pipeline = Pipeline(
        name=name,
        namespace=meta.get("namespace") or "default",
        stream_name=stream_name,
        kafka=kafka,
        **apps,
        pod=pod,
        progress_deadline_seconds=_int(
            ro, "progressDeadlineSeconds", "spec.rollout", DEFAULT_PROGRESS_DEADLINE, 1, MAX_PROGRESS_DEADLINE
        ),
        paused=_bool(spec, "paused", "spec", False),
        pause_drain_seconds=_int(
            ro, "pauseDrainSeconds", "spec.rollout", DEFAULT_PAUSE_DRAIN_SECONDS, 0, MAX_PAUSE_DRAIN_SECONDS
        ),
        uid=meta.get("uid"),
        generation=meta.get("generation"),
    )
    _check_reserved(pipeline)
    return pipeline


def _name(meta: dict[str, Any]) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineError("metadata.name", "required")
    if len(name) > MAX_NAME_LENGTH:
        raise PipelineError("metadata.name", f"must be at most {MAX_NAME_LENGTH} characters")
    return name


def _stream_name(spec: dict[str, Any], name: str) -> str:
    stream_name = _str(spec, "streamName", "spec", name)
    if spec.get("streamName") is None and not STREAM_NAME_RE.match(stream_name):
        raise PipelineError(
            "spec.streamName",
            "required when metadata.name is not a valid stream name (a letter, then letters, digits and '-')",
        )
    if not STREAM_NAME_RE.match(stream_name):
        raise PipelineError(
            "spec.streamName", "must start with a letter and contain only letters, digits and '-' (max 63)"
        )
    return stream_name


def _kafka(spec: dict[str, Any]) -> Kafka:
    kobj = _obj(spec.get("kafka"), "spec.kafka")
    if spec.get("kafka") is None:
        raise PipelineError("spec.kafka", "required")
    _known(kobj, "spec.kafka", {"brokers", "topics", "credentials"})
    brokers = kobj.get("brokers")
    if not isinstance(brokers, list) or not brokers:
        raise PipelineError("spec.kafka.brokers", "at least one host:port is required")
    for i, b in enumerate(brokers):
        if not isinstance(b, str) or not BROKER_RE.match(b):
            raise PipelineError(f"spec.kafka.brokers[{i}]", f"must be host:port with a port 1-65535, got {b!r}")
    if len(set(brokers)) != len(brokers):
        raise PipelineError("spec.kafka.brokers", "entries must be unique")
    topics = _topics(_obj(kobj.get("topics"), "spec.kafka.topics"))
    credentials = _credentials(kobj.get("credentials"))
    if credentials is not None and topics.manage:
        raise PipelineError(
            "spec.kafka.topics.manage",
            "must be false when spec.kafka.credentials is set: the "
            "operator never reads the Secret, so it cannot manage topics on a SASL broker "
            "(the apps create their own topics)",
        )
    return Kafka(brokers=tuple(brokers), topics=topics, credentials=credentials)


def _topics(tobj: dict[str, Any]) -> Topics:
    p = "spec.kafka.topics"
    _known(tobj, p, {"input", "even", "odd", "partitions", "replicationFactor", "manage", "deleteOnRemoval"})
    names = {}
    for role in ("input", "even", "odd"):
        topic = _str(tobj, role, p, DEFAULT_TOPICS[role])
        if not TOPIC_RE.match(topic) or topic in (".", ".."):
            raise PipelineError(
                f"{p}.{role}",
                f"invalid Kafka topic name {topic!r}: 1-249 of [a-zA-Z0-9._-], not '.' or '..'",
            )
        names[role] = topic
    if len(set(names.values())) != 3:
        raise PipelineError(p, "input, even and odd must be three distinct topics")
    return Topics(
        **names,
        partitions=_int(tobj, "partitions", p, 1, 1, MAX_PARTITIONS),
        replication_factor=_int(tobj, "replicationFactor", p, 1, 1, MAX_REPLICATION_FACTOR),
        manage=_bool(tobj, "manage", p, True),
        delete_on_removal=_bool(tobj, "deleteOnRemoval", p, False),
    )


def _app(spec: dict[str, Any], c: Component) -> AppCommon:
    """One app's section of the spec (`spec.time`, `spec.router`, ...)."""
    p = f"spec.{c.spec_field}"
    obj = _obj(spec.get(c.spec_field), p)
    kind_spec = _KIND_SPECS[c.kind]
    _known(obj, p, _APP_FIELDS | kind_spec.fields)
    return kind_spec.parse(
        obj,
        p,
        image=_image(obj, p, c.default_image),
        resources=_resources(obj, p),
        properties=_properties(obj, p),
        env=_env(obj, p),
    )


def _time_spec(t: dict[str, Any], p: str, **common: Any) -> TimeSpec:
    return TimeSpec(
        **common,
        date_format=_nonempty(_str(t, "dateFormat", p, DEFAULT_DATE_FORMAT), f"{p}.dateFormat"),
        fixed_delay_seconds=_int(t, "fixedDelaySeconds", p, 1, 1, MAX_FIXED_DELAY_SECONDS),
    )


def _router_spec(r: dict[str, Any], p: str, **common: Any) -> RouterSpec:
    guarantee = _str(r, "processingGuarantee", p, "at_least_once")
    if guarantee not in PROCESSING_GUARANTEES:
        raise PipelineError(f"{p}.processingGuarantee", f"must be one of {', '.join(PROCESSING_GUARANTEES)}")
    return RouterSpec(
        **common,
        replicas=_int(r, "replicas", p, 1, 0, MAX_ROUTER_REPLICAS),
        processing_guarantee=guarantee,
        even_prefix=_str(r, "evenPrefix", p, "Even timestamp:"),
        odd_prefix=_str(r, "oddPrefix", p, "Odd timestamp:"),
    )


def _logger_spec(lg: dict[str, Any], p: str, **common: Any) -> LoggerSpec:
    level = _str(lg, "level", p, "INFO")
    if level not in LOG_LEVELS:
        raise PipelineError(f"{p}.level", f"must be one of {', '.join(LOG_LEVELS)}")
    return LoggerSpec(
        **common,
        level=level,
        expression=_nonempty(_str(lg, "expression", p, "payload"), f"{p}.expression"),
    )


@dataclass(frozen=True)
class _KindSpec:
    fields: frozenset[str]  # spec fields of this kind of app besides image, resources, properties, env
    parse: Callable[..., AppCommon]


_KIND_SPECS: dict[Kind, _KindSpec] = {
    "time": _KindSpec(frozenset({"dateFormat", "fixedDelaySeconds"}), _time_spec),
    "router": _KindSpec(frozenset({"replicas", "processingGuarantee", "evenPrefix", "oddPrefix"}), _router_spec),
    "logger": _KindSpec(frozenset({"level", "expression"}), _logger_spec),
}


def _pod(spec: dict[str, Any]) -> PodOverrides:
    p = "spec.pod"
    po = _obj(spec.get("pod"), p)
    _known(po, p, {"serviceAccountName", "imagePullSecrets", "nodeSelector", "tolerations", "affinity"})
    node_selector = _obj(po.get("nodeSelector"), f"{p}.nodeSelector")
    affinity = po.get("affinity")
    if affinity is not None:
        _obj(affinity, f"{p}.affinity")
    return PodOverrides(
        service_account_name=_opt_str(po, "serviceAccountName", p),
        image_pull_secrets=_list(po, "imagePullSecrets", p),
        node_selector=node_selector,
        tolerations=_list(po, "tolerations", p),
        affinity=affinity,
    )


def _check_reserved(p: Pipeline) -> None:
    """User properties and env may not override what the operator sets from the spec."""
    for c in COMPONENTS:
        path = f"spec.{c.spec_field}"
        app = p.app(c)
        reserved = {canonical_key(k) for k in c.reserved_keys}
        for key in app.properties:
            if canonical_key(key) in reserved:
                raise PipelineError(f"{path}.properties[{key}]", f"{key} is set by the operator from the pipeline spec")
    if p.kafka.credentials is None:
        return
    for c in COMPONENTS:
        path = f"spec.{c.spec_field}"
        app = p.app(c)
        for i, var in enumerate(app.env):
            if var["name"] in CREDENTIAL_ENV:
                raise PipelineError(
                    f"{path}.env[{i}].name", f"{var['name']} is set by the operator from spec.kafka.credentials"
                )
        # Container args outrank env in Spring: a property would silently override the Secret.
        for key in app.properties:
            if canonical_key(key) in CREDENTIAL_PROPERTIES:
                raise PipelineError(
                    f"{path}.properties[{key}]", f"{key} is set by the operator from spec.kafka.credentials"
                )


def _credentials(value: Any) -> Credentials | None:
    if value is None:
        return None
    p = "spec.kafka.credentials"
    c = _obj(value, p)
    _known(c, p, {"secretName", "mechanism", "protocol", "usernameKey", "passwordKey", "caSecretName", "caKey"})
    secret = _req_str(c, "secretName", p)
    if len(secret) > 253 or not SECRET_NAME_RE.match(secret):
        raise PipelineError(f"{p}.secretName", "must be a Secret name (lower-case DNS subdomain, max 253)")
    mechanism = _req_str(c, "mechanism", p)
    if mechanism not in SASL_MECHANISMS:
        raise PipelineError(f"{p}.mechanism", f"must be one of {', '.join(SASL_MECHANISMS)}")
    protocol = _str(c, "protocol", p, "SASL_SSL")
    if protocol not in SASL_PROTOCOLS:
        raise PipelineError(f"{p}.protocol", f"must be one of {', '.join(SASL_PROTOCOLS)}")
    keys = {}
    for key, default in (("usernameKey", "username"), ("passwordKey", "password"), ("caKey", "ca.crt")):
        keys[key] = _str(c, key, p, default)
        if len(keys[key]) > 253 or not SECRET_KEY_RE.match(keys[key]):
            raise PipelineError(f"{p}.{key}", "must be a Secret key (letters, digits, '-', '_', '.'; max 253)")
    ca = _opt_str(c, "caSecretName", p)
    if ca is not None:
        if len(ca) > 253 or not SECRET_NAME_RE.match(ca):
            raise PipelineError(f"{p}.caSecretName", "must be a Secret name (lower-case DNS subdomain, max 253)")
        if protocol != "SASL_SSL":
            raise PipelineError(f"{p}.caSecretName", "a CA is only used with protocol SASL_SSL")
    elif c.get("caKey") is not None:
        raise PipelineError(f"{p}.caKey", "needs caSecretName")
    return Credentials(
        secret_name=secret,
        mechanism=mechanism,
        protocol=protocol,
        username_key=keys["usernameKey"],
        password_key=keys["passwordKey"],
        ca_secret_name=ca,
        ca_key=keys["caKey"],
    )
