"""`podTemplate`: where an app's pods run and what they may use, declared once (pure).

`spec.podTemplate` is the pipeline-wide default, `spec.<app>.podTemplate` an app's own
settings; the app's win, field by field (`PodTemplate.over`):

- maps (`labels`, `annotations`, `nodeSelector`) merge key by key, the app's value
  winning for a key both set;
- everything else (`resources`, `affinity`, the two names, and the lists `tolerations`,
  `topologySpreadConstraints`, `imagePullSecrets`, `volumes`, `volumeMounts`,
  `envFrom`) is replaced as a whole by the app's when the app sets it (an empty list
  included: `tolerations: []` drops the default's). Lists are not merged: two halves
  of a toleration or volume list rarely mean anything, and `resources` is one value
  (requests and limits depend on each other: a limit alone also sets the request).

`resources`: `spec.<app>.resources` is the short spelling of
`spec.<app>.podTemplate.resources` (setting both is refused); an app that sets neither
takes `spec.podTemplate.resources`, else its default from components.COMPONENTS.

The shapes are the Kubernetes types' own (data/podtemplate-schemas.json, generated
from the API server's OpenAPI by hack/podschemas.py). `schema()` adds bounds and the
CEL rules that refuse what the operator owns; the parser (`parse`) applies the same
schema and mirrors each rule (`Rule.check`), raising PipelineError naming the field
as the API server does. Owned and not in the schema at all (so the API server refuses
them as unknown fields): probes, env and args, ports, security contexts, the image.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib import resources as package_files
from typing import Any, Literal

from .fields import PipelineError, Str
from .names import (
    CA_MOUNT_PATH,
    CA_VOLUME,
    OWNED_KEY_PREFIX,
    OWNED_LABELS,
    TMP_MOUNT_PATH,
    TMP_VOLUME,
)

DATA = json.loads(package_files.files("tspipe").joinpath("data/podtemplate-schemas.json").read_text("utf-8"))
KUBE_SCHEMAS: dict[str, Any] = DATA["fields"]

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# A label or annotation key: [DNS subdomain prefix/]name, the name at most 63 characters.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME = rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
MAX_QUALIFIED_NAME = 253 + 1 + 63
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
OWNED_VOLUMES = (TMP_VOLUME, CA_VOLUME)
OWNED_PATHS = (TMP_MOUNT_PATH, CA_MOUNT_PATH)


def _paths_regex(paths: tuple[str, ...]) -> str:
    """Matches each path and every folder above it ("/", "/etc", ...), however many
    slashes separate or end them: a mount there would hide the operator's."""
    forms = {""}
    for path in paths:
        parts = [p for p in path.split("/") if p]
        forms |= {"/+".join(re.escape(p) for p in parts[:n]) for n in range(1, len(parts) + 1)}
    return "^/*(" + "|".join(sorted(forms)) + ")/*$"


OWNED_PATHS_RE = _paths_regex(OWNED_PATHS)

SERVICE_ACCOUNT_NAME = Str(
    "serviceAccountName",
    "service_account_name",
    "Service account of the app pods (the pods never mount its token: the apps do not call the Kubernetes API).",
    max_length=253,
    pattern=DNS_SUBDOMAIN,
    invalid="must be a service account name (lower-case DNS subdomain, max 253)",
)
PRIORITY_CLASS_NAME = Str(
    "priorityClassName",
    "priority_class_name",
    "PriorityClass of the app pods.",
    max_length=253,
    pattern=DNS_SUBDOMAIN,
    invalid="must be a PriorityClass name (lower-case DNS subdomain, max 253)",
)
_SCALARS = {f.name: f for f in (SERVICE_ACCOUNT_NAME, PRIORITY_CLASS_NAME)}


@dataclass(frozen=True)
class PodField:
    name: str  # JSON name, also the key in data/podtemplate-schemas.json
    attr: str  # PodTemplate attribute
    merge: Literal["keys", "replace"]
    description: str
    limit: int | None = None  # maxItems (lists) or maxProperties (maps)


FIELDS = (
    PodField(
        "labels",
        "labels",
        "keys",
        "Pod labels. app.kubernetes.io/name, instance, component, part-of, managed-by and tspipe.io/* are the "
        "operator's.",
        32,
    ),
    PodField("annotations", "annotations", "keys", "Pod annotations. tspipe.io/* are the operator's.", 32),
    PodField(
        "resources",
        "resources",
        "replace",
        "Container resources (replaced as a whole). Default per app: see docs/pod-templates.md.",
    ),
    PodField("nodeSelector", "node_selector", "keys", "Node labels the pods require.", 32),
    PodField("tolerations", "tolerations", "replace", "Pod tolerations.", 32),
    PodField("affinity", "affinity", "replace", "Pod affinity (node, pod, anti-pod)."),
    PodField("topologySpreadConstraints", "topology_spread_constraints", "replace", "Pod topology spread.", 8),
    PodField("priorityClassName", "priority_class_name", "replace", PRIORITY_CLASS_NAME.description),
    PodField("serviceAccountName", "service_account_name", "replace", SERVICE_ACCOUNT_NAME.description),
    PodField("imagePullSecrets", "image_pull_secrets", "replace", "Secrets for pulling the image.", 16),
    PodField(
        "volumes",
        "volumes",
        "replace",
        "Extra pod volumes (the restricted Pod Security Standard's types). tmp and kafka-ca are the operator's.",
        32,
    ),
    PodField(
        "volumeMounts",
        "volume_mounts",
        "replace",
        f"Extra mounts in the app's container; not on {' or '.join(OWNED_PATHS)} or a folder above them.",
        32,
    ),
    PodField("envFrom", "env_from", "replace", "ConfigMaps and Secrets whose keys become env vars of the app.", 16),
)
BY_NAME = {f.name: f for f in FIELDS}
# spec.pod, the older name of spec.podTemplate, had these fields.
LEGACY_POD_FIELDS = ("serviceAccountName", "imagePullSecrets", "nodeSelector", "tolerations", "affinity")


@dataclass(frozen=True)
class PodTemplate:
    """One layer of pod settings; None: not set (the layer below applies)."""

    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    resources: Mapping[str, Any] | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] | None = None
    affinity: Mapping[str, Any] | None = None
    topology_spread_constraints: tuple[Mapping[str, Any], ...] | None = None
    priority_class_name: str | None = None
    service_account_name: str | None = None
    image_pull_secrets: tuple[Mapping[str, Any], ...] | None = None
    volumes: tuple[Mapping[str, Any], ...] | None = None
    volume_mounts: tuple[Mapping[str, Any], ...] | None = None
    env_from: tuple[Mapping[str, Any], ...] | None = None

    def over(self, base: PodTemplate) -> PodTemplate:
        """This layer's settings over `base`'s: maps key by key, the rest replaced."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            mine, theirs = getattr(self, f.attr), getattr(base, f.attr)
            if f.merge == "keys" and mine is not None and theirs is not None:
                out[f.attr] = {**theirs, **mine}
            else:
                out[f.attr] = mine if mine is not None else theirs
        return PodTemplate(**out)


# The taints the node lifecycle controller puts on a node that stopped reporting (its
# kubelet silent for kube-controller-manager's --node-monitor-grace-period, 50 s by
# default) or that reports NotReady. A pod that tolerates them with tolerationSeconds N is
# evicted N s later and its Deployment recreates it on a live node.
NODE_LOSS_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# What an app pod tolerates them for, unless its podTemplate says otherwise. Kubernetes' own
# default is 300 s (the DefaultTolerationSeconds admission plugin): five minutes more in
# which a one-replica app (the time source, each logger) does not run and its partitions
# are read by nobody, for a stream processor the worst kind of outage (lag only grows).
# Waiting is worth little here: the node was silent for the grace period already, its
# pods' consumers left the group after their session timeout (10 s for the router, 45 s
# for the Spring apps), and every app resumes from its group's committed offsets wherever
# it restarts. 30 s still rides out a node that comes back at once (a kubelet restart, a
# short network cut), which would otherwise cost a rebalance and a JVM start elsewhere.
NODE_LOSS_TOLERATION_SECONDS = 30


def node_loss_tolerations(tolerations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`tolerations` plus ours for each node-loss taint none of them tolerates for NoExecute,
    decided as the DefaultTolerationSeconds admission plugin decides (a toleration with that
    key or no key, and effect NoExecute or none): a podTemplate's own toleration for a taint
    wins, and one that tolerates every taint keeps a pod where it is."""
    out = list(tolerations)
    for taint in NODE_LOSS_TAINTS:
        if not any(t.get("key", "") in (taint, "") and t.get("effect", "") in ("NoExecute", "") for t in tolerations):
            out.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": NODE_LOSS_TOLERATION_SECONDS,
                }
            )
    return out


def effective(default: PodTemplate, app: PodTemplate, default_resources: Mapping[str, Any]) -> PodTemplate:
    """The pod settings one app runs with: its own over the pipeline's, then its default resources."""
    merged = app.over(default)
    if merged.resources is None:
        merged = replace(merged, resources=default_resources)
    return merged


# --- the rules for what the operator owns: CEL for the API server, Python for the parser ---


@dataclass(frozen=True)
class Rule:
    field: str  # the podTemplate field whose schema carries it
    items: bool  # on each item of the list (else on the field itself)
    cel: str
    message: str
    check: Callable[[Any], str | None]  # the parser's mirror: what is wrong with the value, or None
    reason: str = "FieldValueForbidden"
    field_path: str | None = None  # where in the value the API server points (".name")
    message_expression: str | None = None

    def validation(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field_path:
            out["fieldPath"] = self.field_path
        out["reason"] = self.reason
        return out


def _cel_str(s: str) -> str:
    """A CEL single-quoted string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(_cel_str(i) for i in items) + "]"


def _bad_key(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        for k in value:
            if len(k) > MAX_QUALIFIED_NAME or not re.fullmatch(QUALIFIED_NAME, k):
                return f"invalid {what} key {k!r}: [prefix/]name, a DNS subdomain and a name of at most 63 characters"
        return None

    return check


def _owned_key(what: str, owned: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        for k in value:
            if k in owned or k.startswith(OWNED_KEY_PREFIX):
                return f"{what} {k} is set by the operator"
        return None

    return check


def _key_rules(field: str, what: str, owned: tuple[str, ...]) -> tuple[Rule, Rule]:
    prefix = f"k.startsWith({_cel_str(OWNED_KEY_PREFIX)})"
    is_owned = f"(k in {_cel_list(owned)} || {prefix})" if owned else prefix
    owned_names = ", ".join(owned) + ", " if owned else ""
    return (
        Rule(
            field,
            False,
            f"self.all(k, k.size() <= {MAX_QUALIFIED_NAME} && k.matches({_cel_str(QUALIFIED_NAME)}))",
            f"{what} keys are [prefix/]name: a DNS subdomain prefix and a name of at most 63 letters, digits, "
            "'-', '_', '.'",
            _bad_key(what),
            reason="FieldValueInvalid",
        ),
        Rule(
            field,
            False,
            f"self.all(k, !{is_owned})",
            f"{what}s {owned_names}{OWNED_KEY_PREFIX}* are set by the operator",
            _owned_key(what, owned),
            message_expression=f"'{what} ' + self.filter(k, {is_owned})[0] + ' is set by the operator'",
        ),
    )


def _owned_volume(item: Any) -> str | None:
    name = item.get("name")
    return f"volume name {name} is the operator's" if name in OWNED_VOLUMES else None


def _owned_path(item: Any) -> str | None:
    path = item.get("mountPath")
    if isinstance(path, str) and re.fullmatch(OWNED_PATHS_RE, path):
        return f"the operator mounts {' and '.join(OWNED_PATHS)}: nothing may be mounted on {path}"
    return None


RULES = (
    *_key_rules("labels", "label", OWNED_LABELS),
    *_key_rules("annotations", "annotation", ()),
    Rule(
        "volumes",
        True,
        f"!(self.name in {_cel_list(OWNED_VOLUMES)})",
        f"volume names {' and '.join(OWNED_VOLUMES)} are the operator's",
        _owned_volume,
        field_path=".name",
        message_expression="'volume name ' + self.name + ' is the operator\\'s'",
    ),
    Rule(
        "volumeMounts",
        True,
        f"!self.mountPath.matches({_cel_str(OWNED_PATHS_RE)})",
        f"the operator mounts {' and '.join(OWNED_PATHS)}: nothing may be mounted there or on a folder above them",
        _owned_path,
        field_path=".mountPath",
    ),
)


# --- the schema ------------------------------------------------------------------------


def field_schema(f: PodField) -> dict[str, Any]:
    """One field's OpenAPI schema: the Kubernetes shape, bounded, with its rules."""
    if f.name in _SCALARS:
        return _SCALARS[f.name].schema()
    out: dict[str, Any] = copy.deepcopy(KUBE_SCHEMAS[f.name])
    out["description"] = f.description
    if f.limit is not None:
        out["maxItems" if out["type"] == "array" else "maxProperties"] = f.limit
    if f.name == "labels":
        out["additionalProperties"] = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}
    elif f.name == "annotations":
        out["additionalProperties"] = {"type": "string", "maxLength": 4096}
    # Bounded strings keep the CEL rules' estimated cost within the API server's budget.
    if f.name == "volumes":
        out["items"]["properties"]["name"]["maxLength"] = 63
    if f.name == "volumeMounts":
        out["items"]["properties"]["mountPath"]["maxLength"] = 4096
    rules = [r for r in RULES if r.field == f.name]
    for r in rules:
        target = out["items"] if r.items else out
        target.setdefault("x-kubernetes-validations", []).append(r.validation())
    return out


def schema(description: str, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A podTemplate object's schema (all fields, or `names`)."""
    return {
        "type": "object",
        "description": description,
        "properties": {f.name: field_schema(f) for f in FIELDS if names is None or f.name in names},
    }


# --- parsing: the same schema, applied in Python ----------------------------------------


def check_shape(s: Mapping[str, Any], value: Any, path: str) -> None:
    """Validate `value` against an OpenAPI schema of the kinds the CRD uses (types, known
    fields, required, bounds, patterns, list-map keys), as the API server's structural
    validation with kubectl's strict field validation does. CEL rules are not run here
    (each has its Rule.check)."""
    if s.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise PipelineError(path, "must be an integer or a string")
        if isinstance(value, str) and "pattern" in s and not re.fullmatch(s["pattern"], value):
            raise PipelineError(path, f"invalid value {value!r}")
        return
    t = s.get("type")
    if t == "object":
        _check_object(s, value, path)
    elif t == "array":
        _check_array(s, value, path)
    elif t == "string":
        _check_string(s, value, path)
    elif t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineError(path, "must be an integer")
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PipelineError(path, "must be a number")
    elif t == "boolean" and not isinstance(value, bool):
        raise PipelineError(path, "must be a boolean")
    if "enum" in s and value not in s["enum"]:
        raise PipelineError(path, f"must be one of {', '.join(map(str, s['enum']))}")


def _check_string(s: Mapping[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise PipelineError(path, "must be a string")
    if "maxLength" in s and len(value) > s["maxLength"]:
        raise PipelineError(path, f"must be at most {s['maxLength']} characters")
    if "pattern" in s and not re.fullmatch(s["pattern"], value):
        raise PipelineError(path, f"must match {s['pattern']}")


def _check_object(s: Mapping[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise PipelineError(path, "must be an object")
    props = s.get("properties")
    if "maxProperties" in s and len(value) > s["maxProperties"]:
        raise PipelineError(path, f"must have at most {s['maxProperties']} entries")
    for k in s.get("required", ()):
        if value.get(k) is None:
            raise PipelineError(f"{path}.{k}", "required")
    for k, v in value.items():
        if v is None:
            continue  # the API server prunes nulls
        if props is not None:
            if k not in props:
                raise PipelineError(f"{path}.{k}", "unknown field")
            check_shape(props[k], v, f"{path}.{k}")
        elif "additionalProperties" in s:
            check_shape(s["additionalProperties"], v, f"{path}.{k}")


def _check_array(s: Mapping[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise PipelineError(path, "must be a list")
    if "maxItems" in s and len(value) > s["maxItems"]:
        raise PipelineError(path, f"must have at most {s['maxItems']} items")
    seen: set[str] = set()
    for i, item in enumerate(value):
        check_shape(s["items"], item, f"{path}[{i}]")
        if s.get("x-kubernetes-list-type") == "map":
            defaults = s["items"].get("properties") or {}
            key = json.dumps([item.get(k, defaults.get(k, {}).get("default")) for k in s["x-kubernetes-list-map-keys"]])
        elif s.get("x-kubernetes-list-type") == "set":
            key = json.dumps(item)
        else:
            continue
        if key in seen:
            raise PipelineError(f"{path}[{i}]", f"duplicate entry {key}")
        seen.add(key)


def _check_rules(f: PodField, value: Any, path: str) -> None:
    for r in RULES:
        if r.field != f.name:
            continue
        targets = list(enumerate(value)) if r.items else [(None, value)]
        for i, v in targets:
            problem = r.check(v)
            if problem:
                where = path if i is None else f"{path}[{i}]"
                raise PipelineError(where + (r.field_path or ""), problem)


def parse(obj: Any, path: str, names: tuple[str, ...] | None = None) -> PodTemplate:
    """A podTemplate object (spec.podTemplate, spec.<app>.podTemplate; `names`: the fields
    allowed, for spec.pod). Raises PipelineError naming the field, like the API server."""
    if obj is None:
        return PodTemplate()
    allowed = FIELDS if names is None else tuple(f for f in FIELDS if f.name in names)
    if not isinstance(obj, dict):
        raise PipelineError(path, "must be an object")
    known = {f.name for f in allowed}
    for key in obj:
        if key not in known:
            raise PipelineError(f"{path}.{key}", "unknown field")
    out: dict[str, Any] = {}
    for f in allowed:
        value = obj.get(f.name)
        if value is None:
            continue
        where = f"{path}.{f.name}"
        if f.name in _SCALARS:
            out[f.attr] = _SCALARS[f.name].parse_optional(obj, path)
            continue
        check_shape(field_schema(f), value, where)
        _check_rules(f, value, where)
        value = copy.deepcopy(value)
        out[f.attr] = tuple(value) if isinstance(value, list) else value
    return PodTemplate(**out)


def parse_resources(obj: Any, path: str) -> Mapping[str, Any] | None:
    """`spec.<app>.resources` (corev1 ResourceRequirements, as in a podTemplate)."""
    if obj is None:
        return None
    check_shape(KUBE_SCHEMAS["resources"], obj, path)
    return dict(copy.deepcopy(obj))
