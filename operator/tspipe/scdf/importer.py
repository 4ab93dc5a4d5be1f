"""A deployed SCDF stream of the recipe's shape as a TimestampPipeline (pure).

`tspipe scdf import` reads the stream's definition and its Skipper release manifest (per
app: the image, the application properties and the deployment properties) and hands
them here. The inverse of `render.stream_plan`: the wiring keys become the spec's
topics, group and settings, every other application property goes into
`spec.<app>.properties`, and the deployer properties go back through the same table
`podshape` sends them with. Whatever has no place in a pipeline is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..components import COMPONENTS, STREAM_DEFINITION, Component, Probe
from ..fields import PipelineError
from ..model import KIND_FIELDS, MAX_NAME_LENGTH, Pipeline
from ..names import GROUP_VERSION, KIND
from ..probes import KINDS, AppProbes
from ..probes import defaults as default_probes
from ..render import SERVER_PORT
from ..spring import (
    APP_LABEL_KEY,
    BROKERS_KEY,
    MIN_PARTITIONS_KEY,
    REPLICATION_FACTOR_KEY,
    ROUTER_GUARANTEE_KEY,
    STREAM_NAME_KEY,
    TIME_FIXED_DELAY_KEY,
    canonical_key,
)
from .podshape import ImportRefused, decode
from .render import marked_pipeline

__all__ = ["ImportRefused", "Imported", "import_stream"]

# Application properties SCDF adds to every app itself (server-core's common application
# properties and what it derives from the deployment): not the user's, not carried over.
SCDF_OWN_PREFIXES = ("management.", "wavefront.")
SCDF_OWN_KEYS = frozenset({"spring.cloud.dataflow.stream.app.type", "spring.cloud.stream.instanceCount"})
# How Skipper's manifest records `deployer.<label>.<key>`.
DEPLOYER_PREFIX = "spring.cloud.deployer."
K8S_PREFIX = DEPLOYER_PREFIX + "kubernetes."
# Deployer keys SCDF sets itself: the stream's name as the apps' group, the Boot version
# of the app's metadata.
SCDF_OWN_DEPLOYER_KEYS = frozenset({"group", "bootVersion"})
# The settings whose spec value is not the property's text (components.Setting.text).
SETTING_FROM_TEXT: dict[str, Callable[[str, str], Any]] = {}


def _seconds_from_ms(text: str, where: str) -> int:
    if not text.isdigit() or int(text) % 1000 or int(text) == 0:
        raise ImportRefused(f"{where}: {text!r} is not a whole number of seconds in milliseconds (fixedDelaySeconds)")
    return int(text) // 1000


def _as_text(text: str, where: str) -> str:
    return text


def _guarantee(text: str, where: str) -> str:
    return text.replace("-", "_")


SETTING_FROM_TEXT[TIME_FIXED_DELAY_KEY] = _seconds_from_ms
SETTING_FROM_TEXT[ROUTER_GUARANTEE_KEY] = _guarantee


@dataclass
class Imported:
    resource: dict[str, Any]  # the TimestampPipeline
    notes: list[str] = field(default_factory=list)  # what changes when the operator runs it


def _image(label: str, spec: Mapping[str, Any]) -> str:
    resource, version = str(spec.get("resource") or ""), spec.get("version")
    if not resource.startswith("docker:"):
        raise ImportRefused(f"app {label}: {resource!r} is not a container image (docker:); the operator runs images")
    repo = resource[len("docker:") :].lstrip("/")
    return f"{repo}:{version}" if version and "@" not in repo else repo


def _one(values: dict[str, str], what: str) -> str | None:
    """The value every app that sets `what` agrees on; ImportRefused naming two that differ."""
    distinct = sorted(set(values.values()))
    if len(distinct) > 1:
        shown = ", ".join(f"app.{label}.{what}={v}" for label, v in values.items())
        raise ImportRefused(f"{what} differs between apps ({shown}); a pipeline has one for all apps")
    return distinct[0] if distinct else None


def _probe_cr(probe: Probe) -> dict[str, Any]:
    action: dict[str, Any] = {} if probe.port is None or probe.port == SERVER_PORT else {"port": probe.port}
    out: dict[str, Any] = {"tcpSocket": action} if probe.path is None else {"httpGet": {"path": probe.path, **action}}
    out.update(
        initialDelaySeconds=probe.initial_delay,
        periodSeconds=probe.period,
        timeoutSeconds=probe.timeout,
        failureThreshold=probe.failure_threshold,
    )
    return out


def _probes_cr(probes: AppProbes, c: Component) -> dict[str, Any]:
    base = default_probes(c)
    out = {}
    for kind in KINDS:
        mine = getattr(probes, kind)
        if mine is not None and mine != getattr(base, kind):
            out[kind] = _probe_cr(mine)
    return out


def _split(c: Component, spec: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(application properties, `deployer.` properties, `kubernetes.` properties) of an app."""
    app = {
        str(k): str(v)
        for k, v in (spec.get("applicationProperties") or {}).items()
        if not str(k).startswith(SCDF_OWN_PREFIXES) and str(k) not in SCDF_OWN_KEYS
    }
    deployer, k8s = {}, {}
    for k, v in (spec.get("deploymentProperties") or {}).items():
        key, value = str(k), "" if v is None else str(v)
        if key.startswith(K8S_PREFIX):
            k8s[key[len(K8S_PREFIX) :]] = value
        elif key.startswith(DEPLOYER_PREFIX):
            deployer[key[len(DEPLOYER_PREFIX) :]] = value
        else:
            raise ImportRefused(f"app {c.label}: deployment property {key} has no equivalent in a pipeline")
    return app, deployer, k8s


def _check_shape(stream: str, definition: str, manifest: Mapping[str, Any]) -> None:
    if " ".join(definition.split()) != STREAM_DEFINITION:
        raise ImportRefused(
            f"stream {stream!r} is {' '.join(definition.split())!r}, not the recipe's shape {STREAM_DEFINITION!r}"
        )
    labels = sorted(c.label for c in COMPONENTS)
    if sorted(manifest) != labels:
        raise ImportRefused(f"stream {stream!r}'s release holds apps {sorted(manifest)}, not the recipe's {labels}")


def _kafka(stream: str, app_props: dict[str, dict[str, str]], brokers: list[str] | None, notes: list[str]) -> Any:
    """(brokers, topic settings) every app agrees on."""

    def common(key: str) -> str | None:
        return _one({label: p[key] for label, p in app_props.items() if key in p}, key)

    for label, props in app_props.items():
        for key, want in ((STREAM_NAME_KEY, stream), (APP_LABEL_KEY, label)):
            if key in props and props[key] != want:
                raise ImportRefused(f"app.{label}.{key}={props[key]}: the operator sets it to {want}")
    found = common(BROKERS_KEY)
    if found is None and not brokers:
        raise ImportRefused(
            f"no app of stream {stream!r} sets {BROKERS_KEY} (the server's binder settings supply it); "
            "name the brokers with --brokers"
        )
    if found is not None and brokers and ",".join(brokers) != found:
        notes.append(f"--brokers {','.join(brokers)} replaces the stream's {BROKERS_KEY}={found}")
    topics: dict[str, Any] = {}
    for key, spec_field in ((REPLICATION_FACTOR_KEY, "replicationFactor"), (MIN_PARTITIONS_KEY, "partitions")):
        value = common(key)
        if value is not None:
            topics[spec_field] = int(value) if value.isdigit() else value
    return (list(brokers) if brokers else (found or "").split(",")), topics


# Keys every app has that the pipeline sets from elsewhere (the stream, the label, spec.kafka).
_COMMON = {
    canonical_key(k) for k in (STREAM_NAME_KEY, APP_LABEL_KEY, BROKERS_KEY, REPLICATION_FACTOR_KEY, MIN_PARTITIONS_KEY)
}


def _wiring(
    stream: str, c: Component, props: dict[str, str], roles: dict[str, tuple[str, str]], notes: list[str]
) -> set[str]:
    """Reads the app's bindings into `roles` (topic role -> (topic, where read)); the keys used."""
    used = set(_COMMON)
    for b in c.bindings:
        dest_key, *group_key = b.keys()
        where = f"app.{c.label}.{dest_key}"
        if dest_key not in props:
            raise ImportRefused(f"{where} is not set: the recipe wires every binding to a destination")
        topic = props[dest_key]
        if b.topic in roles and roles[b.topic][0] != topic:
            seen, at = roles[b.topic]
            raise ImportRefused(f"{where}={topic} but {at}={seen}: the recipe's apps meet on one destination there")
        roles.setdefault(b.topic, (topic, where))
        used.add(canonical_key(dest_key))
        for gk in group_key:
            used.add(canonical_key(gk))
            if gk not in props:
                notes.append(
                    f"app.{c.label}.{gk} is not set (an anonymous consumer, starting at the latest offset "
                    f"and committing nothing); the operator gives it the consumer group {stream}"
                )
            elif props[gk] != stream:
                raise ImportRefused(
                    f"app.{c.label}.{gk}={props[gk]}: the operator's consumer group is the stream name ({stream})"
                )
    return used


def _deployer(stream: str, c: Component, deployer: dict[str, str], app: dict[str, Any]) -> None:
    count = deployer.get("count")
    if count is not None and not (c.scalable or count == "1"):
        raise ImportRefused(f"deployer.{c.label}.count={count}: the operator runs one {c.label}")
    if c.scalable:
        app["replicas"] = int(count) if count is not None and count.isdigit() else 1
    if deployer.get("group") not in (None, stream):
        raise ImportRefused(f"deployer.{c.label}.group={deployer['group']}: SCDF sets it to the stream name")
    for key in sorted(set(deployer) - SCDF_OWN_DEPLOYER_KEYS - {"count"}):
        raise ImportRefused(f"deployer.{c.label}.{key}: a deployer property the pipeline has no field for")


def _app(
    stream: str, c: Component, spec: Mapping[str, Any], roles: dict[str, tuple[str, str]], notes: list[str]
) -> dict[str, Any]:
    props, deployer, k8s = _split(c, spec)
    app: dict[str, Any] = {"image": _image(c.label, spec)}
    used = _wiring(stream, c, props, roles, notes)
    names = {f.attr: f.name for f in KIND_FIELDS[c.kind]}
    for s in c.settings:
        used.add(canonical_key(s.key))
        if s.key in props:
            convert = SETTING_FROM_TEXT.get(s.key, _as_text)
            app[names[s.attr]] = convert(props[s.key], f"app.{c.label}.{s.key}")
    rest = {k: v for k, v in props.items() if canonical_key(k) not in used}
    if rest:
        app["properties"] = dict(sorted(rest.items()))
    _deployer(stream, c, deployer, app)
    decoded = decode(k8s, c, f"deployer.{c.label}.kubernetes")
    notes += list(decoded.notes)
    template = dict(decoded.pod_template)
    if template.get("resources") == dict(c.resources):
        del template["resources"]  # the operator's default for this app
    elif "resources" not in template:
        notes.append(f"{c.label} has no resources in SCDF; the operator gives it its default {dict(c.resources)}")
    if template:
        app["podTemplate"] = template
    if decoded.env:
        app["env"] = decoded.env
    probes = _probes_cr(decoded.probes, c)
    if probes:
        app["probes"] = probes
    return app


def import_stream(
    stream: str,
    definition: str,
    manifest: Mapping[str, Mapping[str, Any]],
    *,
    name: str | None = None,
    namespace: str | None = None,
    brokers: list[str] | None = None,
    description: str | None = None,
) -> Imported:
    """The TimestampPipeline reproducing `stream` (its definition's DSL text and its
    release manifest, label -> {resource, version, applicationProperties,
    deploymentProperties}). `brokers`: when no app sets the binder's brokers (the
    server's own binder settings supply them). `description`: the stream's; one that
    `tspipe scdf deploy` wrote gives the pipeline's name and namespace back.
    ImportRefused names what does not fit."""
    _check_shape(stream, definition, manifest)
    notes: list[str] = []
    app_props = {c.label: _split(c, manifest[c.label])[0] for c in COMPONENTS}
    kafka_brokers, topics = _kafka(stream, app_props, brokers, notes)
    roles: dict[str, tuple[str, str]] = {}
    spec = {c.spec_field: _app(stream, c, manifest[c.label], roles, notes) for c in COMPONENTS}
    marked = marked_pipeline(description)
    if marked is not None:
        namespace = namespace or marked[0]
        name = name or marked[1]
    meta_name = name or stream.lower()
    doc: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": {"name": meta_name, **({"namespace": namespace} if namespace else {})},
        "spec": {
            **({"streamName": stream} if stream != meta_name else {}),
            "kafka": {
                "brokers": kafka_brokers,
                "topics": {**{role: roles[role][0] for role in ("input", "even", "odd")}, **topics},
            },
            **spec,
        },
    }
    try:
        Pipeline.from_resource(doc)
    except PipelineError as exc:
        hint = f" (name it with --name, at most {MAX_NAME_LENGTH} characters)" if exc.field == "metadata.name" else ""
        raise ImportRefused(f"the imported pipeline would be invalid: {exc}{hint}") from None
    return Imported(doc, notes)
