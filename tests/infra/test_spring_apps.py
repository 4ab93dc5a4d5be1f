"""The seed's Spring Cloud Stream apps: pure helpers, then the real jars against the real broker."""

import json
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime

import pytest
from localinfra import springapps
from localinfra.kafka import free_port
from localinfra.proc import OWNER_FILE, owned_tmpdir, sweep_tmpdirs
from localinfra.springapps import SpringAppError, log_sink_payloads, parse_boot_log_line, parse_time_payload

SINK_LINE = (
    "2026-11-27T22:50:55.550Z  INFO 30346 --- [log-sink] [container-0-C-1] "
    "log-sink                                 : 11/27/26 22:50:55"
)


def test_parse_boot_log_line_of_the_log_sink():
    line = parse_boot_log_line(SINK_LINE + "\n")
    assert line.level == "INFO" and line.pid == 30346 and line.app == "log-sink"
    assert line.thread == "container-0-C-1" and line.logger == "log-sink"
    assert line.message == "11/27/26 22:50:55"


def test_log_sink_payloads_skip_other_loggers_and_stack_traces():
    lines = [
        SINK_LINE,
        "2026-11-27T22:50:35.753Z  INFO 1 --- [log-sink] [           main] "
        "s.c.s.a.l.s.k.LogSinkKafkaApplication : Started LogSinkKafkaApplication in 10.0 seconds",
        "\tat org.example.Foo.bar(Foo.java:1)",
    ]
    assert log_sink_payloads(lines) == ["11/27/26 22:50:55"]


def test_parse_time_payload():
    assert parse_time_payload(b"11/27/26 22:50:35") == datetime(2026, 11, 27, 22, 50, 35)
    with pytest.raises(ValueError):
        parse_time_payload(b"2026-11-27 22:50:35")


def test_unknown_app_or_unbuildable_version_is_refused_without_building():
    with pytest.raises(SpringAppError):
        springapps.jar_path("http-source-kafka")
    with pytest.raises(SpringAppError, match="not available"):
        springapps.jar_path("time-source-kafka", "0.0.1")


def test_java_command_is_small_and_fast_starting(monkeypatch, tmp_path):
    # Flags only: don't build the jar here.
    monkeypatch.setattr(springapps, "jar_path", lambda app, version=None: tmp_path / f"{app}.jar")
    cmd = springapps.java_command("time-source-kafka")
    assert "-Xmx256m" in cmd and "-XX:TieredStopAtLevel=1" in cmd
    assert cmd[-2] == "-jar" and cmd[-1].endswith("/time-source-kafka.jar")


def test_java_command_sets_the_tmpdir_it_is_given(monkeypatch, tmp_path):
    # Tomcat's base dir goes to java.io.tmpdir; left at /tmp, every app start leaves one there.
    monkeypatch.setattr(springapps, "jar_path", lambda app, version=None: tmp_path / f"{app}.jar")
    assert not any(a.startswith("-Djava.io.tmpdir=") for a in springapps.java_command("log-sink-kafka"))
    cmd = springapps.java_command("log-sink-kafka", tmpdir=tmp_path / "t")
    assert f"-Djava.io.tmpdir={tmp_path / 't'}" in cmd[: cmd.index("-jar")]


def test_owned_tmpdirs_of_dead_owners_are_swept(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{springapps.TMP_PREFIX}stale"
    (stale / "tomcat.1.2").mkdir(parents=True)
    (stale / OWNER_FILE).write_text(str(dead.pid))
    unowned = tmp_path / f"{springapps.TMP_PREFIX}unowned"
    unowned.mkdir()
    mine = owned_tmpdir(springapps.TMP_PREFIX)
    assert mine.parent == tmp_path and (mine / OWNER_FILE).read_text() == str(os.getpid())
    assert not stale.exists(), "a killed run's folder is swept"
    assert unowned.exists(), "a folder without an owner is not ours to judge"
    sweep_tmpdirs(springapps.TMP_PREFIX)
    assert mine.exists(), "a live owner's folder stays"


# ---------------------------------------------------------------- real apps


def _bindings(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/actuator/bindings", timeout=10) as r:
        return {b["bindingName"]: b for b in json.load(r)}


def _read_values(bootstrap, topic, want=None, until=None, bound_s=60):
    """Record values from the start of `topic`: `want` of them, or until `until(values)` holds."""
    from kafka import KafkaConsumer

    done = until or (lambda vals: len(vals) >= want)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"check-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
    )
    values, deadline = [], time.monotonic() + bound_s
    try:
        while not done(values) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close()
    return values


@pytest.mark.kafka
def test_time_source_to_log_sink_through_kafka(kafka_bootstrap, tmp_path):
    topic = f"ticktock-{uuid.uuid4().hex[:8]}"
    source_port, sink_port = free_port(), free_port()
    source_log, sink_log = tmp_path / "time-source.log", tmp_path / "log-sink.log"
    procs = []
    try:
        source = springapps.start_app(
            "time-source-kafka",
            None,
            [
                f"--spring.cloud.stream.bindings.output.destination={topic}",
                f"--spring.cloud.stream.kafka.binder.brokers={kafka_bootstrap}",
                f"--server.port={source_port}",
            ],
            log_path=source_log,
        )
        procs.append(source)
        springapps.wait_started(source, source_log)

        # The operator's wiring relies on this alias: the function binding is named `output`.
        bindings = _bindings(source_port)
        assert bindings["output"]["name"] == topic and bindings["output"]["input"] is False

        values = _read_values(kafka_bootstrap, topic, want=3)
        assert len(values) >= 3
        stamps = [parse_time_payload(v) for v in values]
        assert stamps == sorted(stamps)

        sink = springapps.start_app(
            "log-sink-kafka",
            None,
            [
                f"--spring.cloud.stream.bindings.input.destination={topic}",
                f"--spring.cloud.stream.kafka.binder.brokers={kafka_bootstrap}",
                f"--server.port={sink_port}",
            ],
            log_path=sink_log,
        )
        procs.append(sink)
        springapps.wait_started(sink, sink_log)
        assert _bindings(sink_port)["input"]["name"] == topic

        logged, deadline = [], time.monotonic() + 60
        while len(logged) < 2 and time.monotonic() < deadline:
            logged = log_sink_payloads(sink_log.read_text(errors="replace").splitlines())
            time.sleep(0.5)
        assert len(logged) >= 2, sink_log.read_text()[-3000:]
        for payload in logged:
            parse_time_payload(payload)
        # What the sink logged is what the source put on the topic.
        wanted = {p.encode() for p in logged}
        on_topic = _read_values(kafka_bootstrap, topic, until=lambda vals: wanted <= set(vals))
        assert wanted <= set(on_topic)
    finally:
        for proc in procs:
            springapps.stop_app(proc)
    assert all(p.poll() is not None for p in procs)
