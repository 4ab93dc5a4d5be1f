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

from . import fields, podtemplate, probes, topicconfig
from . import model as m
from .components import COMPONENTS, Component
from .names import API_GROUP, API_VERSION, KIND, PLURAL, SHORT_NAMES, SINGULAR
from .spring import RESERVED_ENV, canonical_key
from .status_fields import STATUS

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


def status_schema() -> dict[str, Any]:
    """The status's schema, generated from status_fields.py's declarations."""
    return STATUS.schema()


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
    "# Generated by `python -m tspipe.crd` from operator/tspipe/{model,components,podtemplate,crd}.py,\n"
    "# operator/tspipe/status_fields.py (the status) and operator/tspipe/data/podtemplate-schemas.json\n"
    "# (hack/podschemas.py); do not edit.\n"
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
