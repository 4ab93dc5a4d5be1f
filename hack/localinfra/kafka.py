"""A real single-node Apache Kafka 4.x broker (KRaft: broker and controller in one JVM).

The jars come from Maven Central through hack/kafka-jars.sh (cached); this module formats
a storage folder, starts `kafka.Kafka` on free loopback ports, waits until the broker
answers a metadata request, and stops it. Pure helpers (properties text, perf-tool output
parsing) are separate functions with their own unit tests.

KafkaCluster runs three such nodes as one cluster (replication 3, min ISR 2), for the tests
that need a broker to fail or roll under traffic.

CLI: `python -m localinfra.kafka` starts a broker (`--cluster`: three), prints its bootstrap
address and waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import concurrent.futures
import contextlib
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

from localinfra.cache import cache_dir
from localinfra.proc import free_port, java_bin, openssl, rss_bytes, stop_process_group, wait_for

HACK_DIR = Path(__file__).resolve().parent.parent
POM = HACK_DIR / "kafka" / "pom.xml"
LOG4J2_CONFIG = HACK_DIR / "kafka" / "log4j2.xml"
JARS_SCRIPT = HACK_DIR / "kafka-jars.sh"

BROKER_HEAP = ["-Xms128m", "-Xmx512m"]
# A cluster's node: three JVMs share a small machine (2 cores) with the rest of a test run,
# and the tests' few thousand short records a second need little heap.
CLUSTER_HEAP = ["-Xms64m", "-Xmx256m"]
TOOL_HEAP = ["-Xms32m", "-Xmx256m"]
NODE_ID = 1
# A cluster probe's admin requests: a live node on loopback answers in milliseconds, and a
# probe that waits long for a dead one slows every wait built on it.
ADMIN_TIMEOUT_MS = 5000
# A probe may pick a crashed node that the metadata lists until the controller fences it
# (broker.session.timeout.ms, 9 s by default): retrying for longer than that always ends
# on a live node (KafkaCluster._ask).
ADMIN_ATTEMPTS = 24
ADMIN_RETRY_S = 0.5


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
        f"{prefix}.plain.sasl.jaas.config": f"org.apache.kafka.common.security.plain.PlainLoginModule required "
        f"{plain_users};",
        f"{prefix}.scram-sha-256.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"{prefix}.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
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

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "2",
        "-subj",
        "/CN=tspipe test CA",
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
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


def server_properties(
    *,
    broker_port: int,
    controller_port: int,
    data_dir: str,
    node_id: int = NODE_ID,
    sasl: bool = False,
    sasl_port: int | None = None,
    sasl_users: dict[str, str] | None = None,
    tls_port: int | None = None,
    tls_keystore: str | None = None,
    pod_host: str | None = None,
    pod_port: int | None = None,
    quorum: str | None = None,
    replication: int = 1,
    min_isr: int = 1,
    overrides: dict[str, str] | None = None,
) -> str:
    """server.properties text for a combined broker+controller on loopback: a single
    node by default, or one node of a cluster given its controller `quorum` (see
    quorum_servers) and the cluster's `replication` and `min_isr`.

    With `sasl`, a SASL_PLAINTEXT listener on `sasl_port` sits beside PLAINTEXT; the
    broker's own and the controller's traffic stay on PLAINTEXT."""
    if min_isr > replication:
        raise ValueError(f"min_isr {min_isr} > replication {replication}: no write with acks=all could succeed")
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
        "controller.quorum.bootstrap.servers": quorum or f"127.0.0.1:{controller_port}",
        "log.dirs": data_dir,
        # Every internal topic at the cluster's replication: on one node it must live with
        # one replica, or transactions and share groups wait forever for replicas that
        # never come; on a cluster it must survive a broker, as user topics do.
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
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


# A production-shaped cluster (issue 23): three combined broker+controller nodes, every
# partition on all three, and a write with acks=all needs two of them, so one broker may be
# down (crashed or rolling) without a write lost or refused, and the controller quorum
# (a majority of three) survives it too.
CLUSTER_SIZE = 3
CLUSTER_REPLICATION = 3
CLUSTER_MIN_ISR = 2


def node_id_of(index: int) -> int:
    """Node index (0-based, as KafkaCluster's helpers take it) -> Kafka's node.id; the
    first is the single broker's NODE_ID."""
    return NODE_ID + index


def quorum_servers(controller_ports: list[int]) -> str:
    """`controller.quorum.bootstrap.servers` for controllers on these loopback ports."""
    if not controller_ports:
        raise ValueError("a controller quorum needs at least one controller")
    return ",".join(f"127.0.0.1:{port}" for port in controller_ports)


def initial_controllers(controller_ports: list[int], directory_ids: list[str]) -> str:
    """StorageTool's `--initial-controllers` for the same quorum: `id@host:port:directory-id`
    per controller (node ids by node_id_of). Each node is formatted with the whole list; its
    own entry's directory id becomes its metadata directory's id, as the voter set says."""
    if len(controller_ports) != len(directory_ids):
        raise ValueError(f"{len(controller_ports)} controller ports but {len(directory_ids)} directory ids")
    if not controller_ports:
        raise ValueError("a controller quorum needs at least one controller")
    return ",".join(
        f"{node_id_of(i)}@127.0.0.1:{port}:{dir_id}"
        for i, (port, dir_id) in enumerate(zip(controller_ports, directory_ids, strict=True))
    )


def cluster_properties(
    index: int,
    *,
    broker_ports: list[int],
    controller_ports: list[int],
    data_dir: str,
    pod_host: str | None = None,
    pod_ports: list[int] | None = None,
    overrides: dict[str, str] | None = None,
) -> str:
    """server.properties of node `index` of a KafkaCluster: its own listeners (and pod
    listener), the whole controller quorum, and the cluster's replication defaults."""
    if not 0 <= index < len(broker_ports) or len(broker_ports) != len(controller_ports):
        raise ValueError(f"node {index} of {len(broker_ports)} broker and {len(controller_ports)} controller ports")
    if pod_host and (not pod_ports or len(pod_ports) != len(broker_ports)):
        raise ValueError("a pod listener per node needs a pod port per node")
    return server_properties(
        broker_port=broker_ports[index],
        controller_port=controller_ports[index],
        data_dir=data_dir,
        node_id=node_id_of(index),
        quorum=quorum_servers(controller_ports),
        replication=CLUSTER_REPLICATION,
        min_isr=CLUSTER_MIN_ISR,
        pod_host=pod_host,
        pod_port=pod_ports[index] if pod_host and pod_ports else None,
        overrides=overrides,
    )


_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_PRODUCER_SUMMARY = re.compile(
    rf"{_NUM} records sent, {_NUM} records/sec \({_NUM} MB/sec\), {_NUM} ms avg latency, "
    rf"{_NUM} ms max latency, {_NUM} ms 50th, {_NUM} ms 95th, {_NUM} ms 99th, {_NUM} ms 99\.9th"
)
_PRODUCER_KEYS = (
    "records",
    "records_per_sec",
    "mb_per_sec",
    "avg_latency_ms",
    "max_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "p999_latency_ms",
)


def parse_producer_perf(output: str) -> dict:
    """Numbers from ProducerPerformance's final summary line (the one with percentiles)."""
    matches = _PRODUCER_SUMMARY.findall(output)
    if not matches:
        raise KafkaError(f"no ProducerPerformance summary in output:\n{output[-2000:]}")
    values = [float(v) for v in matches[-1]]
    result = dict(zip(_PRODUCER_KEYS, values, strict=False))
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
            for column, value in zip(header, values, strict=True):
                key = column.replace(".", "_")
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
        raise KafkaError(
            f"{len(missing)} jars listed in {cp_file} are missing "
            f"(e.g. {missing[0]}); delete {cp_file.parent} and run {JARS_SCRIPT}"
        )
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
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="tsp-ready-probe",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except Exception:  # noqa: BLE001 - a probe: any failure to connect means not ready yet
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except Exception:  # noqa: BLE001 - a probe: any failure means not ready yet
        return False
    finally:
        admin.close()


def consumer_groups(bootstrap: str) -> set[str]:
    """The consumer groups the broker knows now (kafka-python 3's list_groups)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {g["group_id"] for g in admin.list_groups()}
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


_LIVE: weakref.WeakSet[KafkaBroker] = weakref.WeakSet()
_LIVE_CLUSTERS: weakref.WeakSet[KafkaCluster] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Last guard: a test run that dies must not leave a JVM behind (nor a cluster's temp dir).
    for cluster in list(_LIVE_CLUSTERS):
        cluster.close(timeout=5)
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

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        sasl: bool = False,
        overrides: dict[str, str] | None = None,
        start_timeout: float = 90.0,
        sasl_users: dict[str, str] | None = None,
        tls: bool = False,
        pod_host: str | None = None,
    ):
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
        self.heap = BROKER_HEAP
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
        return [
            java_bin(),
            *heap,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp",
            self._classpath,
        ]

    def _take_ports(self, taken: set[int]) -> None:
        """Free loopback ports for each of this broker's listeners, none of them in `taken`
        (which gains them: a cluster's nodes take theirs from one set)."""
        ports: list[int] = []
        while len(ports) < 2 + self.sasl + self.tls + bool(self.pod_host):
            port = free_port()
            if port not in taken:
                taken.add(port)
                ports.append(port)
        self.port, self.controller_port = ports[0], ports[1]
        self.sasl_port = ports[2] if self.sasl else None
        if self.pod_host:
            self.pod_port = ports[-1]
        if self.tls:
            self.tls_port = ports[3]

    def _properties(self, keystore: Path | None) -> str:
        return server_properties(
            broker_port=self.port,
            controller_port=self.controller_port,
            data_dir=str(self.data_dir),
            sasl=self.sasl,
            sasl_port=self.sasl_port,
            sasl_users=self.sasl_users,
            tls_port=self.tls_port,
            tls_keystore=str(keystore) if keystore else None,
            pod_host=self.pod_host,
            pod_port=self.pod_port,
            overrides=self.overrides,
        )

    def _format_arguments(self) -> list[str]:
        """StorageTool's quorum and cluster id: one node is a quorum of its own."""
        return ["--standalone", "-t", random_cluster_id()]

    def _format(self) -> None:
        if self.port is None:
            self._take_ports(set())
        keystore = None
        if self.tls:
            self.ca_file, keystore = make_tls_files(self.workdir / "tls")
        self.config_path.write_text(self._properties(keystore))
        # SCRAM credentials are cluster metadata: written into the first log at format time.
        scram = scram_arguments(self.sasl_users) if self.sasl else []
        out = subprocess.run(
            [
                *self._java(TOOL_HEAP),
                "kafka.tools.StorageTool",
                "format",
                *self._format_arguments(),
                "-c",
                str(self.config_path),
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        with open(self.log_path, "a") as log:
            log.write(f"### StorageTool format (exit {out.returncode})\n{out.stdout}{out.stderr}")
        if out.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed (exit {out.returncode}); see {self.log_path}")

    def start(self) -> KafkaBroker:
        with self._lock:
            if self.running():
                return self
            t0 = time.monotonic()
            self._launch()
            try:
                self._wait_ready(t0)
            except BaseException:
                stop_process_group(self.proc, timeout=5)
                raise
            self.start_seconds = time.monotonic() - t0
            return self

    def _launch(self) -> None:
        """Format on first use and start the JVM; not waiting for it (a cluster's nodes
        answer only once a majority of the quorum runs)."""
        if not (self.data_dir / "meta.properties").exists():
            self._format()
        with open(self.log_path, "ab") as log:
            log.write(f"### starting kafka.Kafka {self.version} at {time.ctime()}\n".encode())
            log.flush()
            # Own process group: stop() signals the JVM and anything it forks, and a
            # Ctrl-C in the terminal doesn't reach it before we stop it in order.
            self.proc = subprocess.Popen(
                [*self._java(self.heap), "kafka.Kafka", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        _LIVE.add(self)

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KafkaError(
                    f"Kafka broker exited with code {self.proc.returncode} while starting; see {self.log_path}"
                )
            if (
                _port_open(self.port)
                and (self.sasl_port is None or _port_open(self.sasl_port))
                and answers_metadata(self.bootstrap)
            ):
                return
            time.sleep(0.25)
        raise KafkaError(
            f"Kafka broker did not answer a metadata request on {self.bootstrap} "
            f"within {self.start_timeout:.0f}s; see {self.log_path}"
        )

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after `timeout` seconds."""
        with self._lock:
            if self.proc is not None:
                stop_process_group(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, with no controlled shutdown."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def restart(self, timeout: float = 15) -> KafkaBroker:
        """Stop, then start the same broker on the same data and the same ports."""
        self.stop(timeout)
        return self.start()

    def close(self) -> None:
        self.stop()
        _LIVE.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- Kafka's own tools -----------------------------------------------------
    def run_tool(self, main_class: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a Kafka CLI class from the broker's classpath; raise with its output on failure."""
        proc = subprocess.run(
            [*self._java(TOOL_HEAP), main_class, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise KafkaError(f"{main_class} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def run_perf_producer(
        self,
        topic: str,
        num_records: int,
        record_size: int,
        throughput: int = -1,
        props: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> dict:
        """ProducerPerformance against this broker; its summary as numbers."""
        producer_props = {"bootstrap.servers": self.bootstrap, "acks": "all", **(props or {})}
        out = self.run_tool(
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(num_records),
            "--record-size",
            str(record_size),
            "--throughput",
            str(throughput),
            "--producer-props",
            *[f"{k}={v}" for k, v in producer_props.items()],
            timeout=timeout,
        )
        return parse_producer_perf(out.stdout)

    def run_perf_consumer(
        self, topic: str, messages: int, group: str | None = None, timeout_ms: int = 30000, timeout: float = 300
    ) -> dict:
        """ConsumerPerformance reading `messages` records from `topic`; its summary as numbers."""
        args = [
            "--bootstrap-server",
            self.bootstrap,
            "--topic",
            topic,
            "--num-records",
            str(messages),
            "--timeout",
            str(timeout_ms),
        ]
        if group:
            args += ["--group", group]
        out = self.run_tool("org.apache.kafka.tools.ConsumerPerformance", *args, timeout=timeout)
        return parse_consumer_perf(out.stdout)


class _ClusterNode(KafkaBroker):
    """One node of a KafkaCluster: a KafkaBroker whose listeners, quorum and storage
    format are the cluster's (its ports are taken with the others' before any is formatted)."""

    def __init__(self, cluster: KafkaCluster, index: int):
        super().__init__(
            workdir=cluster.workdir / f"node-{index}",
            overrides=cluster.overrides,
            start_timeout=cluster.start_timeout,
            pod_host=cluster.pod_host,
        )
        self.cluster = cluster
        self.index = index
        self.heap = CLUSTER_HEAP
        # Its metadata directory's id, named in every node's --initial-controllers (any Kafka Uuid).
        self.directory_id = random_cluster_id()

    def _properties(self, keystore: Path | None) -> str:
        nodes = self.cluster.nodes
        return cluster_properties(
            self.index,
            broker_ports=[n.port for n in nodes],
            controller_ports=[n.controller_port for n in nodes],
            data_dir=str(self.data_dir),
            pod_host=self.pod_host,
            pod_ports=[n.pod_port for n in nodes] if self.pod_host else None,
            overrides=self.overrides,
        )

    def _format_arguments(self) -> list[str]:
        # One cluster id, and the same initial voter set on every node: the quorum's
        # membership is in the metadata log from the start (no --standalone node that the
        # others would have to join with add-controller).
        nodes = self.cluster.nodes
        return [
            "-t",
            self.cluster.cluster_id,
            "--initial-controllers",
            initial_controllers([n.controller_port for n in nodes], [n.directory_id for n in nodes]),
        ]


class KafkaCluster:
    """Three KRaft nodes (broker and controller in each JVM) on 127.0.0.1: one cluster id,
    one controller quorum of the three, replication 3 and min ISR 2 for every topic by
    default (CLUSTER_REPLICATION, CLUSTER_MIN_ISR). Data and logs under `workdir` (a temp
    dir if None; node i's in node-i/, its log node-i/broker.log).

    The helpers take a node's index (0..2; Kafka's node.id is node_id_of(index)): kill(i)
    crashes one, stop(i) shuts it down in a controlled way, start(i) brings it back on the
    same ports and data; leader() and under_replicated() read the cluster's metadata;
    rolling_restart() restarts each in turn. pod_host adds a pod listener on every node
    (`pod_bootstrap`), as KafkaBroker's. Use as a context manager; leaving it stops every
    node and removes the temp dir it made.
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        pod_host: str | None = None,
        overrides: dict[str, str] | None = None,
        start_timeout: float = 120.0,
    ):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tsp-kafka-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pod_host = pod_host
        self.overrides = dict(overrides or {})
        self.start_timeout = start_timeout
        self.cluster_id = random_cluster_id()
        self.nodes = [_ClusterNode(self, i) for i in range(CLUSTER_SIZE)]
        self.start_seconds: float | None = None

    # -- addresses -------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """Every node's PLAINTEXT listener: what clients are given."""
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def pod_bootstrap(self) -> str:
        """Every node's pod listener (pod_host=...): what pods dial."""
        return ",".join(n.pod_bootstrap for n in self.nodes)

    def rss(self) -> list[int]:
        """Resident memory of each running node's JVM, in bytes (0 for a node that is down)."""
        return [n.rss() if n.running() else 0 for n in self.nodes]

    # -- lifecycle -------------------------------------------------------------
    def start(self, index: int | None = None) -> KafkaCluster:
        """Start node `index`, or every node that is not running (together: a node answers
        only once a majority of the quorum runs); return when each started node answers a
        metadata request and the cluster lists it as a broker."""
        t0 = time.monotonic()
        _LIVE_CLUSTERS.add(self)
        if self.nodes[0].port is None:
            taken: set[int] = set()
            for node in self.nodes:
                node._take_ports(taken)
        chosen = [self.nodes[index]] if index is not None else self.nodes
        starting = [n for n in chosen if not n.running()]
        try:
            # Format together, then launch together: a node formatted and launched on its
            # own starts seconds ahead of the others and spends them in failed elections.
            unformatted = [n for n in starting if not (n.data_dir / "meta.properties").exists()]
            with concurrent.futures.ThreadPoolExecutor(max_workers=CLUSTER_SIZE) as pool:
                for formatted in [pool.submit(n._format) for n in unformatted]:
                    formatted.result()
            for node in starting:
                with node._lock:
                    node._launch()
            for node in starting:
                node._wait_ready(t0)
                node.start_seconds = time.monotonic() - t0
            want = {node_id_of(n.index) for n in self.nodes if n.running()}
            wait_for(
                lambda: want <= self.listed_brokers(),
                self.start_timeout,
                f"brokers {sorted(want)} listed",
                retry_on=(Exception,),
            )
        except BaseException:
            for node in starting:
                node.stop(timeout=5)
            raise
        if starting == self.nodes:  # the whole cluster started, not a node rejoining it
            self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, index: int, timeout: float = 30) -> None:
        """Controlled shutdown of node `index` (SIGTERM; SIGKILL after `timeout` seconds)."""
        self.nodes[index].stop(timeout)

    def kill(self, index: int) -> None:
        """SIGKILL node `index`: a crash, with no controlled shutdown."""
        self.nodes[index].kill()

    def rolling_restart(self, wait_timeout: float = 120, stop_timeout: float = 30) -> list[float]:
        """Restart the nodes one at a time, as an operator rolls a cluster: before each
        stop and after each start, wait (up to `wait_timeout` s) until no partition is
        under-replicated. Returns each node's seconds from its stop to the cluster in sync."""
        took = []
        for node in self.nodes:
            self.wait_in_sync(wait_timeout)
            t0 = time.monotonic()
            self.stop(node.index, stop_timeout)
            self.start(node.index)
            self.wait_in_sync(wait_timeout)
            took.append(time.monotonic() - t0)
        return took

    def close(self, timeout: float = 30) -> None:
        """Stop every node at once (one by one, the last would wait for a quorum that is
        gone), then remove the temp dir this cluster made."""
        stoppers = [threading.Thread(target=n.stop, args=(timeout,), daemon=True) for n in self.nodes]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for node in self.nodes:
            _LIVE.discard(node)
        _LIVE_CLUSTERS.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        try:
            return self.start()
        except BaseException:
            self.close(timeout=5)  # __exit__ is not called: remove what start() left
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the cluster says -------------------------------------------------
    def _ask(self, question):
        """question(admin client) against the running nodes. Until the controller fences a
        crashed node (seconds), the metadata still lists it and the client may pick it and
        fail to connect: ask again, a few times, before giving up."""
        from kafka import KafkaAdminClient
        from kafka.errors import RetriableError

        for attempt in range(ADMIN_ATTEMPTS):
            running = [n.bootstrap for n in self.nodes if n.running()]
            if not running:
                raise KafkaError("no node of the cluster is running")
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=",".join(running),
                    client_id="tsp-cluster-probe",
                    request_timeout_ms=ADMIN_TIMEOUT_MS,
                    bootstrap_timeout_ms=ADMIN_TIMEOUT_MS,
                )
                try:
                    return question(admin)
                finally:
                    admin.close()
            except RetriableError:  # a refused connection, a timeout, stale metadata
                if attempt == ADMIN_ATTEMPTS - 1:
                    raise
                time.sleep(ADMIN_RETRY_S)
        raise AssertionError("unreachable")

    def listed_brokers(self) -> set[int]:
        """The node ids the cluster's metadata lists as (unfenced) brokers now."""
        return self._ask(lambda admin: {b["broker_id"] for b in admin.describe_cluster()["brokers"]})

    def leader(self, topic: str, partition: int) -> int | None:
        """Index of the node leading `topic`-`partition` now; None while it has no leader."""
        described = self._ask(lambda admin: admin.describe_topics([topic]))
        for t in described:
            for p in t["partitions"]:
                if p["partition_index"] == partition:
                    return self._index(p["leader_id"])
        raise KafkaError(f"the cluster has no partition {topic}-{partition}")

    def under_replicated(self) -> list[tuple[str, int]]:
        """(topic, partition) of every partition, internal ones too, whose in-sync
        replicas are fewer than its replicas."""
        described = self._ask(lambda admin: admin.describe_topics())
        return sorted(
            (t["name"], p["partition_index"])
            for t in described
            for p in t["partitions"]
            if len(p["isr_nodes"]) < len(p["replica_nodes"])
        )

    def wait_in_sync(self, timeout: float = 120) -> None:
        """Wait until no partition is under-replicated; KafkaError naming some if it stays so."""
        last: list[tuple[str, int]] = []

        def in_sync() -> bool:
            last[:] = self.under_replicated()
            return not last

        try:
            wait_for(in_sync, timeout, "no under-replicated partition", retry_on=(Exception,))
        except AssertionError:
            raise KafkaError(
                f"partitions still under-replicated after {timeout:.0f}s: {last[:10]} "
                f"(nodes' logs: {self.workdir}/node-*/broker.log)"
            ) from None

    def _index(self, node_id: int) -> int | None:
        for node in self.nodes:
            if node_id_of(node.index) == node_id:
                return node.index
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localinfra.kafka", description="Start a local single-node Kafka broker until Ctrl-C."
    )
    parser.add_argument("--workdir", help="keep data and broker.log here (default: a temp dir, removed on exit)")
    parser.add_argument(
        "--sasl", action="store_true", help="also open a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=f"{CLUSTER_SIZE} brokers (replication {CLUSTER_REPLICATION}, min ISR {CLUSTER_MIN_ISR}) instead of one",
    )
    args = parser.parse_args(argv)
    if args.cluster:
        if args.sasl:
            parser.error("--cluster has no SASL listener")
        return _serve_cluster(args.workdir)
    broker = KafkaBroker(workdir=args.workdir, sasl=args.sasl)
    print(f"starting Kafka {broker.version} in {broker.workdir} ...", flush=True)
    with broker:
        print(f"Kafka ready in {broker.start_seconds:.1f}s; bootstrap: {broker.bootstrap}", flush=True)
        if broker.sasl:
            # A local throwaway broker: printing its generated test passwords is the point.
            print(
                f"SASL_PLAINTEXT: {broker.sasl_bootstrap}; users: "
                + ", ".join(f"{u}={p}" for u, p in broker.sasl_users.items()),
                flush=True,
            )
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


def _serve_cluster(workdir: str | None) -> int:
    cluster = KafkaCluster(workdir=workdir)
    print(
        f"starting a {CLUSTER_SIZE}-broker Kafka {cluster.nodes[0].version} cluster in {cluster.workdir} ...",
        flush=True,
    )
    with cluster:
        print(f"cluster ready in {cluster.start_seconds:.1f}s; bootstrap: {cluster.bootstrap}", flush=True)
        print(f"broker logs: {cluster.workdir}/node-*/broker.log; Ctrl-C to stop", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1):
            down = [n.index for n in cluster.nodes if not n.running()]
            if down:
                print(f"broker(s) {down} exited unexpectedly; see their broker.log", file=sys.stderr)
                return 1
        print("stopping Kafka ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
