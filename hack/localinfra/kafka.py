"""A real single-node Apache Kafka 4.x broker (KRaft: broker and controller in one JVM).

The jars come from Maven Central through hack/kafka-jars.sh (cached); this module formats
a storage folder, starts `kafka.Kafka` on free loopback ports, waits until the broker
answers a metadata request, and stops it. Pure helpers (properties text, perf-tool output
parsing) are separate functions with their own unit tests.

CLI: `python -m localinfra.kafka` starts a broker, prints its bootstrap address and waits
for Ctrl-C.
"""
from __future__ import annotations

import argparse
import atexit
import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from localinfra.proc import java_bin, free_port, openssl, stop_process_group, rss_bytes
from localinfra.cache import cache_dir

HACK_DIR = Path(__file__).resolve().parent.parent
POM = HACK_DIR / "kafka" / "pom.xml"
LOG4J2_CONFIG = HACK_DIR / "kafka" / "log4j2.xml"
JARS_SCRIPT = HACK_DIR / "kafka-jars.sh"

BROKER_HEAP = ["-Xms128m", "-Xmx512m"]
TOOL_HEAP = ["-Xms32m", "-Xmx256m"]
NODE_ID = 1


class KafkaError(RuntimeError):
    """The broker or one of Kafka's tools failed; the message names the log to read."""


# ---------------------------------------------------------------- pure helpers

def kafka_version(pom: Path = POM) -> str:
    """The Kafka version pinned in hack/kafka/pom.xml."""
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not m:
        raise KafkaError(f"no <kafka.version> in {pom}")
    return m.group(1).strip()


def random_cluster_id() -> str:
    """A Kafka Uuid in its string form (URL-safe base64 of 16 bytes, no padding).

    Kafka rejects ids whose text starts with '-' (they read as CLI flags), so do as
    Uuid.randomUuid() does and draw again.
    """
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_LISTENER = "SASL_PLAINTEXT"
TLS_LISTENER = "SASL_SSL"


_SAFE_CREDENTIAL = re.compile(r"^[A-Za-z0-9._~+-]+$")


def _check_users(users: dict[str, str]) -> None:
    # Names and passwords go into a properties file, a JAAS line and the format tool's
    # `[name=..,password=..]` syntax: each quotes differently, so allow only safe text.
    if not users:
        raise ValueError("a SASL listener needs at least one user")
    for name, pw in users.items():
        if not _SAFE_CREDENTIAL.match(name) or not _SAFE_CREDENTIAL.match(pw):
            raise ValueError(f"SASL user {name!r}: names and passwords must match {_SAFE_CREDENTIAL.pattern}")


def sasl_properties(*, sasl_port: int, users: dict[str, str]) -> dict[str, str]:
    """Broker settings for a SASL_PLAINTEXT listener with PLAIN and SCRAM users.

    PLAIN users live in the listener's JAAS line (user_<name>="<password>"); SCRAM
    credentials are stored in the cluster metadata (`scram_arguments` at format time).
    """
    _check_users(users)
    plain_users = " ".join(f'user_{name}="{pw}"' for name, pw in users.items())
    prefix = f"listener.name.{SASL_LISTENER.lower()}"
    return {
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        f"{prefix}.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        f"{prefix}.scram-sha-256.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"{prefix}.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }


def same_users_on(listener: str, users: dict[str, str]) -> dict[str, str]:
    """Another SASL listener's JAAS settings, for the same users as SASL_PLAINTEXT's."""
    props = {}
    for key, value in sasl_properties(sasl_port=1, users=users).items():
        if key.startswith(f"listener.name.{SASL_LISTENER.lower()}."):
            props[key.replace(f"listener.name.{SASL_LISTENER.lower()}.", f"listener.name.{listener.lower()}.")] = value
    return props


def tls_listener_properties(*, keystore: str, users: dict[str, str]) -> dict[str, str]:
    """The SASL_SSL listener's settings: a PEM keystore (key + chain) and the same users."""
    props = same_users_on(TLS_LISTENER, users)
    props[f"listener.name.{TLS_LISTENER.lower()}.ssl.keystore.type"] = "PEM"
    props[f"listener.name.{TLS_LISTENER.lower()}.ssl.keystore.location"] = keystore
    return props


def make_tls_files(directory: Path) -> tuple[Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl); (ca.crt, keystore.pem).

    The keystore holds the server's unencrypted PKCS#8 key and its chain, Kafka's PEM format."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", "2", "-subj", "/CN=tspipe test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext))
    pkcs8 = directory / "server.pk8"
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-out", str(pkcs8))
    keystore = directory / "keystore.pem"
    keystore.write_text(pkcs8.read_text() + crt.read_text() + ca_crt.read_text())
    for f in (ca_key, key, csr, pkcs8, ext):
        f.unlink()
    return ca_crt, keystore


def scram_arguments(users: dict[str, str]) -> list[str]:
    """`kafka-storage format` arguments that create every user for both SCRAM mechanisms."""
    _check_users(users)
    args = []
    for mech in SASL_MECHANISMS[1:]:
        for name, pw in users.items():
            args += ["--add-scram", f"{mech}=[name={name},password={pw}]"]
    return args


POD_LISTENER = "PODS"


def server_properties(*, broker_port: int, controller_port: int, data_dir: str,
                      node_id: int = NODE_ID, sasl: bool = False, sasl_port: int | None = None,
                      sasl_users: dict[str, str] | None = None, tls_port: int | None = None,
                      tls_keystore: str | None = None, pod_host: str | None = None,
                      pod_port: int | None = None,
                      overrides: dict[str, str] | None = None) -> str:
    """server.properties text for a single-node combined broker+controller on loopback.

    With `sasl`, a SASL_PLAINTEXT listener on `sasl_port` sits beside PLAINTEXT; the
    broker's own and the controller's traffic stay on PLAINTEXT."""
    if sasl and (not sasl_port or not sasl_users):
        raise ValueError("sasl=True needs sasl_port and sasl_users")
    listeners = f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}"
    advertised = f"PLAINTEXT://127.0.0.1:{broker_port}"
    protocol_map = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if sasl:
        listeners += f",{SASL_LISTENER}://127.0.0.1:{sasl_port}"
        advertised += f",{SASL_LISTENER}://127.0.0.1:{sasl_port}"
        protocol_map += f",{SASL_LISTENER}:{SASL_LISTENER}"
    if sasl and tls_port:
        listeners += f",{TLS_LISTENER}://127.0.0.1:{tls_port}"
        advertised += f",{TLS_LISTENER}://127.0.0.1:{tls_port}"
        protocol_map += f",{TLS_LISTENER}:{TLS_LISTENER}"
    if pod_host and pod_port:
        # Pods on the real node reach the broker on the node's bridge address; this
        # listener advertises that address, so pods never see 127.0.0.1.
        listeners += f",{POD_LISTENER}://{pod_host}:{pod_port}"
        advertised += f",{POD_LISTENER}://{pod_host}:{pod_port}"
        # With sasl, pods must authenticate too (a pipeline with spec.kafka.credentials).
        protocol_map += f",{POD_LISTENER}:{SASL_LISTENER if sasl else 'PLAINTEXT'}"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocol_map,
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "log.dirs": data_dir,
        # One node: every internal topic must live with one replica, or transactions and
        # share groups wait forever for replicas that never come.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions: creating 50 of each costs seconds on first use.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.num.partitions": "5",
        # Tests join groups often; don't wait 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "num.partitions": "1",
    }
    if sasl:
        props.update(sasl_properties(sasl_port=sasl_port, users=sasl_users))
        if tls_port:
            props.update(tls_listener_properties(keystore=tls_keystore, users=sasl_users))
        if pod_host and pod_port:
            props.update(same_users_on(POD_LISTENER, sasl_users))
    props.update(overrides or {})
    return "".join(f"{k}={v}\n" for k, v in props.items())


_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_PRODUCER_SUMMARY = re.compile(
    rf"{_NUM} records sent, {_NUM} records/sec \({_NUM} MB/sec\), {_NUM} ms avg latency, "
    rf"{_NUM} ms max latency, {_NUM} ms 50th, {_NUM} ms 95th, {_NUM} ms 99th, {_NUM} ms 99\.9th")
_PRODUCER_KEYS = ("records", "records_per_sec", "mb_per_sec", "avg_latency_ms", "max_latency_ms",
                  "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "p999_latency_ms")


def parse_producer_perf(output: str) -> dict:
    """Numbers from ProducerPerformance's final summary line (the one with percentiles)."""
    matches = _PRODUCER_SUMMARY.findall(output)
    if not matches:
        raise KafkaError(f"no ProducerPerformance summary in output:\n{output[-2000:]}")
    values = [float(v) for v in matches[-1]]
    result = dict(zip(_PRODUCER_KEYS, values))
    result["records"] = int(result["records"])
    return result


def parse_consumer_perf(output: str) -> dict:
    """Numbers from ConsumerPerformance's header + values lines (comma-separated).

    Keys are the tool's column names with '.' turned into '_' (e.g. `nMsg_sec`,
    `data_consumed_in_nMsg`, `MB_sec`, `fetch_time_ms`); the two time columns stay text.
    """
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time,") and i + 1 < len(lines):
            header = [h.strip() for h in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            if len(values) != len(header):
                break
            result: dict = {}
            for key, value in zip(header, values):
                key = key.replace(".", "_")
                if key in ("start_time", "end_time"):
                    result[key] = value
                else:
                    result[key] = float(value)
            result["records"] = int(result["data_consumed_in_nMsg"])
            return result
    raise KafkaError(f"no ConsumerPerformance summary in output:\n{output[-2000:]}")


# ---------------------------------------------------------------- jars and processes

def ensure_jars(version: str | None = None) -> list[str]:
    """The broker's classpath entries, running hack/kafka-jars.sh if the cache lacks them."""
    version = version or kafka_version()
    cp_file = cache_dir() / "kafka" / version / "classpath.txt"
    if not cp_file.exists():
        subprocess.run(["bash", str(JARS_SCRIPT)], check=True)
    jars = [ln for ln in cp_file.read_text().splitlines() if ln.strip()]
    missing = [j for j in jars if not os.path.exists(j)]
    if missing:
        raise KafkaError(f"{len(missing)} jars listed in {cp_file} are missing "
                         f"(e.g. {missing[0]}); delete {cp_file.parent} and run {JARS_SCRIPT}")
    return jars


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def answers_metadata(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """True when the broker answers a metadata request and lists itself as a broker."""
    from kafka import KafkaAdminClient  # imported late: the CLI works without it until here

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tsp-ready-probe",
                                 request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
    except Exception:
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except Exception:
        return False
    finally:
        admin.close()


def topic_values(bootstrap: str, topic: str) -> list[str]:
    """Every value in `topic` now (all partitions, from the beginning to the end offsets
    read at the start), decoded; [] when the topic does not exist yet."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        values = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value.decode() for r in batch if r.value is not None)
        return values
    finally:
        consumer.close()


_LIVE: "weakref.WeakSet[KafkaBroker]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Last guard: a test run that dies must not leave a JVM behind.
    for broker in list(_LIVE):
        broker.stop(timeout=5)


class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1, its data in `workdir` (a temp dir if None).

    start() formats the storage on first use; stop()/start() and restart() keep the data
    and the ports. Use as a context manager; leaving it stops the broker and removes the
    temp dir it made.

    sasl=True adds a SASL_PLAINTEXT listener (`sasl_bootstrap`) accepting PLAIN,
    SCRAM-SHA-256 and SCRAM-SHA-512 for `sasl_users` (name -> password; random
    passwords for `alice` and `bob` unless given).
    """

    def __init__(self, workdir: str | os.PathLike | None = None, sasl: bool = False,
                 overrides: dict[str, str] | None = None, start_timeout: float = 90.0,
                 sasl_users: dict[str, str] | None = None, tls: bool = False,
                 pod_host: str | None = None):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tsp-kafka-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sasl = sasl
        self.sasl_users: dict[str, str] = dict(sasl_users or {}) if sasl else {}
        if sasl and not self.sasl_users:
            self.sasl_users = {"alice": secrets.token_urlsafe(18), "bob": secrets.token_urlsafe(18)}
        self.sasl_port: int | None = None
        # tls=True (with sasl) adds a SASL_SSL listener signed by a throwaway CA (`ca_file`).
        self.tls = bool(tls and sasl)
        self.tls_port: int | None = None
        self.ca_file: Path | None = None
        # pod_host (the real node's bridge address) adds a listener for pods: PLAINTEXT, or
        # SASL_PLAINTEXT for the same users with sasl=True.
        self.pod_host = pod_host
        self.pod_port: int | None = None
        self.overrides = dict(overrides or {})
        self.start_timeout = start_timeout
        self.version = kafka_version()
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "server.properties"
        self.log_path = self.workdir / "broker.log"
        self.port: int | None = None
        self.controller_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._lock = threading.Lock()
        self._classpath: str | None = None

    # -- addresses -------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise KafkaError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT listener's address (sasl=True only)."""
        if not self.sasl:
            raise KafkaError("broker has no SASL listener (start it with sasl=True)")
        if self.sasl_port is None:
            raise KafkaError("broker not started")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def tls_bootstrap(self) -> str:
        """The SASL_SSL listener's address (sasl=True, tls=True); trust `ca_file`."""
        if not self.tls:
            raise KafkaError("broker has no SASL_SSL listener (start it with sasl=True, tls=True)")
        if self.tls_port is None:
            raise KafkaError("broker not started")
        return f"127.0.0.1:{self.tls_port}"

    @property
    def pod_bootstrap(self) -> str:
        """The listener on the real node's bridge address (pod_host=...): what pods dial."""
        if not self.pod_host:
            raise KafkaError("broker has no pod listener (start it with pod_host=...)")
        if self.pod_port is None:
            raise KafkaError("broker not started")
        return f"{self.pod_host}:{self.pod_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        if not self.running():
            raise KafkaError("broker not running")
        return rss_bytes(self.proc.pid)

    # -- lifecycle -------------------------------------------------------------
    def _java(self, heap: list[str]) -> list[str]:
        if self._classpath is None:
            self._classpath = ":".join(ensure_jars(self.version))
        return [java_bin(), *heap, "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", "-cp", self._classpath]

    def _format(self) -> None:
        ports: list[int] = []
        while len(ports) < 2 + self.sasl + self.tls + bool(self.pod_host):
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.port, self.controller_port = ports[0], ports[1]
        self.sasl_port = ports[2] if self.sasl else None
        keystore = None
        if self.pod_host:
            self.pod_port = ports[-1]
        if self.tls:
            self.tls_port = ports[3]
            self.ca_file, keystore = make_tls_files(self.workdir / "tls")
        self.config_path.write_text(server_properties(
            broker_port=self.port, controller_port=self.controller_port,
            data_dir=str(self.data_dir), sasl=self.sasl, sasl_port=self.sasl_port,
            sasl_users=self.sasl_users, tls_port=self.tls_port,
            tls_keystore=str(keystore) if keystore else None, pod_host=self.pod_host,
            pod_port=self.pod_port, overrides=self.overrides))
        # SCRAM credentials are cluster metadata: written into the first log at format time.
        scram = scram_arguments(self.sasl_users) if self.sasl else []
        out = subprocess.run(
            [*self._java(TOOL_HEAP), "kafka.tools.StorageTool", "format", "--standalone",
             "-t", random_cluster_id(), "-c", str(self.config_path), *scram],
            capture_output=True, text=True)
        with open(self.log_path, "a") as log:
            log.write(f"### StorageTool format (exit {out.returncode})\n{out.stdout}{out.stderr}")
        if out.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed (exit {out.returncode}); "
                             f"see {self.log_path}")

    def start(self) -> "KafkaBroker":
        with self._lock:
            if self.running():
                return self
            t0 = time.monotonic()
            if not (self.data_dir / "meta.properties").exists():
                self._format()
            with open(self.log_path, "ab") as log:
                log.write(f"### starting kafka.Kafka {self.version} at {time.ctime()}\n".encode())
                log.flush()
                # Own process group: stop() signals the JVM and anything it forks, and a
                # Ctrl-C in the terminal doesn't reach it before we stop it in order.
                self.proc = subprocess.Popen(
                    [*self._java(BROKER_HEAP), "kafka.Kafka", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.workdir, start_new_session=True)
            _LIVE.add(self)
            try:
                self._wait_ready(t0)
            except BaseException:
                stop_process_group(self.proc, timeout=5)
                raise
            self.start_seconds = time.monotonic() - t0
            return self

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KafkaError(f"Kafka broker exited with code {self.proc.returncode} while "
                                 f"starting; see {self.log_path}")
            if _port_open(self.port) and (self.sasl_port is None or _port_open(self.sasl_port)) \
                    and answers_metadata(self.bootstrap):
                return
            time.sleep(0.25)
        raise KafkaError(f"Kafka broker did not answer a metadata request on {self.bootstrap} "
                         f"within {self.start_timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after `timeout` seconds."""
        with self._lock:
            if self.proc is not None:
                stop_process_group(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, with no controlled shutdown."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()

    def restart(self, timeout: float = 15) -> "KafkaBroker":
        """Stop, then start the same broker on the same data and the same ports."""
        self.stop(timeout)
        return self.start()

    def close(self) -> None:
        self.stop()
        _LIVE.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- Kafka's own tools -----------------------------------------------------
    def run_tool(self, main_class: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a Kafka CLI class from the broker's classpath; raise with its output on failure."""
        proc = subprocess.run([*self._java(TOOL_HEAP), main_class, *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise KafkaError(f"{main_class} exited {proc.returncode}:\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def run_perf_producer(self, topic: str, num_records: int, record_size: int,
                          throughput: int = -1, props: dict[str, str] | None = None,
                          timeout: float = 300) -> dict:
        """ProducerPerformance against this broker; its summary as numbers."""
        producer_props = {"bootstrap.servers": self.bootstrap, "acks": "all", **(props or {})}
        out = self.run_tool(
            "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
            "--num-records", str(num_records), "--record-size", str(record_size),
            "--throughput", str(throughput),
            "--producer-props", *[f"{k}={v}" for k, v in producer_props.items()],
            timeout=timeout)
        return parse_producer_perf(out.stdout)

    def run_perf_consumer(self, topic: str, messages: int, group: str | None = None,
                          timeout_ms: int = 30000, timeout: float = 300) -> dict:
        """ConsumerPerformance reading `messages` records from `topic`; its summary as numbers."""
        args = ["--bootstrap-server", self.bootstrap, "--topic", topic,
                "--num-records", str(messages), "--timeout", str(timeout_ms)]
        if group:
            args += ["--group", group]
        out = self.run_tool("org.apache.kafka.tools.ConsumerPerformance", *args, timeout=timeout)
        return parse_consumer_perf(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localinfra.kafka",
                                     description="Start a local single-node Kafka broker until Ctrl-C.")
    parser.add_argument("--workdir", help="keep data and broker.log here (default: a temp dir, removed on exit)")
    parser.add_argument("--sasl", action="store_true",
                        help="also open a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512)")
    args = parser.parse_args(argv)
    broker = KafkaBroker(workdir=args.workdir, sasl=args.sasl)
    print(f"starting Kafka {broker.version} in {broker.workdir} ...", flush=True)
    with broker:
        print(f"Kafka ready in {broker.start_seconds:.1f}s; bootstrap: {broker.bootstrap}", flush=True)
        if broker.sasl:
            # A local throwaway broker: printing its generated test passwords is the point.
            print(f"SASL_PLAINTEXT: {broker.sasl_bootstrap}; users: "
                  + ", ".join(f"{u}={p}" for u, p in broker.sasl_users.items()), flush=True)
        print(f"broker log: {broker.log_path}; Ctrl-C to stop", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1):
            if not broker.running():
                print(f"broker exited unexpectedly; see {broker.log_path}", file=sys.stderr)
                return 1
        print("stopping Kafka ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
