"""The router as a real subprocess against a real Kafka broker (the project's harness)."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from routerproc import (
    BackgroundProducer,
    RouterProc,
    create_topic,
    produce,
    read_all,
    read_to_end,
    serial,
    timestamps,
    unique,
    wait_for,
)

pytestmark = pytest.mark.kafka

DEST = "--spring.cloud.stream.bindings.{}.destination={}"


class Pipeline:
    """Unique topic names for one test, and the router arguments that wire them."""

    def __init__(self, bootstrap: str, partitions: int = 1, group: str | None = None):
        self.bootstrap = bootstrap
        self.input, self.even, self.odd = unique("time"), unique("even"), unique("odd")
        self.group = group or unique("grp")
        self.dlq = f"error.{self.input}.{self.group}"
        self.partitions = partitions

    def args(self, *extra: str) -> list[str]:
        return [
            f"--spring.cloud.stream.kafka.binder.brokers={self.bootstrap}",
            DEST.format("input", self.input),
            DEST.format("even", self.even),
            DEST.format("odd", self.odd),
            f"--spring.cloud.stream.bindings.input.group={self.group}",
            f"--tsrouter.topic-partitions={self.partitions}",
            *extra,
        ]


def routed_serials(records) -> list[int]:
    return [serial(r.value) for r in records]


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        c.close(autocommit=False)


def test_routes_10000_timestamps_exact_counts_and_partition_order(kafka_bootstrap):
    n, parts = 10_000, 4
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    r = RouterProc(pl.args()).start()
    try:
        r.wait_ready()
        values = timestamps(n)
        produce(kafka_bootstrap, pl.input, values, partition_of=lambda i, v: i % parts)
        expected_even = sum(1 for v in values if int(chr(v[-1])) % 2 == 0)
        even = read_all(kafka_bootstrap, pl.even, expected_even, settle=2)
        odd = read_all(kafka_bootstrap, pl.odd, n - expected_even, settle=2)
        assert len(even) == expected_even and len(odd) == n - expected_even
        assert all(rec.value.startswith(b"Even timestamp:") for rec in even)
        assert all(rec.value.startswith(b"Odd timestamp:") for rec in odd)
        assert sorted(routed_serials(even) + routed_serials(odd)) == list(range(n))
        for rec in even + odd:
            s = serial(rec.value)
            assert rec.value.split(b":", 1)[1] == values[s]
            assert int(chr(values[s][-1])) % 2 == (0 if rec.topic == pl.even else 1)
            assert dict(rec.headers)["contentType"] == b"text/plain"
        # per input partition, the routed records keep their order (output partition follows input)
        for records in (even, odd):
            by_part = defaultdict(list)
            for rec in records:
                by_part[rec.partition].append(serial(rec.value))
            for p, serials in by_part.items():
                assert all(s % parts == p for s in serials)
                assert serials == sorted(serials)
        assert r.metric("tsrouter_records_consumed_total") == n
        assert r.metric("tsrouter_records_routed_total") == n
        assert r.metric("tsrouter_records_dead_lettered_total") == 0
        # The committed counter (what the operator's rollout check reads where it cannot read
        # the broker) reaches every record once the last commit is in.
        wait_for(lambda: r.metric("tsrouter_records_committed_total") == n, 30, "every record counted committed")
        assert r.terminate() == 0
        assert committed(kafka_bootstrap, pl.group, pl.input, parts) == dict.fromkeys(range(parts), n // parts)
    finally:
        r.stop()


def _style(pl: Pipeline, style: str):
    """(args, env) carrying the same settings in one SCDF entry-point style."""
    props = {
        "spring.cloud.stream.kafka.binder.brokers": pl.bootstrap,
        "spring.cloud.stream.bindings.input.destination": pl.input,
        "spring.cloud.stream.bindings.even.destination": pl.even,
        "spring.cloud.stream.bindings.odd.destination": pl.odd,
        "spring.cloud.stream.bindings.input.group": pl.group,
        "tsrouter.even-prefix": "E:",
        "tsrouter.odd-prefix": "O:",
    }
    if style == "exec":
        return [f"--{k}={v}" for k, v in props.items()], {}
    if style == "shell":
        env = {k.upper().replace(".", "_").replace("-", ""): v for k, v in props.items()}
        return [], env
    nested: dict = {}
    for k, v in props.items():
        node = nested
        *path, leaf = k.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = v
    return [], {"SPRING_APPLICATION_JSON": json.dumps(nested)}


@pytest.mark.parametrize("style", ["exec", "shell", "boot"])
def test_each_entry_point_style(kafka_bootstrap, style):
    pl = Pipeline(kafka_bootstrap)
    args, env = _style(pl, style)
    r = RouterProc(args, env=env).start()
    try:
        r.wait_ready()
        status, info = r.get("/actuator/info")
        assert status == 200 and info["bindings"] == {"input": pl.input, "even": pl.even, "odd": pl.odd}
        assert info["consumerGroup"] == pl.group
        produce(kafka_bootstrap, pl.input, [b"05/17/19 17:56:36", b"05/17/19 17:56:37"])
        assert [x.value for x in read_all(kafka_bootstrap, pl.even, 1)] == [b"E:05/17/19 17:56:36"]
        assert [x.value for x in read_all(kafka_bootstrap, pl.odd, 1)] == [b"O:05/17/19 17:56:37"]
        assert r.terminate() == 0
    finally:
        r.stop()


MALFORMED = [
    (None, "null value"),
    (b"", "empty value"),
    (b"   ", "empty value"),
    (b"\n\t", "empty value"),
    (b'""', "empty value"),
    (b"\xff\xfe", "undecodable"),
    (b"05/17/19 17:56:3\xc3", "undecodable"),
    (b"05/17/19 17:56:3x", "no trailing ASCII digit"),
    ("\u0663".encode(), "no trailing ASCII digit"),
    ("12\u00b2".encode(), "no trailing ASCII digit"),
    ("1\uff18".encode(), "no trailing ASCII digit"),
    ("4\u00a0".encode(), "no trailing ASCII digit"),
    (b'{"ts": 5}', "no trailing ASCII digit"),
    (b'"\\ud800"', "undecodable"),
    (b"12\x00", "no trailing ASCII digit"),
    (b"abc", "no trailing ASCII digit"),
    (b"[1, 2]", "no trailing ASCII digit"),
]


@pytest.mark.parametrize("extra", [[], ["--tsrouter.fast-fetch=false"]], ids=["fast-fetch", "consumer-records"])
def test_malformed_values_go_to_the_dead_letter_topic(kafka_bootstrap, extra):
    pl = Pipeline(kafka_bootstrap)
    r = RouterProc(pl.args(*extra)).start()
    try:
        r.wait_ready()
        good = timestamps(2 * len(MALFORMED))
        values, keys = [], []
        for i, (bad, _reason) in enumerate(MALFORMED):
            values += [good[2 * i], bad, good[2 * i + 1]]
            keys += [None, f"bad-{i}".encode(), None]
        produce(
            kafka_bootstrap,
            pl.input,
            values,
            key_of=lambda i, v: keys[i],
            headers=lambda i, v: [("trace-id", str(i).encode())],
        )
        dlq = read_all(kafka_bootstrap, pl.dlq, len(MALFORMED), settle=1)
        assert len(dlq) == len(MALFORMED)
        for rec in dlq:
            i = int(rec.key.decode().split("-")[1])
            bad, reason = MALFORMED[i]
            h = dict(rec.headers)
            assert h["x-original-topic"] == pl.input.encode()
            assert h["x-original-partition"] == b"0"
            assert int(h["x-original-offset"]) == 3 * i + 1
            assert reason in h["x-exception-message"].decode()
            assert h["trace-id"] == str(3 * i + 1).encode()
            assert rec.value == (bad if bad is not None else b"")
            assert (h.get("x-original-value-null") == b"true") == (bad is None)
        wait_for(lambda: r.metric("tsrouter_records_routed_total") == len(good), 60, "good records routed")
        routed = read_to_end(kafka_bootstrap, pl.even) + read_to_end(kafka_bootstrap, pl.odd)
        assert sorted(routed_serials(routed)) == list(range(len(good)))
        # still serving after all of them
        produce(kafka_bootstrap, pl.input, [b"05/17/19 17:56:38"])
        wait_for(
            lambda: any(x.value == b"Even timestamp:05/17/19 17:56:38" for x in read_to_end(kafka_bootstrap, pl.even)),
            60,
            "record after the malformed ones",
        )
        assert r.get("/actuator/health")[0] == 200
        assert r.metric("tsrouter_records_dead_lettered_total") == len(MALFORMED)
        assert r.proc.poll() is None
    finally:
        r.stop()


@pytest.mark.parametrize("extra", [[], ["--tsrouter.fast-fetch=false"]], ids=["fast-fetch", "consumer-records"])
def test_exactly_once_routes_only_the_committed_input(kafka_bootstrap, extra):
    """read_committed: aborted transactions on the input are skipped, their markers too; the
    committed offset is the one after the last record routed (the last commit marker's: a
    restart reads and skips that marker again)."""
    import uuid

    pl = Pipeline(kafka_bootstrap)
    create_topic(kafka_bootstrap, pl.input)
    values = timestamps(900)
    kept: list[int] = []
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    txn = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"in-{uuid.uuid4().hex[:8]}", linger_ms=0)
    try:
        txn.init_transactions()
        for round_ in range(3):
            base = 300 * round_
            txn.begin_transaction()
            for i in range(base, base + 100):
                txn.send(pl.input, value=values[i], partition=0)
            txn.flush(timeout=30)
            for i in range(base + 100, base + 150):  # another producer's records in between
                plain.send(pl.input, value=values[i], partition=0)
            plain.flush(timeout=30)
            txn.abort_transaction()
            txn.begin_transaction()
            for i in range(base + 150, base + 300):
                txn.send(pl.input, value=values[i], partition=0)
            txn.commit_transaction()
            kept += range(base + 100, base + 300)
    finally:
        txn.close()
        plain.close()
    end = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        tp = TopicPartition(pl.input, 0)
        input_end = end.end_offsets([tp])[tp]
    finally:
        end.close()
    r = RouterProc(pl.args("--tsrouter.processing-guarantee=exactly-once", *extra)).start()
    try:
        r.wait_ready()
        final = _wait_all_routed(kafka_bootstrap, pl, len(kept), "read_committed")
        wait_for(
            lambda: committed(kafka_bootstrap, pl.group, pl.input, 1) == {0: input_end - 1},
            60,
            "offsets committed up to the last marker",
        )
        assert sorted(final) == kept and max(final.values()) == 1
        assert r.metric("tsrouter_records_consumed_total") == len(kept)
        assert r.terminate() == 0
    finally:
        r.stop()


def test_health_before_broker_up_while_running_and_after_it_stops(tmp_path):
    from localinfra.kafka import KafkaBroker

    broker = KafkaBroker(workdir=tmp_path / "kafka")
    broker.start()
    broker.stop()  # the address is now known and nothing answers there
    pl = Pipeline(broker.bootstrap)
    r = RouterProc(pl.args()).start()
    try:
        wait_for(lambda: r.get("/actuator/health/liveness")[0] == 200, 60, "actuator up")
        assert r.get("/actuator/health/readiness")[0] == 503
        status, body = r.get("/actuator/health")
        assert status == 503 and body["status"] == "DOWN" and body["components"]["kafka"]["status"] == "DOWN"
        assert r.get("/actuator/info")[0] == 200
        nf = r.get("/actuator/nope")
        assert nf[0] == 404 and nf[1]["status"] == 404

        broker.start()
        r.wait_ready()
        status, body = r.get("/actuator/health")
        assert status == 200 and body["status"] == "UP" and body["components"]["kafka"]["status"] == "UP"
        produce(broker.bootstrap, pl.input, [b"05/17/19 17:56:36"])
        assert len(read_all(broker.bootstrap, pl.even, 1)) == 1
        wait_for(lambda: r.metric("tsrouter_end_to_end_latency_seconds_count") == 1, 30, "latency observed")

        broker.stop()
        wait_for(lambda: r.get("/actuator/health/readiness")[0] == 503, 60, "readiness down")
        assert r.get("/actuator/health")[0] == 503
        assert r.get("/actuator/health/liveness")[0] == 200  # the loop still runs
        assert r.terminate(timeout=60) == 0
    finally:
        r.stop()
        broker.close()


def _all_routed(bootstrap: str, pl: Pipeline, n: int, isolation_level="read_uncommitted") -> Counter:
    recs = read_to_end(bootstrap, pl.even, isolation_level) + read_to_end(bootstrap, pl.odd, isolation_level)
    return Counter(routed_serials(recs))


def _wait_all_routed(bootstrap, pl, n, isolation_level="read_uncommitted", timeout=180) -> Counter:
    result = {}

    def done():
        result["c"] = _all_routed(bootstrap, pl, n, isolation_level)
        return len(result["c"]) >= n

    wait_for(done, timeout, f"all {n} records routed", interval=1)
    return result["c"]


# exactly-once with long transactions: a SIGTERM finds one open over many polls.
EOS_LONG = [
    "--tsrouter.processing-guarantee=exactly-once",
    "--tsrouter.eos-commit-interval-ms=3000",
    "--tsrouter.eos-commit-records=1000000",
]


@pytest.mark.parametrize("extra", [[], EOS_LONG], ids=["at-least-once", "exactly-once"])
def test_sigterm_with_records_in_flight_loses_nothing(kafka_bootstrap, extra):
    n, parts = 30_000, 2
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    create_topic(kafka_bootstrap, pl.input, parts)
    iso = "read_committed" if extra else "read_uncommitted"
    r = RouterProc(pl.args("--tsrouter.max-poll-records=200", *extra)).start()
    try:
        r.wait_ready()
        feed = BackgroundProducer(kafka_bootstrap, pl.input, timestamps(n), parts)
        feed.start()
        wait_for(lambda: r.metric("tsrouter_records_routed_total") >= 3000, 120, "routing under way")
        assert r.terminate(timeout=60) == 0  # mid-stream
        out = r.output()
        assert "SIGTERM received" in out and "stopped" in out
        # what was committed is exactly what was routed: nothing lost, nothing committed ahead
        offsets = committed(kafka_bootstrap, pl.group, pl.input, parts)
        routed = _all_routed(kafka_bootstrap, pl, n, iso)
        assert 0 < sum(offsets.values()) < n
        for p in range(parts):
            from_p = sorted(s for s in routed if s % parts == p)
            assert from_p == [p + parts * k for k in range(offsets[p])]
        assert max(routed.values()) == 1  # a graceful stop leaves no duplicates
        feed.join(120)
        assert not feed.errors
        r2 = RouterProc(pl.args(*extra)).start()
        try:
            final = _wait_all_routed(kafka_bootstrap, pl, n, iso)
            assert set(final) == set(range(n))
            if extra:
                assert max(final.values()) == 1
            assert r2.terminate() == 0
        finally:
            r2.stop()
    finally:
        r.stop()


@pytest.mark.parametrize(
    "guarantee,txn",
    [("at-least-once", []), ("exactly-once", []), ("exactly-once", EOS_LONG[1:])],
    ids=["at-least-once", "exactly-once", "exactly-once-long-transactions"],
)
def test_kill_9_mid_stream_and_restart(kafka_bootstrap, guarantee, txn):
    n, parts = 20_000, 2
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    create_topic(kafka_bootstrap, pl.input, parts)
    extra = [f"--tsrouter.processing-guarantee={guarantee}", "--tsrouter.max-poll-records=200", *txn]
    if guarantee == "exactly-once":
        extra.append(f"--tsrouter.transactional-id={pl.group}-0")
    iso = "read_committed" if guarantee == "exactly-once" else "read_uncommitted"
    r = RouterProc(pl.args(*extra)).start()
    r2 = None
    try:
        r.wait_ready()
        feed = BackgroundProducer(kafka_bootstrap, pl.input, timestamps(n), parts)
        feed.start()
        wait_for(lambda: r.metric("tsrouter_records_routed_total") >= 3000, 120, "routing under way")
        r.kill()
        before = sum(_all_routed(kafka_bootstrap, pl, n, iso).values())
        assert 0 < before < n
        feed.join(120)
        assert not feed.errors
        r2 = RouterProc(pl.args(*extra)).start()
        final = _wait_all_routed(kafka_bootstrap, pl, n, iso)
        assert set(final) == set(range(n))
        if guarantee == "exactly-once":
            time.sleep(2)  # let any straggler transaction land before checking for duplicates
            final = _all_routed(kafka_bootstrap, pl, n, iso)
            assert max(final.values()) == 1 and sum(final.values()) == n
        # What the restarted router committed is exactly what it routed (its own counters).
        wait_for(
            lambda: r2.metric("tsrouter_records_committed_total") == r2.metric("tsrouter_records_routed_total") > 0,
            30,
            "the restart's records counted committed",
        )
        assert r2.terminate() == 0
    finally:
        r.stop()
        if r2:
            r2.stop()


def test_broker_restart_mid_stream_loses_nothing(tmp_path):
    from localinfra.kafka import KafkaBroker

    n, parts = 20_000, 2
    with KafkaBroker(workdir=tmp_path / "kafka") as broker:
        pl = Pipeline(broker.bootstrap, partitions=parts)
        create_topic(broker.bootstrap, pl.input, parts)
        r = RouterProc(pl.args("--tsrouter.max-poll-records=200")).start()
        try:
            r.wait_ready()
            feed = BackgroundProducer(broker.bootstrap, pl.input, timestamps(n), parts)
            feed.start()
            wait_for(lambda: r.metric("tsrouter_records_routed_total") >= 2000, 120, "routing under way")
            broker.restart()
            feed.join(240)
            assert not feed.errors
            final = _wait_all_routed(broker.bootstrap, pl, n, timeout=240)
            assert set(final) == set(range(n))
            r.wait_ready()
            assert r.proc.poll() is None
            assert r.terminate() == 0
        finally:
            r.stop()


def test_two_replicas_route_each_record_once(kafka_bootstrap):
    n, parts = 8_000, 4
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    create_topic(kafka_bootstrap, pl.input, parts)
    a = RouterProc(pl.args()).start()
    b = RouterProc(pl.args()).start()
    try:
        a.wait_ready()
        b.wait_ready()
        # wait until the group settled with both members holding partitions
        wait_for(
            lambda: (
                a.metric("tsrouter_assigned_partitions") + b.metric("tsrouter_assigned_partitions") == parts
                and a.metric("tsrouter_assigned_partitions") > 0
                and b.metric("tsrouter_assigned_partitions") > 0
            ),
            90,
            "partitions shared by both replicas",
        )
        produce(kafka_bootstrap, pl.input, timestamps(n), partition_of=lambda i, v: i % parts)
        final = _wait_all_routed(kafka_bootstrap, pl, n)
        time.sleep(1)
        final = _all_routed(kafka_bootstrap, pl, n)
        assert set(final) == set(range(n)) and max(final.values()) == 1
        ca, cb = a.metric("tsrouter_records_consumed_total"), b.metric("tsrouter_records_consumed_total")
        assert ca > 0 and cb > 0 and ca + cb == n
        assert a.terminate() == 0 and b.terminate() == 0
    finally:
        a.stop()
        b.stop()


def test_topics_it_cannot_create_but_that_exist_are_fine(kafka_bootstrap):
    # replication factor 3 cannot be satisfied by one broker: creation fails for missing topics
    pl = Pipeline(kafka_bootstrap)
    r = RouterProc(pl.args("--tsrouter.topic-replication-factor=3")).start()
    try:
        wait_for(lambda: "cannot create topics" in r.output(), 60, "creation failure reported")
        assert r.get("/actuator/health/readiness")[0] == 503 and r.proc.poll() is None
        for t in (pl.input, pl.even, pl.odd, pl.dlq):  # someone else creates them
            create_topic(kafka_bootstrap, t)
        r.wait_ready()
        produce(kafka_bootstrap, pl.input, [b"05/17/19 17:56:37"])
        assert [x.value for x in read_all(kafka_bootstrap, pl.odd, 1)] == [b"Odd timestamp:05/17/19 17:56:37"]
        assert r.terminate() == 0
    finally:
        r.stop()


# Each switch combination of kafka-python's private paths (tsrouter.kafka_private), and the
# fallback the start-up check takes on a kafka-python it was not written for (the router's
# process sees another version): [args], {file: text} for the router's PYTHONPATH, and what
# the router logs it uses ({txn}: the bounded transactional calls, named by exactly-once only).
SITE_OTHER_KAFKA = {"sitecustomize.py": "import kafka\nkafka.__version__ = '3.0.99'\n"}
PRIVATE_PATHS = {
    "public": (
        ["--tsrouter.fast-fetch=false", "--tsrouter.batch-send=false"],
        {},
        "connection probe, {txn}kafka-python fixes",
    ),
    "fast-fetch": (
        ["--tsrouter.batch-send=false"],
        {},
        "tsrouter.fast-fetch, connection probe, {txn}kafka-python fixes",
    ),
    "batch-send": (
        ["--tsrouter.fast-fetch=false"],
        {},
        "tsrouter.batch-send, connection probe, {txn}kafka-python fixes",
    ),
    "both": ([], {}, "tsrouter.fast-fetch, tsrouter.batch-send, connection probe, {txn}kafka-python fixes"),
    "fallback": ([], SITE_OTHER_KAFKA, "kafka-python fixes"),
}


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
@pytest.mark.parametrize("paths", list(PRIVATE_PATHS))
def test_every_private_path_switch_routes_the_same(kafka_bootstrap, tmp_path, paths, guarantee):
    args, site, uses = PRIVATE_PATHS[paths]
    uses = uses.format(txn="bounded transactional calls, " if guarantee == "exactly-once" else "")
    for name, text in site.items():
        (tmp_path / name).write_text(text)
    parts = 2
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    r = RouterProc(
        pl.args(f"--tsrouter.processing-guarantee={guarantee}", *args),
        env={"PYTHONPATH": str(tmp_path)} if site else None,
    ).start()
    try:
        r.wait_ready()
        assert f"private API in use: {uses}\n" in r.output()
        if site:
            assert "3.0.99 installed, 3.0.12 expected" in r.output()
        good = timestamps(1000)
        bad = [bad for bad, _reason in MALFORMED]
        values = good[:500] + bad + good[500:]
        produce(
            kafka_bootstrap,
            pl.input,
            values,
            partition_of=lambda i, v: i % parts,
            key_of=lambda i, v: b"k%d" % i if i % 3 else None,
            headers=lambda i, v: [("trace-id", str(i).encode())] if i % 5 == 0 else None,
        )
        level = "read_committed" if guarantee == "exactly-once" else "read_uncommitted"
        routed = _wait_all_routed(kafka_bootstrap, pl, len(good), level)
        assert sorted(routed) == list(range(len(good))) and max(routed.values()) == 1
        even = read_to_end(kafka_bootstrap, pl.even, level)
        odd = read_to_end(kafka_bootstrap, pl.odd, level)
        dlq = read_all(kafka_bootstrap, pl.dlq, len(bad), isolation_level=level)
        assert sorted(r.value for r in dlq) == sorted(b if b is not None else b"" for b in bad)
        for out, prefix in ((even, b"Even timestamp:"), (odd, b"Odd timestamp:")):
            for rec in out:
                i = values.index(rec.value[len(prefix) :])
                assert rec.value.startswith(prefix) and int(chr(rec.value[-1])) % 2 == (prefix == b"Odd timestamp:")
                assert rec.partition == i % parts  # the output partition follows the input's
                assert rec.key == (b"k%d" % i if i % 3 else None)
                h = dict(rec.headers)
                assert h["contentType"] == b"text/plain"
                assert h.get("trace-id") == (str(i).encode() if i % 5 == 0 else None)
        wait_for(lambda: r.metric("tsrouter_records_committed_total") == len(values), 60, "every record committed")
        assert r.metric("tsrouter_records_routed_total") == len(good)
        assert r.metric("tsrouter_records_dead_lettered_total") == len(bad)
        assert r.terminate() == 0
    finally:
        r.stop()


def test_the_public_connection_probe_on_the_real_broker(kafka_bootstrap):
    from tsrouter.kafka_private.probe import PublicProbe

    topic = unique("probe")
    create_topic(kafka_bootstrap, topic)
    up = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    down = KafkaConsumer(bootstrap_servers="127.0.0.1:9", api_version=(3, 0))  # nothing listens there
    try:
        assert PublicProbe(up, topic)() is True
        assert PublicProbe(down, topic)() is False
    finally:
        up.close()
        down.close()


def _log_sink_joins_and_leaves(bootstrap: str, pl: Pipeline) -> None:
    """A log sink of the same stream: SCDF gives it the stream's group, on another topic, so
    its joining and its leaving each rebalance the router's group."""
    sink = KafkaConsumer(pl.even, bootstrap_servers=bootstrap, group_id=pl.group, auto_offset_reset="latest")
    try:
        wait_for(lambda: sink.poll(200) is not None and sink.assignment(), 60, "the log sink's assignment")
        for _ in range(5):
            sink.poll(200)
    finally:
        sink.close()


@pytest.mark.parametrize(
    "extra", [[], ["--tsrouter.processing-guarantee=exactly-once"]], ids=["at-least-once", "exactly-once"]
)
def test_rebalances_mid_stream_route_nothing_twice(kafka_bootstrap, extra):
    # kafka-python 3.0.12 calls the rebalance hooks on its IO thread, where a blocking commit
    # is refused: the revoke commit was lost, and the partitions that moved to the second
    # replica were replayed from the last periodic commit. A log sink in the group (SCDF's
    # default) rebalances the replicas again on joining and on leaving.
    n, parts = 30_000, 4
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    create_topic(kafka_bootstrap, pl.input, parts)
    iso = "read_committed" if extra else "read_uncommitted"
    args = pl.args("--tsrouter.max-poll-records=200", *extra)
    a = RouterProc(args).start()
    b = RouterProc(args)
    try:
        a.wait_ready()
        feed = BackgroundProducer(kafka_bootstrap, pl.input, timestamps(n), parts, rate=2_000)
        feed.start()
        wait_for(lambda: a.metric("tsrouter_records_routed_total") >= 2000, 120, "routing under way")
        b.start().wait_ready()
        wait_for(lambda: b.metric("tsrouter_assigned_partitions") > 0, 90, "the second replica's partitions")
        _log_sink_joins_and_leaves(kafka_bootstrap, pl)
        feed.join(120)
        assert not feed.errors and feed.sent == n
        _wait_all_routed(kafka_bootstrap, pl, n, iso)
        time.sleep(1)
        final = _all_routed(kafka_bootstrap, pl, n, iso)
        revoked = a.metric("tsrouter_rebalances_total", 'kind="revoked"')
        out = a.output() + b.output()
        assert a.terminate() == 0 and b.terminate() == 0
        assert revoked >= 3, out[-3000:]  # the replica joined, the sink joined and left
        assert set(final) == set(range(n))
        twice = sum(c - 1 for c in final.values())
        lost_commits = out.count("(revoke) failed") + out.count("(revoke) not committed")
        assert (twice, lost_commits) == (0, 0), (
            f"{twice} records routed again after {revoked:.0f} revocations, {lost_commits} revoke commits lost\n"
            + out[-3000:]
        )
    finally:
        a.stop()
        b.stop()
