"""Every metric name the PrometheusRule and the Grafana dashboard refer to is exposed by
the real processes: the router, run against the real broker after it routed and
dead-lettered records, scraped on /actuator/prometheus; the operator, run against the
real control plane with --metrics-port after it reconciled a pipeline, scraped on
/metrics. Names are taken from the parsed PromQL (promnames.py); `up` is Prometheus' own.
And the router's lag series follow the partitions a replica owns across a rebalance."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from kubehelpers import Kubectl, Operator, no_broker_pipeline
from prometheus_client.parser import text_string_to_metric_families
from promnames import SYNTHETIC, dashboard_queries, exposed, load_dashboard, missing, referenced, rule_queries
from routerproc import RouterProc, create_topic, free_port, produce, timestamps, unique, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.kube]

DEST = "--spring.cloud.stream.bindings.{}.destination={}"


@pytest.fixture(scope="module")
def router_exposition(kafka_bootstrap):
    """The router's scrape after it routed 20 timestamps and dead-lettered 2 bad values."""
    source, group = unique("time"), unique("grp")
    create_topic(kafka_bootstrap, source)
    r = RouterProc(
        [
            f"--spring.cloud.stream.kafka.binder.brokers={kafka_bootstrap}",
            DEST.format("input", source),
            DEST.format("even", unique("even")),
            DEST.format("odd", unique("odd")),
            f"--spring.cloud.stream.bindings.input.group={group}",
        ]
    ).start()
    try:
        r.wait_ready()
        produce(kafka_bootstrap, source, [*timestamps(20), b"not a time", b""])

        def scraped():
            status, text = r.get("/actuator/prometheus")
            if status != 200:
                return None
            done = (
                r.metric("tsrouter_records_routed_total") == 20
                and r.metric("tsrouter_records_dead_lettered_total") == 2
                and "tsrouter_consumer_lag{" in text
            )
            return text if done else None

        yield wait_for(scraped, 90, "20 records routed, 2 dead-lettered, the lag measured")
    finally:
        try:
            r.terminate()
        finally:
            r.stop()


@pytest.fixture(scope="module")
def operator_exposition(control_plane, crd_installed, tmp_path_factory):
    """The operator's scrape after it reconciled one pipeline (no broker needed)."""
    ns = f"tsp-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    port = free_port()
    op = Operator(
        control_plane.kubeconfig,
        ns,
        tmp_path_factory.mktemp("op") / "operator.log",
        ("--metrics-port", str(port), "--metrics-address", "127.0.0.1"),
    ).start()
    try:
        Kubectl(control_plane, ns).apply(no_broker_pipeline())

        def scraped():
            assert op.alive(), op.log()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                return None
            return text if "tspipe_pipeline_phase{" in text and 'tspipe_reconciles_total{result="ok"}' in text else None

        yield wait_for(scraped, 120, "the operator's metrics after one reconciled pipeline")
    finally:
        op.stop()
        control_plane.kubectl("delete", "namespace", ns, "--wait=false")


def by_process(refs: dict[str, list[str]]) -> tuple[dict, dict]:
    router = {n: w for n, w in refs.items() if n.startswith("tsrouter_")}
    operator = {n: w for n, w in refs.items() if n.startswith("tspipe_")}
    other = set(refs) - set(router) - set(operator) - SYNTHETIC
    assert not other, f"names of neither process: {other}"
    return router, operator


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_referenced_metric_is_exposed_by_the_real_process(router_exposition, operator_exposition, source):
    queries = rule_queries() if source == "rules" else dashboard_queries(load_dashboard())
    router_refs, operator_refs = by_process(referenced(queries))
    assert router_refs and operator_refs, "both processes' metrics are used"
    router_names, operator_names = exposed(router_exposition), exposed(operator_exposition)
    assert not missing(router_refs, router_names), (missing(router_refs, router_names), sorted(router_names))
    assert not missing(operator_refs, operator_names), (missing(operator_refs, operator_names), sorted(operator_names))
    # And the check is not vacuous: the same names misspelt (or without `_total`) are not exposed.
    for name in [*router_refs, *operator_refs]:
        for wrong in (name + "x", name.removesuffix("_total") if name.endswith("_total") else name[:-1]):
            assert wrong not in router_names | operator_names, wrong


def lag_partitions(r: RouterProc) -> set[int]:
    status, text = r.get("/actuator/prometheus")
    assert status == 200, text
    return {
        int(s.labels["partition"])
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "tsrouter_consumer_lag"
    }


@pytest.mark.kafka
def test_router_lag_series_follow_the_partitions_a_replica_owns(kafka_bootstrap):
    """The dashboard sums tsrouter_consumer_lag over replicas and the lag alert watches
    the sum: a partition that moves to another replica at a rebalance must leave the
    old owner's scrape, or it is counted twice (and its last value kept forever)."""
    source, group = unique("time"), unique("grp")
    create_topic(kafka_bootstrap, source, 2)
    args = [
        f"--spring.cloud.stream.kafka.binder.brokers={kafka_bootstrap}",
        DEST.format("input", source),
        DEST.format("even", unique("even")),
        DEST.format("odd", unique("odd")),
        f"--spring.cloud.stream.bindings.input.group={group}",
        "--tsrouter.topic-partitions=2",
    ]
    produce(kafka_bootstrap, source, timestamps(10), partition_of=lambda i, v: i % 2)
    a = RouterProc(args).start()
    b = None
    try:
        a.wait_ready()
        wait_for(lambda: lag_partitions(a) == {0, 1}, 60, "replica a reports the lag of both partitions")
        b = RouterProc(args).start()
        b.wait_ready()
        wait_for(
            lambda: a.metric("tsrouter_assigned_partitions") == 1 == b.metric("tsrouter_assigned_partitions"),
            90,
            "the partitions shared by both replicas",
        )
        # A replica reports a partition's lag once it has read from it: more records.
        produce(kafka_bootstrap, source, timestamps(10, start=1_800_000_000), partition_of=lambda i, v: i % 2)
        wait_for(
            lambda: len(lag_partitions(a)) == 1 and lag_partitions(b) == {0, 1} - lag_partitions(a),
            90,
            "each replica reports the lag of the one partition it owns, and only that one",
        )
        assert b.terminate() == 0
        produce(kafka_bootstrap, source, timestamps(10, start=1_900_000_000), partition_of=lambda i, v: i % 2)
        wait_for(lambda: lag_partitions(a) == {0, 1}, 90, "replica a reports both partitions again")
    finally:
        for r in (a, b):
            if r is not None:
                r.stop()
