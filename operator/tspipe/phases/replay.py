"""Phase `replay`: carry out a `tspipe.io/reset-offsets` request (replay.py plans it).

1. Refuse at once, touching nothing, a malformed value, a pipeline whose broker needs
   credentials, and a plan the broker's state refuses (no input topic, a partition or
   offset out of range, a time before the log start, a member of the group that is
   not the router's).
2. Otherwise hold the router at zero replicas (the pipeline handed on to the children
   phase asks for 0), and the log sinks too (they consume in the same group: SCDF gives
   every consumer of a stream the stream's name as its group, and the broker sets a
   group's offsets only while it has no members), until their Deployments have no pods,
   the group has no members and,
   with exactly-once, no transaction is open on the router's outputs; the start of this
   stage is kept in `status.offsetReset` so that it survives an operator restart and is
   bounded (RESET_STOP_SECONDS).
3. Plan again on what the broker says now (the router committed until it stopped),
   write the offsets, remove the annotation, post an Event and hand the history entry
   to status; the children phase of the same pass starts the apps again.

A user removing the annotation before step 3 cancels: the router starts again and
nothing was changed in Kafka.

With Kafka credentials the operator cannot read the broker (it never reads Secrets):
step 2 waits for the held Deployments to reach zero and their pods to go, then step 3
runs as a one-shot Job of the router's image (resetjob.py: `tsp-router reset-offsets`,
which waits for the group's members to leave, plans as step 1 and 3 do and commits),
and the result is read back from the Job's status and its pod's termination message:
the same history entry, Event and condition as in-process; a refused or failed Job is a
refusal with its message. The Job's name is kept in `status.offsetReset.job`; once it
exists, removing the annotation no longer cancels (the Job may have set the offsets):
its result is recorded all the same. A new value given while the Job runs waits for
that result (_follow_job): never two reset Jobs at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from .. import replay, resetjob, rollback
from ..clients import Clients, api_error
from ..components import GROUP_CONSUMERS, ROUTER
from ..kube import ApiException
from ..model import EXACTLY_ONCE, Pipeline
from ..names import RESET_OFFSETS_ANNOTATION
from ..render import deployment_name
from ..stamps import format_time, parse_time
from ..status_fields import Key
from ..topics import ROLES
from .context import RECHECK_CONFLICT, Pass, ReadAgain

log = logging.getLogger("tspipe.controller")

RECHECK_STOPPING = 1.0  # while the router stops: look again soon (pods go, members leave)
# The router's pods have this long to go and its group's members to leave: its graceful
# shutdown, a killed pod's session timeout (10 s) and, with exactly-once, an abandoned
# transaction's timeout (60 s by default) all fit.
RESET_STOP_SECONDS = 300.0
RECHECK_JOB = 2.0  # while the reset Job runs (Jobs are not watched)
_WAITS = "; then "  # joins the running Job's message and what a waiting value is told
RESET_JOB_FAILED = "ResetJobFailed"  # the OffsetReset condition's reason when the Job failed without a result


@dataclass
class Replay:
    """What the phase hands on to status."""

    report: dict[str, Any] | None = None  # status.offsetReset for this pass (None: keep the previous one)
    entry: dict[str, Any] | None = None  # a reset made in this pass: its history entry


async def advance(ctx: Pass, clients: Clients, p: Pipeline) -> tuple[Pipeline, Replay]:
    r = ctx.reset
    prev = ctx.prev_status.get(Key.OFFSET_RESET) or {}
    under_way = prev.get("state") == replay.STOPPING
    if under_way and prev.get("job"):
        # A reset Job is out (it may be setting the offsets): never a second one, and its
        # result is recorded before anything else, whatever the annotation says now.
        return await _follow_job(ctx, clients, p, prev, r)
    if r is None:
        return await _without_request(ctx, clients, p, prev, under_way)
    if under_way and prev.get("request") != r.value:
        under_way = False  # a new value: planned from the start (the router is still held)
    since = prev.get("since") if under_way else format_time(clients.now())
    early = _refused_before_reading(ctx, p, r, under_way)
    if early is not None:
        return p, await _refuse(ctx, clients, r, early)
    if p.kafka.credentials is not None:
        return await _advance_job(ctx, clients, p, r, prev if under_way else {}, False, since)
    return await _in_process(ctx, clients, p, r, prev, under_way, since)


async def _in_process(
    ctx: Pass,
    clients: Clients,
    p: Pipeline,
    r: replay.ResetRequest,
    prev: dict[str, Any],
    under_way: bool,
    since: str | None,
) -> tuple[Pipeline, Replay]:
    """The reset without credentials: the operator reads and writes the broker itself."""
    group, topic = p.stream_name, p.kafka.topics.input
    outputs: tuple[str, ...] = ()
    if p.router.processing_guarantee == EXACTLY_ONCE:
        names = {role: p.kafka.topics.name(role) for role in ROLES[1:-1]}
        outputs = (*names.values(), p.kafka.topics.dead_letter(group))
    stopped = _held(p)
    try:
        parts, members, open_txns = await clients.kafka(
            clients.admin.reset_state, p.kafka.brokers, group, topic, r.at_ms, outputs
        )
    except Exception as exc:  # noqa: BLE001 - any broker failure: try again, the router stays as it is
        ctx.problems.append(f"{RESET_OFFSETS_ANNOTATION}: reading the broker: {exc}")
        ctx.again_in(RECHECK_STOPPING * 5)
        return (stopped, Replay(prev)) if under_way else (p, Replay())
    router = deployment_name(ctx.name, ROUTER)
    pods = await _group_pods(ctx, clients)
    # A stopping pod keeps its IP until it is gone, and a consumer that closes leaves the
    # group before its process exits: a member on no pod of the group's apps is not theirs.
    ips = {ip for pod in pods if (ip := (pod.get("status") or {}).get("podIP"))}
    foreign = [m for m in members if not replay.owned(m, router, ips)]
    if foreign:
        return p, await _refuse(ctx, clients, r, replay.refuse_members(r, group, topic, foreign))
    plan = replay.plan(r, topic, parts, int(clients.now().timestamp() * 1000))
    if plan.refused:
        return p, await _refuse(ctx, clients, r, plan)

    waiting, detail = await _still_running(ctx, clients, [pod["metadata"]["name"] for pod in pods], members, open_txns)
    if waiting:
        assert since is not None
        if (clients.now() - parse_time(since)).total_seconds() > RESET_STOP_SECONDS:
            why = f"the group's apps did not stop within {RESET_STOP_SECONDS:.0f}s ({detail}); they start again"
            return p, await _refuse(ctx, clients, r, replay.Plan(reason=replay.NOT_STOPPED, message=f"{r.what}: {why}"))
        ctx.again_in(RECHECK_STOPPING)
        log.debug("%s/%s: reset-offsets waiting: %s", ctx.namespace, ctx.name, detail)
        message = (
            f"resetting the offsets of consumer group {group} on {topic} ({r.value}): stopping the router "
            f"(and the log sinks, in the same group), {waiting}"
        )
        if not under_way:  # once: the Deployment's scaling to zero is on purpose
            ctx.out.writes += await clients.event(ctx.resource, "Normal", "ResettingOffsets", message)
        return stopped, Replay(_report(r.value, replay.STOPPING, replay.STOPPING, message, since=since))

    offsets = {m.partition: m.after for m in plan.moves}
    try:
        refused = await clients.kafka(clients.admin.commit_offsets, p.kafka.brokers, group, topic, offsets)
    except Exception as exc:  # noqa: BLE001 - try again next pass, the router still held
        refused = {-1: str(exc)}
    if refused:
        ctx.problems.append(f"{RESET_OFFSETS_ANNOTATION}: the broker refused the offsets: {refused}")
        ctx.again_in(RECHECK_STOPPING * 5)
        return stopped, Replay(prev or None)
    if not await _remove_annotation(ctx, clients, r):
        return stopped, Replay(prev or None)  # written already: the next pass finds the same plan done
    moved = replay.moves_status(plan.moves)
    message = f"reset the offsets of consumer group {group} on {topic} ({r.value}): {replay.moves_text(plan.moves)}"
    log.info("%s/%s: %s", ctx.namespace, ctx.name, message)
    ctx.out.writes += await clients.event(ctx.resource, "Normal", "OffsetsReset", message)
    report = _report(r.value, replay.COMPLETED, replay.COMPLETED, message, since=since)
    report.update(group=group, topic=topic, partitions=moved, time=format_time(clients.now()))
    entry = {"request": r.value, "group": group, "topic": topic, "partitions": moved}
    return p, Replay(report, entry)


async def _without_request(
    ctx: Pass, clients: Clients, p: Pipeline, prev: dict[str, Any], under_way: bool
) -> tuple[Pipeline, Replay]:
    """No annotation: nothing to do, or a reset cancelled before its offsets were set (a
    reset Job's outcome is recorded all the same: _follow_job)."""
    if not under_way:
        return p, Replay()
    message = f"{RESET_OFFSETS_ANNOTATION} was removed before the offsets were set: nothing changed"
    ctx.out.writes += await clients.event(ctx.resource, "Normal", "OffsetResetCancelled", message)
    return p, Replay(_report(prev.get("request", ""), replay.CANCELLED, replay.CANCELLED, message))


async def _follow_job(
    ctx: Pass, clients: Clients, p: Pipeline, prev: dict[str, Any], r: replay.ResetRequest | None
) -> tuple[Pipeline, Replay]:
    """A reset Job is running: follow it to its end and record its result. The annotation
    may say otherwise by now: removed (the result is recorded all the same) or a new
    value, which waits (status.offsetReset.pending, an OffsetResetWaiting Event) until the
    running Job's result is recorded, then runs as a request of its own, the apps still
    held. Only one reset Job at a time; nothing the user asked is dropped."""
    ours = r is not None and r.value == prev.get("request")
    request = r if r is not None and ours else replay.parse_reset(str(prev.get("request", "")))
    pending = r.value if r is not None and not ours else None
    # The Job's own report, without what an earlier pass said of a waiting value (a
    # value given back, or replaced by another, no longer waits).
    base = {k: v for k, v in prev.items() if k != "pending"}
    if "message" in base:
        base["message"] = str(base["message"]).split(_WAITS)[0]
    held, outcome = await _advance_job(ctx, clients, p, request, base, not ours)
    if pending is None:
        return held, outcome
    report = outcome.report
    if report is not None and report.get("state") == replay.STOPPING:  # the Job runs on
        job = report.get("job", "")
        said = (
            f"{RESET_OFFSETS_ANNOTATION}={pending!r} waits: Job {job} is resetting the offsets "
            f"({report.get('request', '')}); the new value runs once its result is recorded"
        )
        message = f"{base.get('message', '')}{_WAITS}{said}"
        if prev.get("pending") != pending:  # once per value given
            log.info("%s/%s: %s", ctx.namespace, ctx.name, said)
            ctx.out.writes += await clients.event(ctx.resource, "Normal", "OffsetResetWaiting", said)
        return held, Replay({**report, "pending": pending, "message": message})
    # The running Job's result is recorded in this pass; the new value is a request of
    # its own from the next pass on (its own Job, Event, history entry). The apps stay
    # held meanwhile rather than start for a moment and stop again.
    ctx.again_in(RECHECK_STOPPING)
    return _held(p), outcome


def _refused_before_reading(ctx: Pass, p: Pipeline, r: replay.ResetRequest, under_way: bool) -> replay.Plan | None:
    """A refusal that needs no broker: a malformed value, a rollout being verified."""
    if r.problem:
        return replay.Plan(reason=replay.MALFORMED, message=r.problem)
    if not under_way and (ctx.prev_status.get(Key.ROLLOUT) or {}).get("verdict") == rollback.VERIFYING:
        return replay.refuse_rollout(r)
    return None


def _held(p: Pipeline) -> Pipeline:
    """The pipeline to render while a reset runs: every app consuming in the group at zero."""
    return replace(p, router=replace(p.router, replicas=0), held=frozenset(c.spec_field for c in GROUP_CONSUMERS))


async def _group_pods(ctx: Pass, clients: Clients) -> list[dict[str, Any]]:
    """The pods of the apps that consume in the group (terminating ones too). From the
    API, not the watch cache: whether they are gone decides the reset."""
    prefixes = tuple(f"{deployment_name(ctx.name, c)}-" for c in GROUP_CONSUMERS)
    return [
        pod
        for pod in await clients.pods(ctx.namespace, ctx.name, fresh=True)
        if pod["metadata"]["name"].startswith(prefixes)
    ]


async def _still_running(
    ctx: Pass, clients: Clients, pods: list[str], members: list[replay.Member], open_txns: list[str]
) -> tuple[str, str]:
    """What keeps the reset waiting (('', '') : nothing), as a stage (for the status: it
    changes at most four times, so each is worth a write) and in detail (for the log and
    a refusal): a held Deployment not yet at zero, their pods (terminating ones too),
    consumers still in the group, an open transaction on the router's outputs."""
    # One list of the pipeline's Deployments from the API (not the watch cache, as the pods).
    found = {d["metadata"]["name"]: d for d in await clients.deployments(ctx.namespace, ctx.name, fresh=True)}
    for c in GROUP_CONSUMERS:
        name = deployment_name(ctx.name, c)
        d = found.get(name)
        if d is not None and ((d.get("spec") or {}).get("replicas") or (d.get("status") or {}).get("replicas")):
            return "waiting for its Deployment to scale to zero", f"Deployment {name} not at zero yet"
    if pods:
        return "waiting for its pods to go", f"{len(pods)} pod(s) left: {', '.join(sorted(pods))}"
    if members:
        clients_ = ", ".join(sorted(m.client_id for m in members))
        return (
            "waiting for its consumers to leave the group",
            f"{len(members)} consumer(s) in the group: {clients_}",
        )
    if open_txns:
        return "waiting for its open transactions to end", f"a transaction is open on {', '.join(open_txns)}"
    return "", ""


async def _advance_job(
    ctx: Pass,
    clients: Clients,
    p: Pipeline,
    r: replay.ResetRequest,
    prev: dict[str, Any],
    annotation_gone: bool,
    since: str | None = None,
) -> tuple[Pipeline, Replay]:
    """The reset with credentials: hold the router at zero until its pods are gone, run
    the Job, read its result. `prev`: this request's status so far ({} for a new one)."""
    since = prev.get("since") or since or format_time(clients.now())
    group, topic = p.stream_name, p.kafka.topics.input
    stopped = _held(p)
    name = prev.get("job") or ""
    if not name:
        pods = [pod["metadata"]["name"] for pod in await _group_pods(ctx, clients)]
        # The consumers leaving the group and open transactions ending the Job waits for
        # itself: only it can read the broker.
        waiting, detail = await _still_running(ctx, clients, pods, [], [])
        if waiting:
            if (clients.now() - parse_time(since)).total_seconds() > RESET_STOP_SECONDS:
                why = f"the group's apps did not stop within {RESET_STOP_SECONDS:.0f}s ({detail}); they start again"
                plan = replay.Plan(reason=replay.NOT_STOPPED, message=f"{r.what}: {why}")
                return p, await _refuse(ctx, clients, r, plan)
            ctx.again_in(RECHECK_STOPPING)
            message = (
                f"resetting the offsets of consumer group {group} on {topic} ({r.value}): stopping the router "
                f"(and the log sinks, in the same group), {waiting}"
            )
            if not prev:
                ctx.out.writes += await clients.event(ctx.resource, "Normal", "ResettingOffsets", message)
            return stopped, Replay(_report(r.value, replay.STOPPING, replay.STOPPING, message, since=since))
        name = resetjob.job_name(ctx.name, r.value, since)
        try:
            await clients.call(
                clients.kube.create_job, ctx.namespace, resetjob.render_job(ctx.resource, p, name, r.value)
            )
        except ApiException as exc:
            if exc.status != 409:  # 409: created by an earlier pass whose status write was lost
                ctx.problems.append(f"{RESET_OFFSETS_ANNOTATION}: creating Job {name}: {api_error(exc)}")
                ctx.again_in(RECHECK_STOPPING * 5)
                return stopped, Replay(prev or None)
        ctx.out.writes += 1
        message = (
            f"resetting the offsets of consumer group {group} on {topic} ({r.value}): the broker needs "
            f"credentials, so Job {name} of the router's image sets them"
        )
        log.info("%s/%s: %s", ctx.namespace, ctx.name, message)
        ctx.out.writes += await clients.event(ctx.resource, "Normal", "ResettingOffsets", message)
        ctx.again_in(RECHECK_JOB)
        report = _report(r.value, replay.STOPPING, replay.STOPPING, message, since=since)
        report["job"] = name
        return stopped, Replay(report)

    job = await clients.call(clients.kube.get_job, ctx.namespace, name)
    state = resetjob.finished(job) if job is not None else "Failed"
    if not state:
        ctx.again_in(RECHECK_JOB)  # Jobs are not watched: look again
        return stopped, Replay(prev)
    text = ""
    if job is not None:
        pods = await clients.call(clients.kube.list_pods, ctx.namespace, f"{resetjob.JOB_NAME_LABEL}={name}")
        text = resetjob.termination_message(pods)
    result = replay.parse_result(text)
    if result is None or not (result.committed and state == "Complete"):
        if result is not None and result.reason:
            plan = replay.Plan(reason=result.reason, message=result.message)
        else:
            why = resetjob.failure(job) if job is not None else "it was deleted before it finished"
            said = f"; its last words: {text[:300]}" if text else ""
            # No result: the Job died before writing one (it writes it right after the commit).
            plan = replay.Plan(
                reason=RESET_JOB_FAILED,
                message=f"{r.what}: Job {name} failed ({why}){said}; it left no result (kubectl logs job/{name})",
            )
        outcome = await _refuse(ctx, clients, r, plan, annotation_gone)
        if outcome.report is not None:
            outcome.report["job"] = name
        return p, outcome
    if not annotation_gone and not await _remove_annotation(ctx, clients, r):
        return stopped, Replay(prev)
    moved = replay.moves_status(result.moves)
    more = f" (and {result.left_out} more partitions)" if result.left_out else ""
    message = (
        f"reset the offsets of consumer group {group} on {topic} ({r.value}) with Job {name}: "
        f"{replay.moves_text(result.moves)}{more}"
    )
    log.info("%s/%s: %s", ctx.namespace, ctx.name, message)
    ctx.out.writes += await clients.event(ctx.resource, "Normal", "OffsetsReset", message)
    report = _report(r.value, replay.COMPLETED, replay.COMPLETED, message, since=since)
    report.update(group=group, topic=topic, partitions=moved, time=format_time(clients.now()), job=name)
    entry = {"request": r.value, "group": group, "topic": topic, "partitions": moved}
    return p, Replay(report, entry)


def _report(request: str, state: str, reason: str, message: str, since: str | None = None) -> dict[str, Any]:
    out = {"request": request, "state": state, "reason": reason, "message": message}
    if since:
        out["since"] = since
    return out


async def _refuse(
    ctx: Pass, clients: Clients, r: replay.ResetRequest, plan: replay.Plan, annotation_gone: bool = False
) -> Replay:
    """Consume a refused request: remove the annotation, a Warning, the condition."""
    if not annotation_gone and not await _remove_annotation(ctx, clients, r):
        return Replay()
    log.warning("%s/%s: %s", ctx.namespace, ctx.name, plan.message)
    ctx.out.writes += await clients.event(ctx.resource, "Warning", "OffsetResetRejected", plan.message)
    report = _report(r.value, replay.REJECTED, plan.reason, plan.message)
    report["time"] = format_time(clients.now())
    return Replay(report)


async def _remove_annotation(ctx: Pass, clients: Clients, r: replay.ResetRequest) -> bool:
    try:
        await clients.write_pipeline(
            clients.kube.remove_annotation, ctx.namespace, ctx.name, RESET_OFFSETS_ANNOTATION, r.value
        )
    except ApiException as exc:
        if exc.status in (404, 409, 422):
            raise ReadAgain(RECHECK_CONFLICT) from exc  # the annotation changed meanwhile: read again
        ctx.problems.append(f"removing annotation {RESET_OFFSETS_ANNOTATION}: {api_error(exc)}")
        return False
    ctx.out.writes += 1
    return True
