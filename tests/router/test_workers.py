"""tsrouter.workers: several router processes in one pod behind one actuator."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from routerproc import RouterProc, create_topic, produce, read_to_end, serial, timestamps, wait_for
from test_router_kafka import Pipeline

from tsrouter.config import load
from tsrouter.workers import combine_health, sum_metrics

A = """# HELP tsrouter_records_routed_total Records routed
# TYPE tsrouter_records_routed_total counter
tsrouter_records_routed_total{channel="even"} 3.0
tsrouter_records_routed_total{channel="odd"} 4.0
# HELP tsrouter_assigned_partitions Input partitions assigned
# TYPE tsrouter_assigned_partitions gauge
tsrouter_assigned_partitions 1.0
"""
B = A.replace(" 3.0", " 10.0").replace(" 4.0", " 0.0")


def test_metrics_are_summed_by_name_and_labels():
    from prometheus_client.parser import text_string_to_metric_families

    out = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(sum_metrics([A, B]))
        for s in f.samples
    }
    assert out[("tsrouter_records_routed_total", (("channel", "even"),))] == 13
    assert out[("tsrouter_records_routed_total", (("channel", "odd"),))] == 4
    assert out[("tsrouter_assigned_partitions", ())] == 2


def test_health_is_up_only_when_every_worker_is():
    up = {"status": "UP"}
    assert combine_health([(200, up), (200, up)])[1] is True
    body, ok = combine_health([(200, up), (None, "connection refused")])
    assert not ok and body["status"] == "DOWN" and body["components"]["worker-1"]["status"] == "DOWN"


def test_workers_key():
    assert load([], {}).workers == 1
    assert load(["--tsrouter.workers=2"], {}).workers == 2
    with pytest.raises(ValueError, match=r"tsrouter\.workers"):
        load(["--tsrouter.workers=0"], {})


@pytest.mark.kafka
@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_two_workers_share_the_group_and_one_actuator(kafka_bootstrap, guarantee):
    n, parts = 6_000, 2
    pl = Pipeline(kafka_bootstrap, partitions=parts)
    create_topic(kafka_bootstrap, pl.input, parts)
    r = RouterProc(pl.args("--tsrouter.workers=2", f"--tsrouter.processing-guarantee={guarantee}")).start()
    try:
        r.wait_ready()
        wait_for(lambda: r.metric("tsrouter_assigned_partitions") == parts, 90, "both partitions assigned")
        status, info = r.get("/actuator/info")
        assert status == 200 and info["workers"] == 2
        status, body = r.get("/actuator/health")
        assert status == 200 and set(body["components"]) == {"worker-0", "worker-1"}
        # each worker holds one partition: the group spread them
        assert [c["components"]["kafka"]["details"]["assignedPartitions"] for c in body["components"].values()] == [
            1,
            1,
        ]
        produce(kafka_bootstrap, pl.input, timestamps(n), partition_of=lambda i, v: i % parts)
        wait_for(lambda: r.metric("tsrouter_records_routed_total") == n, 120, "all routed (summed metric)")
        iso = "read_committed" if guarantee == "exactly-once" else "read_uncommitted"
        got = Counter(serial(x.value) for t in (pl.even, pl.odd) for x in read_to_end(kafka_bootstrap, t, iso))
        assert set(got) == set(range(n)) and max(got.values()) == 1
        assert r.metric("tsrouter_records_consumed_total") == n
        assert r.terminate() == 0
    finally:
        r.stop()


def _children(pid: int) -> list[int]:
    return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return "tsrouter" in Path(f"/proc/{pid}/cmdline").read_text() and stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pids: list[int]) -> None:
    for c in pids:
        if _alive(c):
            os.kill(c, signal.SIGKILL)


@contextlib.contextmanager
def two_workers(kafka_bootstrap):
    """A router with two worker processes, Ready: (the router, the workers' pids); whatever
    is left of them is killed afterwards."""
    r = RouterProc(Pipeline(kafka_bootstrap).args("--tsrouter.workers=2")).start()
    children: list[int] = []
    try:
        r.wait_ready()
        children = _children(r.proc.pid)
        assert len(children) == 2
        yield r, children
    finally:
        r.stop()
        _kill(children)


@pytest.mark.kafka
def test_a_worker_that_dies_takes_the_pod_down(kafka_bootstrap):
    with two_workers(kafka_bootstrap) as (r, children):
        os.kill(children[0], signal.SIGKILL)
        assert r.proc.wait(60) != 0
        wait_for(lambda: not any(_alive(c) for c in children), 30, "the other worker stopped")


@pytest.mark.kafka
def test_workers_stop_when_the_parent_is_killed(kafka_bootstrap):
    with two_workers(kafka_bootstrap) as (r, children):
        r.kill()  # SIGKILL: the parent cannot pass anything on
        wait_for(lambda: not any(_alive(c) for c in children), 60, "orphaned workers stopped")
