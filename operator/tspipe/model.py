"""The TimestampPipeline spec as plain, validated, defaulted Python values.

`Pipeline.from_resource` applies the same defaults and the same rules as the CRD's
schema and CEL rules (crds/timestamppipelines.tspipe.io.yaml), so a pipeline file can
be checked without an API server. Errors name the offending field, like the API server.

The scalar fields are declared once below (fields.Str/Int/Bool: name, default, bounds,
pattern, description); the parser reads them and crd.py generates the schema from them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from . import topicconfig
from .components import COMPONENTS, Component, Kind
from .fields import Bool, Field, Int, Number, PipelineError, Str, names, parse_all
from .names import KIND
from .podtemplate import LEGACY_POD_FIELDS, PodTemplate, effective, parse_resources
from .podtemplate import parse as parse_pod_template
from .probes import AppProbes
from .probes import parse as parse_probes
from .spring import CREDENTIAL_ENV, CREDENTIAL_PROPERTIES, RESERVED_ENV, canonical_key

__all__ = ["Credentials", "Pipeline", "PipelineError", "load_pipeline_file"]

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
# Data-gated rollouts (rollback.py). A minute of the seed's time source is 60 timestamps:
# enough to see a misrouting release (half of them land wrong) without a long wait.
DEFAULT_VERIFY_SECONDS = 60
MAX_VERIFY_SECONDS = 3600
# 5%: with a minute at one timestamp a second, three bad records; one stray malformed
# record in a quiet window is not a broken release, a release that rejects its input is.
DEFAULT_MAX_DEAD_LETTER_RATIO = 0.05
MAX_PROPERTY_KEY_LENGTH = 253
EXACTLY_ONCE = "exactly_once"
PROCESSING_GUARANTEES = ("at_least_once", EXACTLY_ONCE)
LOG_LEVELS = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")

# Patterns shared with the CRD schema. The parser matches them whole (fullmatch), as the
# API server's RE2 does: Python's `$` alone would also accept a trailing newline.
# host:port; host is a DNS name, an IPv4 address or a bracketed IPv6 address.
PORT_RE = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
BROKER_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?):" + PORT_RE + r"$")
PROPERTY_KEY_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._\[\]-]*$")
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # Secret and service account names
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


# --- the spec's scalar fields, declared once (the CRD is generated from them) -------------

STREAM_NAME = Str(
    "streamName",
    "stream_name",
    "SCDF stream name (spring.cloud.dataflow.stream.name) and consumer group; defaults to metadata.name.",
    min_length=1,
    max_length=63,
    pattern=r"^[a-zA-Z][a-zA-Z0-9-]*$",
    invalid="must start with a letter and contain only letters, digits and '-' (max 63)",
)


def _topic(role: str, bindings: str) -> Str:
    return Str(
        role,
        role,
        f"Kafka topic for the {bindings} binding.",
        default=DEFAULT_TOPICS[role],
        min_length=1,
        max_length=249,
        pattern=r"^[a-zA-Z0-9._-]+$",
        forbidden=(".", ".."),
        forbidden_message="'.' and '..' are not valid Kafka topic names",
        invalid="invalid Kafka topic name {value!r}: 1-249 of [a-zA-Z0-9._-], not '.' or '..'",
    )


TOPIC_NAMES = (
    _topic("input", "time output / router input"),
    _topic("even", "router even output / evenLogger input"),
    _topic("odd", "router odd output / oddLogger input"),
)
# More replicas required in sync than exist: every acks=all write (the router's) would fail.
MIN_ISR_ABOVE_RF = "must not exceed spec.kafka.topics.replicationFactor (no acks=all write could succeed)"
TOPIC_FIELDS: tuple[Field, ...] = TOPIC_NAMES + (
    Int("partitions", "partitions", "Partitions for topics the apps create.", 1, 1, MAX_PARTITIONS),
    Int(
        "replicationFactor",
        "replication_factor",
        "Replication factor for topics the apps create.",
        1,
        1,
        MAX_REPLICATION_FACTOR,
    ),
    Bool(
        "manage",
        "manage",
        "The operator creates the input, even, odd and dead-letter topics with these partitions and "
        "replication factor, and grows partitions when they grow (never shrinks).",
        True,
    ),
    Bool(
        "deleteOnRemoval",
        "delete_on_removal",
        "Delete the managed topics when the pipeline is deleted (otherwise they are kept).",
        False,
    ),
)


def _secret_name(name: str, attr: str, description: str, *, required: bool = False) -> Str:
    return Str(
        name,
        attr,
        description,
        required=required,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        invalid="must be a Secret name (lower-case DNS subdomain, max 253)",
    )


def _secret_key(name: str, attr: str, description: str, default: str) -> Str:
    return Str(
        name,
        attr,
        description,
        default=default,
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        invalid="must be a Secret key (letters, digits, '-', '_', '.'; max 253)",
    )


# The API server writes this default into every credentials object (the CRD's structural
# default), with or without caSecretName: only another value says the user meant a CA.
CA_KEY_DEFAULT = "ca.crt"

CREDENTIAL_FIELDS: tuple[Field, ...] = (
    _secret_name(
        "secretName", "secret_name", "Secret (same namespace) holding the SASL username and password.", required=True
    ),
    Str("mechanism", "mechanism", "SASL mechanism.", required=True, enum=SASL_MECHANISMS),
    Str("protocol", "protocol", "Kafka security.protocol.", default="SASL_SSL", enum=SASL_PROTOCOLS),
    _secret_key("usernameKey", "username_key", "Key of the username in the Secret.", "username"),
    _secret_key("passwordKey", "password_key", "Key of the password in the Secret.", "password"),
    _secret_name(
        "caSecretName",
        "ca_secret_name",
        "Secret holding the PEM CA certificate(s) that signed the brokers' certificates (SASL_SSL only).",
    ),
    _secret_key("caKey", "ca_key", "Key of the PEM CA in caSecretName.", CA_KEY_DEFAULT),
)

# Every app's image; its default comes from components.COMPONENTS.
IMAGE = Str(
    "image",
    "image",
    "Container image.",
    min_length=1,
    max_length=512,
    pattern=r"^\S+$",
    invalid="must be a non-empty image reference without spaces",
)

# The fields of each kind of app besides image, resources, properties, env and podTemplate.
TIME_FIELDS: tuple[Field, ...] = (
    Str(
        "dateFormat",
        "date_format",
        "time.date-format (java SimpleDateFormat pattern).",
        default=DEFAULT_DATE_FORMAT,
        min_length=1,
        max_length=256,
    ),
    Int("fixedDelaySeconds", "fixed_delay_seconds", "Seconds between two timestamps.", 1, 1, MAX_FIXED_DELAY_SECONDS),
)
ROUTER_FIELDS: tuple[Field, ...] = (
    Int("replicas", "replicas", "Router replicas (one Kafka consumer group).", 1, 0, MAX_ROUTER_REPLICAS),
    Str(
        "processingGuarantee",
        "processing_guarantee",
        "at_least_once or exactly_once (Kafka transactions).",
        default="at_least_once",
        enum=PROCESSING_GUARANTEES,
    ),
    Str("evenPrefix", "even_prefix", "Prefix for even timestamps.", default="Even timestamp:", max_length=256),
    Str("oddPrefix", "odd_prefix", "Prefix for odd timestamps.", default="Odd timestamp:", max_length=256),
)
# spec.router.autoscaling (autoscale.py decides; docs/autoscaling.md).
AUTOSCALE_ENFORCE, AUTOSCALE_RECOMMEND = "Enforce", "Recommend"
# Lag is sampled between the router's commits, so one high sample is noise: scale up on
# what 30 s of samples agree on. Down like the HPA's default: 5 minutes, so a burst that
# repeats does not make the group rebalance twice per burst.
DEFAULT_SCALE_UP_STABILIZATION = 30
DEFAULT_SCALE_DOWN_STABILIZATION = 300
MAX_STABILIZATION = 3600
DEFAULT_TARGET_LAG = 1000  # about 50 ms of work for one router at its benchmarked rate
MAX_TARGET_LAG = 2**31 - 1
AUTOSCALING_FIELDS: tuple[Field, ...] = (
    Str(
        "mode",
        "mode",
        "Enforce: the operator sets the router's replicas (spec.router.replicas is then ignored). "
        "Recommend: it only reports what it would set, in status.autoscaling.",
        default=AUTOSCALE_ENFORCE,
        enum=(AUTOSCALE_ENFORCE, AUTOSCALE_RECOMMEND),
    ),
    Int("minReplicas", "min_replicas", "Fewest router replicas.", 1, 1, MAX_ROUTER_REPLICAS),
    Int(
        "maxReplicas",
        "max_replicas",
        "Most router replicas (never more than the input topic's partitions either).",
        1,
        1,
        MAX_ROUTER_REPLICAS,
        required=True,
    ),
    Int(
        "targetLagPerReplica",
        "target_lag_per_replica",
        "Records of the router group's lag on the input topic that one replica may have: "
        "replicas = ceil(lag / target), within min, max and the partition count.",
        DEFAULT_TARGET_LAG,
        1,
        MAX_TARGET_LAG,
    ),
    Int(
        "scaleUpStabilizationSeconds",
        "scale_up_stabilization_seconds",
        "Scale up only to the lowest count recommended over this window.",
        DEFAULT_SCALE_UP_STABILIZATION,
        0,
        MAX_STABILIZATION,
    ),
    Int(
        "scaleDownStabilizationSeconds",
        "scale_down_stabilization_seconds",
        "Scale down only to the highest count recommended over this window.",
        DEFAULT_SCALE_DOWN_STABILIZATION,
        0,
        MAX_STABILIZATION,
    ),
    Bool(
        "growPartitions",
        "grow_partitions",
        "When the lag asks for more replicas than the input topic has partitions (over the scale-up "
        "window), grow the pipeline's topics (doubling, at most maxReplicas) so the router can scale. "
        "Needs spec.kafka.topics.manage. Kafka cannot shrink a topic back.",
        False,
    ),
)
LOGGER_FIELDS: tuple[Field, ...] = (
    Str("level", "level", "log.consumer.level of the {which} log sink.", default="INFO", enum=LOG_LEVELS),
    Str(
        "expression",
        "expression",
        "log.consumer.expression (SpEL) of the {which} log sink.",
        default="payload",
        min_length=1,
        max_length=1024,
    ),
)
KIND_FIELDS: dict[Kind, tuple[Field, ...]] = {"time": TIME_FIELDS, "router": ROUTER_FIELDS, "logger": LOGGER_FIELDS}

PAUSED = Bool(
    "paused",
    "paused",
    "Scale the time source to zero, let the router drain the input topic, then scale the router and loggers "
    "to zero. false restores every count.",
    False,
)
ROLLOUT_FIELDS: tuple[Field, ...] = (
    Int(
        "progressDeadlineSeconds",
        "progress_deadline_seconds",
        "Seconds a Deployment rollout may make no progress before the pipeline is Degraded (ProgressDeadlineExceeded).",
        DEFAULT_PROGRESS_DEADLINE,
        1,
        MAX_PROGRESS_DEADLINE,
    ),
    Int(
        "pauseDrainSeconds",
        "pause_drain_seconds",
        "When pausing: longest wait for the router to drain the input topic after the time source stopped.",
        DEFAULT_PAUSE_DRAIN_SECONDS,
        0,
        MAX_PAUSE_DRAIN_SECONDS,
    ),
    Bool(
        "autoRollback",
        "auto_rollback",
        "Judge every rollout by the data over spec.rollout.verifySeconds once its pods are Ready (nothing lost, "
        "nothing misrouted, dead letters within maxDeadLetterRatio) and by the progress deadline; a rollout that "
        "fails returns the apps to the last stable revision (status.rollout.stable; the spec is not edited).",
        False,
    ),
    Int(
        "verifySeconds",
        "verify_seconds",
        "autoRollback: how long the data is watched after the new pods are Ready before the rollout is stable.",
        DEFAULT_VERIFY_SECONDS,
        1,
        MAX_VERIFY_SECONDS,
    ),
    Number(
        "maxDeadLetterRatio",
        "max_dead_letter_ratio",
        "autoRollback: the most dead-lettered records per record consumed over the window (0 to 1).",
        DEFAULT_MAX_DEAD_LETTER_RATIO,
        0.0,
        1.0,
    ),
    Str(
        "strategy",
        "rollout_strategy",
        "How a change to the router's pods rolls out. RollingUpdate: the Deployment's rolling update (with "
        "autoRollback's data checks). Shadow (needs autoRollback): the new router first runs as a shadow on "
        "its own consumer group and shadow topics, its output is compared with the stable router's for the "
        "same input offsets for verifySeconds, and the real router rolls only if they are equal "
        "(status.rollout.shadow).",
        default="RollingUpdate",
        enum=("RollingUpdate", "Shadow"),
    ),
)
SHADOW = "Shadow"
SHADOW_NEEDS_AUTO_ROLLBACK = "Shadow needs spec.rollout.autoRollback: true (the stable revision it compares with)"


# --- the parsed pipeline ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Topics:
    input: str
    even: str
    odd: str
    partitions: int
    replication_factor: int
    manage: bool  # the operator ensures the topics exist
    delete_on_removal: bool  # and deletes them with the pipeline
    config: tuple[tuple[str, str], ...] = ()  # topic-level settings (topicconfig.py), sorted

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
    topics: Topics
    credentials: Credentials | None = None


@dataclass(frozen=True, kw_only=True)
class AppCommon:
    """Fields every app has. env is corev1 EnvVar passed through as-is.

    `pod_template`: the app's own podTemplate, its `resources` filled from
    `spec.<app>.resources` (the short spelling) when given."""

    image: str
    properties: Mapping[str, str]
    env: tuple[Mapping[str, Any], ...]
    pod_template: PodTemplate
    probes: AppProbes


@dataclass(frozen=True, kw_only=True)
class TimeSpec(AppCommon):
    date_format: str
    fixed_delay_seconds: int


@dataclass(frozen=True, kw_only=True)
class Autoscaling:
    mode: str
    min_replicas: int
    max_replicas: int
    target_lag_per_replica: int
    scale_up_stabilization_seconds: int
    scale_down_stabilization_seconds: int
    grow_partitions: bool = False

    @property
    def enforce(self) -> bool:
        return self.mode == AUTOSCALE_ENFORCE


@dataclass(frozen=True, kw_only=True)
class RouterSpec(AppCommon):
    replicas: int
    processing_guarantee: str
    even_prefix: str
    odd_prefix: str
    autoscaling: Autoscaling | None = None


@dataclass(frozen=True, kw_only=True)
class LoggerSpec(AppCommon):
    level: str
    expression: str


KIND_SPECS: dict[Kind, type[AppCommon]] = {"time": TimeSpec, "router": RouterSpec, "logger": LoggerSpec}


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    name: str
    namespace: str
    stream_name: str
    kafka: Kafka
    time: TimeSpec
    router: RouterSpec
    even_logger: LoggerSpec
    odd_logger: LoggerSpec
    pod_template: PodTemplate  # spec.podTemplate (or its older name spec.pod): every app's default
    progress_deadline_seconds: int
    paused: bool
    pause_drain_seconds: int
    auto_rollback: bool = False
    verify_seconds: int = DEFAULT_VERIFY_SECONDS
    max_dead_letter_ratio: float = DEFAULT_MAX_DEAD_LETTER_RATIO
    rollout_strategy: str = "RollingUpdate"
    uid: str | None = None
    generation: int | None = None
    # Not from the spec: apps (spec fields) an operator action holds at zero replicas for a
    # while, e.g. every consumer of the stream's group while a reset of its offsets runs.
    held: frozenset[str] = frozenset()

    @classmethod
    def from_resource(cls, obj: Mapping[str, Any]) -> Pipeline:
        # A copy of only what _parse reads: the status and managedFields are most of a
        # served object, and copying them was most of the parse's cost.
        meta = obj.get("metadata")
        if isinstance(meta, Mapping):
            meta = {k: meta[k] for k in _METADATA_READ if k in meta}
        return _parse(copy.deepcopy({"metadata": meta, "spec": obj.get("spec")}))

    def app(self, c: Component) -> AppCommon:
        """The spec of one app (components.COMPONENTS)."""
        spec: AppCommon = getattr(self, c.attr)
        return spec

    def pod_template_for(self, c: Component) -> PodTemplate:
        """The pod settings app `c` runs with: its podTemplate over the pipeline's, then its defaults."""
        return effective(self.pod_template, self.app(c).pod_template, c.resources)


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


def _properties(obj: dict[str, Any], path: str) -> dict[str, str]:
    props = _obj(obj.get("properties"), f"{path}.properties")
    out = {}
    for key, value in props.items():
        kpath = f"{path}.properties[{key}]"
        if not isinstance(key, str) or not PROPERTY_KEY_RE.fullmatch(key):
            raise PipelineError(kpath, "property names are letters, digits, '.', '-', '_', '[', ']'")
        if len(key) > MAX_PROPERTY_KEY_LENGTH:
            raise PipelineError(kpath, f"property names are at most {MAX_PROPERTY_KEY_LENGTH} characters")
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
        if not ENV_NAME_RE.fullmatch(name):
            raise PipelineError(f"{vpath}.name", f"invalid environment variable name {name!r}")
        if name in RESERVED_ENV:
            raise PipelineError(f"{vpath}.name", f"{name} is set by the operator")
        if name in seen:
            raise PipelineError(f"{vpath}.name", f"duplicate environment variable {name}")
        seen.add(name)
    return tuple(env)


_APP_FIELDS = {"image", "resources", "properties", "env", "podTemplate", "probes"}
_SPEC_FIELDS = {STREAM_NAME.name, "kafka", "pod", "podTemplate", "rollout", PAUSED.name} | {
    c.spec_field for c in COMPONENTS
}
RESOURCES_TWICE = "set resources here or in podTemplate.resources, not both"
POD_TWICE = "spec.pod is the older name of spec.podTemplate: set only spec.podTemplate"


_METADATA_READ = ("name", "namespace", "uid", "generation")  # what _parse reads of metadata


def _parse(obj: dict[str, Any]) -> Pipeline:
    meta = _obj(obj.get("metadata"), "metadata")
    name = _name(meta)
    spec = _obj(obj.get("spec"), "spec")
    _known(spec, "spec", _SPEC_FIELDS)
    stream_name = _stream_name(spec, name)
    kafka = _kafka(spec)
    apps: dict[str, Any] = {c.attr: _app(spec, c) for c in COMPONENTS}  # time=TimeSpec(...), ...
    pod_template = _pipeline_pod_template(spec)
    ro = _obj(spec.get("rollout"), "spec.rollout")
    _known(ro, "spec.rollout", names(ROLLOUT_FIELDS))
    pipeline = Pipeline(
        name=name,
        namespace=meta.get("namespace") or "default",
        stream_name=stream_name,
        kafka=kafka,
        **apps,
        pod_template=pod_template,
        paused=PAUSED.parse(spec, "spec"),
        **parse_all(ROLLOUT_FIELDS, ro, "spec.rollout"),
        uid=meta.get("uid"),
        generation=meta.get("generation"),
    )
    _check_reserved(pipeline)
    if pipeline.rollout_strategy == SHADOW and not pipeline.auto_rollback:
        raise PipelineError("spec.rollout.strategy", SHADOW_NEEDS_AUTO_ROLLBACK)
    return pipeline


def _name(meta: dict[str, Any]) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineError("metadata.name", "required")
    if len(name) > MAX_NAME_LENGTH:
        raise PipelineError("metadata.name", f"must be at most {MAX_NAME_LENGTH} characters")
    return name


def _stream_name(spec: dict[str, Any], name: str) -> str:
    stream_name = STREAM_NAME.parse_optional(spec, "spec")
    if stream_name is not None:
        return stream_name
    if STREAM_NAME.problem(name) is not None:  # the default is metadata.name, if it is a valid stream name
        raise PipelineError(
            "spec.streamName",
            "required when metadata.name is not a valid stream name (a letter, then letters, digits and '-')",
        )
    return name


def _kafka(spec: dict[str, Any]) -> Kafka:
    kobj = _obj(spec.get("kafka"), "spec.kafka")
    if spec.get("kafka") is None:
        raise PipelineError("spec.kafka", "required")
    _known(kobj, "spec.kafka", {"brokers", "topics", "credentials"})
    brokers = kobj.get("brokers")
    if not isinstance(brokers, list) or not brokers:
        raise PipelineError("spec.kafka.brokers", "at least one host:port is required")
    for i, b in enumerate(brokers):
        if not isinstance(b, str) or not BROKER_RE.fullmatch(b):
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
    _known(tobj, p, names(TOPIC_FIELDS) | {"config"})
    topics = Topics(**parse_all(TOPIC_FIELDS, tobj, p), config=topicconfig.parse(tobj.get("config"), f"{p}.config"))
    if len({topics.input, topics.even, topics.odd}) != len(TOPIC_NAMES):
        raise PipelineError(p, "input, even and odd must be three distinct topics")
    min_isr = dict(topics.config).get(topicconfig.MIN_INSYNC_REPLICAS)
    if min_isr is not None and int(min_isr) > topics.replication_factor:
        raise PipelineError(f"{p}.config.{topicconfig.MIN_INSYNC_REPLICAS}", MIN_ISR_ABOVE_RF)
    return topics


def _app(spec: dict[str, Any], c: Component) -> AppCommon:
    """One app's section of the spec (`spec.time`, `spec.router`, ...)."""
    p = f"spec.{c.spec_field}"
    obj = _obj(spec.get(c.spec_field), p)
    extra = KIND_FIELDS[c.kind]
    nested = {"autoscaling": _autoscaling(obj, p)} if c.kind == "router" else {}
    _known(obj, p, _APP_FIELDS | names(extra) | set(nested))
    image = IMAGE.with_default(c.default_image).parse(obj, p)
    resources = parse_resources(obj.get("resources"), f"{p}.resources")
    template = parse_pod_template(obj.get("podTemplate"), f"{p}.podTemplate")
    if resources is not None:
        if template.resources is not None:
            raise PipelineError(f"{p}.podTemplate.resources", RESOURCES_TWICE)
        template = replace(template, resources=resources)
    return KIND_SPECS[c.kind](
        image=image,
        properties=_properties(obj, p),
        env=_env(obj, p),
        pod_template=template,
        probes=parse_probes(obj.get("probes"), f"{p}.probes", c),
        **parse_all(extra, obj, p),
        **nested,
    )


def _autoscaling(router: dict[str, Any], path: str) -> Autoscaling | None:
    if router.get("autoscaling") is None:
        return None
    p = f"{path}.autoscaling"
    obj = _obj(router["autoscaling"], p)
    _known(obj, p, names(AUTOSCALING_FIELDS))
    a = Autoscaling(**parse_all(AUTOSCALING_FIELDS, obj, p))
    if a.min_replicas > a.max_replicas:
        raise PipelineError(f"{p}.minReplicas", AUTOSCALING_BOUNDS_MESSAGE)
    return a


AUTOSCALING_BOUNDS_MESSAGE = "must not be greater than maxReplicas"


def _pipeline_pod_template(spec: dict[str, Any]) -> PodTemplate:
    """spec.podTemplate, or spec.pod (its older name, five of its fields); not both."""
    if spec.get("pod") is not None:
        if spec.get("podTemplate") is not None:
            raise PipelineError("spec.pod", POD_TWICE)
        return parse_pod_template(spec["pod"], "spec.pod", LEGACY_POD_FIELDS)
    return parse_pod_template(spec.get("podTemplate"), "spec.podTemplate")


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
    _known(c, p, names(CREDENTIAL_FIELDS))
    credentials = Credentials(**parse_all(CREDENTIAL_FIELDS, c, p))
    if credentials.ca_secret_name is not None:
        if credentials.protocol != "SASL_SSL":
            raise PipelineError(f"{p}.caSecretName", "a CA is only used with protocol SASL_SSL")
    elif c.get("caKey") not in (None, CA_KEY_DEFAULT):
        raise PipelineError(f"{p}.caKey", "needs caSecretName")
    return credentials
