"""The TimestampPipeline CustomResourceDefinition, generated from the model's declarations.

One source of truth for defaults, bounds and reserved keys: the scalar fields are the
parser's own (model's Str/Int/Bool declarations, fields.py), the apps come from
components.COMPONENTS, names from names.py. `python -m tspipe.crd`
prints the YAML committed as crds/timestamppipelines.tspipe.io.yaml (a unit test
checks the file is up to date).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

import yaml

from . import fields, podtemplate, probes, replay, rollback, shadow, topicconfig
from . import model as m
from .components import COMPONENTS, Component
from .conditions import PHASES, conditions_description, phase_description
from .names import API_GROUP, API_VERSION, KIND, PLURAL, SHORT_NAMES, SINGULAR
from .pause import DRAIN_CONFIRMED, DRAIN_SKIPPED, DRAIN_TIMED_OUT
from .spring import RESERVED_ENV, canonical_key

_min_isr = topicconfig.cel_key(topicconfig.MIN_INSYNC_REPLICAS)


def _str(desc: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": desc, **kw}


def _cel_list(items: Iterable[str]) -> str:
    return "[" + ", ".join("'" + i + "'" for i in items) + "]"


ENV = {
    "type": "array",
    "description": "Extra environment variables (corev1 EnvVar).",
    "maxItems": 64,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": _str("Variable name.", minLength=1, maxLength=256, pattern=m.ENV_NAME_RE.pattern),
            "value": _str("Value.", maxLength=32768),
            "valueFrom": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "corev1 EnvVarSource.",
            },
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": f"self.all(e, !(e.name in {_cel_list(RESERVED_ENV)}))",
            "message": f"{', '.join(RESERVED_ENV[:-1])} and {RESERVED_ENV[-1]} are set by the operator",
        }
    ],
}


def _properties(c: Component) -> dict[str, Any]:
    reserved = sorted({canonical_key(k) for k in c.reserved_keys})
    return {
        "type": "object",
        "description": "Extra Spring properties for this app, passed as --key=value arguments. "
        "Keys the operator sets from the spec (bindings, brokers, ...) are rejected.",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 4096},
        "x-kubernetes-validations": [
            {
                # A CEL string literal: its backslashes doubled.
                "rule": f"self.all(k, k.size() <= {m.MAX_PROPERTY_KEY_LENGTH} && "
                f"k.matches('{m.PROPERTY_KEY_RE.pattern.replace(chr(92), chr(92) * 2)}'))",
                "message": f"property names are at most {m.MAX_PROPERTY_KEY_LENGTH} of letters, digits, "
                "'.', '-', '_', '[', ']'",
            },
            {
                "rule": f"self.all(k, !(k.lowerAscii().replace('-', '').replace('_', '') in {_cel_list(reserved)}))",
                "message": "must not set a property the operator sets from the spec: " + ", ".join(c.reserved_keys),
            },
        ],
    }


def _resources() -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(podtemplate.KUBE_SCHEMAS["resources"])
    out["description"] = "Container resources: the short spelling of podTemplate.resources (set one, not both)."
    return out


def _app(c: Component) -> dict[str, Any]:
    return {
        "type": "object",
        "default": {},
        "properties": {
            "image": m.IMAGE.with_default(c.default_image).schema(),
            "resources": _resources(),
            "properties": _properties(c),
            "env": ENV,
            "probes": probes.schema(c),
            # `which`: a logger's input, the router output it logs (even or odd).
            **fields.properties(m.KIND_FIELDS[c.kind], which=c.bindings[0].topic),
            **({"autoscaling": AUTOSCALING} if c.kind == "router" else {}),
            "podTemplate": podtemplate.schema(
                "This app's pod settings, over spec.podTemplate's (maps merge key by key, the rest is replaced)."
            ),
        },
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.resources) || !has(self.podTemplate) || !has(self.podTemplate.resources)",
                "message": m.RESOURCES_TWICE,
                "fieldPath": ".podTemplate.resources",
                "reason": "FieldValueForbidden",
            }
        ],
    }


AUTOSCALING = {
    "type": "object",
    "description": "Scale the router on its consumer group's lag (committed offsets against end offsets of "
    "the input topic). Stands aside when a HorizontalPodAutoscaler targets this pipeline.",
    "required": fields.required(m.AUTOSCALING_FIELDS),
    "properties": fields.properties(m.AUTOSCALING_FIELDS),
    "x-kubernetes-validations": [
        {
            "rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            "message": f"spec.router.autoscaling.minReplicas {m.AUTOSCALING_BOUNDS_MESSAGE}",
        }
    ],
}


CREDENTIALS = {
    "type": "object",
    "description": "SASL credentials for every app, by reference: the apps get them from the Secret through "
    "secretKeyRef env vars (and the CA as a mounted file); the operator never reads the Secret.",
    "required": [f.name for f in m.CREDENTIAL_FIELDS if isinstance(f, fields.Str) and f.required],
    "properties": fields.properties(m.CREDENTIAL_FIELDS),
    "x-kubernetes-validations": [
        {
            "rule": "!has(self.caSecretName) || self.protocol == 'SASL_SSL'",
            "message": "spec.kafka.credentials.caSecretName: a CA is only used with protocol SASL_SSL",
        }
    ],
}


def spec_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["kafka"],
        "properties": {
            m.STREAM_NAME.name: m.STREAM_NAME.schema(),
            "kafka": {
                "type": "object",
                "required": ["brokers"],
                "properties": {
                    "brokers": {
                        "type": "array",
                        "description": "Kafka bootstrap servers, each host:port.",
                        "minItems": 1,
                        "maxItems": 64,
                        "x-kubernetes-list-type": "set",
                        "items": _str("host:port", maxLength=261, pattern=m.BROKER_RE.pattern),
                    },
                    "topics": {
                        "type": "object",
                        # Written out in full: the API server checks a default against the
                        # CEL rule below before nested defaults apply.
                        "default": {f.name: f.default for f in m.TOPIC_FIELDS},
                        "properties": {**fields.properties(m.TOPIC_FIELDS), "config": topicconfig.schema()},
                        "x-kubernetes-validations": [
                            {
                                "rule": "self.input != self.even && self.input != self.odd && self.even != self.odd",
                                "message": "spec.kafka.topics: input, even and odd must be three distinct topics",
                            },
                            {
                                "rule": f"!has(self.config) || !has(self.config.{_min_isr}) || "
                                f"self.config.{_min_isr} <= self.replicationFactor",
                                "message": f"spec.kafka.topics.config.{topicconfig.MIN_INSYNC_REPLICAS}: "
                                + m.MIN_ISR_ABOVE_RF,
                            },
                        ],
                    },
                    "credentials": CREDENTIALS,
                },
                "x-kubernetes-validations": [
                    {
                        "rule": "!has(self.credentials) || !has(self.topics) || !self.topics.manage",
                        "message": "spec.kafka.topics.manage must be false when spec.kafka.credentials is set: the "
                        "operator never reads the Secret, so it cannot manage topics on a SASL broker",
                    }
                ],
            },
            m.PAUSED.name: m.PAUSED.schema(),
            "rollout": {
                "type": "object",
                "properties": fields.properties(m.ROLLOUT_FIELDS),
                # The model refuses it too (InvalidSpec), for an object stored before the rule.
                "x-kubernetes-validations": [
                    {
                        "rule": f"!has(self.strategy) || self.strategy != '{m.SHADOW}' || "
                        "(has(self.autoRollback) && self.autoRollback)",
                        "message": f"spec.rollout.strategy: {m.SHADOW_NEEDS_AUTO_ROLLBACK}",
                        "fieldPath": ".strategy",
                    }
                ],
            },
            **{c.spec_field: _app(c) for c in COMPONENTS},
            "podTemplate": podtemplate.schema(
                "Pod settings of every app; each app's own podTemplate overrides them field by field."
            ),
            "pod": podtemplate.schema(
                "Deprecated: the older name of podTemplate, with five of its fields.", podtemplate.LEGACY_POD_FIELDS
            ),
        },
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.pod) || !has(self.podTemplate)",
                "message": m.POD_TWICE,
                "fieldPath": ".pod",
                "reason": "FieldValueForbidden",
            }
        ],
    }


def _int64(desc: str) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "description": desc}


def _condition() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    }


def _component_status() -> dict[str, Any]:
    n = {"type": "integer", "format": "int32"}
    return {
        "type": "object",
        "properties": {
            "deployment": {"type": "string"},
            "image": {"type": "string"},
            "desiredReplicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "ready": {"type": "boolean"},
            "unschedulable": {
                "type": "object",
                "description": "Pods the scheduler cannot place (their PodScheduled=False condition).",
                "properties": {"pods": n, "reason": {"type": "string"}, "message": {"type": "string"}},
            },
            "notReady": {
                "type": "object",
                "description": "Scheduled pods that are not Ready for a reason to act on: the kubelet's (an image "
                "it cannot pull, a crash loop, ...), or ReadinessProbeFailing once the probe had its full chance.",
                "properties": {"pods": n, "reason": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    }


def _rollout_status() -> dict[str, Any]:
    s = {"type": "string"}
    offsets = {
        "type": "object",
        "description": "Per-partition offsets: committed (the router group's, on the input) and the ends of "
        "even, odd and deadLetter.",
        "additionalProperties": {"type": "array", "items": {"type": "integer", "format": "int64"}},
    }
    return {
        "type": "object",
        "description": "spec.rollout.autoRollback: the last rollout attempt and its verdict.",
        "properties": {
            "generation": _int64("The spec generation the verdict is about."),
            "templates": {"type": "string", "description": "Digest of the pod templates of that generation."},
            "verdict": {
                "type": "string",
                "enum": [
                    rollback.VERIFYING,
                    rollback.STABLE,
                    rollback.ROLLED_BACK,
                    rollback.FAILED,
                    shadow.SHADOW_REJECTED,
                ],
            },
            "reason": s,
            "message": s,
            "time": {"type": "string", "format": "date-time", "description": "When the verdict was last set."},
            "readyAt": {
                "type": "string",
                "format": "date-time",
                "description": "When every app of the attempt was first available (the wait for the router "
                "group's first commits counts from here).",
            },
            "outputsAtReady": _int64("The output topics' end offsets, summed, when the wait for commits began."),
            "window": {
                "type": "object",
                "description": "The verification window, while one is open.",
                "properties": {
                    "opened": {"type": "string", "format": "date-time"},
                    "seconds": _int64("spec.rollout.verifySeconds when it opened."),
                    "start": offsets,
                    "counters": {
                        "type": "object",
                        "description": "With Kafka credentials: each Ready router pod's own counters when it "
                        "opened, by pod name.",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {k: {"type": "integer", "format": "int64"} for k in rollback.COUNTER_KEYS},
                        },
                    },
                },
            },
            "checks": {
                "type": "object",
                "description": "What the window's data showed.",
                "properties": {
                    "source": {
                        "type": "string",
                        "enum": [rollback.BROKER, rollback.ROUTER_COUNTERS],
                        "description": "broker: the operator read the topics' offsets and sampled even and odd; "
                        "routerCounters (Kafka credentials): the router pods' own counters, no sampling.",
                    },
                    **{
                        k: _int64(d)
                        for k, d in (
                            ("consumed", "Records the router group committed on the input."),
                            ("routedEven", "Records added to the even topic."),
                            ("routedOdd", "Records added to the odd topic."),
                            ("deadLettered", "Records added to the dead-letter topic."),
                            ("lost", "Committed records that reached no output."),
                            ("sampled", "Records of even and odd read back."),
                            ("misrouted", "Sampled records on the wrong topic."),
                            ("pods", "routerCounters: router pods whose counters were read."),
                            ("lag", "routerCounters: the records of lag the router pods reported."),
                        )
                    },
                    "deadLetterRatio": {"type": "number"},
                },
            },
            "shadow": _shadow_status(),
            "stable": {
                "type": "object",
                "description": "The last stable revision, what a failed attempt returns to.",
                "properties": {
                    "generation": _int64("Its spec generation."),
                    "templates": s,
                    "time": {"type": "string", "format": "date-time"},
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
        },
    }


def _shadow_status() -> dict[str, Any]:
    s = {"type": "string"}
    t = {"type": "string", "format": "date-time"}
    offsets = {"type": "array", "items": {"type": "integer", "format": "int64"}}
    where = {"group": s, "topics": {"type": "array", "items": s}}
    return {
        "type": "object",
        "description": "spec.rollout.strategy Shadow: the shadow release of the last change to the router.",
        "properties": {
            "generation": _int64("The spec generation it runs."),
            "templates": {"type": "string", "description": "Digest of that generation's pod templates."},
            "state": {
                "type": "string",
                "enum": [shadow.STARTING, shadow.RUNNING, shadow.REMOVING, shadow.DONE, shadow.SKIPPED],
                "description": "Starting (topics and offsets), Running (its Deployment), Removing (a verdict: "
                "its Deployment goes, then its topics and group), Done; Skipped: not run (the reason says why).",
            },
            "verdict": {"type": "string", "enum": [shadow.PROMOTED, shadow.SHADOW_REJECTED, shadow.SUPERSEDED]},
            "reason": s,
            "message": s,
            "time": t,
            "since": t,
            "readyAt": t,
            "deployment": s,
            **where,
            "start": {**offsets, "description": "The offsets its group started at, per input partition (-1: none)."},
            "window": {
                "type": "object",
                "properties": {
                    "opened": t,
                    "seconds": _int64("spec.rollout.verifySeconds when it opened."),
                    "start": {
                        "type": "object",
                        "description": "The stable router's offsets when it opened (as status.rollout.window).",
                        "additionalProperties": offsets,
                    },
                },
            },
            "load": {
                "type": "object",
                "description": "What the shadow cost the broker up to its verdict.",
                "properties": {
                    "consumed": _int64("Input records its group committed since its start."),
                    "written": _int64(
                        "Offsets its topics gained: its records (with exactly-once, transaction markers too)."
                    ),
                    "read": _int64("Records the operator read back to compare."),
                },
            },
            "compared": _int64("Input records whose outputs were compared."),
            "differing": _int64("Of those, the ones whose outputs differ."),
            "differences": {
                "type": "array",
                "description": "The first differences: the input record and what each router wrote for it.",
                "items": {
                    "type": "object",
                    "properties": {
                        "partition": _int64("Input partition."),
                        "offset": _int64("Input offset."),
                        "stable": s,
                        "shadow": s,
                        "why": s,
                    },
                },
            },
            "leftover": {
                "type": "array",
                "description": "Superseded shadows' topics and groups, deleted with this one's.",
                "items": {"type": "object", "properties": where},
            },
        },
    }


def _moves() -> dict[str, Any]:
    return {
        "type": "array",
        "description": "Per input partition, the group's committed offset before (-1: none) and after.",
        "items": {
            "type": "object",
            "properties": {"partition": _int64("The partition."), "from": _int64("Before."), "to": _int64("After.")},
        },
    }


def _offset_reset_status() -> dict[str, Any]:
    s = {"type": "string"}
    return {
        "type": "object",
        "description": "The last tspipe.io/reset-offsets request and its outcome.",
        "properties": {
            "request": _str("The annotation's value."),
            "state": {
                "type": "string",
                "enum": [replay.STOPPING, replay.COMPLETED, replay.REJECTED, replay.CANCELLED],
                "description": f"{replay.STOPPING}: the router is held at zero until it stopped "
                "(and, with Kafka credentials, until the reset Job finished); "
                f"{replay.COMPLETED}: the offsets were set; {replay.REJECTED}: refused, nothing changed; "
                f"{replay.CANCELLED}: the annotation was removed before the offsets were set.",
            },
            "reason": s,
            "message": s,
            "since": {"type": "string", "format": "date-time", "description": "When the router was first held."},
            "time": {"type": "string", "format": "date-time", "description": "When it completed or was refused."},
            "group": s,
            "topic": s,
            "partitions": _moves(),
            "job": _str("With Kafka credentials: the one-shot Job of the router's image that set the offsets."),
        },
    }


def status_schema() -> dict[str, Any]:
    s = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "phase": {"type": "string", "enum": [p.value for p in PHASES], "description": phase_description()},
            "readyComponents": s,
            "replicas": {"type": "integer", "format": "int32", "description": "Router pods (scale subresource)."},
            "selector": _str("Label selector of the router pods (scale subresource)."),
            "topics": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "role": s,
                        "name": s,
                        "state": s,
                        "message": s,
                        "partitions": {"type": "integer", "format": "int32"},
                        "replicationFactor": {"type": "integer", "format": "int32"},
                    },
                },
            },
            "pause": {
                "type": "object",
                "description": "The current pause (spec.paused): when the source stopped and how the drain ended.",
                "properties": {
                    "sourceStoppedAt": {"type": "string", "format": "date-time"},
                    "drain": {
                        "type": "string",
                        "enum": [DRAIN_CONFIRMED, DRAIN_TIMED_OUT, DRAIN_SKIPPED],
                        "description": "Confirmed: the router's group had no lag. TimedOut: "
                        "spec.rollout.pauseDrainSeconds passed first. Skipped: the router had no replicas. "
                        "In the last two, the records left wait in the input topic for the resume.",
                    },
                    "recordsLeft": {
                        "type": "integer",
                        "format": "int64",
                        "description": "The router group's lag when the drain timed out (if measured).",
                    },
                },
            },
            "autoscaling": {
                "type": "object",
                "description": "The lag autoscaler (spec.router.autoscaling), as of the last status write.",
                "properties": {
                    "mode": {"type": "string"},
                    "source": {"type": "string", "description": "Where the lag was read (Kafka)."},
                    "lag": _int64("The router group's lag on the input topic."),
                    "partitions": _int64("The input topic's partitions."),
                    "recommendedReplicas": _int64("What the last lag alone asks for."),
                    "desiredReplicas": _int64("What the router should have (set in Enforce mode)."),
                    "partitionsGrownTo": _int64(
                        "growPartitions: the partition count the operator grew the topics to (a floor over "
                        "spec.kafka.topics.partitions from then on)."
                    ),
                    "lastScale": {
                        "type": "object",
                        "description": "The last change of desiredReplicas and why.",
                        "properties": {
                            "time": {"type": "string", "format": "date-time"},
                            "from": _int64("Replicas before."),
                            "to": _int64("Replicas after."),
                            "why": {"type": "string"},
                        },
                    },
                },
            },
            "rollout": _rollout_status(),
            "offsetReset": _offset_reset_status(),
            "history": {
                "type": "array",
                "description": "The last spec revisions and restarts (tspipe.io/restart), oldest first.",
                "items": {
                    "type": "object",
                    "properties": {
                        "generation": {"type": "integer", "format": "int64"},
                        "time": {"type": "string", "format": "date-time"},
                        "images": {"type": "object", "additionalProperties": s},
                        "changed": {"type": "array", "items": s},
                        "restarted": {"type": "array", "items": s},
                        "offsetReset": {
                            "type": "object",
                            "description": "An offset reset (tspipe.io/reset-offsets) made then.",
                            "properties": {"request": s, "group": s, "topic": s, "partitions": _moves()},
                        },
                        "shadow": {
                            "type": "object",
                            "description": "A shadow release's verdict given then (spec.rollout.strategy Shadow).",
                            "properties": {
                                "generation": _int64("The generation it ran."),
                                "verdict": s,
                                "reason": s,
                                "compared": _int64("Input records compared."),
                                "differing": _int64("Of those, the ones whose outputs differ."),
                            },
                        },
                    },
                },
            },
            "specDigest": {
                "type": "object",
                "additionalProperties": s,
                "description": "Per-field hashes of the last seen spec (to name changed fields).",
            },
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "description": conditions_description(),
                "items": _condition(),
            },
            "components": {"type": "object", "properties": {c.spec_field: _component_status() for c in COMPONENTS}},
        },
    }


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "listKind": f"{KIND}List",
                "shortNames": list(SHORT_NAMES),
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    # Scale: `kubectl scale tsp/NAME --replicas=N` and autoscalers set the router's replicas.
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.router.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": ".status.readyComponents",
                            "description": "Components whose rollout is complete and available",
                        },
                        {
                            "name": "Router",
                            "type": "integer",
                            "jsonPath": ".spec.router.replicas",
                            "description": "Desired router replicas",
                        },
                        {
                            "name": "Rollout",
                            "type": "string",
                            "jsonPath": ".status.rollout.verdict",
                            "description": "spec.rollout.autoRollback: the last rollout's verdict",
                        },
                        {
                            "name": "Shadow",
                            "type": "string",
                            "jsonPath": ".status.rollout.shadow.state",
                            "description": "spec.rollout.strategy Shadow: the last shadow release's stage",
                        },
                        {"name": "Input", "type": "string", "jsonPath": ".spec.kafka.topics.input", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "The seed's time -> python-router -> even/odd log pipeline on Kafka.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {
                                    "rule": "has(self.spec.streamName) || "
                                    f"self.metadata.name.matches('{m.STREAM_NAME.pattern}')",
                                    "message": "spec.streamName is required when metadata.name is not a valid "
                                    "stream name (a letter, then letters, digits and '-')",
                                }
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "properties": {"name": {"type": "string", "maxLength": m.MAX_NAME_LENGTH}},
                                },
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = (
    "# Generated by `python -m tspipe.crd` from operator/tspipe/{model,components,podtemplate,crd}.py and\n"
    "# operator/tspipe/data/podtemplate-schemas.json (hack/podschemas.py); do not edit.\n"
)


class _NoAliases(yaml.SafeDumper):
    # Shared sub-schemas must be written out in full: no YAML anchors in a CRD.
    def ignore_aliases(self, data: object) -> bool:
        return True


def render_yaml() -> str:
    return HEADER + yaml.dump(crd(), Dumper=_NoAliases, sort_keys=False, width=120)


def main() -> int:
    sys.stdout.write(render_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
