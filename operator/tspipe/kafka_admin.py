"""Kafka calls the operator makes (synchronous and bounded; run them in a thread).

One short-lived client per call: the operator talks to Kafka only when a pipeline's
topics change, on a slow recheck timer, while a pause drains, on the autoscaler's
period and at the ends of a rollout's verification window, so a pooled connection per
broker list would cost more than it saves.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import contextmanager
from typing import Any

from . import defaults
from .autoscale import GroupLag
from .names import MANAGER
from .replay import Member, PartitionState
from .topics import DesiredTopic, TopicPlan

log = logging.getLogger("tspipe.kafka")


class KafkaUnavailable(Exception):
    """The brokers could not be reached (or did not answer in time)."""


def constructed(cls: Any, **config: Any) -> Any:
    """`cls(**config)` for a kafka-python client (KafkaAdminClient, KafkaConsumer); if the
    constructor fails, what it had started is stopped before the error goes on.

    kafka-python 3.0.12's constructors start the client's IO thread (with its epoll
    selector, wake-up socket pair and the socket to the first broker) before they
    bootstrap, and a bootstrap that fails (an unreachable broker: KafkaTimeoutError)
    raises out of the constructor with all of that still running and no object to
    close: a thread and four file descriptors per attempt, for as long as the operator
    runs (found by bench/operator_soak.py's pipeline with an unreachable broker)."""
    obj = cls.__new__(cls)
    try:
        obj.__init__(**config)
    except BaseException:
        _stop_partial(obj)
        raise
    return obj


def _stop_partial(obj: Any) -> None:
    """What a half-constructed client's close() would stop (close() itself refuses one
    whose constructor did not finish), each part only if it was made."""
    for part, method in (("_metrics", "close"), ("_client", "close"), ("_net", "stop"), ("_net", "close")):
        target = getattr(obj, part, None)
        if target is not None:
            with contextlib.suppress(Exception):
                getattr(target, method)()


class TopicAdmin:
    def __init__(self, timeout_s: float = defaults.KAFKA_TIMEOUT):
        self.timeout_ms = int(timeout_s * 1000)

    @contextmanager
    def _client(self, brokers):
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = constructed(
                KafkaAdminClient,
                bootstrap_servers=list(brokers),
                client_id=MANAGER,
                request_timeout_ms=self.timeout_ms,
                bootstrap_timeout_ms=self.timeout_ms,
                reconnect_backoff_max_ms=1000,
            )
        except (KafkaError, OSError, ValueError) as exc:
            raise KafkaUnavailable(_short(exc)) from exc
        try:
            yield admin
        except KafkaError as exc:
            if type(exc).__name__ in (
                "KafkaTimeoutError",
                "NoBrokersAvailable",
                "KafkaConnectionError",
                "RequestTimedOutError",
                "NodeNotReadyError",
            ):
                raise KafkaUnavailable(_short(exc)) from exc
            raise
        finally:
            admin.close()

    def describe(self, brokers, names) -> dict[str, tuple[int, int] | None]:
        """name -> (partitions, replication factor), None if the topic does not exist."""
        with self._client(brokers) as admin:
            return _describe(admin, names)

    def ensure(self, brokers, desired: list[DesiredTopic], plan_fn) -> tuple[dict, TopicPlan, dict[str, str]]:
        """Describe (with the settings the spec names), plan with `plan_fn(desired,
        actual, configs)`, create, grow and put settings back; one connection.

        Returns (actual before the changes, the plan, name -> error for failed changes)."""
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        with self._client(brokers) as admin:
            actual = _describe(admin, [d.name for d in desired])
            configs = _describe_configs(admin, {d.name: [k for k, _ in d.config] for d in desired if actual[d.name]})
            plan = plan_fn(desired, actual, configs)
            failed: dict[str, str] = {}
            for name, (parts, rf) in plan.create.items():
                try:
                    options = {"num_partitions": parts, "replication_factor": rf}
                    admin.create_topics(
                        {name: {**options, "configs": plan.configure.get(name, {})}}, timeout_ms=self.timeout_ms
                    )
                    log.info("created topic %s (%d partitions, replication %d)", name, parts, rf)
                except TopicAlreadyExistsError:
                    pass  # someone (an app) created it meanwhile; the next check sees it
                except KafkaError as exc:
                    failed[name] = _short(exc)
            for name, parts in plan.grow.items():
                try:
                    admin.create_partitions({name: parts}, timeout_ms=self.timeout_ms)
                    log.info("grew topic %s to %d partitions", name, parts)
                except KafkaError as exc:
                    failed[name] = _short(exc)
            for name, settings in plan.configure.items():
                if name not in plan.create and name not in failed:
                    error = _set_configs(admin, name, settings)
                    if error:
                        failed[name] = error
                    else:
                        log.info("put back settings of topic %s: %s", name, settings)
            return actual, plan, failed

    def delete(self, brokers, names) -> None:
        from kafka.errors import UnknownTopicOrPartitionError

        with self._client(brokers) as admin:
            existing = [n for n, v in _describe(admin, names).items() if v is not None]
            if existing:
                with contextlib.suppress(UnknownTopicOrPartitionError):
                    admin.delete_topics(existing, timeout_ms=self.timeout_ms)
                log.info("deleted topics %s", ", ".join(existing))

    def lag(self, brokers, group: str, topic: str) -> int:
        """Records in `topic` that consumer group `group` has not committed yet (0 if no topic)."""
        return self.group_lag(brokers, group, topic).lag

    def group_lag(self, brokers, group: str, topic: str) -> GroupLag:
        """The group's lag on `topic`, the topic's partition count and how many of its
        partitions the group has committed on (all 0 if no topic)."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        with self._client(brokers) as admin:
            info = _describe(admin, [topic]).get(topic)
            if info is None:
                return GroupLag(0, 0, 0)
            tps = [TopicPartition(topic, i) for i in range(info[0])]
            ends = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST), timeout_ms=self.timeout_ms)
            starts = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.EARLIEST), timeout_ms=self.timeout_ms)
            committed = self._group_offsets(admin, group, tps)
            total, with_commit = 0, 0
            for tp in tps:
                end = ends[tp].offset
                done = committed.get(tp)
                done_at = done.offset if done is not None and done.offset >= 0 else -1
                with_commit += done_at >= 0
                done_at = done_at if done_at >= 0 else starts[tp].offset
                total += max(0, end - done_at)
            return GroupLag(total, len(tps), with_commit)

    def offsets(
        self, brokers, group: str, input_topic: str, outputs: dict[str, str], *, commits_first: bool, grace_s: float
    ) -> dict[str, list[int]]:
        """Per-partition offsets for a rollout's window (rollback.py's snapshot): the group's
        commits on the input with the input's end and log-start offsets, and each output's
        end offsets, read `grace_s` apart, the commits first or last as `commits_first` says."""
        import time

        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        with self._client(brokers) as admin:
            parts = _describe(admin, [input_topic, *outputs.values()])

            def tps(topic: str) -> list:
                info = parts.get(topic)
                return [TopicPartition(topic, i) for i in range(info[0] if info else 0)]

            def committed() -> dict[str, list[int]]:
                inp = tps(input_topic)
                done = self._group_offsets(admin, group, inp) if inp else {}
                latest = admin.list_partition_offsets(dict.fromkeys(inp, OffsetSpec.LATEST), timeout_ms=self.timeout_ms)
                earliest = admin.list_partition_offsets(
                    dict.fromkeys(inp, OffsetSpec.EARLIEST), timeout_ms=self.timeout_ms
                )
                return {
                    "committed": [
                        (o.offset if (o := done.get(tp)) is not None and o.offset >= 0 else -1) for tp in inp
                    ],
                    "input": [latest[tp].offset for tp in inp],
                    "inputStart": [earliest[tp].offset for tp in inp],
                }

            def ends() -> dict[str, list[int]]:
                want = [tp for t in outputs.values() for tp in tps(t)]
                got = admin.list_partition_offsets(dict.fromkeys(want, OffsetSpec.LATEST), timeout_ms=self.timeout_ms)
                return {role: [got[tp].offset for tp in tps(t)] for role, t in outputs.items()}

            if commits_first:
                first = committed()
                time.sleep(grace_s)
                return {**first, **ends()}
            out = ends()
            time.sleep(grace_s)
            return {**committed(), **out}

    def read(
        self, brokers, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float, read_committed: bool = False
    ) -> list[bytes | None]:
        """The values of `topic`'s records in [start, end) of each partition (as far as
        they arrive within `timeout_s`; aborted ones only without `read_committed`); no
        consumer group, nothing committed."""
        return [r[2] for r in self.read_records(brokers, topic, ranges, timeout_s, read_committed)]

    def read_records(
        self, brokers, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float, read_committed: bool = False
    ) -> list[tuple[int, int, bytes | None, list[tuple[str, bytes]]]]:
        """As `read`, each record as (partition, offset, value, headers), in offset order per partition."""
        import time

        from kafka import KafkaConsumer, TopicPartition

        wanted = {TopicPartition(topic, p): r for p, r in ranges.items() if r[1] > r[0]}
        if not wanted:
            return []
        consumer = constructed(
            KafkaConsumer,
            bootstrap_servers=list(brokers),
            client_id=MANAGER,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=max(self.timeout_ms, 11_000),
            isolation_level="read_committed" if read_committed else "read_uncommitted",
        )
        out: list[tuple[int, int, bytes | None, list[tuple[str, bytes]]]] = []
        try:
            consumer.assign(list(wanted))
            for tp, (start, _) in wanted.items():
                consumer.seek(tp, start)
            left = dict(wanted)
            deadline = time.monotonic() + timeout_s
            while left and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=200).items():
                    end = wanted[tp][1]
                    out.extend(
                        (tp.partition, r.offset, r.value, list(r.headers or ())) for r in records if r.offset < end
                    )
                # The position, not the last record: a transaction's commit marker takes an
                # offset but is never returned as a record.
                for tp in [tp for tp in left if consumer.position(tp) >= wanted[tp][1]]:
                    del left[tp]
                    consumer.pause(tp)
        finally:
            consumer.close()
        return out

    def reset_state(
        self, brokers, group: str, topic: str, at_ms: int | None, txn_topics: tuple[str, ...] = ()
    ) -> tuple[list[PartitionState] | None, list[Member], list[str]]:
        """What a reset of `group` on `topic` is planned from (replay.py): each partition's
        log start, end and committed offset (and, for a time, the first offset at or after
        `at_ms` and the oldest record's timestamp); the group's members; and the
        partitions of `txn_topics` with an open transaction (exactly-once: the router's
        outputs). Partitions None: no such topic."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec, OffsetTimestamp

        with self._client(brokers) as admin:
            described = _describe(admin, [topic, *txn_topics])
            info = described.get(topic)
            members = _members(admin, group, topic)
            if info is None:
                return None, members, []
            tps = [TopicPartition(topic, i) for i in range(info[0])]
            t = self.timeout_ms
            starts = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.EARLIEST), timeout_ms=t)
            ends = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST), timeout_ms=t)
            at = first = {}
            if at_ms is not None:
                # ListOffsets by time answers the first record stamped at or after it, with its stamp.
                at = admin.list_partition_offsets(dict.fromkeys(tps, OffsetTimestamp(at_ms)), timeout_ms=t)
                first = admin.list_partition_offsets(dict.fromkeys(tps, OffsetTimestamp(0)), timeout_ms=t)
            committed = self._group_offsets(admin, group, tps)
            parts = []
            for tp in tps:
                done = committed.get(tp)
                found, oldest = at.get(tp), first.get(tp)
                parts.append(
                    PartitionState(
                        tp.partition,
                        starts[tp].offset,
                        ends[tp].offset,
                        done.offset if done is not None and done.offset >= 0 else None,
                        at=found.offset if found is not None and found.offset >= 0 else None,
                        first_time=oldest.timestamp if oldest is not None and oldest.offset >= 0 else None,
                    )
                )
            open_txns = []
            want = [TopicPartition(n, i) for n in txn_topics for i in range((described.get(n) or (0, 0))[0])]
            if want:
                for tp, state in admin.describe_producers(want).items():
                    if any(p.current_transaction_start_offset >= 0 for p in state.active_producers):
                        open_txns.append(f"{tp.topic}-{tp.partition}")
            return parts, members, sorted(open_txns)

    def commit_offsets(self, brokers, group: str, topic: str, offsets: dict[int, int]) -> dict[int, str]:
        """Set `group`'s committed offsets on `topic` (OffsetCommit outside the group's
        generation: the broker accepts it only while the group has no members).
        Returns partition -> error for the partitions the broker refused."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        with self._client(brokers) as admin:
            result = admin.alter_group_offsets(
                group,
                {
                    TopicPartition(topic, p): OffsetAndMetadata(o, "tspipe reset-offsets", None)
                    for p, o in offsets.items()
                },
            )
            return {tp.partition: err.__name__ for tp, err in result.items() if err.errno != 0}

    def ends(self, brokers, topics: list[str]) -> dict[str, list[int]]:
        """Each topic's end offset per partition ([] for a topic that does not exist)."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        with self._client(brokers) as admin:
            parts = _describe(admin, topics)
            want = {t: [TopicPartition(t, i) for i in range((parts.get(t) or (0, 0))[0])] for t in topics}
            every = [tp for tps in want.values() for tp in tps]
            got = (
                admin.list_partition_offsets(dict.fromkeys(every, OffsetSpec.LATEST), timeout_ms=self.timeout_ms)
                if every
                else {}
            )
            return {t: [got[tp].offset for tp in tps] for t, tps in want.items()}

    def committed(self, brokers, group: str, topic: str) -> list[int]:
        """`group`'s committed offset on each partition of `topic` (-1: none)."""
        from kafka import TopicPartition

        with self._client(brokers) as admin:
            info = _describe(admin, [topic]).get(topic)
            tps = [TopicPartition(topic, i) for i in range(info[0] if info else 0)]
            done = self._group_offsets(admin, group, tps) if tps else {}
            return [(o.offset if (o := done.get(tp)) is not None and o.offset >= 0 else -1) for tp in tps]

    def shadow_start(
        self, brokers, stable_group: str, shadow_group: str, topic: str, like: str, create: list[str], rf: int
    ) -> tuple[list[int], dict[str, str]]:
        """Start a shadow release (shadow.py): create the `create` topics with as many
        partitions as `like` (so records keep their partitions), and give `shadow_group`
        the stable group's committed offsets on `topic`. Returns the offsets given (-1
        where the stable group has none: the shadow then starts as the router would) and
        what failed (name or group -> error)."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError, TopicAlreadyExistsError
        from kafka.structs import OffsetAndMetadata

        failed: dict[str, str] = {}
        with self._client(brokers) as admin:
            described = _describe(admin, [topic, like])
            inp, out = described.get(topic), described.get(like)
            if inp is None or out is None:
                return [], {topic if inp is None else like: "no such topic"}
            for name in create:
                try:
                    admin.create_topics(
                        {name: {"num_partitions": out[0], "replication_factor": rf}}, timeout_ms=self.timeout_ms
                    )
                except TopicAlreadyExistsError:
                    pass  # an earlier pass created it (its result was lost)
                except KafkaError as exc:
                    failed[name] = _short(exc)
            tps = [TopicPartition(topic, i) for i in range(inp[0])]
            done = self._group_offsets(admin, stable_group, tps)
            start = [(o.offset if (o := done.get(tp)) is not None and o.offset >= 0 else -1) for tp in tps]
            given = {
                tp: OffsetAndMetadata(s, "tspipe shadow", None) for tp, s in zip(tps, start, strict=True) if s >= 0
            }
            if given and not failed:
                result = admin.alter_group_offsets(shadow_group, given)
                failed.update({f"{shadow_group}/{tp.partition}": e.__name__ for tp, e in result.items() if e.errno})
            return start, failed

    def delete_group(self, brokers, group: str) -> bool:
        """Delete a consumer group (an unknown one is fine); False while it still has
        members (the broker refuses then, and nothing changes)."""
        from kafka.errors import KafkaError

        with self._client(brokers) as admin:
            # {group: "OK" or the error's name} (kafka-python 3)
            error = dict(admin.delete_groups([group])).get(group, "OK")
            if error == "NonEmptyGroupError":
                return False
            if error not in ("OK", "GroupIdNotFoundError"):
                raise KafkaError(f"delete group {group}: {error}")
            return True

    def _group_offsets(self, admin, group, tps) -> dict:
        import time

        from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError

        # A fresh broker creates __consumer_offsets on the first FindCoordinator: retry briefly.
        for attempt in range(5):
            try:
                return (admin.list_group_offsets({group: tps}) or {}).get(group) or {}
            except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError) as exc:
                if attempt == 4:
                    raise KafkaUnavailable(_short(exc)) from exc
                time.sleep(0.5)
        return {}


def _members(admin, group: str, topic: str) -> list[Member]:
    """The group's members (none for an empty or unknown group), with the partitions of
    `topic` each holds (from the assignment the group's leader handed out)."""
    found = (admin.describe_groups([group]) or {}).get(group) or {}
    out = []
    for m in found.get("members") or []:
        parts: list[int] = []
        # describe_groups decodes the assignment into {assigned_partitions: [{topic, partitions}]}.
        assignment = m.get("member_assignment")
        for t in (assignment.get("assigned_partitions") if isinstance(assignment, dict) else None) or []:
            if t.get("topic") == topic:
                parts.extend(t.get("partitions") or [])
        out.append(Member(str(m.get("client_id", "")), str(m.get("client_host", "")), tuple(sorted(parts))))
    return out


def _describe_configs(admin, keys: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """name -> {setting: the broker's effective value} for the settings asked (whatever
    their source: the topic's own, the broker's default or Kafka's)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    asked = {name: k for name, k in keys.items() if k}
    if not asked:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, k) for name, k in asked.items()]
    found = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {name: {k: c.get("value") for k, c in (found.get(name) or {}).items()} for name in asked}


def _set_configs(admin, name: str, settings: dict[str, str]) -> str | None:
    """Set (incrementally: other settings stay) a topic's settings; the broker's error, if any."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    try:
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, settings)], incremental=True)
    except (KafkaError, ValueError) as exc:  # ValueError: a setting this broker does not know
        return _short(exc)
    outcome = (result.get("topic") or {}).get(name)
    return None if outcome == "OK" else str(outcome)


def _describe(admin, names) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for t in admin.describe_topics(list(names)):
        name = t.get("name") or t.get("topic")
        parts = t.get("partitions") or []
        if t.get("error_code", 0) != 0 or not parts:
            out[name] = None
            continue
        out[name] = (len(parts), len(parts[0].get("replica_nodes") or parts[0].get("replicas") or []))
    for n in names:
        out.setdefault(n, None)
    return out


def _short(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    text = text if text.startswith(name) else (f"{name}: {text}" if text else name)
    return text[:300]
