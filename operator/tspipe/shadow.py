"""Shadow releases (pure): judge a new router on a copy of live traffic before it writes
a single record to the real topics (`spec.rollout.strategy: Shadow`).

A change to the router's pod template, with a stable revision to compare with
(`status.rollout.stable`, which autoRollback keeps), is first run as a **shadow**: the
real router (indeed every app) stays at the stable revision, and the new router runs as
its own Deployment (`<pipeline>-router-shadow`, component `router-shadow`) with its own
consumer group (`<group>-shadow-<generation>`), starting at the stable group's committed
offsets and writing to shadow topics (`<even>.shadow-<generation>`, `<odd>...` and
`<dead letter>...`) that nothing else reads. Its wiring is the router's, with those four
names overridden as the SCDF properties that name them (the same contract as the real
router's), and topic auto-creation off (the operator creates and deletes the topics).

`status.rollout.shadow.state` moves Starting (written first; the next pass creates the
topics and gives the group its offsets) -> Running (the Deployment exists; once it is
available and its group has moved, a window of `verifySeconds` opens: the broker's
offsets as the rollout window reads them) -> Removing (a verdict: the Deployment is no longer desired) -> Done
(its pods are gone, the topics and group deleted).

The verdict compares, for the input offsets both routers committed in the window (up
to SAMPLE_PER_PARTITION per partition), what each wrote: the same side (even, odd or
the dead-letter topic) and, for routed records, the same payload after each revision's
own prefix. A dead letter names its input offset (the router's `x-original-*` headers);
a routed record does not (no header or key carries it), so each input record is matched
to the output carrying its own text after the prefix (the router copies the input's
text into its output), per partition in input order. A shadow whose output for an
offset has another text therefore shows as writing nothing for it. A shadow whose prefix
for one side is the stable's prefix of the other side (prefixes swapped) differs too:
its records would read as the other side's. Equal: Promoted (the real router rolls,
then autoRollback's window judges it as usual). Different, or not consuming, or not
available within progressDeadlineSeconds: ShadowRejected, the pipeline Degraded, the
real router never changed.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import podhealth, rollback
from .components import ROUTER, Probe
from .model import SHADOW, Pipeline
from .names import DEAD_LETTER, EVEN, LABEL_COMPONENT, ODD, OUTPUTS, ROUTED
from .render import SERVER_PORT, deployment_name, render_deployment, stamp_hash
from .spring import binding_key, canonical_key
from .stamps import format_time, parse_time

# status.rollout.shadow.state
STARTING, RUNNING, REMOVING, DONE = "Starting", "Running", "Removing", "Done"
# status.rollout.shadow.verdict; SHADOW_REJECTED is also status.rollout.verdict and the Degraded reason.
PROMOTED, SHADOW_REJECTED, SUPERSEDED = "Promoted", "ShadowRejected", "Superseded"
# status.rollout.reason while a shadow runs, and a verdict's reason.
SHADOWING = "Shadowing"
OUTPUTS_EQUAL, OUTPUTS_DIFFER = "OutputsEqual", "OutputsDiffer"
NOT_CONSUMING = rollback.NOT_CONSUMING
DEADLINE = rollback.DEADLINE
NO_TRAFFIC = rollback.NO_TRAFFIC
# With Kafka credentials the operator cannot read the topics: the rolling strategy instead.
CREDENTIALS = "CredentialsNotReadable"
# A router that does not use the consumer group it is given (the seed recipe's router has
# none): the comparison matches outputs to the input offsets both groups committed, so it
# cannot be made. Not a failure: the shadow is removed unjudged (NOT_COMPARED) and the
# rolling strategy rolls the router, judged by readiness (its data checks need the
# group's commits too).
GROUP_UNUSED = rollback.GROUP_UNUSED
NOT_COMPARED = "NotCompared"  # shadow.verdict, beside PROMOTED and SHADOW_REJECTED
# What a shadow pod's counters say (podmetrics): this project's router (its tsrouter_*
# counters served), another router (none served), or not read.
COUNTERS_OURS, COUNTERS_FOREIGN, COUNTERS_UNREAD = "ours", "foreign", "unread"
SKIPPED = "Skipped"  # shadow.state when the rolling strategy was used instead

SUFFIX = "router-shadow"  # Deployment suffix and app.kubernetes.io/component of the shadow
SIDES = OUTPUTS
# Input records compared per partition (the oldest of the window's): as the rollout
# window samples 500 per partition, enough to see a release that misroutes some records.
SAMPLE_PER_PARTITION = 500
# Output records read per partition of each topic, at most: the sample's outputs plus
# the records in flight when the window opened (a poll batch, 5,000 at most).
READ_PER_PARTITION = 10_000
MAX_DIFFERENCES = 5  # the first differences kept in the status and named in the Event
TEXT_LIMIT = 120  # characters of a record shown in a difference
RECHECK_SECONDS = 2.0  # while the shadow starts, waits to be available or is removed


@dataclass(frozen=True)
class Names:
    deployment: str
    group: str
    even: str
    odd: str
    dead_letter: str

    @property
    def topics(self) -> list[str]:
        return [self.even, self.odd, self.dead_letter]


def names(p: Pipeline, generation: int) -> Names:
    """The shadow's Deployment, consumer group and topics for the spec `generation`."""
    t = p.kafka.topics
    tail = f".shadow-{generation}"
    return Names(
        deployment=f"{deployment_name(p.name, ROUTER)}-shadow",
        group=f"{p.stream_name}-shadow-{generation}",
        even=f"{t.name('even')}{tail}",
        odd=f"{t.name('odd')}{tail}",
        dead_letter=f"{t.dead_letter(p.stream_name)}{tail}",
    )


def names_status(n: Names) -> dict[str, Any]:
    return {"deployment": n.deployment, "group": n.group, "topics": n.topics}


def overrides(n: Names) -> dict[str, str]:
    """The properties that make the router a shadow (they replace any spelling of the same keys)."""
    return {
        binding_key("input", "group"): n.group,
        binding_key("even"): n.even,
        binding_key("odd"): n.odd,
        "tsrouter.dead-letter-topic": n.dead_letter,
        "tsrouter.auto-create-topics": "false",
    }


def render(resource: dict[str, Any], p: Pipeline, n: Names, replicas: int | None = None) -> dict[str, Any]:
    """The shadow Deployment: the router as `p` renders it, with the shadow's names.
    `replicas`: the real router's count this pass (the autoscaler's, zero while paused),
    so that the shadow consumes as the router it is compared with does."""
    d = render_deployment(resource, p, ROUTER, replicas)
    d["metadata"]["name"] = n.deployment
    for labels in (d["metadata"]["labels"], d["spec"]["selector"]["matchLabels"]):
        labels[LABEL_COMPONENT] = SUFFIX
    d["spec"]["template"]["metadata"]["labels"][LABEL_COMPONENT] = SUFFIX
    container = d["spec"]["template"]["spec"]["containers"][0]
    over = overrides(n)
    keys = {canonical_key(k) for k in over}
    args = [a for a in container["args"] if canonical_key(a[2:].split("=", 1)[0]) not in keys]
    container["args"] = args + [f"--{k}={v}" for k, v in over.items()]
    stamp_hash(d)
    return d


def router_template(deployments: Sequence[Mapping[str, Any]]) -> Any:
    """The router's pod template among rendered Deployments."""
    return next(d["spec"]["template"] for d in deployments if d["metadata"]["labels"][LABEL_COMPONENT] == ROUTER.suffix)


# --- the attempt -------------------------------------------------------------------------


def starts(prev: Mapping[str, Any] | None, templates: str, strategy: str, router_changed: bool, readable: bool) -> bool:
    """A new attempt that runs as a shadow first: strategy Shadow, a stable revision to
    compare with (whose router uses its group: `stable_group_unused`), the router's pod
    template changed, and a broker the operator can read."""
    prev = prev or {}
    stable = prev.get("stable") or {}
    return (
        strategy == SHADOW
        and readable
        and not stable_group_unused(prev)
        and bool(stable)
        and router_changed
        and prev.get("templates") != templates
        and stable.get("templates") != templates
    )


def current(prev: Mapping[str, Any] | None, templates: str) -> dict[str, Any] | None:
    """This attempt's shadow, if it has one."""
    prev = prev or {}
    sh = prev.get("shadow")
    if not sh or prev.get("templates") != templates or sh.get("templates") != templates:
        return None
    return dict(sh)


def holds(prev: Mapping[str, Any] | None, templates: str) -> bool:
    """The pipeline stays at the stable revision: this attempt's shadow has no verdict
    yet, or it was rejected."""
    sh = current(prev, templates)
    if sh is None or sh.get("state") == SKIPPED:
        return False
    return sh.get("verdict") in (None, SHADOW_REJECTED)


def wants_deployment(prev: Mapping[str, Any] | None, templates: str) -> bool:
    """The shadow Deployment is desired (the children phase renders it)."""
    sh = current(prev, templates)
    return sh is not None and sh.get("state") == RUNNING and sh.get("verdict") is None


def start(prev: Mapping[str, Any] | None, generation: int, templates: str, n: Names, now: datetime) -> dict[str, Any]:
    """status.rollout for a new attempt that starts as a shadow. An earlier shadow not
    yet removed (superseded by this change) hands its topics and group on to be deleted."""
    prev = prev or {}
    now_s = format_time(now)
    leftover = list((prev.get("shadow") or {}).get("leftover") or [])
    old = prev.get("shadow") or {}
    if old.get("state") in (STARTING, RUNNING, REMOVING):
        leftover.append({"group": old.get("group"), "topics": list(old.get("topics") or [])})
    shadow: dict[str, Any] = {
        "generation": generation,
        "templates": templates,
        "state": STARTING,
        **names_status(n),
        "since": now_s,
    }
    if leftover:
        shadow["leftover"] = leftover
    return {
        "generation": generation,
        "templates": templates,
        "verdict": rollback.VERIFYING,
        "reason": SHADOWING,
        "message": f"starting shadow {n.deployment}: the pipeline stays at stable generation "
        f"{(prev.get('stable') or {}).get('generation')}",
        "time": now_s,
        "stable": prev.get("stable"),
        "shadow": shadow,
    }


def started(rollout: Mapping[str, Any], start_offsets: Sequence[int], now: datetime) -> dict[str, Any]:
    out = dict(rollout)
    sh = dict(out["shadow"], state=RUNNING, start=list(start_offsets))
    out["shadow"] = sh
    out["message"] = (
        f"shadow {sh['deployment']} starting at the stable group's offsets {list(start_offsets)}: waiting for it "
        "to be available"
    )
    out["time"] = format_time(now)
    return out


def available(deployment: Mapping[str, Any] | None) -> bool:
    """A Deployment rolled out and available (as `kubectl rollout status` would say)."""
    if not deployment:
        return False
    spec, st, meta = deployment.get("spec") or {}, deployment.get("status") or {}, deployment.get("metadata") or {}
    want = int(spec.get("replicas", 1))
    return bool(
        st.get("observedGeneration", 0) >= meta.get("generation", 1)
        and st.get("updatedReplicas", 0) >= want
        and st.get("availableReplicas", 0) >= want
        and want > 0
    )


OPEN, JUDGE = rollback.OPEN, rollback.JUDGE
WAIT_PROGRESS = "progress"  # the shell reads the shadow group's commits: has it moved?


def step(
    rollout: Mapping[str, Any],
    deployment_available: bool,
    now: datetime,
    verify_seconds: int,
    deadline_seconds: int,
    *,
    held: str | None = None,
    why: str = "",
) -> tuple[dict[str, Any], str | None]:
    """A Running shadow in this pass: (status.rollout, what to read: WAIT_PROGRESS,
    OPEN, JUDGE or None). Rejected when not available within the progress deadline
    (`why`: what its pods say, `unavailable_why`). `held`: why the shadow has no replicas
    now, as the router has none (`held_reason`): its clock stops (`hold`)."""
    if held:
        return hold(rollout, now, held), None
    out = dict(rollout)
    sh = dict(out["shadow"])
    out["shadow"] = sh
    if sh.get("heldSince"):
        # Running again: its deadline counts from now, and a new window opens once it is
        # available and consuming (the one open before the hold was dropped).
        del sh["heldSince"]
        sh["since"] = format_time(now)
    window = sh.get("window")
    if window is not None:
        due = parse_time(window["opened"]) + timedelta(seconds=verify_seconds)
        return out, JUDGE if now >= due else None
    since = parse_time(sh["since"])
    if not deployment_available:
        if (now - since).total_seconds() > deadline_seconds:
            said = f"the shadow was not available within spec.rollout.progressDeadlineSeconds ({deadline_seconds}s)"
            return rejected(out, DEADLINE, f"{said}: {why}" if why else said, now), None
        return out, None
    sh.setdefault("readyAt", format_time(now))
    return out, WAIT_PROGRESS


def past_deadline(rollout: Mapping[str, Any], now: datetime, deadline_seconds: int) -> bool:
    """A Running shadow with no window whose progress deadline has passed (the shell then
    reads its pods to say why it is not available)."""
    sh = rollout.get("shadow") or {}
    if sh.get("window") is not None or sh.get("heldSince") or not sh.get("since"):
        return False
    return (now - parse_time(str(sh["since"]))).total_seconds() > deadline_seconds


def held_reason(deployment: Mapping[str, Any] | None, paused: bool) -> str | None:
    """Why the shadow Deployment asks for no replicas, if it does: it runs the real
    router's count, which is zero while the pipeline is paused (or a reset holds it)."""
    if not deployment or int((deployment.get("spec") or {}).get("replicas", 1)) != 0:
        return None
    return "the pipeline is paused" if paused else "the router has no replicas"


def hold(rollout: Mapping[str, Any], now: datetime, why: str) -> dict[str, Any]:
    """The shadow at zero with the router: no deadline runs and no window is open (there is
    nothing to consume or compare) until the router runs again. Written once per hold."""
    out = dict(rollout)
    sh = dict(out["shadow"])
    out["shadow"] = sh
    if sh.get("heldSince"):
        return out
    sh.pop("window", None)
    sh.pop("readyAt", None)
    sh.pop("outputsAtReady", None)
    sh["heldSince"] = format_time(now)
    out["message"] = (
        f"shadow {sh['deployment']} at zero replicas with the router ({why}): its progress deadline and comparison "
        "window start again when the router runs"
    )
    out["time"] = format_time(now)
    return out


def unavailable_why(
    pods: Sequence[Mapping[str, Any]],
    pipeline_name: str,
    readiness: Probe,
    now: datetime,
    server_port: int = SERVER_PORT,
) -> str:
    """What the shadow's pods say about why it is not available (a crash loop and its
    last exit, an image that cannot be pulled, a probe that never passes, no node to run
    on), as the router's status would say it; "" when they say nothing."""
    live = podhealth.live_pods([dict(x) for x in pods], pipeline_name, SUFFIX)
    nr = podhealth.not_ready(live, pipeline_name, SUFFIX, readiness, server_port, now)
    if nr:
        return f"{nr['pods']} pod(s) {nr['reason']}: {nr['message']}"
    for pod in live:
        st = pod.get("status") or {}
        for c in st.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return f"{c.get('reason') or 'Unschedulable'}: {c.get('message') or 'no node can run it'}"
        for cs in st.get("containerStatuses") or []:
            last = (cs.get("lastState") or {}).get("terminated")
            if cs.get("restartCount") and last:
                # Just restarted (running, not yet back-off): the crashes are in its history.
                return (
                    f"restarted {cs['restartCount']} time(s), last exit: {last.get('reason') or 'Error'} "
                    f"(code {last.get('exitCode')})"
                )
    return ""


def moved(start_offsets: Sequence[int], shadow_committed: Sequence[int], input_ends: Sequence[int]) -> bool:
    """The shadow's group committed past its start on some partition, or no record waits
    anywhere (nothing to move on)."""
    waiting = False
    for i, end in enumerate(input_ends):
        s = start_offsets[i] if i < len(start_offsets) else -1
        c = shadow_committed[i] if i < len(shadow_committed) else -1
        if c >= 0 and c > s:
            return True
        if end > max(s, 0):
            waiting = True
    return not waiting


def not_moving(
    rollout: Mapping[str, Any],
    now: datetime,
    verify_seconds: int,
    outputs: int = 0,
    counters: str = COUNTERS_UNREAD,
) -> dict[str, Any]:
    """The shadow available, its group not moved with records waiting. `outputs`: the
    shadow's topics' end offsets summed now (the first call records them as the start).
    After `verify_seconds` of it: when records reached the shadow's topics meanwhile and
    its pods' `counters` are not this project's router's, its router does not use the
    group it is given (`fell_back`); else it is stuck or idle (NotConsuming). Until then
    the rollout as it was (plus the start)."""
    out = dict(rollout)
    sh = out["shadow"] = dict(out["shadow"])
    sh.setdefault("outputsAtReady", outputs)
    ready_at = parse_time(sh["readyAt"])
    idle = (now - ready_at).total_seconds()
    if idle < verify_seconds:
        return out
    written = outputs - int(sh["outputsAtReady"])
    return _uncommitted(out, written, f"in {idle:.0f}s", counters, now) or rejected(
        out, NOT_CONSUMING, f"the shadow committed nothing in {idle:.0f}s with records waiting", now
    )


def _uncommitted(
    rollout: Mapping[str, Any], written: int, when: str, counters: str, now: datetime
) -> dict[str, Any] | None:
    """A shadow that wrote `written` records (`when`) but never committed in its group:
    another router that does not use the group (`fell_back`), or this project's router
    stuck committing (its counters say so: NotConsuming); None when it wrote nothing."""
    if written <= 0:
        return None
    if counters == COUNTERS_OURS:
        return rejected(
            rollout,
            NOT_CONSUMING,
            f"the shadow wrote {written} records {when} but committed none with records waiting (its tsrouter_* "
            "counters say this project's router: stuck committing)",
            now,
        )
    seen = {
        COUNTERS_FOREIGN: "and its pods serve no tsrouter_* counters (another router image)",
        COUNTERS_UNREAD: "(its pods' counters could not be read to say which router it is)",
    }[counters]
    group = (rollout.get("shadow") or {}).get("group")
    return fell_back(
        rollout,
        GROUP_UNUSED,
        f"its pods are Ready and {written} records reached the shadow's topics {when}, but they never committed "
        f"in the shadow's consumer group {group} {seen}: a router that does not use the group it is given, whose "
        "output cannot be matched to the input offsets the stable router committed",
        now,
    )


def suspect_foreign(rollout: Mapping[str, Any], now: datetime, verify_seconds: int, outputs: int) -> bool:
    """`not_moving` decides in this pass with records on the shadow's topics: the shell
    then reads the shadow pods' counters to tell another router from a stuck one."""
    sh = rollout.get("shadow") or {}
    if not sh.get("readyAt") or "outputsAtReady" not in sh:
        return False
    idle = (now - parse_time(str(sh["readyAt"]))).total_seconds()
    return idle >= verify_seconds and outputs > int(sh["outputsAtReady"])


# The shadow's own offsets in the window's start snapshot, beside the stable router's:
# the ends of its topics and its group's commits.
SHADOW_KEYS = {EVEN: "shadowEven", ODD: "shadowOdd", DEAD_LETTER: "shadowDeadLetter"}
SHADOW_COMMITTED = "shadowCommitted"


def shadow_snapshot(n: Names, ends: Mapping[str, list[int]], committed: Sequence[int]) -> dict[str, list[int]]:
    out = {SHADOW_KEYS[side]: list(ends.get(topic, [])) for side, topic in zip(SIDES, n.topics, strict=True)}
    out[SHADOW_COMMITTED] = list(committed)
    return out


def opened(
    rollout: Mapping[str, Any], snapshot: Mapping[str, list[int]], now: datetime, seconds: int
) -> dict[str, Any]:
    out = dict(rollout)
    sh = dict(out["shadow"])
    sh["window"] = {"opened": format_time(now), "seconds": seconds, "start": dict(snapshot)}
    out["shadow"] = sh
    out["message"] = f"shadow {sh['deployment']} available and consuming: comparing its output for {seconds}s"
    out["time"] = format_time(now)
    return out


def compare_ranges(
    start: Mapping[str, list[int]], end: Mapping[str, list[int]], shadow_committed: Sequence[int]
) -> tuple[dict[int, tuple[int, int]], bool]:
    """The input offsets to compare per partition: from both groups' commits when the
    window opened (the outputs of later offsets are past the ends read before them) to
    what both have committed now, the oldest SAMPLE_PER_PARTITION; and whether the
    stable group moved in the window."""
    first, last, unknown = start.get("committed", []), end.get("committed", []), start.get("input", [])
    theirs = start.get(SHADOW_COMMITTED, [])
    out = {}
    stable_moved = False
    for i, e in enumerate(last):
        s = first[i] if i < len(first) else 0
        if s < 0:  # no commit when it opened: nothing was waiting before the input's end then
            s = unknown[i] if i < len(unknown) else 0
        stable_moved = stable_moved or e > s
        s = max(s, theirs[i] if i < len(theirs) else -1)
        h = shadow_committed[i] if i < len(shadow_committed) else -1
        hi = min(e, h)
        if hi > s:
            out[i] = (s, min(hi, s + SAMPLE_PER_PARTITION))
    return out, stable_moved


def output_ranges(start: Sequence[int], end: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Output offsets to read per partition: from `start` on, READ_PER_PARTITION at most."""
    out = {}
    for i, e in enumerate(end):
        s = start[i] if i < len(start) else 0
        s = max(s, 0)
        if e > s:
            out[i] = (s, min(e, s + READ_PER_PARTITION))
    return out


# --- the comparison ----------------------------------------------------------------------

Record = tuple[int, int, bytes | None, Sequence[tuple[str, bytes]]]  # (partition, offset, value, headers)
_WS = " \t\n\r\x0b\x0c"


def body(value: bytes | None) -> bytes | None:
    """The text a router writes after its prefix for an input value (a JSON string's
    content, as the router forwards it), or None for a value it dead-letters at once."""
    if value is None:
        return None
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = text.strip(_WS)
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        try:
            inner = json.loads(stripped)
        except ValueError:
            inner = None
        if isinstance(inner, str):
            try:
                return inner.encode("utf-8")
            except UnicodeEncodeError:
                return None
    return bytes(value)


def _origin(headers: Sequence[tuple[str, bytes]]) -> tuple[int, int] | None:
    h = dict(headers)
    try:
        return int(h["x-original-partition"]), int(h["x-original-offset"])
    except (KeyError, ValueError):
        return None


class _Outputs:
    """One revision's outputs, indexed to find each input record's."""

    def __init__(self, outputs: Mapping[str, Sequence[Record]], prefixes: Mapping[str, str]):
        self.dead: dict[tuple[int, int], bytes | None] = {}
        for _, _, value, headers in outputs.get(DEAD_LETTER, ()):
            origin = _origin(headers)
            if origin is not None:
                self.dead.setdefault(origin, value)
        self.by_text: dict[bytes, deque[tuple[str, bytes]]] = {}
        for side in ROUTED:
            prefix = prefixes[side].encode("utf-8")
            for _, _, value, _ in outputs.get(side, ()):
                if value is None:
                    continue
                text = value[len(prefix) :] if value.startswith(prefix) else value
                self.by_text.setdefault(text, deque()).append((side, value))

    def find(self, partition: int, offset: int, text: bytes | None) -> tuple[str, bytes | None] | None:
        """(side, the record's value) this revision wrote for an input record, or None."""
        if (partition, offset) in self.dead:
            return DEAD_LETTER, self.dead[(partition, offset)]
        found = self.by_text.get(text) if text is not None else None
        return found.popleft() if found else None


def _show(found: tuple[str, bytes | None] | None) -> str:
    if found is None:
        return "nothing (no output carries this record's text)"
    side, value = found
    text = "null" if value is None else value.decode("utf-8", "replace")
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "..."
    return f"{side}: {text!r}"


@dataclass(frozen=True)
class Comparison:
    compared: int  # input records whose stable output was found
    differences: list[dict[str, Any]]  # the first MAX_DIFFERENCES
    differing: int  # how many differ in all
    # Per input partition compared: [partition, compared, differing], by partition.
    partitions: list[list[int]] = field(default_factory=list)


def compare(
    inputs: Sequence[Record],
    stable: Mapping[str, Sequence[Record]],
    shadow: Mapping[str, Sequence[Record]],
    stable_prefixes: Mapping[str, str],
    shadow_prefixes: Mapping[str, str],
) -> Comparison:
    """Each input record's output from the stable router and from the shadow (by side:
    even, odd, DEAD_LETTER; each a list of records as read), compared: same side, same
    text after each revision's own prefix, and no prefix of the other side. An input
    record whose stable output was not read is not compared."""
    s_out, h_out = _Outputs(stable, stable_prefixes), _Outputs(shadow, shadow_prefixes)
    swapped = {
        side
        for side, other in ((EVEN, ODD), (ODD, EVEN))
        if shadow_prefixes[side] != stable_prefixes[side] and shadow_prefixes[side] == stable_prefixes[other]
    }
    compared = differing = 0
    diffs: list[dict[str, Any]] = []
    per: dict[int, list[int]] = {}
    for partition, offset, value, _ in sorted(inputs, key=lambda r: (r[0], r[1])):
        text = body(value)
        s = s_out.find(partition, offset, text)
        if s is None:
            continue
        compared += 1
        counts = per.setdefault(partition, [partition, 0, 0])
        counts[1] += 1
        h = h_out.find(partition, offset, text)
        why = None
        if h is None or h[0] != s[0]:
            why = "another side" if h is not None else "no output"
        elif h[0] in swapped:
            why = f"the stable router's prefix of the other side on {h[0]}"
        if why is None:
            continue
        differing += 1
        counts[2] += 1
        if len(diffs) < MAX_DIFFERENCES:
            diffs.append({"partition": partition, "offset": offset, "stable": _show(s), "shadow": _show(h), "why": why})
    return Comparison(compared, diffs, differing, [per[k] for k in sorted(per)])


def load(start: Sequence[int], committed: Sequence[int], ends: Mapping[str, list[int]], read: int) -> dict[str, int]:
    """What the shadow cost the broker: the input records its group committed since its
    start, the offsets its topics gained (its records; with exactly-once its transaction
    markers too), and the records the operator read back to compare (input, the stable
    router's output and the shadow's)."""
    consumed = sum(max(0, c - max(start[i] if i < len(start) else 0, 0)) for i, c in enumerate(committed) if c >= 0)
    return {"consumed": consumed, "written": sum(sum(e) for e in ends.values()), "read": read}


def written_in_window(rollout: Mapping[str, Any], ends: Mapping[str, list[int]], n: Names) -> int:
    """Records the shadow's topics gained since its window opened."""
    start = ((rollout.get("shadow") or {}).get("window") or {}).get("start") or {}
    return sum(
        _delta_sum(start.get(SHADOW_KEYS[side], []), ends.get(topic, []))
        for side, topic in zip(SIDES, n.topics, strict=True)
    )


def _delta_sum(start: Sequence[int], end: Sequence[int]) -> int:
    return sum(max(0, e - max(start[i] if i < len(start) else 0, 0)) for i, e in enumerate(end))


def judge_suspects_foreign(c: Comparison, stable_moved: bool, shadow_moved: bool, written: int) -> bool:
    """`judged` would find a shadow that wrote records but never committed: the shell
    reads its pods' counters first."""
    return c.compared == 0 and stable_moved and not shadow_moved and written > 0


def judged(
    rollout: Mapping[str, Any],
    c: Comparison,
    stable_moved: bool,
    shadow_moved: bool,
    now: datetime,
    cost: Mapping[str, int] | None = None,
    written: int = 0,
    counters: str = COUNTERS_UNREAD,
) -> dict[str, Any]:
    """The shadow's verdict after its window (`cost`: `load`, kept in the status;
    `written`: records its topics gained in the window, `counters`: what its pods'
    counters say, for a shadow that never committed)."""
    if cost is not None:
        rollout = {**rollout, "shadow": {**rollout["shadow"], "load": dict(cost)}}
    if c.differing:
        d = c.differences[0]
        return rejected(
            rollout,
            OUTPUTS_DIFFER,
            f"{c.differing} of {c.compared} compared records differ; first at partition {d['partition']} offset "
            f"{d['offset']}: stable wrote {d['stable']}, the shadow {d['shadow']}",
            now,
            c,
        )
    if c.compared == 0 and stable_moved and not shadow_moved:
        foreign = _uncommitted(rollout, written, "in the window", counters, now)
        if foreign is not None:
            return foreign
        return rejected(rollout, NOT_CONSUMING, "the shadow committed none of the records the stable router did", now)
    if c.compared == 0:
        return promoted(rollout, NO_TRAFFIC, "no record to compare in the window: judged by availability only", now, c)
    return promoted(
        rollout, OUTPUTS_EQUAL, f"{c.compared} records compared: the same side and text as the stable router", now, c
    )


def _with_verdict(
    rollout: Mapping[str, Any], verdict: str, reason: str, message: str, now: datetime, c: Comparison | None
) -> dict[str, Any]:
    """A copy of `rollout` whose shadow has the verdict and is being removed."""
    out = dict(rollout)
    sh = out["shadow"] = dict(out["shadow"])
    sh.pop("window", None)
    sh.update(verdict=verdict, reason=reason, message=message, state=REMOVING, time=format_time(now))
    if c is not None:
        sh.update(compared=c.compared, differing=c.differing)
        if c.partitions:
            sh["partitions"] = [{"partition": p, "compared": n, "differing": d} for p, n, d in c.partitions]
        if c.differences:
            sh["differences"] = c.differences
    return out


def promoted(
    rollout: Mapping[str, Any], reason: str, message: str, now: datetime, c: Comparison | None = None
) -> dict[str, Any]:
    """The shadow passed: the real router rolls (autoRollback's checks then judge it)."""
    out = _with_verdict(rollout, PROMOTED, reason, message, now, c)
    out.update(
        verdict=rollback.VERIFYING,
        reason=rollback.WAITING_FOR_READY,
        message=f"shadow promoted ({message}): rolling out the router",
        time=format_time(now),
    )
    return out


def fell_back(rollout: Mapping[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """The shadow could not be compared (`reason`): removed unjudged, and the real router
    rolls with the rolling strategy (`rollout_judged_by_readiness`)."""
    out = _with_verdict(rollout, NOT_COMPARED, reason, f"not compared: {message}", now, None)
    out.update(
        verdict=rollback.VERIFYING,
        reason=rollback.WAITING_FOR_READY,
        message=f"shadow not compared ({reason}): rolling out the router with the rolling strategy, judged by "
        "readiness and the progress deadline",
        time=format_time(now),
    )
    return out


def judged_by_readiness(rollout: Mapping[str, Any]) -> str | None:
    """Why this attempt's rolling rollout is judged by readiness only (its shadow showed
    that the router does not use its group, so the data checks cannot read its commits
    either), or None."""
    sh = rollout.get("shadow") or {}
    if (sh.get("verdict"), sh.get("reason")) != (NOT_COMPARED, GROUP_UNUSED):
        return None
    if sh.get("templates") != rollout.get("templates"):
        return None
    return (
        "the shadow of this revision showed that its router does not use the consumer group it is given "
        "(status.rollout.shadow says how), so the data checks have no commits to read either"
    )


def rejected(
    rollout: Mapping[str, Any], reason: str, message: str, now: datetime, c: Comparison | None = None
) -> dict[str, Any]:
    """The shadow failed: the pipeline stays at the stable revision."""
    out = _with_verdict(rollout, SHADOW_REJECTED, reason, message, now, c)
    stable_gen = (out.get("stable") or {}).get("generation")
    out.update(
        verdict=SHADOW_REJECTED,
        reason=reason,
        message=f"shadow rejected, the router stays at stable generation {stable_gen}: {message}",
        time=format_time(now),
    )
    return out


# A removed shadow's pods have this long to go (their graceful shutdown) before its
# topics and group are deleted anyway: a node that never confirms a pod's deletion must
# not keep them forever.
REMOVE_WAIT_SECONDS = 120.0


def removal_overdue(sh: Mapping[str, Any], now: datetime) -> bool:
    since = sh.get("time") or sh.get("since")
    return since is None or (now - parse_time(str(since))).total_seconds() > REMOVE_WAIT_SECONDS


def removed(rollout: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(rollout)
    sh = {k: v for k, v in out["shadow"].items() if k != "leftover"}
    sh["state"] = DONE
    out["shadow"] = sh
    return out


def to_delete(shadow: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(topics, groups) a removed shadow leaves to delete, with those of superseded ones."""
    topics, groups = list(shadow.get("topics") or []), [shadow["group"]] if shadow.get("group") else []
    for old in shadow.get("leftover") or []:
        topics += old.get("topics") or []
        if old.get("group"):
            groups.append(old["group"])
    return topics, groups


def stable_group_unused(prev: Mapping[str, Any] | None) -> bool:
    """The stable revision's rollout found that its router does not use its consumer
    group (Stable with reason GroupNotUsed): a shadow has no commits to compare with."""
    prev = prev or {}
    return prev.get("verdict") == rollback.STABLE and prev.get("reason") == GROUP_UNUSED


def skipped(
    rollout: Mapping[str, Any], templates: str, generation: int | None, reason: str = CREDENTIALS
) -> dict[str, Any]:
    """status.rollout of an attempt that rolls instead: the broker needs credentials, or
    (GROUP_UNUSED) the stable router does not use its consumer group."""
    out = dict(rollout)
    message = {
        CREDENTIALS: "spec.kafka.credentials: the operator never reads the Secret, so it cannot read the shadow's "
        "and the router's output to compare them; rolled out with the rolling strategy and autoRollback's checks",
        GROUP_UNUSED: "the stable router does not use its consumer group (its rollout was judged GroupNotUsed), "
        "so there are no committed input offsets to match the shadow's output to; rolled out with the rolling "
        "strategy and autoRollback's checks",
    }[reason]
    out["shadow"] = {
        "generation": generation,
        "templates": templates,
        "state": SKIPPED,
        "reason": reason,
        "message": message,
    }
    return out


def history_entry(prev: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """status.history's record of a verdict given between `prev` and `new` (status.rollout)."""
    before, after = (prev or {}).get("shadow") or {}, (new or {}).get("shadow") or {}
    if after.get("verdict") not in (PROMOTED, SHADOW_REJECTED, NOT_COMPARED):
        return None
    if (after.get("verdict"), after.get("templates")) == (before.get("verdict"), before.get("templates")):
        return None
    keys = ("generation", "verdict", "reason", "compared", "differing")
    return {k: after[k] for k in keys if after.get(k) is not None}


def event(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event a shadow's verdict deserves, if any."""
    before, after = (prev or {}).get("shadow") or {}, new.get("shadow") or {}
    if after.get("verdict") in (None, before.get("verdict")) and after.get("templates") == before.get("templates"):
        return None
    gen = after.get("generation")
    if after.get("verdict") == PROMOTED:
        return "Normal", "ShadowPromoted", f"generation {gen}: {after.get('message', '')}"
    if after.get("verdict") == SHADOW_REJECTED:
        return "Warning", SHADOW_REJECTED, f"generation {gen} ({after.get('reason')}): {after.get('message', '')}"
    if after.get("verdict") == NOT_COMPARED:
        # Warning: the release rolls without the comparison the spec asked for.
        return "Warning", "ShadowNotCompared", f"generation {gen} ({after.get('reason')}): {after.get('message', '')}"
    return None


def starting_event(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, str, str] | None:
    before, after = (prev or {}).get("shadow") or {}, new.get("shadow") or {}
    if after.get("state") == RUNNING and (
        before.get("state") != RUNNING or before.get("templates") != after.get("templates")
    ):
        return "Normal", "ShadowStarted", f"generation {after.get('generation')}: {new.get('message', '')}"
    return None


def on_broker(rollout: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The shadow whose topics and group may be on the broker (created, or about to be,
    and not yet deleted), if any: the pipeline keeps its finalizer meanwhile, so that
    deleting it deletes them too."""
    sh = (rollout or {}).get("shadow") or {}
    return dict(sh) if sh.get("state") in (STARTING, RUNNING, REMOVING) else None
