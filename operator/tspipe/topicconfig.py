"""Topic-level Kafka settings a pipeline may set (`spec.kafka.topics.config`), declared
once: the parser, the CRD's schema and the values sent to the broker come from here.

An allow-list, as Strimzi's KafkaTopic has none but its users ask for one: each key is a
setting that is safe to change on a running topic and that a stream like this one has a
reason to tune. Anything else is refused by the API server (kubectl's strict field
validation names the unknown key) and by the parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import PipelineError

INT64_MAX = 2**63 - 1  # Kafka's longs; the schema states no maximum (the API server refuses 2**63-1 as one)
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Setting:
    key: str  # Kafka's own name
    description: str
    kind: str  # "integer" (bounded), "string" (an enum) or "boolean"
    minimum: int = 0
    maximum: int = INT64_MAX
    enum: tuple[str, ...] = ()

    def parse(self, value: Any, path: str) -> str:
        """The broker's string form of a valid value; PipelineError naming the key otherwise."""
        where = f"{path}.{self.key}"
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise PipelineError(where, "must be an integer")
            if not self.minimum <= value <= self.maximum:
                raise PipelineError(where, f"must be between {self.minimum} and {self.maximum}, got {value}")
            return str(value)
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise PipelineError(where, "must be a boolean")
            return "true" if value else "false"
        if not isinstance(value, str) or value not in self.enum:
            raise PipelineError(where, f"must be one of {', '.join(self.enum)}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "description": self.description}
        if self.kind == "integer":
            out.update(format="int64", minimum=self.minimum)
            if self.maximum < INT64_MAX:
                out["maximum"] = self.maximum
        elif self.kind == "string":
            out["enum"] = list(self.enum)
        return out


MIN_INSYNC_REPLICAS = "min.insync.replicas"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        MIN_INSYNC_REPLICAS,
        "Replicas that must have a record before an acks=all write (the router's) succeeds; at most "
        "replicationFactor. 2 with a replication factor of 3 survives one broker down without losing an "
        "acknowledged record.",
        "integer",
        minimum=1,
        maximum=INT32_MAX,
    ),
    Setting(
        "retention.ms",
        "How long records are kept (-1: forever). The router's input must outlive its longest pause.",
        "integer",
        minimum=-1,
    ),
    Setting("retention.bytes", "Bytes kept per partition before old segments go (-1: no limit).", "integer", -1),
    Setting(
        "cleanup.policy",
        "Only delete: this pipeline's records have no keys, and a compacted topic refuses keyless records.",
        "string",
        enum=("delete",),
    ),
    Setting(
        "compression.type",
        "How the broker stores records (producer: as the producer sent them).",
        "string",
        enum=("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
    ),
    Setting("max.message.bytes", "The largest record batch the topic accepts.", "integer", 0, INT32_MAX),
    Setting("segment.ms", "Roll a new log segment after this long (retention acts on whole segments).", "integer", 1),
    Setting(
        "message.timestamp.type",
        "The record's timestamp: the producer's (CreateTime) or the broker's (LogAppendTime).",
        "string",
        enum=("CreateTime", "LogAppendTime"),
    ),
    Setting(
        "unclean.leader.election.enable",
        "Let an out-of-sync replica become leader when no in-sync one is left (available, but loses records).",
        "boolean",
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}


def parse(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    """The settings as (key, broker value) pairs, sorted by key (hashable: part of the
    topics' fingerprint)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise PipelineError(path, "must be an object")
    out = []
    for key, v in value.items():
        setting = BY_KEY.get(key)
        if setting is None:
            raise PipelineError(f"{path}.{key}", f"not a supported topic setting (supported: {', '.join(BY_KEY)})")
        if v is None:
            continue  # a null is an absent key, as on the API server
        out.append((key, setting.parse(v, path)))
    return tuple(sorted(out))


def schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Topic-level settings of the managed topics (Kafka's names), applied when the operator "
        "creates them and put back when they drift. Keys the spec does not set are left as the broker has them.",
        "properties": {s.key: s.schema() for s in SETTINGS},
    }


def cel_key(key: str) -> str:
    """A property name as CEL spells it on the API server (dots are escaped)."""
    return key.replace(".", "__dot__")
