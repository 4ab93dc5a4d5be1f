"""`tsp-router reset-offsets`: set the router's consumer group's offsets on its input topic.

The operator runs this as a one-shot Job of the pipeline's router image when the broker
needs the pipeline's credentials (it never reads Secrets, so it cannot connect itself):
the Job gets the router's own arguments and credential env, so the Kafka connection,
topic and group come from the same parsing the router uses (config.load), SASL and TLS
included. The reset's own arguments:

  --reset.to=VALUE              the tspipe.io/reset-offsets value (earliest, latest, a time, p:o pairs)
  --reset.router=DEPLOYMENT     the router's Deployment: its consumers are waited for, others refused
  --reset.wait-seconds=N        how long the router's consumers (and, exactly-once, open
                                transactions on its outputs) may take to go (60)
  --reset.result-file=PATH      where the result goes (/dev/termination-log)

It plans exactly as the operator's in-process path does (offsetplan.py): refuse a group
with members that are not the router's, a time before the log start, an offset out of
range (naming the partition); otherwise commit the offsets. The result (per partition
from -> to, or the refusal) is one JSON object written to the container's termination
message, where the operator reads it back; exit 0 when the offsets were set, 3 when
refused, 1 when Kafka failed.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from . import offsetplan as op
from .config import ConfigError, RouterConfig, load

log = logging.getLogger("tsrouter.reset")

RESULT_FILE = "/dev/termination-log"
WAIT_S = 60.0
POLL_S = 1.0
TIMEOUT_MS = 15_000
REFUSED, FAILED = 3, 1
KAFKA_FAILED = "KafkaError"  # a result's reason when the broker could not be read or refused the commit


def split_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(the reset's own --reset.* arguments, the router's arguments)."""
    own: dict[str, str] = {}
    rest: list[str] = []
    for arg in argv:
        if arg.startswith("--reset.") and "=" in arg:
            key, value = arg[len("--reset.") :].split("=", 1)
            own[key] = value
        else:
            rest.append(arg)
    return own, rest


def main(argv: Sequence[str], env: Mapping[str, str]) -> int:
    own, rest = split_args(argv)
    result_file = own.get("result-file", RESULT_FILE)
    try:
        cfg = load(rest, env)
        wait_s = float(own.get("wait-seconds", WAIT_S))
    except (ConfigError, ValueError) as exc:
        print(f"tsp-router reset-offsets: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        _write(result_file, "", "", op.Plan(reason="ConfigurationError", message=str(exc)), False)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    r = op.parse_reset(own.get("to", ""))
    group, topic = cfg.group, cfg.input_topic
    if r.problem:
        return _done(result_file, group, topic, op.Plan(reason=op.MALFORMED, message=r.problem), False)
    try:
        return _reset(cfg, r, own.get("router", ""), wait_s, result_file)
    except Exception as exc:  # noqa: BLE001 - any Kafka failure is the result: nothing was set
        why = f"{type(exc).__name__}: {exc}"[:500]
        log.error("reset-offsets failed: %s", why)
        refusal = op.Plan(
            reason=KAFKA_FAILED, message=f"{r.what}: the broker could not be read ({why}); nothing changed"
        )
        _write(result_file, group, topic, refusal, False)
        return FAILED


def _reset(cfg: RouterConfig, r: op.ResetRequest, router: str, wait_s: float, result_file: str) -> int:
    from kafka import KafkaAdminClient
    from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError

    group, topic = cfg.group, cfg.input_topic
    admin = KafkaAdminClient(
        bootstrap_servers=list(cfg.brokers),
        client_id=f"tsrouter-reset-{socket.gethostname()}",
        request_timeout_ms=TIMEOUT_MS,
        bootstrap_timeout_ms=TIMEOUT_MS,
        reconnect_backoff_max_ms=1000,
        **cfg.kafka_client,
    )
    try:
        outputs = (cfg.even_topic, cfg.odd_topic, cfg.dead_letter_topic) if cfg.exactly_once else ()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                parts, members, open_txns = read_state(admin, group, topic, r.at_ms, outputs)
            except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError):
                # A fresh broker creates __consumer_offsets on the first FindCoordinator.
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL_S)
                continue
            foreign = [m for m in members if not (router and op.owned(m, router))]
            if foreign:
                return _done(result_file, group, topic, op.refuse_members(r, group, topic, foreign), False)
            waiting = (
                f"{len(members)} router consumer(s) in the group"
                if members
                else f"a transaction is open on {', '.join(open_txns)}"
                if open_txns
                else ""
            )
            if not waiting:
                break
            if time.monotonic() > deadline:
                refusal = op.Plan(
                    reason=op.NOT_STOPPED,
                    message=f"{r.what}: the router did not stop within {wait_s:.0f}s ({waiting}); nothing changed",
                )
                return _done(result_file, group, topic, refusal, False)
            log.info("waiting: %s", waiting)
            time.sleep(POLL_S)
        plan = op.plan(r, topic, parts, int(time.time() * 1000))
        if plan.refused:
            return _done(result_file, group, topic, plan, False)
        failed = commit(admin, group, topic, {m.partition: m.after for m in plan.moves})
        if failed:
            refusal = op.Plan(
                reason=KAFKA_FAILED, message=f"{r.what}: the broker refused the offsets of partition(s) {failed}"
            )
            return _done(result_file, group, topic, refusal, False)
        log.info(
            "reset the offsets of consumer group %s on %s (%s): %s", group, topic, r.value, op.moves_text(plan.moves)
        )
        return _done(result_file, group, topic, plan, True)
    finally:
        admin.close()


def read_state(admin, group: str, topic: str, at_ms: int | None, txn_topics: tuple[str, ...]):
    """As the operator's kafka_admin.reset_state (the router cannot import it): each
    partition's log start, end, committed offset (and for a time the first offset at or
    after it and the oldest record's stamp); the group's members; and the partitions of
    `txn_topics` with an open transaction."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec, OffsetTimestamp

    described = {}
    for t in admin.describe_topics([topic, *txn_topics]):
        parts = t.get("partitions") or []
        if t.get("error_code", 0) == 0 and parts:
            described[t.get("topic") or t.get("name")] = len(parts)
    members = _members(admin, group, topic)
    if topic not in described:
        return None, members, []
    tps = [TopicPartition(topic, i) for i in range(described[topic])]
    starts = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.EARLIEST), timeout_ms=TIMEOUT_MS)
    ends = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST), timeout_ms=TIMEOUT_MS)
    at: dict = {}
    first: dict = {}
    if at_ms is not None:
        at = admin.list_partition_offsets(dict.fromkeys(tps, OffsetTimestamp(at_ms)), timeout_ms=TIMEOUT_MS)
        first = admin.list_partition_offsets(dict.fromkeys(tps, OffsetTimestamp(0)), timeout_ms=TIMEOUT_MS)
    committed = (admin.list_group_offsets({group: tps}) or {}).get(group) or {}
    states = []
    for tp in tps:
        done, found, oldest = committed.get(tp), at.get(tp), first.get(tp)
        states.append(
            op.PartitionState(
                tp.partition,
                starts[tp].offset,
                ends[tp].offset,
                done.offset if done is not None and done.offset >= 0 else None,
                at=found.offset if found is not None and found.offset >= 0 else None,
                first_time=oldest.timestamp if oldest is not None and oldest.offset >= 0 else None,
            )
        )
    open_txns = []
    want = [TopicPartition(n, i) for n in txn_topics for i in range(described.get(n, 0))]
    if want:
        for tp, state in admin.describe_producers(want).items():
            if any(p.current_transaction_start_offset >= 0 for p in state.active_producers):
                open_txns.append(f"{tp.topic}-{tp.partition}")
    return states, members, sorted(open_txns)


def _members(admin, group: str, topic: str) -> list[op.Member]:
    found = (admin.describe_groups([group]) or {}).get(group) or {}
    out = []
    for m in found.get("members") or []:
        parts: list[int] = []
        assignment = m.get("member_assignment")
        for t in (assignment.get("assigned_partitions") if isinstance(assignment, dict) else None) or []:
            if t.get("topic") == topic:
                parts.extend(t.get("partitions") or [])
        out.append(op.Member(str(m.get("client_id", "")), str(m.get("client_host", "")), tuple(sorted(parts))))
    return out


def commit(admin, group: str, topic: str, offsets: dict[int, int]) -> dict[int, str]:
    """Set the group's offsets (the broker accepts them only while the group has no
    members); partition -> error for those refused."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    result = admin.alter_group_offsets(
        group,
        {TopicPartition(topic, p): OffsetAndMetadata(o, "tspipe reset-offsets", None) for p, o in offsets.items()},
    )
    return {tp.partition: err.__name__ for tp, err in result.items() if err.errno != 0}


def _done(path: str, group: str, topic: str, result: op.Plan, committed: bool) -> int:
    if result.refused:
        log.warning("%s", result.message)
    _write(path, group, topic, result, committed)
    return 0 if committed else REFUSED


def _write(path: str, group: str, topic: str, result: op.Plan, committed: bool) -> None:
    text = op.result_document(group, topic, result, committed)
    print(text, flush=True)  # noqa: T201 - the result, also in `kubectl logs`
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:  # not in a container: stdout has it
        log.warning("cannot write the result to %s: %s", path, exc)
