"""What SCDF needs for a pipeline, as data and as the seed's shell script. Pure.

Everything about the wiring comes from `tspipe.wiring` (the code that also renders the
operator's Deployments); this module only decides how SCDF registers the apps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import wiring
from ..components import COMPONENTS, STREAM_DEFINITION, Component
from ..model import Pipeline
from ..podtemplate import FIELDS as POD_TEMPLATE_FIELDS
from ..render import spec_replicas
from . import podshape
from .podshape import RenderError

__all__ = ["AppRegistration", "RenderError", "StreamPlan", "render_script", "stream_plan"]

# Spring's prebuilt stream apps are published as Docker images under this Docker Hub
# organisation and as Maven artifacts (with a `metadata` classifier jar describing their
# options) under this group; SCDF's own app descriptors pair them the same way.
SPRING_APPS_DOCKER_ORG = "springcloudstream"
SPRING_APPS_MAVEN_GROUP = "org.springframework.cloud.stream.app"

# Prefixes SCDF's shell parser treats as the start of a new `key=value` pair after a comma
# (DeploymentPropertiesUtils.DEPLOYMENT_PROPERTIES_PREFIX in 2.11).
_SHELL_PAIR_PREFIXES = ("deployer", "app", "version", "scheduler", "spring.cloud.dataflow.task")
# A tag: what follows the last ':' after the last '/' (a registry's ':port' comes before it).
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class AppRegistration:
    """One `app register --type app` (REST: POST /apps/app/{name}/{version})."""

    name: str
    version: str
    uri: str
    metadata_uri: str | None
    labels: tuple[str, ...]  # the stream labels that use this app


@dataclass(frozen=True)
class StreamPlan:
    """Everything SCDF must hold for the pipeline."""

    stream_name: str
    definition: str
    apps: tuple[AppRegistration, ...]
    properties: dict[str, str]  # exactly wiring.deployment_properties(p)
    # `deployer.<label>.*`: replica count and the operator's pod shape (deployer_properties)
    deployer: dict[str, str] = field(default_factory=dict)

    @property
    def all_properties(self) -> dict[str, str]:
        """What `stream deploy` sends: the wiring, then the deployer properties."""
        return {**self.properties, **self.deployer}


# A stream's description marks the definitions `tspipe scdf deploy` made (and may
# replace); `import` reads the pipeline's namespace and name back from it.
DESCRIPTION_PREFIX = "tspipe TimestampPipeline "


def description_marker(p: Pipeline) -> str:
    return f"{DESCRIPTION_PREFIX}{p.namespace}/{p.name}"


def marked_pipeline(description: str | None) -> tuple[str, str] | None:
    """(namespace, name) of the pipeline a marked stream was deployed from, else None."""
    if not description or not description.startswith(DESCRIPTION_PREFIX):
        return None
    namespace, sep, name = description[len(DESCRIPTION_PREFIX) :].partition("/")
    return (namespace, name) if sep and namespace and name else None


def split_image(image: str, field: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; a tag is required (SCDF versions come from it).

    `repo:tag@sha256:...` keeps its digest in the repository part's URI but versions by tag.
    """
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon <= slash:
        raise RenderError(
            f"{field}: image {image!r} has no tag; SCDF docker: URIs need one "
            "(it also becomes the registered app version)"
        )
    tag = ref[colon + 1 :]
    if not _TAG_RE.match(tag):
        raise RenderError(f"{field}: image {image!r} has an invalid tag {tag!r}")
    return ref[:colon], tag


def docker_uri(image: str) -> str:
    return f"docker:{image}"


def metadata_uri(repository: str, tag: str) -> str | None:
    """The Maven metadata artifact of a Spring prebuilt app image, else None.

    `springcloudstream/time-source-kafka:5.1.1` ->
    `maven://org.springframework.cloud.stream.app:time-source-kafka:jar:metadata:5.1.1`
    (what the seed registers with `--metadata-uri`). Other images have none.
    """
    for prefix in (f"{SPRING_APPS_DOCKER_ORG}/", f"docker.io/{SPRING_APPS_DOCKER_ORG}/"):
        if repository.startswith(prefix):
            artifact = repository[len(prefix) :]
            if "/" not in artifact:
                return f"maven://{SPRING_APPS_MAVEN_GROUP}:{artifact}:jar:metadata:{tag}"
    return None


def app_registrations(p: Pipeline) -> tuple[AppRegistration, ...]:
    """One registration per SCDF app name the definition uses, in definition order.

    The definition names `log` for both loggers, so both must run the same image: SCDF
    resolves an app name to one registered (default) version.
    """
    images = wiring.app_images(p)
    by_name: dict[str, AppRegistration] = {}
    for c in COMPONENTS:
        label, name, image, field = c.label, c.scdf_app, images[c.label], f"spec.{c.spec_field}.image"
        repo, tag = split_image(image, field)
        reg = AppRegistration(
            name=name, version=tag, uri=docker_uri(image), metadata_uri=metadata_uri(repo, tag), labels=(label,)
        )
        prev = by_name.get(name)
        if prev is None:
            by_name[name] = reg
        elif prev.uri != reg.uri:
            first = next(lbl for lbl in prev.labels)
            raise RenderError(
                f"{field}: {label} and {first} are both the SCDF app {name!r} in the "
                f"definition {STREAM_DEFINITION!r}, so they must use the same image "
                f"(got {images[first]!r} and {image!r})"
            )
        else:
            by_name[name] = AppRegistration(
                name=name,
                version=prev.version,
                uri=prev.uri,
                metadata_uri=prev.metadata_uri,
                labels=prev.labels + (label,),
            )
    return tuple(by_name.values())


def stream_plan(p: Pipeline) -> StreamPlan:
    if p.kafka.credentials is not None:
        # SCDF keeps deployment properties in its database and shows them in its UI and
        # REST API, so Kafka credentials must never travel that way: refuse instead.
        raise RenderError(
            "spec.kafka.credentials: the SCDF fallback does not carry Kafka credentials (they would "
            "land in SCDF's stored deployment properties); configure SASL for the Kafka binder on the "
            "SCDF server (e.g. its Kubernetes deployer's secretKeyRefs), remove spec.kafka.credentials "
            "for `tspipe scdf`, or deploy this pipeline with the operator"
        )
    return StreamPlan(
        stream_name=p.stream_name,
        definition=STREAM_DEFINITION,
        apps=app_registrations(p),
        properties=dict(wiring.deployment_properties(p)),
        deployer=deployer_properties(p),
    )


# ---------------------------------------------------------------- deployer properties


def _origin(p: Pipeline, c: Component, field: str) -> str:
    """The spec path that set one field of an app's effective pod template (the app's own
    podTemplate wins over the pipeline's; `resources` also has a short spelling)."""
    attr = next(f.attr for f in POD_TEMPLATE_FIELDS if f.name == field)
    app_path = f"spec.{c.spec_field}.podTemplate.{field}"
    if getattr(p.app(c).pod_template, attr) is not None:
        return app_path
    if field == "resources":
        return "spec.podTemplate.resources" if p.pod_template.resources is not None else f"{app_path} (default)"
    return f"spec.podTemplate.{field}"


def app_deployer_properties(p: Pipeline, c: Component) -> dict[str, str]:
    """One app's `deployer.<label>.` properties, without that prefix: its probes and env, the
    operator's security contexts and /tmp, and its whole effective podTemplate
    (podshape.POD_FIELDS says how each field is carried; RenderError names one that cannot be)."""
    out = podshape.encode(
        p.pod_template_for(c),
        p.app(c).probes,
        p.app(c).env,
        lambda field: _origin(p, c, field),
        f"spec.{c.spec_field}",
    )
    if c.scalable:
        out["count"] = str(spec_replicas(p, c))
    return out


def deployer_properties(p: Pipeline) -> dict[str, str]:
    """`deployer.<label>.*` for every app: the router's count from spec.router.replicas and
    the pod shape the operator renders, so SCDF's pods match the operator's."""
    return {
        f"deployer.{c.label}.{key}": value for c in COMPONENTS for key, value in app_deployer_properties(p, c).items()
    }


# ---------------------------------------------------------------- the shell script


def _check_shell_value(key: str, value: str) -> None:
    """Refuse values the SCDF shell's `--properties` parser would change.

    The shell trims values, splits the list on commas (a comma followed by something like
    `app.x=` starts a new pair) and the whole list sits in one double-quoted argument.
    `tspipe scdf deploy` sends JSON and has none of these limits.
    """
    why = None
    if value != value.strip():
        why = "leading or trailing whitespace (the shell trims it)"
    elif any(c in value for c in '"\\\n\r'):
        why = "a double quote, backslash or newline"
    else:
        for part in value.split(",")[1:]:
            if "=" in part and part.strip().lstrip("-").startswith(_SHELL_PAIR_PREFIXES):
                why = f"',{part}', which the shell reads as a new property"
                break
    if why:
        raise RenderError(
            f"property {key}: its value {value!r} has {why}; the SCDF shell's "
            "--properties cannot carry it (use `tspipe scdf deploy`, which sends JSON)"
        )


def register_command(app: AppRegistration) -> str:
    cmd = f"app register --type app --name {app.name} --uri {app.uri}"
    if app.metadata_uri:
        cmd += f" --metadata-uri {app.metadata_uri}"
    return cmd


def create_command(plan: StreamPlan) -> str:
    return f'stream create --name {plan.stream_name} --definition "{plan.definition}"'


def deploy_command(plan: StreamPlan) -> str:
    props_map = plan.all_properties
    for key, value in props_map.items():
        _check_shell_value(key, value)
    props = ",".join(f"{k}={v}" for k, v in props_map.items())
    return f'stream deploy --name {plan.stream_name} --properties "{props}"'


def render_script(p: Pipeline) -> str:
    """The SCDF shell commands of the seed's recipe for this pipeline, one per line."""
    plan = stream_plan(p)
    lines = [register_command(app) for app in plan.apps]
    lines.append(create_command(plan))
    lines.append(deploy_command(plan))
    return "\n".join(lines) + "\n"
