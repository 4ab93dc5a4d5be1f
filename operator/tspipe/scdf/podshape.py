"""An app's pod shape as SCDF Kubernetes deployer properties, and back (pure).

One table drives both directions, so `tspipe scdf deploy` and `tspipe scdf import`
cannot drift apart: `POD_FIELDS` (a podTemplate field <-> its deployer properties) and
`probe_key` (a probe field <-> `<kind><Http|Tcp>Probe<Suffix>`). `encode` writes an
app's properties (without SCDF's `deployer.<label>.` prefix, keys under `kubernetes.`)
and raises RenderError naming the pipeline field it cannot express; `decode` reads them
back into the pipeline's fields and raises ImportRefused naming the property.

The property names and what the deployer does with each value are those of
spring-cloud-deployer-kubernetes 2.9.5 (what SCDF 2.11 bundles and hack/scdf-jars.sh
puts into the harness's Skipper): DeploymentPropertiesResolver, the *ProbeCreator
classes and DefaultContainerFactory. Structured values (volumes, affinity, ...) are
YAML flow text that the deployer binds into fabric8 5.12.4 model classes with Spring's
Binder, which silently ignores a field the class lacks: data/scdf-deployer-model.json
(hack/deployer-model.sh) lists the fields those classes have, and anything else is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib import resources as package_files
from typing import Any

import yaml

from ..components import Component, Probe
from ..names import TMP_MOUNT_PATH, TMP_VOLUME
from ..podtemplate import FIELDS as POD_TEMPLATE_FIELDS
from ..podtemplate import PodTemplate, node_loss_tolerations
from ..probes import KINDS, AppProbes
from ..render import RUN_AS, SERVER_PORT

DEPLOYER = "spring-cloud-deployer-kubernetes 2.9.5"
MODEL: dict[str, dict[str, str]] = json.loads(
    package_files.files("tspipe").joinpath("data/scdf-deployer-model.json").read_text("utf-8")
)["types"]
K8S = "kubernetes."

# Labels the deployer puts on every pod it creates (AbstractKubernetesDeployer.createIdMap
# and its marker); deploymentLabels are added after them, so one of these would replace
# the deployer's own and break how it finds its pods.
SCDF_POD_LABELS = ("role", "spring-app-id", "spring-deployment-id", "spring-group-id", "spring-application-name")


class RenderError(ValueError):
    """The pipeline cannot be expressed for SCDF; the message names the field."""


class ImportRefused(ValueError):
    """An SCDF stream cannot be expressed as a TimestampPipeline; the message names what differs."""


# ---------------------------------------------------------------- YAML flow text

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
# YAML 1.1 words (SnakeYAML, the deployer's parser, resolves them) that are not strings.
_YAML11_WORDS = {w.lower() for w in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")}


def _scalar(s: str) -> str:
    if _PLAIN.match(s) and s.lower() not in _YAML11_WORDS:
        return s
    return "'" + s.replace("'", "''") + "'"


def flow(value: Any, map_keys: bool = False) -> str:
    """`value` as one line of YAML flow text, without double quotes (the SCDF shell's
    --properties cannot carry them). `map_keys`: the object is a Map in the deployer's
    model, whose keys Spring's Binder only keeps whole (dots and slashes) in brackets."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        keys = (f"[{k}]" if map_keys else str(k) for k in value)
        return "{" + ", ".join(f"{_scalar(k)}: {flow(v)}" for k, v in zip(keys, value.values(), strict=True)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return _scalar(str(value))


def _typed_flow(value: Any, type_name: str) -> str:
    """Flow text for a value of a fabric8 model type (its Map fields' keys bracketed)."""
    if type_name.startswith("["):
        return "[" + ", ".join(_typed_flow(v, type_name[1:-1]) for v in value) + "]"
    if type_name.startswith("{"):
        return flow(value, map_keys=True)
    if type_name == "scalar":
        return flow(value)
    props = MODEL[type_name]
    return "{" + ", ".join(f"{_scalar(str(k))}: {_typed_flow(v, props[k])}" for k, v in value.items()) + "}"


def check_model(value: Any, type_name: str, path: str) -> None:
    """RenderError naming the first field of `value` the deployer's model type lacks."""
    if type_name.startswith("["):
        for i, item in enumerate(value):
            check_model(item, type_name[1:-1], f"{path}[{i}]")
    elif type_name.startswith("{") or type_name == "scalar":
        return
    else:
        props = MODEL[type_name]
        for key, item in value.items():
            if key not in props:
                raise RenderError(
                    f"{path}.{key}: SCDF's Kubernetes deployer ({DEPLOYER}, fabric8 model 5.12.4) has no such field "
                    "and would drop it silently; remove it for `tspipe scdf` or deploy this pipeline with the operator"
                )
            check_model(item, props[key], f"{path}.{key}")


def _unbracket(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            (k[1:-1] if isinstance(k, str) and k.startswith("[") and k.endswith("]") else k): _unbracket(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_unbracket(v) for v in value]
    return value


def parse_flow(text: str, where: str) -> Any:
    try:
        return _unbracket(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise ImportRefused(f"{where}: not YAML the deployer can read ({str(exc).splitlines()[0]})") from None


def _stringify(value: Any) -> Any:
    """Kubernetes quantities and label values the YAML parser read as numbers, as strings."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


# ---------------------------------------------------------------- key:value,... lists


def _pairs(value: Mapping[str, str], path: str, what: str, *, empty_ok: bool) -> str:
    for k, raw in value.items():
        v = str(raw)
        if not v and not empty_ok:
            raise RenderError(
                f"{path}.{k}: an empty value cannot be expressed: the deployer's `key:value` list drops it "
                f"and refuses the whole {what}"
            )
        if "," in v or '"' in v or v != v.strip():
            raise RenderError(
                f"{path}.{k}: the value {v!r} has a comma, a double quote or surrounding spaces, which the "
                f"deployer's `key:value,...` {what} splits or trims"
            )
    return ",".join(f"{k}:{v}" for k, v in value.items())


def _unpairs(text: str, where: str) -> dict[str, str]:
    out = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition(":")
        if not sep:
            raise ImportRefused(f"{where}: {pair!r} is not key:value")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------- the podTemplate table


@dataclass(frozen=True)
class PodProperty:
    """One podTemplate field and the deployer properties (under `kubernetes.`) that carry it."""

    field: str  # podtemplate.FIELDS name
    keys: tuple[str, ...]  # its deployer properties; () when the deployer cannot express it
    doc: str  # what the deployer does with it (docs/scdf.md's table says the same)
    encode: Callable[[Any, str], dict[str, str]] | None = None  # (value, path) -> properties
    decode: Callable[[dict[str, str], str], Any] | None = None  # (its properties, where) -> value or None


def _enc_labels(value: Mapping[str, str], path: str) -> dict[str, str]:
    for k in value:
        if k in SCDF_POD_LABELS:
            raise RenderError(f"{path}.{k}: the deployer sets pod label {k} itself (it finds its pods by it)")
    return {"deploymentLabels": _pairs(value, path, "deploymentLabels", empty_ok=False)}


def _enc_annotations(value: Mapping[str, str], path: str) -> dict[str, str]:
    return {"podAnnotations": _pairs(value, path, "podAnnotations", empty_ok=True)}


def _enc_node_selector(value: Mapping[str, str], path: str) -> dict[str, str]:
    return {"nodeSelector": _pairs(value, path, "nodeSelector", empty_ok=False)}


RESOURCE_NAMES = ("cpu", "memory")


def _enc_resources(value: Mapping[str, Any], path: str) -> dict[str, str]:
    out = {}
    for section in value:
        if section not in ("requests", "limits"):
            raise RenderError(f"{path}.{section}: the deployer sets only requests and limits")
    for section in ("requests", "limits"):
        for res, amount in (value.get(section) or {}).items():
            if res not in RESOURCE_NAMES:
                raise RenderError(
                    f"{path}.{section}.{res}: the deployer sets only cpu and memory {section} "
                    "(requests.cpu, requests.memory, limits.cpu, limits.memory)"
                )
            out[f"{section}.{res}"] = str(amount)
    return out


def _enc_tolerations(value: Any, path: str) -> dict[str, str]:
    known = ("effect", "key", "operator", "tolerationSeconds", "value")  # KubernetesDeployerProperties.Toleration
    for i, t in enumerate(value):
        for k in t:
            if k not in known:
                raise RenderError(f"{path}[{i}].{k}: the deployer's tolerations have only {', '.join(known)}")
    return {"tolerations": flow([dict(t) for t in value])}


AFFINITY_TYPES = {"nodeAffinity": "NodeAffinity", "podAffinity": "PodAffinity", "podAntiAffinity": "PodAntiAffinity"}


def _enc_affinity(value: Mapping[str, Any], path: str) -> dict[str, str]:
    out = {}
    for kind, item in value.items():
        check_model(item, AFFINITY_TYPES[kind], f"{path}.{kind}")
        out[f"affinity.{kind}"] = _typed_flow(item, AFFINITY_TYPES[kind])
    return out


def _enc_image_pull_secrets(value: Any, path: str) -> dict[str, str]:
    return {"imagePullSecrets": flow([s["name"] for s in value])}


def _enc_env_from(value: Any, path: str) -> dict[str, str]:
    config_maps: list[str] = []
    secrets: list[str] = []
    for i, src in enumerate(value):
        where = f"{path}[{i}]"
        if src.get("prefix"):
            raise RenderError(f"{where}.prefix: the deployer's configMapRefs and secretRefs take names only")
        ref = "configMapRef" if src.get("configMapRef") is not None else "secretRef"
        if src[ref].get("optional"):
            raise RenderError(f"{where}.{ref}.optional: the deployer's {ref}s cannot be optional")
        if ref == "configMapRef" and secrets:
            raise RenderError(
                f"{where}: the deployer puts every configMapRef before every secretRef; this order "
                "(a ConfigMap after a Secret, whose keys it would then override) cannot be kept"
            )
        (config_maps if ref == "configMapRef" else secrets).append(src[ref]["name"])
    out = {}
    if config_maps:
        out["configMapRefs"] = flow(config_maps)
    if secrets:
        out["secretRefs"] = flow(secrets)
    return out


def _scalar_prop(key: str) -> Callable[[Any, str], dict[str, str]]:
    return lambda value, path: {key: str(value)}


# Decoders: the properties of one field (without `kubernetes.`) -> the podTemplate value.


def _dec_pairs(key: str) -> Callable[[dict[str, str], str], Any]:
    return lambda props, where: _unpairs(props[key], f"{where}.{key}") if key in props else None


def _dec_resources(props: dict[str, str], where: str) -> Any:
    out: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        for res in RESOURCE_NAMES:
            if f"{section}.{res}" in props:
                out.setdefault(section, {})[res] = props[f"{section}.{res}"]
    return out or None


def _dec_flow(key: str, transform: Callable[[Any], Any] = lambda v: v) -> Callable[[dict[str, str], str], Any]:
    def dec(props: dict[str, str], where: str) -> Any:
        if key not in props:
            return None
        value = parse_flow(props[key], f"{where}.{key}")
        return transform(value) if value is not None else None

    return dec


def _without_node_loss_defaults(tolerations: list[dict[str, Any]] | None, where: str) -> tuple[Any, str | None]:
    """The tolerations a pipeline must state to give these back: the deployed ones without
    the node-loss defaults the operator adds by itself (None when nothing else is left), and
    a note when the stream lacks those defaults (its pods waited Kubernetes' 300 s)."""
    given = list(tolerations or ())
    ours = node_loss_tolerations([])
    if node_loss_tolerations(given) == given + ours:
        return tolerations, (
            f"{where}.tolerations: the stream's pods do not tolerate node loss for a set time; the operator's "
            "pods tolerate it for 30 s (docs/pod-templates.md)"
        )
    user = [t for t in given if t not in ours]
    return (user or None), None


def _toleration(t: dict[str, Any]) -> dict[str, Any]:
    # A value such as `1` or `true` parses as a number or boolean; Kubernetes wants a string.
    return {
        k: v if k == "tolerationSeconds" else str(v).lower() if isinstance(v, bool) else _stringify(v)
        for k, v in t.items()
    }


def _dec_affinity(props: dict[str, str], where: str) -> Any:
    out = {}
    for kind in AFFINITY_TYPES:
        if f"affinity.{kind}" in props:
            out[kind] = parse_flow(props[f"affinity.{kind}"], f"{where}.affinity.{kind}")
    return out or None


def _dec_env_from(props: dict[str, str], where: str) -> Any:
    out: list[dict[str, Any]] = []
    for key, ref in (("configMapRefs", "configMapRef"), ("secretRefs", "secretRef")):
        if key in props:
            names = parse_flow(props[key], f"{where}.{key}") or []
            out += [{ref: {"name": str(n)}} for n in names]
    return out or None


POD_FIELDS = (
    PodProperty(
        "labels",
        ("deploymentLabels",),
        "`key:value,...`; also on the Deployment itself; SCDF's own pod labels cannot be set",
        _enc_labels,
        _dec_pairs("deploymentLabels"),
    ),
    PodProperty(
        "annotations",
        ("podAnnotations",),
        "`key:value,...`; values without commas, double quotes or surrounding spaces",
        _enc_annotations,
        _dec_pairs("podAnnotations"),
    ),
    PodProperty(
        "resources",
        tuple(f"{s}.{r}" for s in ("requests", "limits") for r in RESOURCE_NAMES),
        "cpu and memory only",
        _enc_resources,
        _dec_resources,
    ),
    PodProperty(
        "nodeSelector",
        ("nodeSelector",),
        "`key:value,...`",
        _enc_node_selector,
        _dec_pairs("nodeSelector"),
    ),
    PodProperty(
        "tolerations",
        ("tolerations",),
        "YAML list",
        _enc_tolerations,
        _dec_flow("tolerations", lambda ts: [_toleration(t) for t in ts]),
    ),
    PodProperty(
        "affinity",
        tuple(f"affinity.{k}" for k in AFFINITY_TYPES),
        "YAML, one property per kind; fields fabric8 5.12.4 lacks (e.g. matchLabelKeys) are refused",
        _enc_affinity,
        _dec_affinity,
    ),
    PodProperty(
        "topologySpreadConstraints",
        (),
        "no deployer property: refused",
    ),
    PodProperty(
        "priorityClassName",
        ("priorityClassName",),
        "as is",
        _scalar_prop("priorityClassName"),
        lambda props, where: props.get("priorityClassName"),
    ),
    PodProperty(
        "serviceAccountName",
        ("deploymentServiceAccountName",),
        "as is",
        _scalar_prop("deploymentServiceAccountName"),
        lambda props, where: props.get("deploymentServiceAccountName"),
    ),
    PodProperty(
        "imagePullSecrets",
        ("imagePullSecrets",),
        "the secrets' names",
        _enc_image_pull_secrets,
        _dec_flow("imagePullSecrets", lambda names: [{"name": str(n)} for n in names]),
    ),
    PodProperty(
        "volumes",
        ("volumes",),
        "YAML list after the operator's `tmp`; fields fabric8 5.12.4 lacks are refused, and so is a volume "
        "no mount uses (the deployer drops it)",
    ),
    PodProperty(
        "volumeMounts",
        ("volumeMounts",),
        "YAML list after the operator's `/tmp` mount; fields fabric8 5.12.4 lacks are refused",
    ),
    PodProperty(
        "envFrom",
        ("configMapRefs", "secretRefs"),
        "names only (no prefix, not optional), every ConfigMap before every Secret",
        _enc_env_from,
        _dec_env_from,
    ),
)
assert [f.field for f in POD_FIELDS] == [f.name for f in POD_TEMPLATE_FIELDS], "one row per podTemplate field"
POD_FIELD_KEYS = {k for f in POD_FIELDS for k in f.keys}

# The operator's own pod shape (tspipe.render), written for deployer 2.9.5: runAsNonRoot,
# runAsGroup and the containerSecurityContext's capabilities, privileged and runAsNonRoot
# are 2.9 properties. An older deployer ignores what it does not know.
POD_SECURITY_CONTEXT = (
    f"{{runAsUser: {RUN_AS}, runAsGroup: {RUN_AS}, runAsNonRoot: true, fsGroup: {RUN_AS}, "
    "seccompProfile: {type: RuntimeDefault}}"
)
CONTAINER_SECURITY_CONTEXT = (
    "{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, privileged: false, "
    "readOnlyRootFilesystem: true, runAsNonRoot: true}"
)
TMP_VOLUME_FLOW = f"{{name: {TMP_VOLUME}, emptyDir: {{sizeLimit: 256Mi}}}}"
TMP_MOUNT_FLOW = f"{{name: {TMP_VOLUME}, mountPath: {TMP_MOUNT_PATH}}}"
OWNED_KEYS = ("podSecurityContext", "containerSecurityContext")


# ---------------------------------------------------------------- env (spec.<app>.env)

ENV_KEYS = ("environmentVariables", "secretKeyRefs", "configMapKeyRefs")
# DeploymentPropertiesResolver.NestedCommaDelimitedVariableParser: `NAME='value'` entries
# (a \w+ name; the quotes, all of them, are removed) may hold commas; the rest is split at commas.
_QUOTED_ENV = re.compile(r"(\w+='.+?'),?")
_ENV_REFS = {"secretKeyRef": ("secretKeyRefs", "secretName"), "configMapKeyRef": ("configMapKeyRefs", "configMapName")}


def encode_env(env: tuple[Mapping[str, Any], ...], path: str) -> dict[str, str]:
    """An app's env vars: values in `environmentVariables`, Secret and ConfigMap keys in
    `secretKeyRefs` and `configMapKeyRefs`."""
    plain: list[str] = []
    refs: dict[str, list[dict[str, str]]] = {}
    for i, var in enumerate(env):
        where, name = f"{path}[{i}]", str(var["name"])
        source = var.get("valueFrom")
        if source:
            kind = next(iter(source))
            if kind not in _ENV_REFS:
                raise RenderError(
                    f"{where}.valueFrom.{kind}: the deployer's env vars are values, secretKeyRefs and "
                    "configMapKeyRefs only"
                )
            ref = source[kind]
            if ref.get("optional"):
                raise RenderError(f"{where}.valueFrom.{kind}.optional: the deployer's {kind}s cannot be optional")
            key, name_field = _ENV_REFS[kind]
            refs.setdefault(key, []).append({"envVarName": name, name_field: ref["name"], "dataKey": ref["key"]})
            continue
        value = str(var.get("value") or "")
        if "'" in value:
            raise RenderError(f"{where}.value: the deployer's environmentVariables drop every single quote")
        if "$(" in value:
            raise RenderError(
                f"{where}.value: the deployer does not keep the env vars' order, so the $(VAR) reference may not expand"
            )
        if value and re.fullmatch(r"\w+", name):
            plain.append(f"{name}='{value}'")
        elif "," in value:
            raise RenderError(
                f"{where}.value: the deployer's environmentVariables can hold a comma only in the value of a "
                f"name of letters, digits and '_' ({name!r} is not)"
            )
        else:
            plain.append(f"{name}={value}")
    out = {"environmentVariables": ",".join(plain)} if plain else {}
    for key in ("secretKeyRefs", "configMapKeyRefs"):
        if key in refs:
            out[key] = flow(refs[key])
    return out


def decode_env(props: Mapping[str, str], where: str) -> list[dict[str, Any]]:
    """The env vars of `encode_env`'s properties, in order: values, Secret keys, ConfigMap keys."""
    out: list[dict[str, Any]] = []
    text = props.get("environmentVariables") or ""
    entries = [m.group(1).replace("'", "") for m in _QUOTED_ENV.finditer(text)]
    entries += [e for e in _QUOTED_ENV.sub("", text).split(",") if e.strip()]
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep:
            raise ImportRefused(f"{where}.environmentVariables: {entry!r} is not NAME=value")
        out.append({"name": name, "value": value})
    for kind, (key, name_field) in _ENV_REFS.items():
        for ref in parse_flow(props[key], f"{where}.{key}") or [] if key in props else []:
            selector = {"name": str(ref.get(name_field)), "key": str(ref.get("dataKey"))}
            out.append({"name": str(ref.get("envVarName")), "valueFrom": {kind: selector}})
    return out


# ---------------------------------------------------------------- probes

# (Probe attribute, property suffix). The deployer's TCP probes have no timeout
# (TcpProbeCreator builds none: Kubernetes' default of 1 s applies) and no path.
HTTP_PROBE = (
    ("path", "Path"),
    ("port", "Port"),
    ("initial_delay", "Delay"),
    ("period", "Period"),
    ("timeout", "Timeout"),
    ("failure_threshold", "Failure"),
)
TCP_PROBE = tuple(p for p in HTTP_PROBE if p[0] not in ("path", "timeout"))
TCP_TIMEOUT = 1  # what a pod gets for a TCP probe from this deployer
PROBE_TYPE = "probeType"  # HTTP (the deployer's default) or TCP, one for all three probes
PROBE_FIELD = {
    "path": "httpGet.path",
    "port": "port",
    "initial_delay": "initialDelaySeconds",
    "period": "periodSeconds",
    "timeout": "timeoutSeconds",
    "failure_threshold": "failureThreshold",
}


def probe_key(kind: str, http: bool, suffix: str) -> str:
    return f"{kind}{'Http' if http else 'Tcp'}Probe{suffix}"


def neutral_startup(probes: AppProbes) -> Probe:
    """The startup probe sent for an app whose pipeline sets none: the deployer always adds
    one (by default GET /actuator/info after 30 s, which holds readiness back and restarts
    an app that does not serve that path). This one checks the liveness endpoint every
    second from the earlier of the two probes' delays and gives up when the liveness
    probe would have restarted the container, so the pod behaves as without one."""
    r, lv = probes.readiness, probes.liveness
    delay = min(r.initial_delay, lv.initial_delay)
    restart_at = lv.initial_delay + lv.period * lv.failure_threshold
    return Probe(lv.path, delay, 1, timeout=lv.timeout, failure_threshold=restart_at - delay, port=lv.port)


def _encode_probes(probes: AppProbes, path: str) -> dict[str, str]:
    given = {"readiness": probes.readiness, "liveness": probes.liveness, "startup": probes.startup}
    http = probes.readiness.path is not None
    for kind in KINDS:
        probe = given[kind]
        if probe is not None and (probe.path is not None) != http:
            raise RenderError(
                f"{path}.{kind}: the deployer takes one probe type per app (probeType) for all three probes; "
                f"readiness is {'HTTP' if http else 'TCP'}, {kind} is {'TCP' if http else 'HTTP'}"
            )
        if probe is not None and not http and probe.timeout != TCP_TIMEOUT:
            raise RenderError(
                f"{path}.{kind}.timeoutSeconds: the deployer's TCP probes have no timeout (Kubernetes' "
                f"default of {TCP_TIMEOUT} s applies); set it to {TCP_TIMEOUT} for `tspipe scdf`"
            )
    out = {} if http else {PROBE_TYPE: "TCP"}
    for kind in KINDS:
        probe = given[kind] or neutral_startup(probes)
        for attr, suffix in HTTP_PROBE if http else TCP_PROBE:
            value = getattr(probe, attr)
            out[probe_key(kind, http, suffix)] = str(SERVER_PORT if attr == "port" and value is None else value)
    return out


def _decode_probes(props: dict[str, str], c: Component, where: str) -> tuple[AppProbes, set[str]]:
    """The app's probes from its properties over the deployer's own defaults where a
    property is missing (as the deployer does), and the keys read."""
    probe_type = props.get(PROBE_TYPE, "HTTP").upper()
    if probe_type not in ("HTTP", "TCP"):
        raise ImportRefused(f"{where}.{PROBE_TYPE}: {probe_type} probes have no equivalent in the pipeline")
    http = probe_type == "HTTP"
    used = {PROBE_TYPE}
    found: dict[str, Probe] = {}
    for kind in KINDS:
        values: dict[str, Any] = {}
        for attr, suffix in HTTP_PROBE if http else TCP_PROBE:
            key = probe_key(kind, http, suffix)
            used.add(key)
            if key in props:
                values[attr] = props[key] if attr == "path" else _int(props[key], f"{where}.{key}")
        base = DEPLOYER_DEFAULTS[(kind, http)]
        probe = replace(base, **values)
        if http and probe.path is None:
            probe = replace(probe, path=BOOT2_PATHS[kind])
        if not http and probe.port is None:
            raise ImportRefused(f"{where}.{probe_key(kind, False, 'Port')}: a TCP probe needs its port")
        found[kind] = replace(probe, port=None if probe.port == SERVER_PORT else probe.port)
    probes = AppProbes(readiness=found["readiness"], liveness=found["liveness"])
    # The probe `encode` sends for "no startup probe" reads back as none.
    if found["startup"] != neutral_startup(probes):
        probes = replace(probes, startup=found["startup"])
    return probes, used


def _int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ImportRefused(f"{where}: {text!r} is not a whole number") from None


# The deployer's own probe settings when a property is missing (KubernetesDeployerProperties
# 2.9.5 field defaults; port None: the app's server port; path None: Boot 2's actuator path).
DEPLOYER_DEFAULTS = {
    ("readiness", True): Probe(None, 1, 10, timeout=5, failure_threshold=3),
    ("liveness", True): Probe(None, 1, 60, timeout=5, failure_threshold=3),
    ("startup", True): Probe(None, 30, 3, timeout=5, failure_threshold=20),
    ("readiness", False): Probe(None, 1, 10, timeout=TCP_TIMEOUT, failure_threshold=3),
    ("liveness", False): Probe(None, 10, 60, timeout=TCP_TIMEOUT, failure_threshold=3),
    ("startup", False): Probe(None, 30, 3, timeout=TCP_TIMEOUT, failure_threshold=20),
}
BOOT2_PATHS = {"readiness": "/actuator/info", "liveness": "/actuator/health", "startup": "/actuator/info"}


# ---------------------------------------------------------------- encode


def encode(
    t: PodTemplate,
    probes: AppProbes,
    env: tuple[Mapping[str, Any], ...],
    where: Callable[[str], str],
    app_path: str,
) -> dict[str, str]:
    """An app's `kubernetes.*` deployer properties (without `deployer.<label>.`).

    `t`: the app's effective pod template; `where(field)`: the spec path that set it;
    `app_path`: `spec.<app>` (its probes and env)."""
    out = {f"{K8S}{k}": v for k, v in _encode_probes(probes, f"{app_path}.probes").items()}
    out.update({f"{K8S}{k}": v for k, v in encode_env(env, f"{app_path}.env").items()})
    out[f"{K8S}podSecurityContext"] = POD_SECURITY_CONTEXT
    out[f"{K8S}containerSecurityContext"] = CONTAINER_SECURITY_CONTEXT
    volumes, mounts = list(t.volumes or ()), list(t.volume_mounts or ())
    check_model(volumes, "[Volume]", where("volumes"))
    check_model(mounts, "[VolumeMount]", where("volumeMounts"))
    mounted = {m.get("name") for m in mounts}
    for i, v in enumerate(volumes):
        if v.get("name") not in mounted:
            raise RenderError(
                f"{where('volumes')}[{i}]: no volumeMount uses volume {v.get('name')!r}, and the deployer drops "
                "a volume no container mounts"
            )
    out[f"{K8S}volumes"] = "[" + ", ".join([TMP_VOLUME_FLOW] + [_typed_flow(dict(v), "Volume") for v in volumes]) + "]"
    out[f"{K8S}volumeMounts"] = (
        "[" + ", ".join([TMP_MOUNT_FLOW] + [_typed_flow(dict(m), "VolumeMount") for m in mounts]) + "]"
    )
    for f in POD_FIELDS:
        if f.field in ("volumes", "volumeMounts"):
            continue
        attr = next(pf.attr for pf in POD_TEMPLATE_FIELDS if pf.name == f.field)
        value = getattr(t, attr)
        if f.field == "tolerations":
            # The operator's pods tolerate node loss for 30 s unless the template says otherwise
            # (render.py); without them here SCDF's pods would get Kubernetes' 300 s.
            value = node_loss_tolerations([dict(x) for x in value or ()])
        if value is None or (isinstance(value, Mapping | tuple | list) and not value):
            continue
        if f.encode is None:
            raise RenderError(
                f"{where(f.field)}: SCDF's Kubernetes deployer ({DEPLOYER}) has no property for "
                f"{f.field}; remove it for `tspipe scdf` or deploy this pipeline with the operator"
            )
        out.update({f"{K8S}{k}": v for k, v in f.encode(value, where(f.field)).items()})
    return out


# ---------------------------------------------------------------- decode


@dataclass(frozen=True)
class Decoded:
    pod_template: dict[str, Any]  # podTemplate fields as the CR spells them
    probes: AppProbes
    env: list[dict[str, Any]]  # spec.<app>.env
    notes: tuple[str, ...] = ()


def decode(props: Mapping[str, str], c: Component, where: str) -> Decoded:
    """An app's `kubernetes.*` properties (keys without `kubernetes.`) back into the
    pipeline's fields. `where`: how to name the properties (`deployer.<label>.kubernetes`).
    Every key must be one this table knows; ImportRefused names the first that is not."""
    props = dict(props)
    probes, used = _decode_probes(props, c, where)
    notes = []
    template: dict[str, Any] = {}
    for key in OWNED_KEYS:
        if key in props:
            ours = POD_SECURITY_CONTEXT if key == "podSecurityContext" else CONTAINER_SECURITY_CONTEXT
            if parse_flow(props[key], f"{where}.{key}") != parse_flow(ours, "ours"):
                raise ImportRefused(
                    f"{where}.{key}: {props[key]!r} differs from the operator's own ({ours}), which it always "
                    "renders and a pipeline cannot change"
                )
        else:
            notes.append(f"{where}.{key} is not set: the operator's pods get its own ({key})")
    used |= set(OWNED_KEYS)
    tmp_volume, tmp_mount = parse_flow(TMP_VOLUME_FLOW, "ours"), parse_flow(TMP_MOUNT_FLOW, "ours")
    for key, ours in (("volumes", tmp_volume), ("volumeMounts", tmp_mount)):
        items = parse_flow(props[key], f"{where}.{key}") if key in props else []
        items = items or []
        user = []
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("name") == TMP_VOLUME:
                if item != ours:
                    raise ImportRefused(
                        f"{where}.{key}[{i}]: {TMP_VOLUME!r} is the operator's own ({ours}); this one differs"
                    )
                continue
            user.append(item)
        if user:
            template[key] = user
    used |= {"volumes", "volumeMounts", *ENV_KEYS}
    for f in POD_FIELDS:
        if f.decode is None:
            continue
        value = f.decode(props, where)
        if f.field == "tolerations":
            value, note = _without_node_loss_defaults(value, where)
            notes += [note] if note else []
        if value is not None:
            template[f.field] = value
        used |= set(f.keys)
    for key in sorted(props):
        if key not in used:
            raise ImportRefused(
                f"{where}.{key}: a deployer property the pipeline has no field for (what `tspipe scdf import` "
                "reads: docs/scdf.md)"
            )
    return Decoded(template, probes, decode_env(props, where), tuple(notes))
