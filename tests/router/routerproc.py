"""Test helpers: run the router as a real subprocess, produce and read topics with kafka-python."""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition
from localinfra.proc import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class RouterProc:
    """`python -m tsrouter` with its stdout captured to a file; bound to 127.0.0.1."""

    def __init__(self, args: list[str] | None = None, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.args = [f"--server.port={self.port}", "--server.address=127.0.0.1", *(args or [])]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRING_", "SERVER_", "TSROUTER_"))}
        self.env.update(env or {})
        self.env["PYTHONUNBUFFERED"] = "1"
        # The router writes to it until stop(), which closes it.
        self.log = tempfile.NamedTemporaryFile(prefix="tsrouter-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def start(self) -> RouterProc:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tsrouter", *self.args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def get(self, path: str):
        """(status, parsed JSON or text) or (None, error) when the server is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                body = r.read().decode()
                return r.status, json.loads(body) if "json" in r.headers.get("Content-Type", "") else body
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body
        except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
            return None, str(e)

    def ready(self) -> bool:
        return self.get("/actuator/health/readiness")[0] == 200

    def wait_ready(self, timeout: float = 90):
        try:
            wait_for(lambda: self.ready() or self._died(), timeout, "router readiness")
        except AssertionError:
            raise AssertionError(f"router not ready; its log:\n{self.output()[-4000:]}") from None
        if self.proc.poll() is not None:
            raise AssertionError(f"router exited {self.proc.returncode}:\n{self.output()[-4000:]}")
        return self

    def _died(self) -> bool:
        return self.proc.poll() is not None

    def metric(self, name: str, labels: str = "") -> float:
        status, text = self.get("/actuator/prometheus")
        assert status == 200, text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + (("{" + labels) if labels else "")) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    configs: dict[str, str] | None = None,
    replication: int = 1,
    replicas: list[int] | None = None,
) -> None:
    """`replicas`: one partition's broker ids, the preferred leader first (the broker takes
    either a count and a replication factor or an assignment, never both)."""
    spec: dict = {"num_partitions": partitions, "replication_factor": replication}
    if replicas is not None:
        spec = {"assignments": {0: replicas}}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({name: {**spec, "configs": configs or {}}}, raise_errors=False, wait_for_metadata=True)
    finally:
        admin.close()


def new_topic(bootstrap: str, prefix: str, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
    """A topic of its own for one test: created, and its name returned."""
    name = unique(prefix)
    create_topic(bootstrap, name, partitions, configs)
    return name


def produce(bootstrap: str, topic: str, values, partition_of=None, key_of=None, headers=None) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    futures = []
    for i, v in enumerate(values):
        futures.append(
            p.send(
                topic,
                value=v,
                key=key_of(i, v) if key_of else None,
                partition=partition_of(i, v) if partition_of else None,
                headers=headers(i, v) if headers else None,
            )
        )
    p.flush()
    for f in futures:
        f.get(timeout=30)
    p.close()


class BackgroundProducer(threading.Thread):
    """Produces `values` to `topic` from a thread (value i to partition i % partitions),
    paced to `rate` records/s by the clock, until all are sent or stop() is called; start() it.

    kafka-python's defaults hold: acks=all and idempotence (a retried send is not written
    twice). After join(): the first `sent` values were handed to the producer and each was
    acknowledged, unless `errors` holds what failed.

    At most 10,000 records/s by default: the stream must outlast the router's catch-up (over
    100k records/s since tsrouter.kafka_private.fastfetch), or a kill meant for mid-stream finds it done."""

    STEP_S = 0.01  # paced in steps this long: finer sleeps cost the producer more than they smooth

    def __init__(self, bootstrap: str, topic: str, values, partitions: int = 1, rate: int = 10_000):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.values = bootstrap, topic, values
        self.partitions, self.rate = partitions, rate
        self.errors: list[BaseException] = []
        self.sent = 0
        self._halt = threading.Event()

    def run(self) -> None:
        p = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, delivery_timeout_ms=120_000)
        futures = []
        try:
            t0 = time.monotonic()
            for i, v in enumerate(self.values):
                if self._halt.is_set():
                    break
                futures.append(p.send(self.topic, value=v, partition=i % self.partitions))
                self.sent = i + 1
                ahead = t0 + self.sent / self.rate - time.monotonic()
                if ahead >= self.STEP_S:
                    time.sleep(ahead)
            p.flush()
            for f in futures:
                f.get(timeout=120)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            p.close()

    def stop(self, timeout: float = 120) -> None:
        """Send nothing more; wait until what was sent is acknowledged (or failed)."""
        self._halt.set()
        if self.ident is not None:  # started
            self.join(timeout)


def read_all(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 120,
    isolation_level: str = "read_uncommitted",
    settle: float = 0.0,
) -> list:
    """Every record of topic from the beginning, until `expected` seen (then `settle` s more)."""
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
        fetch_max_wait_ms=100,
    )
    parts = wait_for(lambda: c.partitions_for_topic(topic), 30, f"topic {topic} metadata")
    c.assign([TopicPartition(topic, p) for p in sorted(parts)])
    c.seek_to_beginning()
    out = []
    deadline = time.monotonic() + timeout
    settle_until = None
    while time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
        if len(out) >= expected and settle_until is None:
            settle_until = time.monotonic() + settle
        if settle_until is not None and time.monotonic() >= settle_until:
            break
    c.close()
    return out


def timestamps(n: int, start: int = 1_700_000_000) -> list[bytes]:
    """n distinct values in the time source's format (MM/dd/yy HH:mm:ss), one second apart."""
    return [time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(start + i)).encode() for i in range(n)]


def serial(value: bytes, start: int = 1_700_000_000) -> int:
    """Index of a timestamps() value, also when it is inside a routed payload."""
    text = value.decode()[-17:]
    return calendar.timegm(time.strptime(text, "%m/%d/%y %H:%M:%S")) - start


def read_to_end(bootstrap: str, topic: str, isolation_level: str = "read_uncommitted", timeout: float = 60) -> list:
    """A snapshot: every record of topic up to its current end (last stable offset when read_committed)."""
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level, fetch_max_wait_ms=100
    )
    try:
        parts = wait_for(lambda: c.partitions_for_topic(topic), 30, f"topic {topic} metadata")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning()
        end = c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout}s")
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
        return out
    finally:
        c.close()
