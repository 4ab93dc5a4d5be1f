"""The status shape, declared once: every key the operator writes under `.status`, with
its type, format, allowed values and what it tells a user.

The CRD's status schema is generated from these declarations (crd.status_schema), as the
spec's is from fields.py, so a key the code writes cannot be missing from the schema (the
API server would prune it silently; tests/operator/test_status_schema_units.py checks
each feature's status against it). status.py writes the top-level keys by their `Key`
names. The vocabulary inside the values (phases, condition types, reasons) is
conditions.py's; the states of one feature are its pure module's (pause, rollback,
shadow, replay), named here as each field's enum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from . import replay, rollback, shadow
from .components import COMPONENTS
from .conditions import PHASES, conditions_description, phase_description
from .pause import DRAIN_CONFIRMED, DRAIN_SKIPPED, DRAIN_TIMED_OUT

Type = Literal["string", "integer", "number", "boolean", "object", "array"]
Format = Literal["", "int32", "int64", "date-time"]


@dataclass(frozen=True)
class Field:
    """One status value: an object's property (`name`), an array's items or a map's
    values (no name). `properties` for an object with known keys, `values` for a map
    (additionalProperties), `items` for an array; `map_keys` makes a list a map keyed by
    them (x-kubernetes-list-type: map), `opaque` keeps whatever is stored (a spec copy)."""

    name: str
    type: Type
    description: str = ""
    format: Format = ""
    enum: tuple[str, ...] = ()
    properties: tuple[Field, ...] = ()
    items: Field | None = None
    values: Field | None = None
    required: tuple[str, ...] = ()
    map_keys: tuple[str, ...] = ()
    opaque: bool = False

    def schema(self) -> dict[str, Any]:
        """The OpenAPI v3 schema of this value (structural, as the API server requires)."""
        out: dict[str, Any] = {"type": self.type}
        if self.opaque:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if self.format:
            out["format"] = self.format
        if self.map_keys:
            out["x-kubernetes-list-type"] = "map"
            out["x-kubernetes-list-map-keys"] = list(self.map_keys)
        if self.required:
            out["required"] = list(self.required)
        if self.enum:
            out["enum"] = list(self.enum)
        if self.description:
            out["description"] = self.description
        if self.items is not None:
            out["items"] = self.items.schema()
        if self.values is not None:
            out["additionalProperties"] = self.values.schema()
        if self.properties:
            out["properties"] = {f.name: f.schema() for f in self.properties}
        return out


def string(name: str = "", description: str = "", enum: tuple[str, ...] = ()) -> Field:
    return Field(name, "string", description, enum=enum)


def timestamp(name: str, description: str = "") -> Field:
    """An RFC 3339 time (stamps.format_time)."""
    return Field(name, "string", description, format="date-time")


def int32(name: str = "", description: str = "") -> Field:
    return Field(name, "integer", description, format="int32")


def int64(name: str = "", description: str = "") -> Field:
    return Field(name, "integer", description, format="int64")


def obj(name: str, description: str, *properties: Field, required: tuple[str, ...] = ()) -> Field:
    return Field(name, "object", description, properties=properties, required=required)


def array(name: str, description: str, items: Field) -> Field:
    return Field(name, "array", description, items=items)


def map_of(name: str, description: str, values: Field) -> Field:
    return Field(name, "object", description, values=values)


class Key:
    """The status's top-level keys, as plain strings (the status is compared with what the
    API server returns and written as JSON and YAML, where an enum member is no string)."""

    OBSERVED_GENERATION: Final = "observedGeneration"
    PHASE: Final = "phase"
    READY_COMPONENTS: Final = "readyComponents"
    REPLICAS: Final = "replicas"
    SELECTOR: Final = "selector"
    TOPICS: Final = "topics"
    PAUSE: Final = "pause"
    AUTOSCALING: Final = "autoscaling"
    ROLLOUT: Final = "rollout"
    OFFSET_RESET: Final = "offsetReset"
    HISTORY: Final = "history"
    SPEC_DIGEST: Final = "specDigest"
    CONDITIONS: Final = "conditions"
    COMPONENTS: Final = "components"


_OFFSETS = array("", "", int64())
# Per input partition, a committed offset before and after a reset (status.offsetReset, history).
_MOVES = array(
    "partitions",
    "Per input partition, the group's committed offset before (-1: none) and after.",
    obj("", "", int64("partition", "The partition."), int64("from", "Before."), int64("to", "After.")),
)

CONDITION = obj(
    "",
    "",
    string("type"),
    string("status", enum=("True", "False", "Unknown")),
    string("reason"),
    string("message"),
    timestamp("lastTransitionTime"),
    int64("observedGeneration"),
    required=("type", "status"),
)

_POD_TROUBLE = (int32("pods"), string("reason"), string("message"))
COMPONENT = obj(
    "",
    "",
    string("deployment"),
    string("image"),
    int32("desiredReplicas"),
    int32("updatedReplicas"),
    int32("readyReplicas"),
    int32("availableReplicas"),
    Field("ready", "boolean"),
    obj("unschedulable", "Pods the scheduler cannot place (their PodScheduled=False condition).", *_POD_TROUBLE),
    obj(
        "notReady",
        "Scheduled pods that are not Ready for a reason to act on: the kubelet's (an image "
        "it cannot pull, a crash loop, ...), or ReadinessProbeFailing once the probe had its full chance.",
        *_POD_TROUBLE,
    ),
)

_ROLLOUT_OFFSETS = map_of(
    "start",
    "Per-partition offsets: committed (the router group's, on the input) and the ends of even, odd and deadLetter.",
    _OFFSETS,
)
_SHADOW_WHERE = (string("group"), array("topics", "", string()))

SHADOW = obj(
    "shadow",
    "spec.rollout.strategy Shadow: the shadow release of the last change to the router.",
    int64("generation", "The spec generation it runs."),
    string("templates", "Digest of that generation's pod templates."),
    string(
        "state",
        "Starting (topics and offsets), Running (its Deployment), Removing (a verdict: "
        "its Deployment goes, then its topics and group), Done; Skipped: not run (the reason says why).",
        enum=(shadow.STARTING, shadow.RUNNING, shadow.REMOVING, shadow.DONE, shadow.SKIPPED),
    ),
    string(
        "verdict",
        "NotCompared: removed unjudged, the router rolled with the rolling strategy (the reason says why).",
        enum=(shadow.PROMOTED, shadow.SHADOW_REJECTED, shadow.SUPERSEDED, shadow.NOT_COMPARED),
    ),
    string("reason"),
    string("message"),
    timestamp("time"),
    timestamp("since"),
    timestamp("readyAt"),
    int64("outputsAtReady", "Its topics' end offsets, summed, when the wait for its group's commits began."),
    timestamp(
        "heldSince",
        "Since when it has been at zero replicas with the router (paused): its deadline and window wait.",
    ),
    string("deployment"),
    *_SHADOW_WHERE,
    array(
        "start",
        "The offsets its group started at, per input partition (-1: none).",
        int64(),
    ),
    obj(
        "window",
        "",
        timestamp("opened"),
        int64("seconds", "spec.rollout.verifySeconds when it opened."),
        map_of("start", "The stable router's offsets when it opened (as status.rollout.window).", _OFFSETS),
    ),
    obj(
        "load",
        "What the shadow cost the broker up to its verdict.",
        int64("consumed", "Input records its group committed since its start."),
        int64("written", "Offsets its topics gained: its records (with exactly-once, transaction markers too)."),
        int64("read", "Records the operator read back to compare."),
    ),
    int64("compared", "Input records whose outputs were compared."),
    int64("differing", "Of those, the ones whose outputs differ."),
    array(
        "partitions",
        "Per input partition compared: its records compared and differing.",
        obj(
            "",
            "",
            int64("partition", "Input partition."),
            int64("compared"),
            int64("differing"),
        ),
    ),
    array(
        "differences",
        "The first differences: the input record and what each router wrote for it.",
        obj(
            "",
            "",
            int64("partition", "Input partition."),
            int64("offset", "Input offset."),
            string("stable"),
            string("shadow"),
            string("why"),
        ),
    ),
    array(
        "leftover",
        "Superseded shadows' topics and groups, deleted with this one's.",
        obj("", "", *_SHADOW_WHERE),
    ),
)

ROLLOUT = obj(
    Key.ROLLOUT,
    "spec.rollout.autoRollback: the last rollout attempt and its verdict.",
    int64("generation", "The spec generation the verdict is about."),
    string("templates", "Digest of the pod templates of that generation."),
    string(
        "verdict",
        enum=(rollback.VERIFYING, rollback.STABLE, rollback.ROLLED_BACK, rollback.FAILED, shadow.SHADOW_REJECTED),
    ),
    string("reason"),
    string("message"),
    timestamp("time", "When the verdict was last set."),
    timestamp(
        "readyAt",
        "When every app of the attempt was first available (the wait for the router "
        "group's first commits counts from here).",
    ),
    int64("outputsAtReady", "The output topics' end offsets, summed, when the wait for commits began."),
    obj(
        "window",
        "The verification window, while one is open.",
        timestamp("opened"),
        int64("seconds", "spec.rollout.verifySeconds when it opened."),
        _ROLLOUT_OFFSETS,
        map_of(
            "counters",
            "With Kafka credentials: each Ready router pod's own counters when it opened, by pod name.",
            obj("", "", *(int64(k) for k in rollback.COUNTER_KEYS)),
        ),
    ),
    obj(
        "checks",
        "What the window's data showed.",
        string(
            "source",
            "broker: the operator read the topics' offsets and sampled even and odd; "
            "routerCounters (Kafka credentials): the router pods' own counters, no sampling.",
            enum=(rollback.BROKER, rollback.ROUTER_COUNTERS),
        ),
        int64("consumed", "Records the router group committed on the input."),
        int64("routedEven", "Records added to the even topic."),
        int64("routedOdd", "Records added to the odd topic."),
        int64("deadLettered", "Records added to the dead-letter topic."),
        int64("lost", "Committed records that reached no output."),
        int64("sampled", "Records of even and odd read back."),
        int64("misrouted", "Sampled records on the wrong topic."),
        int64("pods", "routerCounters: router pods whose counters were read."),
        int64("lag", "routerCounters: the records of lag the router pods reported."),
        Field("deadLetterRatio", "number"),
    ),
    SHADOW,
    obj(
        "stable",
        "The last stable revision, what a failed attempt returns to.",
        int64("generation", "Its spec generation."),
        string("templates"),
        timestamp("time"),
        Field("spec", "object", opaque=True),
    ),
)

OFFSET_RESET = obj(
    Key.OFFSET_RESET,
    "The last tspipe.io/reset-offsets request and its outcome.",
    string("request", "The annotation's value."),
    string(
        "state",
        f"{replay.STOPPING}: the router is held at zero until it stopped "
        "(and, with Kafka credentials, until the reset Job finished); "
        f"{replay.COMPLETED}: the offsets were set; {replay.REJECTED}: refused, nothing changed; "
        f"{replay.CANCELLED}: the annotation was removed before the offsets were set.",
        enum=(replay.STOPPING, replay.COMPLETED, replay.REJECTED, replay.CANCELLED),
    ),
    string("reason"),
    string("message"),
    timestamp("since", "When the router was first held."),
    timestamp("time", "When it completed or was refused."),
    string("group"),
    string("topic"),
    _MOVES,
    string("job", "With Kafka credentials: the one-shot Job of the router's image that set the offsets."),
    string(
        "pending",
        "A new tspipe.io/reset-offsets value given while the reset Job runs: it waits for that Job's result "
        "to be recorded, then runs as a request of its own.",
    ),
)

STATUS = obj(
    "",
    "",
    int64(
        Key.OBSERVED_GENERATION,
        "The spec generation this status describes (below metadata.generation until a change is reconciled).",
    ),
    string(Key.PHASE, phase_description(), enum=tuple(p.value for p in PHASES)),
    string(Key.READY_COMPONENTS, "Components whose rollout is complete and available, of all, as ready/total."),
    int32(Key.REPLICAS, "Router pods (scale subresource)."),
    string(Key.SELECTOR, "Label selector of the router pods (scale subresource)."),
    array(
        Key.TOPICS,
        "spec.kafka.topics.manage: each topic the pipeline uses (role, name) and what the operator found or did.",
        obj(
            "",
            "",
            string("role"),
            string("name"),
            string("state"),
            string("message"),
            int32("partitions"),
            int32("replicationFactor"),
        ),
    ),
    obj(
        Key.PAUSE,
        "The current pause (spec.paused): when the source stopped and how the drain ended.",
        timestamp("sourceStoppedAt"),
        string(
            "drain",
            "Confirmed: the router's group had no lag. TimedOut: "
            "spec.rollout.pauseDrainSeconds passed first. Skipped: the router had no replicas. "
            "In the last two, the records left wait in the input topic for the resume.",
            enum=(DRAIN_CONFIRMED, DRAIN_TIMED_OUT, DRAIN_SKIPPED),
        ),
        int64("recordsLeft", "The router group's lag when the drain timed out (if measured)."),
    ),
    obj(
        Key.AUTOSCALING,
        "The lag autoscaler (spec.router.autoscaling), as of the last status write.",
        string("mode"),
        string("source", "Where the lag was read (Kafka)."),
        int64("lag", "The router group's lag on the input topic."),
        int64("partitions", "The input topic's partitions."),
        int64("recommendedReplicas", "What the last lag alone asks for."),
        int64("desiredReplicas", "What the router should have (set in Enforce mode)."),
        int64(
            "partitionsGrownTo",
            "growPartitions: the partition count the operator grew the topics to (a floor over "
            "spec.kafka.topics.partitions from then on).",
        ),
        obj(
            "lastScale",
            "The last change of desiredReplicas and why.",
            timestamp("time"),
            int64("from", "Replicas before."),
            int64("to", "Replicas after."),
            string("why"),
        ),
    ),
    ROLLOUT,
    OFFSET_RESET,
    array(
        Key.HISTORY,
        "The last spec revisions and restarts (tspipe.io/restart), oldest first.",
        obj(
            "",
            "",
            int64("generation"),
            timestamp("time"),
            map_of("images", "Each app's image then, by spec field.", string()),
            array("changed", "The spec fields (dotted paths) that changed since the revision before.", string()),
            array("restarted", "The apps restarted then (tspipe.io/restart), by spec field.", string()),
            obj(
                "offsetReset",
                "An offset reset (tspipe.io/reset-offsets) made then.",
                string("request"),
                string("group"),
                string("topic"),
                _MOVES,
            ),
            obj(
                "shadow",
                "A shadow release's verdict given then (spec.rollout.strategy Shadow).",
                int64("generation", "The generation it ran."),
                string("verdict"),
                string("reason"),
                int64("compared", "Input records compared."),
                int64("differing", "Of those, the ones whose outputs differ."),
            ),
        ),
    ),
    map_of(
        Key.SPEC_DIGEST,
        "Per-field hashes of the last seen spec, by field path: the next revision's entry in "
        "status.history names the fields whose hash changed.",
        string(),
    ),
    Field(
        Key.CONDITIONS,
        "array",
        conditions_description(),
        items=CONDITION,
        map_keys=("type",),
    ),
    obj(
        Key.COMPONENTS,
        "Each app's Deployment and its rollout, by spec field.",
        *(Field(c.spec_field, "object", properties=COMPONENT.properties) for c in COMPONENTS),
    ),
)
