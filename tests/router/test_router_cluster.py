"""The router as a real subprocess on a three-broker cluster (replication 3, min ISR 2):
a partition leader's crash and a rolling restart of every broker, under traffic (issue 23).

What a user checks: nothing lost (every input record reaches the output topic its last
digit names) and, exactly-once, nothing twice (read_committed). The topics record the
broker's append time, so the longest gap between consecutive output records is the
longest the router's output stood still; it is reported, never asserted (machines are noisy).
"""

from __future__ import annotations

import contextlib
import itertools
import time

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from localinfra.diagnose import kafka_state, tail
from localinfra.kafka import CLUSTER_REPLICATION, node_id_of
from routerproc import BackgroundProducer, RouterProc, create_topic, read_to_end, serial, timestamps, wait_for
from test_router_kafka import Pipeline, committed

pytestmark = pytest.mark.kafka

RATE = 1_000  # records/s into the input topic: the traffic, well within the router's pace
MAX_RECORDS = 300_000  # more than any test here sends at RATE: the producer is stopped, never runs dry
ROUTING_UNDER_WAY = 2_000  # routed before the first broker goes: the router is in its stride
# Routed after a crash, with the broker still down: the router found the new leaders and the
# group its coordinator, and flows again (a few seconds of traffic at RATE).
ROUTED_WHILE_DOWN = 3_000
# A crash takes the controller's fencing (broker.session.timeout.ms, 9 s) before leaders move,
# then the clients' metadata refresh; on 2 busy cores that has taken under 30 s.
FAILOVER_S = 120
IN_SYNC_S = 120  # a restarted broker catches up on a few seconds of records
# The topics stamp what they append: their timestamps say when output landed, not when the
# router built it (a batch retried across a leader change keeps its build time).
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


@pytest.fixture
def cluster(kafka_cluster):
    """The session's cluster, handed back whole after the test (every broker running and
    in sync), after a failure's diagnostics were taken."""
    yield kafka_cluster
    kafka_cluster.start()
    kafka_cluster.wait_in_sync(IN_SYNC_S)


@pytest.fixture
def routers():
    """Router processes a test starts; stopped after a failure's diagnostics (their logs)."""
    started: list[RouterProc] = []
    yield started
    for router in started:
        router.stop()


def start_router(routers: list[RouterProc], args: list[str]) -> RouterProc:
    router = RouterProc(args)
    routers.append(router)
    return router.start()


def diagnose(on_failure, cluster, pl: Pipeline, router: RouterProc) -> None:
    """What a failure report needs: the router's log, the topics and the group, the
    cluster's leaders and each broker's last lines."""
    on_failure.append(("router log", lambda: "\n".join(router.output().splitlines()[-80:])))
    on_failure.append(("kafka", lambda: kafka_state(cluster.bootstrap, [pl.input, pl.even, pl.odd], [pl.group])))
    on_failure.append(
        (
            "cluster",
            lambda: (
                f"running: {[n.running() for n in cluster.nodes]}; leaders (input, even, odd): "
                f"{[cluster.leader(t, 0) for t in (pl.input, pl.even, pl.odd)]}; "
                f"under-replicated: {cluster.under_replicated()}"
            ),
        )
    )
    for node in cluster.nodes:
        on_failure.append((f"broker {node.index} log", lambda node=node: tail(node.log_path)))


def cluster_pipeline(bootstrap: str, replicas: dict[str, list[int]] | None = None) -> Pipeline:
    """Unique input, even and odd topics, one partition each, on all three brokers; with
    `replicas`, each topic's broker ids by role (input, even, odd), its leader first."""
    pl = Pipeline(bootstrap)
    for role in ("input", "even", "odd"):
        create_topic(
            bootstrap,
            getattr(pl, role),
            configs=LOG_APPEND_TIME,
            replication=CLUSTER_REPLICATION,
            replicas=replicas[role] if replicas else None,
        )
    return pl


def input_end(bootstrap: str, topic: str) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return c.end_offsets([tp])[tp]
    finally:
        c.close()


def routed_once_each(pl: Pipeline, values: list[bytes], isolation_level: str):
    """Once the router committed the whole input: its output records, after checking that
    every input record is there, in the topic its last digit names; returns (records,
    how many were duplicates)."""
    end = input_end(pl.bootstrap, pl.input)
    wait_for(
        lambda: committed(pl.bootstrap, pl.group, pl.input, 1) == {0: end},
        180,
        f"the router's group committing the input's end ({end})",
        interval=1,
    )
    records = read_to_end(pl.bootstrap, pl.even, isolation_level) + read_to_end(pl.bootstrap, pl.odd, isolation_level)
    serials = [serial(r.value) for r in records]
    missing = set(range(len(values))) - set(serials)
    assert not missing, f"{len(missing)} of {len(values)} records lost, e.g. {sorted(missing)[:10]}"
    misrouted = [
        r
        for r in records
        if r.topic != (pl.even if int(chr(values[serial(r.value)][-1])) % 2 == 0 else pl.odd)
        or r.value.split(b":", 1)[1] != values[serial(r.value)]
    ]
    assert not misrouted, f"{len(misrouted)} records in the wrong topic or changed, e.g. {misrouted[:3]}"
    return records, len(serials) - len(set(serials))


def longest_gap_ms(records) -> int:
    """The largest gap between consecutive records' timestamps (all topics together)."""
    stamps = sorted(r.timestamp for r in records)
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0)


def leader_of(cluster, topic: str) -> int:
    return wait_for(lambda: {cluster.leader(topic, 0)} - {None}, 30, f"{topic}'s leader").pop()


@contextlib.contextmanager
def under_traffic(cluster, routers, on_failure, *args, replicas: dict[str, list[int]] | None = None):
    """A router on the cluster's pipeline with records flowing into its input (about RATE a
    second from an acks=all producer) and routing under way: (pipeline, router, producer,
    the values it sends, the router's routed-records counter). `replicas`: as cluster_pipeline."""
    pl = cluster_pipeline(cluster.bootstrap, replicas)
    router = start_router(routers, pl.args(*args))
    diagnose(on_failure, cluster, pl, router)
    values = timestamps(MAX_RECORDS)
    feed = BackgroundProducer(pl.bootstrap, pl.input, values, rate=RATE)
    try:
        router.wait_ready()
        feed.start()

        def routed() -> float:
            return router.metric("tsrouter_records_routed_total")

        wait_for(lambda: routed() >= ROUTING_UNDER_WAY, 60, "routing under way")
        yield pl, router, feed, values, routed
    finally:
        feed.stop()


# exactly-once failed 3 of 7 runs on the branch that added it: after the kill, the router's
# main thread waited forever in kafka-python's send_offsets_to_transaction() (its
# TransactionalRequestResult.wait() has no timeout), routing nothing while its health and
# readiness said UP. tsrouter.kafka_private.txn bounds those waits; 4 of 4 passed since.
GUARANTEES = ("at-least-once", "exactly-once")


def test_leader_crashes_under_traffic(cluster, routers, record_property, on_failure):
    """kill -9 the broker leading the input partition, later the one leading the even
    partition, each restarted after: at-least-once loses nothing, exactly-once loses nothing
    and duplicates nothing. One router of each guarantee, each on its own pipeline, takes the
    same two crashes: their topics have the same replicas in the same order (so the same
    leaders), which saves a second run of the crashes (about 100 s)."""
    ids = [node_id_of(n.index) for n in cluster.nodes]
    # The leader first; the input's and the even topic's leaders on different brokers.
    replicas = {role: ids[i:] + ids[:i] for i, role in enumerate(("input", "even", "odd"))}
    with contextlib.ExitStack() as stack:
        runs = {
            g: stack.enter_context(
                under_traffic(cluster, routers, on_failure, f"--tsrouter.processing-guarantee={g}", replicas=replicas)
            )
            for g in GUARANTEES
        }
        crashes: dict[str, list] = {g: [] for g in GUARANTEES}
        for role in ("input", "even"):
            # Both pipelines' partitions have the same leader (the same replicas and in-sync
            # set): one crash is each router's.
            def one_leader(role=role) -> set[int] | None:
                got = {cluster.leader(getattr(pl, role), 0) for pl, *_ in runs.values()}
                return got if len(got) == 1 and None not in got else None

            leaders = wait_for(one_leader, 30, f"one leader for both pipelines' {role} topics")
            victim = leaders.pop()
            before = {g: routed() for g, (_, _, _, _, routed) in runs.items()}
            took: dict[str, float] = {}
            t0 = time.monotonic()
            cluster.kill(victim)

            def flowing_again(before=before, took=took, t0=t0) -> bool:
                for g, (*_, routed) in runs.items():
                    if g not in took and routed() >= before[g] + ROUTED_WHILE_DOWN:
                        took[g] = round(time.monotonic() - t0, 1)
                return len(took) == len(runs)

            wait_for(
                flowing_again,
                FAILOVER_S,
                f"{ROUTED_WHILE_DOWN} more records routed by each router ({', '.join(GUARANTEES)}) with "
                f"the {role} topics' leader (broker {victim}) down",
            )
            for g, (_, _, feed, _, _) in runs.items():
                crashes[g].append((role, victim, took[g]))
                assert feed.is_alive(), f"{g}: the producer ran dry: the crash was not under traffic"
            cluster.start(victim)
            cluster.wait_in_sync(IN_SYNC_S)
        for _, _, feed, _, _ in runs.values():
            feed.stop()
        for g, (_, router, feed, _, _) in runs.items():
            assert not feed.errors, (g, feed.errors[:3])
            assert router.proc.poll() is None, f"the {g} router exited"

        for g, (pl, _, feed, values, _) in runs.items():
            exactly_once = g == "exactly-once"
            isolation = "read_committed" if exactly_once else "read_uncommitted"
            records, duplicates = routed_once_each(pl, values[: feed.sent], isolation)
            if exactly_once:
                assert duplicates == 0, f"{duplicates} records routed twice under exactly-once"
            stall = longest_gap_ms(records)
            report = (
                f"{g}: {feed.sent} records; crashes (leader of, broker, s until "
                f"{ROUTED_WHILE_DOWN} more routed): {crashes[g]}; duplicates {duplicates}; "
                f"longest output stall {stall} ms"
            )
            print("\n" + report)
            record_property("cluster_failover", report)
        for _, router, _, _, _ in runs.values():
            router.wait_ready()
            assert router.terminate() == 0


def test_rolling_restart_under_traffic_loses_nothing(cluster, routers, record_property, on_failure):
    """Every broker restarted in turn (controlled shutdown, each back in sync before the
    next) while records flow: nothing lost; the longest stall of the output is reported."""
    with under_traffic(cluster, routers, on_failure) as (pl, router, feed, values, routed):
        took = cluster.rolling_restart(wait_timeout=IN_SYNC_S)
        before = routed()
        wait_for(lambda: routed() >= before + ROUTED_WHILE_DOWN, FAILOVER_S, "routing on after the roll")
        assert feed.is_alive(), "the producer ran dry: the roll was not under traffic"
        feed.stop()
        assert not feed.errors, feed.errors[:3]

        records, duplicates = routed_once_each(pl, values[: feed.sent], "read_uncommitted")
        stall = longest_gap_ms(records)
        input_stall = longest_gap_ms(read_to_end(pl.bootstrap, pl.input))
        report = (
            f"rolling restart: {feed.sent} records; brokers' stop-to-in-sync s "
            f"{[round(t, 1) for t in took]}; longest output stall {stall} ms "
            f"(the producer's own into the input: {input_stall} ms); duplicates {duplicates}"
        )
        print("\n" + report)
        record_property("cluster_rolling_restart", report)
        record_property("longest_output_stall_ms", stall)
        assert router.terminate() == 0
