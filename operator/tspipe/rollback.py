"""Data-gated rollouts and automatic rollback (pure): is a new revision stable, and if not, what runs.

With `spec.rollout.autoRollback`, every change to the pods (a spec whose rendered pod
templates differ from the last attempt's) is an attempt, judged in `status.rollout`:

  Verifying  first until every app is rolled out and available (phase Running) and the
             router group has committed on every input partition with records waiting
             (a release that commits nothing for `verifySeconds` fails: NotConsuming),
             then over a window of `spec.rollout.verifySeconds`: when it opens, the operator
             records the broker's offsets (the router group's commits on the input, the
             ends of even, odd and the dead-letter topic); when it ends it reads them
             again, plus the records the window added to even and odd, and `judge`s;
  Stable     every check passed: this revision (`status.rollout.stable`, the whole spec)
             is what a later failed attempt returns to;
  RolledBack a check failed, or a Deployment passed its progress deadline: the operator
             renders the stable revision's pods (with the current spec's replica counts
             and pause) instead of the user's, until the pods in the spec change again;
  Failed     the same, with no stable revision to return to (the first attempt).

A spec change that leaves the pods alone (replicas, pause, autoscaling) keeps the verdict;
one that brings back the stable revision's pods is Stable at once.

The checks read the router's effects on the broker rather than its pods' counters: they
need no network path to the pods, and they count what actually reached Kafka. Offsets
are read in an order that keeps records in flight from counting as lost (`START_ORDER`).
The operator never reads Secrets, so for a broker that needs credentials it reads the
router pods' own counters instead (`judge_counters`, checks.source routerCounters): loss,
dead-letter ratio and a router that commits nothing; misrouting needs the topics and is
not checked there, which the verdict's message says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .conditions import Phase
from .names import DEAD_LETTER, EVEN, ODD, OUTPUTS, ROUTED
from .stamps import digest, format_time, parse_time

VERIFYING, STABLE, ROLLED_BACK, FAILED = "Verifying", "Stable", "RolledBack", "Failed"

# Reasons (status.rollout.reason and the RolloutVerified condition).
WAITING_FOR_READY = "WaitingForReady"
WAITING_FOR_COMMITS = "WaitingForCommits"
NOT_CONSUMING = "NotConsuming"
# Records reach the outputs but the group never commits: an app that does not use the
# consumer group it is given (the seed recipe's router has none). Not a failure.
GROUP_UNUSED = "GroupNotUsed"
WINDOW_OPEN = "WindowOpen"
CHECKS_PASSED = "ChecksPassed"
NO_TRAFFIC = "NoTraffic"
READINESS_ONLY = "ReadinessOnly"
SAME_PODS = "SamePodsAsStable"
DEADLINE = "ProgressDeadlineExceeded"
LOST, MISROUTED, DEAD_LETTERS = "RecordsLost", "Misrouted", "DeadLetterRatio"

# checks.source: where the window's data came from.
BROKER, ROUTER_COUNTERS = "broker", "routerCounters"
# One router pod's counters (podmetrics.router_counters), cumulative since its process
# started: committed, routed per channel, dead-lettered, and the lag it reports.
COUNTER_KEYS = ("committed", *OUTPUTS, "lag")

# What to ask the shell for in this pass.
OPEN, JUDGE = "open", "judge"

# The router commits an input offset only after every send before it is acknowledged,
# so a record is on an output before its offset is committed. At the window's start the
# outputs are read first and the commits COMMIT_GRACE_SECONDS later (records in flight
# then are committed by the second read, so they are not counted as consumed in the
# window); at its end the commits first and the outputs after the grace (every record
# committed by then has reached its output). The router commits after each poll.
COMMIT_GRACE_SECONDS = 3.0
# Records read back from each partition of even and odd at the end of the window (the
# newest ones): enough to see a release that routes by the wrong digit, cheap at any rate.
SAMPLE_PER_PARTITION = 500
# Up to this many offsets the window's consumed records are counted by reading them: an
# input written in transactions has commit markers that take offsets but are no records,
# and must not look like lost records. Beyond it (a busy input) the offsets are counted.
COUNT_LIMIT = 20_000

# The snapshot's output keys: names.OUTPUTS, as in topics.ROLES.
# A snapshot (kafka_admin.TopicAdmin.offsets) has, per partition: `committed` (the router
# group's commits on the input, -1 where none), `input` and `inputStart` (the input's end
# and log-start offsets, read with the commits) and each of OUTPUTS' end offsets.
RECHECK_COMMITS_SECONDS = 2.0  # waiting for the group's first commits: look again this soon
_DIGITS = "0123456789"


def templates_digest(deployments: Sequence[Mapping[str, Any]]) -> str:
    """One digest of the pod templates of rendered Deployments (what a rollout changes)."""
    return digest([d["spec"]["template"] for d in deployments], 16)


def _stable_record(generation: int | None, templates: str, spec: Mapping[str, Any], now: str) -> dict[str, Any]:
    return {"generation": generation, "templates": templates, "time": now, "spec": dict(spec)}


def advance(
    prev: Mapping[str, Any] | None,
    *,
    generation: int | None,
    templates: str,
    spec: Mapping[str, Any],
    phase: str,
    phase_reason: str,
    now: datetime,
    verify_seconds: int,
) -> tuple[dict[str, Any], str | None]:
    """(the new status.rollout, OPEN/JUDGE/None): what this pass knows, and what the shell
    must read from the broker before `opened`/`judged` can go on."""
    now_s = format_time(now)
    cur: dict[str, Any] = dict(prev or {})
    stable = cur.get("stable")
    if cur.get("templates") != templates:
        if stable and stable.get("templates") == templates:
            return {
                "generation": generation,
                "templates": templates,
                "verdict": STABLE,
                "reason": SAME_PODS,
                "message": f"the pods are those of stable generation {stable.get('generation')}",
                "time": now_s,
                "stable": _stable_record(generation, templates, spec, now_s),
            }, None
        cur = {
            "generation": generation,
            "templates": templates,
            "verdict": VERIFYING,
            "reason": WAITING_FOR_READY,
            "message": "waiting for every app to be rolled out and available",
            "time": now_s,
        }
        if stable:
            cur["stable"] = stable
    elif cur.get("generation") != generation:
        # The pods did not change (replicas, pause, autoscaling): the verdict stands.
        cur["generation"] = generation
        if cur.get("verdict") == STABLE:
            cur["stable"] = _stable_record(generation, templates, spec, (stable or {}).get("time") or now_s)
    if cur.get("verdict") != VERIFYING:
        return cur, None
    if phase == Phase.DEGRADED and phase_reason == DEADLINE:
        return failed(
            cur, DEADLINE, "the new pods were not available within spec.rollout.progressDeadlineSeconds", now
        ), None
    window = cur.get("window")
    if window is None:
        if phase != Phase.RUNNING:
            return cur, None
        cur.setdefault("readyAt", now_s)
        return cur, OPEN
    if now >= parse_time(window["opened"]) + timedelta(seconds=verify_seconds):
        return cur, JUDGE
    return cur, None


def window_left(rollout: Mapping[str, Any], now: datetime, verify_seconds: int) -> float | None:
    """Seconds until an open window may be judged (None: no window open)."""
    window = rollout.get("window")
    if rollout.get("verdict") != VERIFYING or not window:
        return None
    ends = parse_time(window["opened"]) + timedelta(seconds=verify_seconds)
    return max(0.0, (ends - now).total_seconds())


def unconsumed(snapshot: Mapping[str, list[int]]) -> list[int]:
    """Input partitions with records waiting on which the group has never committed."""
    committed, ends, starts = (snapshot.get(k, []) for k in ("committed", "input", "inputStart"))
    return [
        i
        for i, c in enumerate(committed)
        if c < 0 and i < len(ends) and ends[i] > (starts[i] if i < len(starts) else 0)
    ]


def _routed(snapshot: Mapping[str, list[int]]) -> int:
    """The outputs' end offsets, summed: grows with every record routed or dead-lettered."""
    return sum(sum(snapshot.get(k, [])) for k in OUTPUTS)


def opened(
    rollout: Mapping[str, Any],
    start: Mapping[str, list[int]] | None,
    now: datetime,
    seconds: int,
    counters: Mapping[str, Mapping[str, int]] | None = None,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The window opens now; `start`: the broker's offsets (None: the broker cannot be
    read); `counters`: the router pods' counters instead, by pod name.

    Not while the group has not committed on a partition with records waiting (its start
    would be unknown): that waits, and after `seconds` of it fails as NotConsuming, or,
    when records reached the outputs meanwhile (`spec`: the attempt's, to make it the
    stable revision), is judged by readiness only: the router routes but does not use
    the group, so there is nothing to judge the data by."""
    waiting = unconsumed(start) if start is not None else []
    if waiting:
        assert start is not None
        ready_at = parse_time(str(rollout.get("readyAt") or format_time(now)))
        idle = (now - ready_at).total_seconds()
        names = ", ".join(str(i) for i in waiting)
        routed = _routed(start) - int(rollout.get("outputsAtReady", _routed(start)))
        if idle >= seconds and routed > 0 and spec is not None:
            why = (
                f"{routed} records reached the output topics in {idle:.0f}s but the router never committed in its "
                f"consumer group on input partition(s) {names} (an app that does not use the group it is given)"
            )
            return judged(rollout, readiness_only(why), now, spec) | {"reason": GROUP_UNUSED}
        if idle >= seconds:
            return failed(
                rollout,
                NOT_CONSUMING,
                f"the router group committed nothing on input partition(s) {names} in {idle:.0f}s "
                "with records waiting there",
                now,
            )
        out = dict(rollout)
        out.update(
            reason=WAITING_FOR_COMMITS,
            message=f"waiting for the router group's first commit on input partition(s) {names}",
        )
        out.setdefault("outputsAtReady", _routed(start))
        return out
    out = dict(rollout)
    out["window"] = {"opened": format_time(now), "seconds": seconds}
    if start is not None:
        out["window"]["start"] = dict(start)
    if counters is not None:
        out["window"]["counters"] = {pod: dict(c) for pod, c in counters.items()}
    out.update(
        reason=WINDOW_OPEN, message=f"all apps available; watching the data for {seconds}s", time=format_time(now)
    )
    return out


@dataclass(frozen=True)
class Judgement:
    ok: bool
    reason: str
    message: str
    checks: dict[str, Any]


def _start_of(start: Sequence[int], i: int, unknown: Sequence[int] = ()) -> int:
    """Partition i's offset when the window opened: 0 for a partition new since; for an
    unknown one (-1: no commit yet) `unknown`'s value (the input's end then: no record
    was waiting there), else 0."""
    s = start[i] if i < len(start) else 0
    if s < 0:
        s = unknown[i] if i < len(unknown) else 0
    return s


def _delta(start: Sequence[int], end: Sequence[int], unknown: Sequence[int] = ()) -> int:
    """Records added between two per-partition offset lists (`_start_of` says from where)."""
    return sum(max(0, e - _start_of(start, i, unknown)) for i, e in enumerate(end) if e >= 0)


def parity_problem(value: bytes, topic_parity: str, prefix: str) -> str | None:
    """Why a record on the `topic_parity` topic ("even"/"odd") is misrouted, or None.

    The router writes `prefix + timestamp` (a JSON string's content, not its quotes): the
    last ASCII digit after the prefix must have the topic's parity."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if text.startswith(prefix):
        text = text[len(prefix) :]
    text = text.strip().strip('"').strip()
    if not text or text[-1] not in _DIGITS:
        return f"no trailing digit in {text[-40:]!r}"
    even = int(text[-1]) % 2 == 0
    if even != (topic_parity == "even"):
        return f"{text[-40:]!r} ends in an {'even' if even else 'odd'} digit"
    return None


def judge(
    start: Mapping[str, list[int]],
    end: Mapping[str, list[int]],
    samples: Mapping[str, Sequence[bytes]],
    prefixes: Mapping[str, str],
    max_dead_letter_ratio: float,
    consumed_records: int | None = None,
) -> Judgement:
    """The window's verdict from the broker's offsets at its start and end (`committed`
    on the input, and each of OUTPUTS) and the records read back from even and odd.

    `consumed_records`: the records actually in the input's committed range, when the
    shell counted them (`commit_ranges`); else the offsets' difference, which also counts
    the offsets a transactional producer's commit markers take."""
    consumed = (
        consumed_records
        if consumed_records is not None
        else _delta(start.get("committed", []), end.get("committed", []), start.get("input", []))
    )
    added = {k: _delta(start.get(k, []), end.get(k, [])) for k in OUTPUTS}
    routed = added[EVEN] + added[ODD]
    lost = max(0, consumed - routed - added[DEAD_LETTER])
    problems = []
    for parity in ROUTED:
        for v in samples.get(parity, ()):
            why = parity_problem(v, parity, prefixes[parity])
            if why:
                problems.append(f"{parity}: {why}")
    sampled = sum(len(samples.get(p, ())) for p in ROUTED)
    ratio = added["deadLetter"] / consumed if consumed else 0.0
    checks: dict[str, Any] = {
        "source": BROKER,
        "consumed": consumed,
        "routedEven": added["even"],
        "routedOdd": added["odd"],
        "deadLettered": added["deadLetter"],
        "lost": lost,
        "sampled": sampled,
        "misrouted": len(problems),
        "deadLetterRatio": round(ratio, 4),
    }
    if lost:
        return Judgement(
            False, LOST, f"{lost} of {consumed} records the router committed reached no output topic", checks
        )
    if problems:
        return Judgement(
            False,
            MISROUTED,
            f"{len(problems)} of {sampled} sampled records are on the wrong topic ({problems[0]})",
            checks,
        )
    if ratio > max_dead_letter_ratio:
        return Judgement(
            False,
            DEAD_LETTERS,
            f"{added['deadLetter']} of {consumed} records dead-lettered ({ratio:.1%}, more than "
            f"spec.rollout.maxDeadLetterRatio {max_dead_letter_ratio:g})",
            checks,
        )
    if consumed == 0 and routed == 0:
        return Judgement(True, NO_TRAFFIC, "no record flowed in the window: judged by readiness only", checks)
    return Judgement(
        True,
        CHECKS_PASSED,
        f"{consumed} records consumed, {routed} routed ({sampled} sampled, all on the right topic), "
        f"{added['deadLetter']} dead-lettered",
        checks,
    )


def judged(rollout: Mapping[str, Any], j: Judgement, now: datetime, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The attempt after its window: Stable (its `spec` is now the revision to return
    to), or failed."""
    if not j.ok:
        out = failed(rollout, j.reason, j.message, now)
        out["checks"] = j.checks
        return out
    now_s = format_time(now)
    out = {k: v for k, v in rollout.items() if k != "window"}
    out.update(verdict=STABLE, reason=j.reason, message=j.message, time=now_s, checks=j.checks)
    out["stable"] = _stable_record(out.get("generation"), out["templates"], spec, now_s)
    return out


def readiness_only(why: str) -> Judgement:
    """No data to judge by (`why`): readiness and the progress deadline decided."""
    return Judgement(True, READINESS_ONLY, f"{why}: judged by readiness and the progress deadline only", {})


@dataclass(frozen=True)
class Unread:
    """A Ready router pod whose counters could not be read, and why."""

    pod: str
    detail: str
    # It answered, without this project's tsrouter_* counters: another router image (the
    # seed recipe's serves no /actuator/prometheus), not a path that does not work.
    not_served: bool = False


def counters_unreadable(unread: Sequence[Unread], how: str, image: str) -> Judgement:
    """The window's verdict when no router pod's counters could be read (a broker with
    credentials, so not the broker either): readiness and the progress deadline, the
    message naming what is missing and why (`how`: the path they were read by)."""
    why = "; ".join(f"{u.pod}: {u.detail}" for u in unread) or "no router pod is Ready"
    if unread and all(u.not_served for u in unread):
        return readiness_only(
            "the broker needs credentials (the operator never reads their Secret), so the data would be checked "
            f"with the router pods' own tsrouter_* counters, and router image {image} does not serve them ({why}); "
            "loss and the dead-letter ratio are not checked"
        )
    return readiness_only(
        f"the broker needs credentials (the operator never reads their Secret) and the router pods' "
        f"counters could not be read {how} ({why})"
    )


def _since(start: Mapping[str, int] | None, end: Mapping[str, int]) -> dict[str, int]:
    """One pod's counts in the window. A pod new in the window, or whose counters went
    back (its router restarted), counts from zero, as Prometheus' increase() does."""
    if start is None or end["committed"] < start["committed"]:
        start = {}
    return {k: end[k] - start.get(k, 0) for k in ("committed", *OUTPUTS)}


def judge_counters(
    start: Mapping[str, Mapping[str, int]], end: Mapping[str, Mapping[str, int]], max_dead_letter_ratio: float
) -> Judgement:
    """The window's verdict from the router pods' own counters at its start and end (by
    pod name), for a broker the operator cannot read.

    Loss is judged on each pod's whole life, not the window: a router counts a record as
    committed only after counting it routed or dead-lettered (and its scrape reads them in
    that order), so committed > routed + dead-lettered means offsets committed for records
    that reached no output. Over the window: the dead-letter ratio, and whether it commits
    at all while its pods report lag."""
    if not end:
        return readiness_only("no router pod's counters could be read at the end of the window")
    lost = sum(max(0, c["committed"] - c["even"] - c["odd"] - c["deadLetter"]) for c in end.values())
    window = [_since(start.get(pod), c) for pod, c in end.items()]
    consumed, even, odd, dead = (sum(w[k] for w in window) for k in ("committed", *OUTPUTS))
    lag = sum(c["lag"] for c in end.values())
    handled = even + odd + dead
    ratio = dead / handled if handled else 0.0
    checks: dict[str, Any] = {
        "source": ROUTER_COUNTERS,
        "pods": len(end),
        "consumed": consumed,
        "routedEven": even,
        "routedOdd": odd,
        "deadLettered": dead,
        "lost": lost,
        "lag": lag,
        "deadLetterRatio": round(ratio, 4),
    }
    where = f"(the counters of {len(end)} router pod(s))"
    if lost:
        return Judgement(
            False, LOST, f"{lost} records counted committed were never counted routed or dead-lettered {where}", checks
        )
    if ratio > max_dead_letter_ratio:
        return Judgement(
            False,
            DEAD_LETTERS,
            f"{dead} of {handled} records dead-lettered ({ratio:.1%}, more than spec.rollout.maxDeadLetterRatio "
            f"{max_dead_letter_ratio:g}) {where}",
            checks,
        )
    if consumed == 0 and lag > 0:
        return Judgement(
            False, NOT_CONSUMING, f"the router pods report {lag} records of lag and committed none {where}", checks
        )
    if consumed == 0 and handled == 0:
        return Judgement(True, NO_TRAFFIC, f"no record flowed in the window {where}: judged by readiness only", checks)
    return Judgement(
        True,
        CHECKS_PASSED,
        f"{consumed} records committed, {even + odd} routed, {dead} dead-lettered, none lost {where}; the broker "
        "needs credentials, so the topics were not sampled and misrouting was not checked",
        checks,
    )


def failed(rollout: Mapping[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A failed attempt: RolledBack to the stable revision if there is one, else Failed."""
    out = {k: v for k, v in rollout.items() if k != "window"}
    stable = out.get("stable")
    if stable:
        out.update(
            verdict=ROLLED_BACK,
            reason=reason,
            message=f"rolled back to generation {stable.get('generation')}: {message}",
        )
    else:
        out.update(verdict=FAILED, reason=reason, message=f"{message} (no stable revision to roll back to)")
    out["time"] = format_time(now)
    return out


def rollback_spec(prev: Mapping[str, Any] | None, templates: str) -> dict[str, Any] | None:
    """The stable spec to render instead of the user's, while a rollback holds (the user's
    pods are still those of the attempt that failed)."""
    if not prev or prev.get("verdict") != ROLLED_BACK or prev.get("templates") != templates:
        return None
    spec = (prev.get("stable") or {}).get("spec")
    return dict(spec) if isinstance(spec, Mapping) else None


def stable_spec(prev: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The stable revision's spec, if there is one."""
    spec = ((prev or {}).get("stable") or {}).get("spec")
    return dict(spec) if isinstance(spec, Mapping) else None


def event(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event a verdict change deserves, if any."""
    before = (prev or {}).get("verdict"), (prev or {}).get("templates")
    after = new.get("verdict"), new.get("templates")
    if before == after or after[0] == VERIFYING:
        return None
    gen = new.get("generation")
    if after[0] == STABLE:
        return "Normal", "RolloutVerified", f"generation {gen} is stable: {new.get('message', '')}"
    if after[0] == ROLLED_BACK:
        return "Warning", "RolledBack", f"generation {gen} ({new.get('reason')}): {new.get('message', '')}"
    return "Warning", "RolloutFailed", f"generation {gen} ({new.get('reason')}): {new.get('message', '')}"


def commit_ranges(
    start: Mapping[str, list[int]], end: Mapping[str, list[int]], cap: int = COUNT_LIMIT
) -> dict[int, tuple[int, int]] | None:
    """The input's offset ranges the group committed in the window (to count the records
    in them), or None when they hold more than `cap` offsets (then offsets are counted)."""
    first, last, unknown = start.get("committed", []), end.get("committed", []), start.get("input", [])
    out = {}
    for i, e in enumerate(last):
        s = _start_of(first, i, unknown)
        if e > s:
            out[i] = (s, e)
    return out if sum(e - s for s, e in out.values()) <= cap else None


def sample_ranges(
    start: Sequence[int], end: Sequence[int], per_partition: int = SAMPLE_PER_PARTITION
) -> dict[int, tuple[int, int]]:
    """Offset ranges to read back from one output topic: the newest `per_partition`
    records each partition gained in the window."""
    out = {}
    for i, e in enumerate(end):
        s = _start_of(start, i)
        if e > s:
            out[i] = (max(s, e - per_partition), e)
    return out
