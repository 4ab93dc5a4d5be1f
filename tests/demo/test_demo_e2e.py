"""The main job end to end: `kubectl apply` a TimestampPipeline, the operator renders four
Deployments, the runner runs them for real (the router from this repo, the prebuilt Spring
time source and log sinks as jars), and timestamps reach the right logger.

Real control plane, real broker, real Spring apps; nothing is faked.
"""

from __future__ import annotations

import collections
import json
import re

import pytest
from localinfra import diagnose
from localinfra.demo import apply, pipeline_manifest, start_operator, wait_ready
from localinfra.kafka import topic_values
from localinfra.proc import wait_for
from localinfra.runner import Runner

pytestmark = [pytest.mark.kafka, pytest.mark.kube]

# The log sink prints its payload after the logger name, e.g.
# "2026-11-27T22:50:01.123Z  INFO 1 --- [log-sink] [container-0-C-1] log-sink : Even timestamp:11/27/26 22:50:01"
PAYLOAD = re.compile(r"\b((?:Even|Odd|EVEN|ODD)[^:]*:\d\d/\d\d/\d\d \d\d:\d\d:\d\d)\s*$")


def logged_payloads(runner: Runner, suffix: str) -> list[str]:
    out = []
    for path in runner.logdir.glob(f"*-{suffix}-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            m = PAYLOAD.search(line)
            if m:
                out.append(m.group(1))
    return out


def expected_routing(timestamps):
    """Counters of the timestamps each logger must receive, by the last digit."""
    even, odd = collections.Counter(), collections.Counter()
    for ts in timestamps:
        (even if int(ts[-1]) % 2 == 0 else odd)[ts] += 1
    return even, odd


def strip(payloads, prefixes):
    """Counter of the timestamps inside logged payloads, whichever known prefix they carry."""
    out = collections.Counter()
    for p in payloads:
        for prefix in prefixes:
            if p.startswith(prefix):
                out[p[len(prefix) :]] += 1
                break
        else:
            raise AssertionError(f"payload with an unexpected prefix: {p!r}")
    return out


@pytest.fixture
def pipeline_env(control_plane, crd_installed, namespace, kafka_broker, tmp_path, on_failure):
    ns = namespace
    op = start_operator(control_plane.kubeconfig, ns, tmp_path / "operator.log")
    runner = Runner(control_plane.kubeconfig, ns, tmp_path / "apps").start()
    # Unique topics per test so earlier runs' records don't count.
    topics = {k: f"{k}-{ns}" for k in ("input", "even", "odd")}
    group = pipeline_manifest(kafka_broker.bootstrap)["spec"]["streamName"]
    on_failure.extend(
        [
            ("pipeline and Deployments", lambda: diagnose.kube_state(control_plane, ns)),
            ("programs the runner started", lambda: diagnose.runner_state(runner)),
            (
                "Kafka topics and consumer group",
                lambda: diagnose.kafka_state(
                    kafka_broker.bootstrap, [*topics.values(), f"error.{topics['input']}.{group}"], [group]
                ),
            ),
            ("app start-up times", lambda: diagnose.start_times(runner.logdir)),
            (
                "payload lines per logger",
                lambda: ", ".join(f"{s}: {len(logged_payloads(runner, s))}" for s in ("evenlogger", "oddlogger")),
            ),
            (
                "app logs (tails)",
                lambda: "\n".join(f"--- {t}\n{body}" for t, body in diagnose.log_tails(runner.logdir)),
            ),
            ("operator log (tail)", lambda: diagnose.tail(tmp_path / "operator.log")),
        ]
    )
    try:
        yield ns, runner, topics
    finally:
        runner.stop()
        op.stop(15)


def make_pipeline(bootstrap, topics, **router):
    obj = pipeline_manifest(bootstrap, **router)
    obj["spec"]["kafka"]["topics"].update(topics)
    return obj


def test_every_timestamp_reaches_the_logger_its_last_digit_names(control_plane, kafka_broker, pipeline_env):
    ns, runner, topics = pipeline_env
    obj = make_pipeline(kafka_broker.bootstrap, topics)
    apply(control_plane, obj, ns)
    wait_ready(control_plane, obj["metadata"]["name"], ns)
    # The time source emits once a second; wait until it has been flowing for 20 s.
    wait_for(lambda: len(topic_values(kafka_broker.bootstrap, topics["input"])) >= 20, 240, "20 timestamps")
    produced = topic_values(kafka_broker.bootstrap, topics["input"])
    assert all(re.fullmatch(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d", ts) for ts in produced), produced[:5]
    even, odd = expected_routing(produced)

    def all_arrived():
        got_even = strip(logged_payloads(runner, "evenlogger"), ["Even timestamp:"])
        got_odd = strip(logged_payloads(runner, "oddlogger"), ["Odd timestamp:"])
        return (got_even, got_odd) if (got_even >= even and got_odd >= odd) else None

    got_even, got_odd = wait_for(all_arrived, 120, "every produced timestamp in the right logger")
    # Nothing crossed over: the even logger saw no odd timestamp and vice versa.
    assert all(int(ts[-1]) % 2 == 0 for ts in got_even), got_even
    assert all(int(ts[-1]) % 2 == 1 for ts in got_odd), got_odd
    assert even and odd, "a 20 s run yields both even and odd seconds"
    group = obj["spec"]["streamName"]
    assert topic_values(kafka_broker.bootstrap, f"error.{topics['input']}.{group}") == []


def test_changing_the_prefix_rolls_the_router_and_loses_nothing(control_plane, kafka_broker, pipeline_env):
    ns, runner, topics = pipeline_env
    obj = make_pipeline(kafka_broker.bootstrap, topics)
    name = obj["metadata"]["name"]
    apply(control_plane, obj, ns)
    wait_ready(control_plane, name, ns)
    wait_for(
        lambda: logged_payloads(runner, "evenlogger") and logged_payloads(runner, "oddlogger"),
        240,
        "the first lines in both loggers",
    )
    router_key = f"{ns}/{name}-router"
    starts_before = runner.starts[router_key]
    before = json.loads(control_plane.kubectl("get", "deploy", f"{name}-router", "-n", ns, "-o", "json").stdout)

    apply(control_plane, make_pipeline(kafka_broker.bootstrap, topics, evenPrefix="EVEN:", oddPrefix="ODD:"), ns)
    # The operator rolled only the router's Deployment ...
    after = wait_for(
        lambda: (
            (d := json.loads(control_plane.kubectl("get", "deploy", f"{name}-router", "-n", ns, "-o", "json").stdout))[
                "metadata"
            ]["generation"]
            > before["metadata"]["generation"]
            and d
        ),
        60,
        "the router Deployment to change",
    )
    assert "--tsrouter.even-prefix=EVEN:" in after["spec"]["template"]["spec"]["containers"][0]["args"]
    # ... the runner restarted the router, and the new prefix reaches the loggers.
    wait_for(lambda: runner.starts[router_key] > starts_before, 60, "the runner to restart the router")
    wait_for(
        lambda: (
            any(p.startswith("EVEN:") for p in logged_payloads(runner, "evenlogger"))
            and any(p.startswith("ODD:") for p in logged_payloads(runner, "oddlogger"))
        ),
        180,
        "the new prefixes",
    )

    produced = topic_values(kafka_broker.bootstrap, topics["input"])
    even, odd = expected_routing(produced)

    def all_arrived():
        got_even = strip(logged_payloads(runner, "evenlogger"), ["Even timestamp:", "EVEN:"])
        got_odd = strip(logged_payloads(runner, "oddlogger"), ["Odd timestamp:", "ODD:"])
        return got_even >= even and got_odd >= odd

    wait_for(all_arrived, 120, "every timestamp, across the router's restart, in the right logger")


def test_deleting_the_pipeline_stops_every_program(control_plane, kafka_broker, pipeline_env):
    ns, runner, topics = pipeline_env
    obj = make_pipeline(kafka_broker.bootstrap, topics)
    apply(control_plane, obj, ns)
    wait_ready(control_plane, obj["metadata"]["name"], ns)
    pids = wait_for(lambda: len(runner.pids()) == 4 and runner.pids(), 60, "four running programs")
    control_plane.kubectl("delete", "tsp", obj["metadata"]["name"], "-n", ns)
    wait_for(lambda: not runner.running, 120, "the runner to stop every program")
    import os

    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # A reaped child can't linger; one still present must be a zombie at worst.
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().split()[2] == "Z", f"process {pid} still running"
