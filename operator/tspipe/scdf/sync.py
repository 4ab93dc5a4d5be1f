"""Make an SCDF server hold a pipeline's stream: compare, plan, apply.

`observe` reads what the server holds, `plan_steps` (pure) decides the smallest set of
steps, `apply_steps` runs them and, when one fails, says exactly which ones had already
been done. An unchanged pipeline plans no steps at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..components import APP_LABELS
from ..model import Pipeline
from .client import DataFlowClient, ScdfError, ScdfHttpError, release_description, release_status
from .render import AppRegistration, StreamPlan, description_marker, stream_plan
from .runtime import parse_runtime

# How Skipper's manifest records a `deployer.<label>.` property.
DEPLOYER_PREFIX = "spring.cloud.deployer."
COUNT = "count"  # `deployer.<label>.count`: instances (SCDF's default 1)

# Keys SCDF sets on single apps itself: the instance count it derives from the app's
# `deployer.<label>.count` (and sends again on every deploy), so never a stale leftover.
SCDF_APP_KEYS = frozenset({"spring.cloud.stream.instanceCount"})

# SCDF states that will not change without a new request.
SETTLED_STATES = {"deployed", "failed", "incomplete", "partial", "undeployed", "error"}


class PlanError(ScdfError):
    """The server holds something this tool must not touch (e.g. someone else's stream)."""


def normalize_dsl(text: str | None) -> str:
    return " ".join((text or "").split())


@dataclass
class Observed:
    """What the server holds for one stream and its apps."""

    apps: dict[str, list[dict]] = field(default_factory=dict)  # app name -> its registrations
    definition: dict | None = None  # GET /streams/definitions/{name}
    release_version: int | None = None  # newest non-deleted Skipper release
    manifest: dict[str, dict[str, Any]] | None = None  # label -> recorded spec
    # label -> instances the platform runs (None: not read). A scale changes these, not
    # the release's manifest.
    instances: dict[str, int] | None = None


@dataclass(frozen=True)
class Step:
    kind: str  # register | default | destroy | create | deploy | update | scale
    summary: str  # past tense, for "already done" and progress lines
    args: tuple = ()


def observe(client: DataFlowClient, plan: StreamPlan) -> Observed:
    obs = Observed()
    for app in plan.apps:
        obs.apps[app.name] = client.app_versions(app.name)
    obs.definition = client.definition(plan.stream_name)
    if obs.definition is not None and _is_deployed(obs.definition):
        release = client.current_release(plan.stream_name)
        if release is not None:
            obs.release_version = int(release["version"])
            obs.manifest = client.manifest(plan.stream_name, obs.release_version)
            obs.instances = running_instances(client, plan.stream_name)
    return obs


def running_instances(client: DataFlowClient, name: str) -> dict[str, int] | None:
    """Instances per app as the platform reports them; None if it cannot be read (then the
    release's recorded count is compared instead)."""
    try:
        # An app reported without instances (a platform that lost them, or could not
        # start them) says nothing about its count: the recorded one is compared then.
        return {a.label: len(a.instances) for a in parse_runtime(client.runtime(name), name) if a.instances}
    except ScdfError:
        return None


def _is_deployed(definition: dict) -> bool:
    return (definition.get("status") or "undeployed") != "undeployed"


# ---------------------------------------------------------------- pure planning


def _app_steps(app: AppRegistration, regs: list[dict]) -> list[Step]:
    same = [r for r in regs if str(r.get("version")) == app.version]
    steps = []
    if not same:
        steps.append(Step("register", f"registered app {app.name!r} version {app.version} as {app.uri}", (app, False)))
        # The first version of an app becomes its default; a later one must be made default.
        if regs:
            steps.append(Step("default", f"made version {app.version} the default of app {app.name!r}", (app,)))
        return steps
    reg = same[0]
    if reg.get("uri") != app.uri:
        steps.append(
            Step(
                "register",
                f"re-registered app {app.name!r} version {app.version} as {app.uri} (was {reg.get('uri')})",
                (app, True),
            )
        )
    if not reg.get("defaultVersion"):
        steps.append(Step("default", f"made version {app.version} the default of app {app.name!r}", (app,)))
    return steps


def scdf_common_keys(manifest: dict[str, dict[str, Any]]) -> set[str]:
    """Keys SCDF adds to every app itself (its common application properties).

    They carry the same value in every app of the stream, so a key present identically in
    all apps and not wired by us is SCDF's, not a leftover of an earlier pipeline.
    """
    props = [spec.get("applicationProperties") or {} for spec in manifest.values()]
    if not props:
        return set()
    common = set(props[0])
    for p in props[1:]:
        common &= {k for k in p if k in props[0] and p[k] == props[0][k]}
    return common


def by_label(props: dict[str, str], kind: str) -> dict[str, dict[str, str]]:
    """`<kind>.<label>.<key>` -> {label: {key: value}}, for every app label."""
    out: dict[str, dict[str, str]] = {label: {} for label in APP_LABELS}
    for key, value in props.items():
        for label in APP_LABELS:
            prefix = f"{kind}.{label}."
            if key.startswith(prefix):
                out[label][key[len(prefix) :]] = value
                break
    return out


def property_changes(plan: StreamPlan, manifest: dict[str, dict[str, Any]]):
    """(changed, stale, versions, missing) between the plan and what Skipper recorded.

    changed: `app.<label>.<key>` or `deployer.<label>.<key>` -> wanted value, for keys recorded
    differently or not at all.
    stale: `app.<label>.<key>` recorded from an earlier deploy but no longer wanted.
    versions: label -> wanted version where the recorded resource differs.
    missing: labels with no recorded app.
    """
    wanted = by_label(plan.properties, "app")
    wanted_deployer = by_label(plan.deployer, "deployer")
    uri_by_label = {label: app.uri for app in plan.apps for label in app.labels}
    version_by_label = {label: app.version for app in plan.apps for label in app.labels}
    common = scdf_common_keys(manifest)
    changed, stale, versions, missing = {}, [], {}, []
    for label in APP_LABELS:
        rec = manifest.get(label)
        if rec is None:
            missing.append(label)
            continue
        recorded = rec.get("applicationProperties") or {}
        for key, value in wanted[label].items():
            if recorded.get(key) != value:
                changed[f"app.{label}.{key}"] = value
        for key in recorded:
            if key not in wanted[label] and key not in common and key not in SCDF_APP_KEYS:
                stale.append(f"app.{label}.{key}")
        # Data Flow records `deployer.<label>.x` as `spring.cloud.deployer.x`. Deployer
        # properties it adds itself (group, ...) are not ours to judge: only changes count.
        recorded_deployer = rec.get("deploymentProperties") or {}
        for key, value in wanted_deployer[label].items():
            # Counts are compared with what runs (count_changes), not here.
            if key != COUNT and recorded_deployer.get(f"{DEPLOYER_PREFIX}{key}") != value:
                changed[f"deployer.{label}.{key}"] = value
        if f"{rec.get('resource')}:{rec.get('version')}" != uri_by_label[label]:
            versions[label] = version_by_label[label]
    return changed, sorted(stale), versions, missing


def count_changes(
    plan: StreamPlan, manifest: dict[str, dict[str, Any]], instances: dict[str, int] | None
) -> tuple[dict[str, str], dict[str, int]]:
    """(for an update, for a scale) of the apps whose wanted count differs.

    An update makes a new release from the recorded one, so it carries every count that
    differs from the recorded count. A scale resizes what runs, so it is needed where the
    wanted count differs from the instances the platform reports (else the recorded one).
    """
    for_update: dict[str, str] = {}
    for_scale: dict[str, int] = {}
    for key, value in plan.deployer.items():
        if not key.endswith(f".{COUNT}"):
            continue
        label = key[len("deployer.") : -len(f".{COUNT}")]
        recorded = ((manifest.get(label) or {}).get("deploymentProperties") or {}).get(f"{DEPLOYER_PREFIX}{COUNT}", "1")
        running = str((instances or {}).get(label, recorded))
        if value != recorded:
            for_update[key] = value
        if value != running:
            for_scale[label] = int(value)
    return for_update, for_scale


def plan_steps(p: Pipeline, plan: StreamPlan, obs: Observed) -> tuple[list[Step], list[str]]:
    """(steps, notes). Notes explain any step that replaces something."""
    steps: list[Step] = []
    notes: list[str] = []
    for app in plan.apps:
        steps += _app_steps(app, obs.apps.get(app.name, []))

    name = plan.stream_name
    props = plan.all_properties
    full_deploy = Step("deploy", f"deployed stream {name!r} with {len(props)} properties", (props,))
    create = Step("create", f"created stream definition {name!r}: {plan.definition}", (plan.definition,))
    defn = obs.definition
    if defn is None:
        return steps + [create, full_deploy], notes

    recorded_dsl = defn.get("originalDslText") or defn.get("dslText")
    ours = (defn.get("description") or "") == description_marker(p)
    if normalize_dsl(recorded_dsl) != normalize_dsl(plan.definition):
        if not ours:
            raise PlanError(
                f"stream {name!r} already exists on the server with a different definition "
                f"({recorded_dsl!r}) and was not created by tspipe for {p.namespace}/{p.name}; "
                "refusing to replace it (pick another spec.streamName, or destroy that stream first)"
            )
        notes.append(
            f"the stream definition changed ({recorded_dsl!r} -> {plan.definition!r}): "
            "SCDF cannot edit a definition, so the stream is destroyed, created and deployed again"
        )
        return steps + [Step("destroy", f"destroyed stream {name!r} (old definition)"), create, full_deploy], notes

    if not _is_deployed(defn) or obs.manifest is None:
        return steps + [full_deploy], notes

    changed, stale, versions, missing = property_changes(plan, obs.manifest)
    if missing or stale:
        # SCDF folds deployed app properties into the stored definition (its dslText) and
        # reuses them on the next deploy; `stream update` merges. Only a fresh definition
        # drops a property.
        why = (
            f"apps {', '.join(missing)} are missing from the deployed release"
            if missing
            else f"properties no longer wanted are still deployed ({', '.join(stale)}); SCDF keeps deployed "
            "properties in the stream definition and an update only adds or changes them"
        )
        notes.append(f"{why}: the stream {name!r} is destroyed, created and deployed again")
        return steps + [
            Step("destroy", f"destroyed stream {name!r} (to drop old properties)"),
            create,
            full_deploy,
        ], notes
    count_update, count_scale = count_changes(plan, obs.manifest, obs.instances)
    if not changed and not versions:
        # Skipper refuses an upgrade whose only difference is a count ("no difference"):
        # scaling is its own call, which resizes the running apps without a new release.
        for label, count in count_scale.items():
            steps.append(Step("scale", f"scaled app {label!r} of stream {name!r} to {count}", (label, count)))
        return steps, notes
    if changed or versions:
        changed.update(count_update)
        update = dict(changed)
        update.update({f"version.{label}": v for label, v in versions.items()})
        what = []
        if changed:
            what.append(f"{len(changed)} changed properties")
        if versions:
            what.append("new versions for " + ", ".join(f"{lb} ({v})" for lb, v in versions.items()))
        steps.append(Step("update", f"updated deployed stream {name!r}: {'; '.join(what)}", (update,)))
    return steps, notes


# ---------------------------------------------------------------- applying


class PartialFailure(ScdfError):
    """A step failed after others had changed the server; the message lists them."""

    def __init__(self, error: ScdfError, done: list[Step]):
        if done:
            listed = "\n".join(f"  - {s.summary}" for s in done)
            text = f"{error}\nAlready done before this failure (nothing was rolled back):\n{listed}"
        else:
            text = f"{error}\nNothing was changed on the server."
        super().__init__(text)
        self.error = error
        self.done = done


def apply_steps(
    client: DataFlowClient,
    plan: StreamPlan,
    steps: list[Step],
    description: str,
    progress: Callable[[str], None] = lambda s: None,
) -> list[Step]:
    done: list[Step] = []
    name = plan.stream_name
    for step in steps:
        try:
            if step.kind == "register":
                app, force = step.args
                client.register_app(app.name, app.version, app.uri, app.metadata_uri, force=force)
            elif step.kind == "default":
                (app,) = step.args
                client.make_default(app.name, app.version)
            elif step.kind == "destroy":
                wait_until_idle(client, name)
                client.destroy(name)
            elif step.kind == "create":
                (definition,) = step.args
                client.create_definition(name, definition, description)
            elif step.kind == "deploy":
                (props,) = step.args
                client.deploy(name, props)
            elif step.kind == "update":
                (props,) = step.args
                client.update(name, props)
            elif step.kind == "scale":
                label, count = step.args
                client.scale(name, label, count)
            else:  # pragma: no cover - plan_steps makes only the kinds above
                raise ScdfError(f"unknown step {step.kind}")
        except ScdfError as exc:
            raise PartialFailure(exc, done) from None
        done.append(step)
        progress(step.summary)
    return done


# Returned while the server answers the history with a server error: keep polling.
_BUSY: dict = {}


def _newest_release(client: DataFlowClient, name: str, deadline: float) -> dict | None:
    """The newest release, or _BUSY on a 5xx before `deadline`. Data Flow once answered
    the history with HTTP 500 while `destroy` waited for Skipper right after an update
    (a server-side race; the next read succeeds), so a wait polls on; the error is
    raised once time is up."""
    try:
        return client.newest_release(name)
    except ScdfHttpError as exc:
        if exc.status < 500 or time.monotonic() >= deadline:
            raise
        return _BUSY


def wait_until_idle(
    client: DataFlowClient, name: str, timeout: float = 120.0, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Wait while Skipper is still working on the newest release (status UNKNOWN: an
    install or upgrade underway); it refuses to delete a release meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        rel = _newest_release(client, name, deadline)
        if rel is _BUSY:
            sleep(1.0)
            continue
        if rel is None or release_status(rel) != "UNKNOWN":
            return
        if time.monotonic() >= deadline:
            raise ScdfError(
                f"stream {name!r}: Skipper is still working on release {rel.get('version')} "
                f"({release_description(rel)}) after {timeout:.0f}s; try again later"
            )
        sleep(1.0)


def wait_for_state(
    client: DataFlowClient, name: str, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> dict | None:
    """Poll the definition until its state settles or `timeout` passes; the last reading."""
    deadline = time.monotonic() + timeout
    d = client.definition(name)
    while d is not None and (d.get("status") or "") not in SETTLED_STATES and time.monotonic() < deadline:
        sleep(1.0)
        d = client.definition(name)
    return d


_SPACES = re.compile(r"\s+")


def state_line(d: dict | None) -> str:
    if d is None:
        return "state: not found"
    desc = _SPACES.sub(" ", d.get("statusDescription") or "").strip()
    return f"state: {d.get('status') or 'unknown'}" + (f" ({desc})" if desc else "")


def wait_for_release(
    client: DataFlowClient, name: str, after_version: int, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> dict | None:
    """Poll until a release newer than `after_version` leaves Skipper's UNKNOWN (in progress)
    state, or `timeout` passes; that release, or None if none appeared."""
    deadline = time.monotonic() + timeout
    while True:
        rel = _newest_release(client, name, deadline)
        if rel is _BUSY:
            sleep(1.0)
            continue
        if rel is not None and int(rel.get("version") or 0) > after_version:
            if release_status(rel) not in ("", "UNKNOWN") or time.monotonic() >= deadline:
                return rel
        elif time.monotonic() >= deadline:
            return None
        sleep(1.0)


@dataclass
class SyncResult:
    done: list[Step]
    notes: list[str]
    observed: Observed


def sync(client: DataFlowClient, p: Pipeline, progress: Callable[[str], None] = lambda s: None) -> SyncResult:
    """Bring the server in line with `p`."""
    plan = stream_plan(p)
    obs = observe(client, plan)
    steps, notes = plan_steps(p, plan, obs)
    for note in notes:
        progress(f"note: {note}")
    done = apply_steps(client, plan, steps, description_marker(p), progress)
    return SyncResult(done, notes, obs)
