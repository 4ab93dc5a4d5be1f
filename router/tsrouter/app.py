"""The imperative shell: consume, route, produce, commit; reconnect on failure; stop cleanly.

Delivery rules (the reason this file exists):
  * offsets are committed only after every record of the batch, routed or dead-lettered,
    was acknowledged by the broker (each send's future is checked: flush() alone does
    not report failures);
  * a batch with any failed send is not committed: the consumer seeks back and
    retries it (at-least-once), or the transaction is aborted (exactly-once);
  * in exactly-once mode the offsets travel inside the producer's transaction.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from .batch import (
    CommitLedger,
    Planned,
    Sent,
    Topics,
    first_offsets,
    merge_offsets,
    next_offsets,
    plan_groups,
    record_counts,
    records_of,
    rewind_offsets,
    settle,
)
from .chunks import ListChunk
from .config import RouterConfig
from .health import HealthState
from .kafka_private import Fence
from .kafka_private.fastsend import FastSender
from .metrics import Metrics
from .rawplan import plan_chunks
from .routing import DEAD_LETTER, ROUTED, Prefixes, output_headers
from .topics import ensure_topics
from .wire import encode_headers

log = logging.getLogger("tsrouter")

# The loop's bounds and intervals, and why each is what it is (seconds unless _MS).
DELIVERY_TIMEOUT_MS = 30_000  # the producer gives up on a send after this (then the batch is replayed)
SEND_WAIT_S = DELIVERY_TIMEOUT_MS / 1000 + 5  # waiting for one send's ack: the delivery timeout, plus slack
FLUSH_SLICE_S = 0.5  # flush in slices, so health ticks and the stop deadline are seen meanwhile
REBALANCE_DRAIN_S = 20.0  # settle in-flight sends before giving partitions up; well inside max.poll.interval
DRAIN_S = 60.0  # default bound of drain(); shutdown is bounded by its stop deadline instead
COMMIT_TIMEOUT_MS = 10_000  # a synchronous commit (revoke, error, shutdown); failing it means redelivery
# The exactly-once producer's retry_backoff_ms. kafka-python's sender sleeps it before any
# retried transactional request, also after CONCURRENT_TRANSACTIONS (a transaction begun while
# the last one's markers are still being written), where Java's client waits 20 ms; at the
# clients' 200 ms about one transaction in six stalled 200 ms. It also paces this producer's
# other retries, which its delivery timeout still bounds.
TXN_RETRY_BACKOFF_MS = 20
# The GIL's switch interval for the router's process. The producer's sender thread and the
# clients' network thread wait for the GIL while the main thread decodes and plans a batch;
# at CPython's 5 ms a ready produce request could wait that long to leave. At 0.5 ms
# at-least-once on 1 partition ran about 10% faster side by side (6 of 8 paired runs), and
# 2 partitions, exactly-once and p99 at 1,000 rec/s were no worse.
SWITCH_INTERVAL_S = 0.0005
COMMIT_INTERVAL_S = 0.2  # async commits at most this often: little redelivery, few round trips
POLL_MS = 200  # an idle poll: short enough to notice a stop request promptly
POLL_INFLIGHT_MS = 5  # poll briefly while sends are in flight, so acknowledgements settle promptly
REPLAY_PAUSE_S = 0.5  # after a failed batch, before replaying it: do not spin on a failing broker
LAG_INTERVAL_S = 2.0  # refresh the lag gauge at most this often
MAX_INFLIGHT_BATCHES = 8  # at-least-once pipelining depth before backpressure
RECONNECT_BACKOFF_S = 0.5  # first wait before reconnecting after a client failure; doubles ...
RECONNECT_BACKOFF_MAX_S = 10.0  # ... up to this
ERROR_CLOSE_S = 2.0  # closing the clients after a failure: best effort, must not hold up the retry
STOP_DEADLINE_FRACTION = 0.75  # of shutdown-timeout-ms for draining; the rest is for committing and closing
SHUTDOWN_CLOSE_S = 5.0  # closing the clients at shutdown without a stop deadline ...
SHUTDOWN_CLOSE_MAX_S = 10.0  # ... and at most, with one


class _Listener(AsyncConsumerRebalanceListener):
    """The rebalance hooks. kafka-python 3.0.12 runs every rebalance (poll's, close's) on the
    consumer's IO thread and calls these hooks there, where a blocking consumer call such as
    commit() is refused ("Cannot block on net.run() from the IO thread itself"): a blocking
    revoke commit failed in every rebalance, and the partitions' next owner could route again
    what was routed since the last periodic commit. So the hooks are
    coroutines, which kafka-python awaits on that thread, and the revoke commit is sent
    asynchronously and awaited there, before the consumer rejoins. The producer is another
    client, with its own threads: draining it and the transactional calls may block here."""

    def __init__(self, runner: Runner):
        self.r = runner

    async def on_partitions_revoked(self, revoked):
        self.r.metrics.rebalances.labels("revoked").inc()
        # Settle what is in flight, then commit exactly what was acknowledged, so the
        # next owner starts right after it: nothing lost, nothing routed twice.
        if self.r.producer is not None:
            self.r.drain(timeout_s=REBALANCE_DRAIN_S)
        await self.r.commit_pending_on_io_thread(reason="revoke")
        log.info("partitions revoked: %s", _tps(revoked))

    async def on_partitions_assigned(self, assigned):
        self.r.metrics.rebalances.labels("assigned").inc()
        self.r.on_assigned(assigned)
        log.info("partitions assigned: %s", _tps(assigned))

    async def on_partitions_lost(self, lost):
        self.r.metrics.rebalances.labels("lost").inc()
        self.r.drop_pending(lost)
        log.warning("partitions lost: %s", _tps(lost))


class _Failed:
    """A send that raised before it got a future: settles as failed."""

    is_done = True

    def __init__(self, exc: Exception):
        self.exception = exc

    def succeeded(self) -> bool:
        return False


def _offset_commit(offsets) -> dict:
    """An offset commit's argument: no metadata, no leader epoch (kafka-python 3.0.12 cannot
    encode None there)."""
    return {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()}


def _offs(offsets) -> str:
    return ",".join(f"{tp.topic}-{tp.partition}@{off}" for tp, off in sorted(offsets.items())) or "-"


def _tps(tps) -> str:
    return ",".join(sorted(f"{tp.topic}-{tp.partition}" for tp in tps)) or "-"


class Runner:
    def __init__(
        self, cfg: RouterConfig, health: HealthState, metrics: Metrics, stop: threading.Event, auth_watch=None
    ):
        self.cfg = cfg
        self.auth_watch = auth_watch  # authwatch.AuthFailureWatch: names wrong credentials
        self.health = health
        self.metrics = metrics
        self.stop = stop
        # KafkaConsumer / KafkaProducer (kafka-python has no type information): None
        # outside connect() .. close_clients(); the loop only runs in between.
        self.consumer: Any = None
        self.producer: Any = None
        self.topics = Topics(cfg.even_topic, cfg.odd_topic, cfg.dead_letter_topic)
        self.prefixes = Prefixes(cfg.even_prefix.encode("utf-8"), cfg.odd_prefix.encode("utf-8"))
        self.pending: dict = {}  # acknowledged but not yet committed: {tp: next offset}
        self.positions: dict = {}  # {tp: next offset} for lag
        self._out_partitions: dict[str, int] = {}
        self._last_lag = 0.0
        self._lag_series: set[tuple[str, str]] = set()  # (topic, partition) the lag gauge has
        self._deadline: float | None = None
        self.inflight: list[Sent] = []  # at-least-once: batches sent, acks pending, in order
        self.max_inflight_batches = MAX_INFLIGHT_BATCHES
        self._last_commit = 0.0
        self._dirty = False  # acknowledged offsets not yet sent in a commit
        self._committed: dict = {}  # {tp: offset} known to be committed
        self.ledger = CommitLedger()  # acknowledged records until a commit covers them
        self._routed = {ch: metrics.routed.labels(ch) for ch in ROUTED}
        # kafka-python's private API: what this process may use of it, checked once here.
        self.kafka = Fence(fast_fetch=cfg.fast_fetch, batch_send=cfg.batch_send, transactional=cfg.exactly_once)
        self.fast: FastSender | None = None
        # Every record without input headers carries these: one list, one encoding.
        self._default_headers = output_headers(None)
        self._default_header_block = encode_headers(self._default_headers)
        # Exactly-once: the open transaction spans polls until it is old or large enough.
        self._txn_open = False
        self._txn_started = 0.0
        self._txn_records = 0
        self._txn_futures: list = []
        self._txn_plans: list[Planned] = []
        self._txn_first: dict = {}  # {tp: first offset in the transaction}: where to replay from
        self._txn_next: dict = {}  # {tp: next offset}: what the transaction commits

    # ---- client construction -------------------------------------------------------------
    def _common(self) -> dict:
        return dict(
            bootstrap_servers=list(self.cfg.brokers),
            client_id=f"tsrouter-{socket.gethostname()}",
            request_timeout_ms=15_000,
            retry_backoff_ms=200,
            bootstrap_timeout_ms=5_000,
            reconnect_backoff_max_ms=2_000,
            **self.cfg.kafka_client,
        )

    def connect(self) -> None:
        # Before any client exists: else a leader's rejoin can be lost for good, and a
        # broker's last answer (wrong credentials) too; the module says why.
        self.kafka.install_fixes()
        cfg = self.cfg
        if cfg.auto_create_topics:
            admin = KafkaAdminClient(**self._common())
            try:
                outcome = ensure_topics(
                    admin,
                    [cfg.input_topic, cfg.even_topic, cfg.odd_topic, cfg.dead_letter_topic],
                    cfg.topic_partitions,
                    cfg.topic_replication_factor,
                )
                log.info("topics: %s", ", ".join(f"{t}={s}" for t, s in outcome.items()))
            finally:
                admin.close()
        producer_cfg = self._common()
        if cfg.exactly_once:
            producer_cfg["retry_backoff_ms"] = TXN_RETRY_BACKOFF_MS
        self.producer = KafkaProducer(
            **producer_cfg,
            linger_ms=0,
            # Large batches: the catch-up rate is bounded by per-request work as well.
            batch_size=cfg.producer_batch_size,
            # kafka-python's client metrics cost a sensor update per record; the router has its own.
            metrics_enabled=False,
            acks="all",
            enable_idempotence=True,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            max_block_ms=10_000,
            transactional_id=cfg.transactional_id if cfg.exactly_once else None,
            transaction_timeout_ms=15_000,
        )
        if cfg.exactly_once:
            # Fences an earlier incarnation with the same id and aborts its open transaction.
            self.producer.init_transactions()
        self._txn_reset()
        # kafka-python's poll() sleeps retry_backoff_ms whenever no fetch happens to be in
        # flight; at the client default that alone shows up as a 100-200 ms latency tail.
        consumer_cfg = {**self._common(), "retry_backoff_ms": 10}
        self.consumer = KafkaConsumer(
            **consumer_cfg,
            group_id=cfg.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            max_poll_records=cfg.max_poll_records,
            # kafka-python's client metrics are never exposed here (the router has its own).
            # CRC checks stay on: turning them off measured no gain (crc32c runs in C).
            metrics_enabled=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=300_000,
            isolation_level="read_committed" if cfg.exactly_once else "read_uncommitted",
        )
        self.fast = self.kafka.attach(self.producer, self.consumer, cfg.producer_batch_size, cfg.input_topic)
        self.consumer.subscribe([cfg.input_topic], listener=_Listener(self))

    def close_clients(self, timeout_s: float) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
            except Exception as exc:  # noqa: BLE001 - closing is best effort; offsets were handled before
                log.warning("consumer close: %s", exc)
            self.consumer = None
        if self.producer is not None:
            try:
                self.producer.close(timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("producer close: %s", exc)
            self.producer = None
        self.health.set_left()
        self.metrics.assigned.set(0)

    # ---- rebalance hooks --------------------------------------------------------------------
    def on_assigned(self, assigned) -> None:
        owned = set(assigned) | (set(self.consumer.assignment()) if self.consumer else set())
        self._forget_others(owned)
        self.health.set_assigned(len(owned))
        self.metrics.assigned.set(len(owned))

    def _forget_others(self, owned) -> None:
        """After a rebalance, forget the partitions that went to another member. What was
        acknowledged for them and not committed (the revoke commit failed) is their new
        owner's to route again, from the group's offset; committing it later would move
        that owner's committed offset back."""
        gone = [tp for tp in {*self.pending, *self._committed} if tp not in owned]
        for tp in gone:
            self.pending.pop(tp, None)
            self._committed.pop(tp, None)
        self.ledger.forget(gone)

    def drop_pending(self, lost) -> None:
        # Settle what is in flight first (acks do not depend on group membership), so the
        # partitions we keep commit correctly; the lost ones are replayed by their new owner.
        if self.producer is not None and self.inflight:
            self.drain(timeout_s=REBALANCE_DRAIN_S)
        if self._txn_open:
            # Its offsets can no longer be committed for this generation: abort, the new
            # owner replays the records.
            self._txn_reset()
            with contextlib.suppress(Exception):
                self._txn().abort()
        for tp in lost:
            self.pending.pop(tp, None)
        self.ledger.forget(lost)

    def commit_pending(self, reason: str) -> bool:
        if self.cfg.exactly_once:
            # The open transaction carries its offsets: committing it is the commit.
            try:
                return self._finish_txn()
            except Exception as exc:  # noqa: BLE001 - abort failed: the next incarnation's init fences it
                log.warning("transaction (%s) not committed, records will be redelivered: %s", reason, exc)
                self._txn_reset()
                return False
        todo = self._uncommitted()
        if not todo:
            self.pending.clear()
            return True
        if self.consumer is None:
            return False
        try:
            self.consumer.commit(_offset_commit(todo), timeout_ms=COMMIT_TIMEOUT_MS)
        except Exception as exc:  # noqa: BLE001 - any failure: uncommitted, so redelivered
            log.warning("offset commit (%s) failed, records will be redelivered: %s", reason, exc)
            return False
        self._done_committing(todo)
        return True

    async def commit_pending_on_io_thread(self, reason: str) -> bool:
        """commit_pending() for a rebalance hook, which runs on the consumer's IO thread: the
        offset commit is sent with commit_async() and awaited on that thread's loop (its
        request timeout bounds the wait); commit() would be refused there. (Were the group's
        coordinator unknown, commit_async() would return its look-up, and this would count the
        commit made once that is answered; the join that calls this hook has just found it.)"""
        if self.cfg.exactly_once:
            return self.commit_pending(reason)  # the producer's calls: another client's threads
        todo = self._uncommitted()
        if not todo:
            self.pending.clear()
            return True
        if self.consumer is None:
            return False
        try:
            await self.consumer.commit_async(_offset_commit(todo))
        except Exception as exc:  # noqa: BLE001 - any failure: uncommitted, so redelivered
            log.warning("offset commit (%s) failed, records will be redelivered: %s", reason, exc)
            return False
        self._done_committing(todo)
        return True

    def _uncommitted(self) -> dict:
        """{tp: offset} of the acknowledged offsets the group does not have yet."""
        return {tp: off for tp, off in self.pending.items() if self._committed.get(tp, -1) < off}

    def _done_committing(self, todo: dict) -> None:
        self._committed.update(todo)
        self._count_committed(todo)
        self.pending.clear()
        self.metrics.commits.inc()

    def _count_committed(self, offsets) -> None:
        n = sum(self.ledger.committed(tp, off) for tp, off in offsets.items())
        if n:
            self.metrics.committed.inc(n)

    # ---- the loop ------------------------------------------------------------------------------
    def _partitions(self, topic: str) -> int | None:
        n = self._out_partitions.get(topic)
        if n is None:
            parts = self.producer.partitions_for(topic)
            if parts:
                n = self._out_partitions[topic] = len(parts)
        return n

    def run_once(self, poll_ms: int = POLL_MS) -> int:
        """One poll and its batch; returns the number of records taken in."""
        self.health.tick()
        # With sends in flight, poll briefly so acknowledgements are settled promptly.
        batch = self.consumer.poll(timeout_ms=POLL_INFLIGHT_MS if self.inflight or self._txn_open else poll_ms)
        if batch and not self.kafka.fast_fetch:
            # ConsumerRecords -> one chunk of tuples each (tsrouter.kafka_private.fastfetch makes chunks directly).
            batch = {
                tp: [ListChunk([(r.offset, r.timestamp, r.key, r.value, r.headers) for r in rs])]
                for tp, rs in batch.items()
                if rs
            }
        connected = self.kafka.connected()
        self.health.set_kafka(connected, "connected" if connected else "broker unreachable")
        count = sum(c.count for chunks in batch.values() for c in chunks) if batch else 0
        if count:
            self.metrics.consumed.inc(count)
        if self.cfg.exactly_once:
            if count:
                self._transact(batch)
            if self._txn_open and (
                not count
                or self._txn_records >= self.cfg.eos_commit_records
                or time.monotonic() - self._txn_started >= self.cfg.eos_commit_interval_ms / 1000.0
            ):
                self._finish_txn()
        else:
            if count:
                self._send_batch(batch)
            self._reap()
            if len(self.inflight) > self.max_inflight_batches:
                self._wait_oldest()  # backpressure
        self._update_lag()
        return count

    def _plan(self, batch) -> Planned:
        out_parts = {t: self._partitions(t) for t in (self.topics.even, self.topics.odd, self.topics.dead_letter)}
        known = {k: v for k, v in out_parts.items() if v}
        if self.fast is not None and self.kafka.fast_fetch and len(known) == len(out_parts):
            # Whole batches to known partitions: input bytes straight to output records.
            return plan_chunks(batch, self.topics, self.prefixes, known, self._default_header_block)
        return plan_groups(records_of(batch), self.topics, self.prefixes, known)

    def _send_all(self, planned: Planned) -> list:
        """Hand every planned record to the producer: whole batches per output partition
        (tsrouter.kafka_private.fastsend), else record by record; returns what settles them."""
        futures: list = []
        default = self._default_headers
        try:
            for (topic, part), recs in planned.groups.items():
                if planned.encoded:
                    assert self.fast is not None and part is not None  # what plan_chunks needs
                    futures += self.fast.send_records(TopicPartition(topic, part), recs)
                    continue
                if self.fast is not None and part is not None:
                    futures += self.fast.send(TopicPartition(topic, part), recs, self._default_header_block)
                    continue
                send = self.producer.send
                for key, value, headers in recs:
                    futures.append(
                        send(
                            topic, value=value, key=key, headers=default if headers is None else headers, partition=part
                        )
                    )
        except Exception as exc:  # noqa: BLE001 - e.g. metadata timeout: the batch fails as a whole
            futures.append(_Failed(exc))
        return futures

    def _send_batch(self, batch) -> None:
        plan = self._plan(batch)
        self.inflight.append(
            Sent(next_offsets(batch), first_offsets(batch), plan, self._send_all(plan), record_counts(batch))
        )

    def _reap(self) -> None:
        """Move acknowledged batches to the committable offsets; replay from a failed one."""
        ok, failed = settle(self.inflight)
        for s in self.inflight[:ok]:
            self.pending = merge_offsets(self.pending, s.next_offsets)
            self.positions.update(s.next_offsets)
            self._count(s.plan)
            self.ledger.acknowledged(s.records, s.next_offsets)
        del self.inflight[:ok]
        if failed is not None:
            bad = self.inflight[failed - ok] if failed - ok < len(self.inflight) else None
            errors = [f.exception for f in (bad.futures if bad else []) if f.is_done and not f.succeeded()]
            self.metrics.send_errors.inc(max(1, len(errors)))
            where = rewind_offsets(self.inflight)
            log.warning("send not acknowledged (%s); replaying from %s", errors[0] if errors else "?", _offs(where))
            self.inflight.clear()
            self._seek(where)
            self.stop.wait(REPLAY_PAUSE_S)
        if ok:
            self._dirty = True
        if self._dirty and time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self._commit_async()

    def _wait_oldest(self) -> None:
        """Block until the oldest batch's sends are settled (bounded by the delivery timeout)."""
        oldest = self.inflight[0]
        for f in oldest.futures:
            if not f.is_done:
                with contextlib.suppress(Exception):  # settle() sees the failure
                    f.get(timeout=SEND_WAIT_S)
        self._reap()

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait for every in-flight send (bounded), then settle."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else DRAIN_S)
        while self.inflight and time.monotonic() < deadline:
            if self._deadline is not None and time.monotonic() > self._deadline:
                break
            self.producer.flush(timeout=FLUSH_SLICE_S)
            self.health.tick()
            self._reap()
        if self.inflight:
            log.warning("%d batches still unacknowledged; their offsets stay uncommitted", len(self.inflight))
            self.inflight.clear()

    def _commit_async(self) -> None:
        offsets = _offset_commit(self.pending)
        self._last_commit = time.monotonic()
        self._dirty = False

        def done(_offsets, response):
            if isinstance(response, Exception):
                log.warning("async offset commit failed (next commit covers it): %s", response)
            else:
                for tp, om in offsets.items():
                    if self._committed.get(tp, -1) < om.offset:
                        self._committed[tp] = om.offset
                self._count_committed({tp: om.offset for tp, om in offsets.items()})
                self.metrics.commits.inc()

        try:
            self.consumer.commit_async(offsets, callback=done)
        except Exception as exc:  # noqa: BLE001 - the next commit covers these offsets
            log.warning("async offset commit not sent: %s", exc)

    def _seek(self, offsets) -> None:
        for tp, off in offsets.items():
            try:
                self.consumer.seek(tp, off)
            except Exception as exc:  # noqa: BLE001 - partition no longer assigned: its new owner replays it
                log.info("seek %s-%d skipped: %s", tp.topic, tp.partition, exc)

    def _count(self, planned: Planned) -> None:
        """Metrics for a batch the broker acknowledged. Latency is observed once per polled
        batch, for its oldest record (the batch's worst case), at settlement."""
        n = planned.counts
        if planned.oldest_ts is not None:
            self.metrics.latency.observe(max(0.0, time.time() * 1000.0 - planned.oldest_ts) / 1000.0)
        for o in planned.dead:
            log.warning(
                "dead-lettered %s-%d@%d: %s", self.cfg.input_topic, o.source_partition, o.source_offset, o.reason
            )
        for ch in ROUTED:
            if n[ch]:
                self._routed[ch].inc(n[ch])
        if n[DEAD_LETTER]:
            self.metrics.dead_lettered.inc(n[DEAD_LETTER])

    def _txn_reset(self) -> None:
        self._txn_open = False
        self._txn_records = 0
        self._txn_futures = []
        self._txn_plans = []
        self._txn_first = {}
        self._txn_next = {}

    def _transact(self, batch) -> None:
        """Exactly-once: add a polled batch to the open transaction (opening one if needed).

        A transaction spans polls until it is tsrouter.eos-commit-interval-ms old or holds
        tsrouter.eos-commit-records records, or a poll comes back empty: a commit per time
        interval instead of per poll, with latency bounded by that interval."""
        if not self._txn_open:
            self.producer.begin_transaction()
            self._txn_open = True
            self._txn_started = time.monotonic()
        for tp, off in first_offsets(batch).items():
            self._txn_first.setdefault(tp, off)
        self._txn_next.update(next_offsets(batch))
        planned = self._plan(batch)
        self._txn_plans.append(planned)
        self._txn_futures += self._send_all(planned)
        self._txn_records += sum(planned.counts.values())

    def _finish_txn(self) -> bool:
        """Commit the open transaction with its offsets; on any failure abort it and replay."""
        if not self._txn_open:
            return True
        futures, first, offsets, plans = self._txn_futures, self._txn_first, self._txn_next, self._txn_plans
        self._txn_reset()
        if not self._await(futures):
            failed = [f for f in futures if f.is_done and not f.succeeded()]
            self.metrics.send_errors.inc(max(1, len(failed)))
            log.warning(
                "transaction of %d batches not acknowledged (%s); aborting and replaying it",
                len(plans),
                failed[0].exception if failed else "stop deadline",
            )
            self._abort()
            self._replay(first)
            return False
        meta = _offset_commit(offsets)
        try:
            self._txn().send_offsets(meta, self.consumer.group_metadata())
            self._txn().commit()
        except Exception as exc:  # noqa: BLE001 - any failure: abort, the records are replayed
            log.warning("transaction commit failed, replaying its records: %s", exc)
            self._abort()
            self._replay(first)
            return False
        self.metrics.commits.inc()
        self.positions.update(offsets)
        for planned in plans:
            self._count(planned)
        # After the routed counts (tsrouter.metrics says why the order matters).
        self.metrics.committed.inc(sum(sum(planned.counts.values()) for planned in plans))
        return True

    def _replay(self, first: dict) -> None:
        if self.consumer is not None and not self.stop.is_set():
            self._seek(first)
            self.stop.wait(REPLAY_PAUSE_S)

    def _txn(self) -> Any:
        """The producer's transactional calls, bounded where kafka_private can (its txn says why)."""
        assert self.kafka.txn is not None  # set with an exactly-once producer
        return self.kafka.txn

    def _abort(self) -> None:
        try:
            self._txn().abort()
        except Exception as exc:
            # A fatal producer error (e.g. fenced): rebuild the clients from scratch.
            raise RuntimeError(f"transaction abort failed: {exc}") from exc

    def _await(self, futures) -> bool:
        """Wait for every send; bounded by the producer's delivery timeout or the stop deadline."""
        while True:
            self.producer.flush(timeout=FLUSH_SLICE_S)
            if all(f.is_done for f in futures):
                return all(f.succeeded() for f in futures)
            self.health.tick()
            if self._deadline is not None and time.monotonic() > self._deadline:
                log.warning("stop deadline reached with sends in flight; not committing them")
                return False

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_INTERVAL_S or self.consumer is None:
            return
        self._last_lag = now
        assigned = set()
        for tp in self.consumer.assignment():
            key = (tp.topic, str(tp.partition))
            assigned.add(key)
            hw = self.consumer.highwater(tp)
            pos = self.positions.get(tp)
            if hw is not None and pos is not None:
                self.metrics.lag.labels(*key).set(max(0, hw - pos))
                self._lag_series.add(key)
        # A partition that went to another replica is that replica's to report: keeping its
        # last value here would count it twice (and a stale value forever) in sums of lag.
        # Its position goes too: if it comes back, the lag is unknown until it is read again.
        for key in self._lag_series - assigned:
            self.metrics.lag.remove(*key)
        self._lag_series &= assigned
        for tp in [tp for tp in self.positions if (tp.topic, str(tp.partition)) not in assigned]:
            del self.positions[tp]

    # ---- lifecycle ------------------------------------------------------------------------------
    def run(self) -> int:
        backoff = RECONNECT_BACKOFF_S
        while not self.stop.is_set():
            attempt = self.auth_watch.now() if self.auth_watch else 0.0
            try:
                self.health.set_kafka(False, "connecting")
                self.connect()
                backoff = RECONNECT_BACKOFF_S
                log.info(
                    "consuming %s as group %s (%s)", self.cfg.input_topic, self.cfg.group, self.cfg.processing_guarantee
                )
                while not self.stop.is_set():
                    self.run_once()
            except Exception as exc:  # noqa: BLE001 - any client failure: reconnect with backoff
                if self.auth_watch is not None and self.auth_watch.failed_since(attempt):
                    # The broker rejected the SASL credentials; never echo them.
                    self.health.set_kafka(False, "authentication failed")
                    log.error(
                        "kafka authentication failed (check the SASL username/password and "
                        "mechanism), retrying in %.1fs",
                        backoff,
                    )
                else:
                    self.health.set_kafka(False, f"error: {type(exc).__name__}")
                    log.error("kafka error, reconnecting in %.1fs: %s: %s", backoff, type(exc).__name__, exc)
                self.inflight.clear()  # unacknowledged: replayed from the committed offsets
                self._txn_reset()  # uncommitted: aborted when the next producer fences this one
                self.commit_pending(reason="error")
                self.ledger.forget()  # what that could not commit is read and routed again
                self.close_clients(timeout_s=ERROR_CLOSE_S)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)
        return self.shutdown()

    def request_stop(self) -> None:
        if not self.stop.is_set():
            self._deadline = time.monotonic() + self.cfg.shutdown_timeout_ms / 1000.0 * STOP_DEADLINE_FRACTION
            self.stop.set()

    def shutdown(self) -> int:
        self.health.set_stopping()
        if self.producer is not None and self.inflight:
            self.drain()
        ok = self.commit_pending(reason="shutdown")
        remaining = SHUTDOWN_CLOSE_S
        if self._deadline is not None:
            remaining = max(1.0, self._deadline - time.monotonic())
        self.close_clients(timeout_s=min(remaining, SHUTDOWN_CLOSE_MAX_S))
        log.info("stopped%s", "" if ok else " (last offsets not committed; they will be redelivered)")
        return 0 if ok else 1
