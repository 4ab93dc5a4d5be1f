"""A real Spring Cloud Skipper + Data Flow pair on loopback, for the SCDF fallback tests.

The jars come from Maven Central through hack/scdf-jars.sh (cached; see hack/scdf/pom.xml
for why Data Flow 2.11.5 is repackaged from its starter and Skipper is 2.8.0, and
hack/scdf/skipper-k8s/pom.xml for the Kubernetes deployer put into Skipper's jar). This module
starts Skipper and Data Flow (pointed at Skipper) together, each with `java -jar` on a free 127.0.0.1
port, embedded H2 files and logs in the workdir, waits until both answer, and stops both.

Streams only: tasks and schedules are switched off, no cloud platform, no config server.
Two modes for Skipper's platform account `default` (the one Data Flow deploys to):
- local (default): Skipper's local deployer cannot launch `docker:` apps here (no Docker
  engine), so deployed apps end up `failed`; SCDF still records the definition, the
  release and its manifest. For the tests that need no node.
- Kubernetes (`KubernetesPlatform`): Skipper's Kubernetes deployer (2.9.5, fabric8 5.12.4,
  swapped into Skipper 2.8.0's jar) configured from an admin kubeconfig, deploying into one namespace with a pull policy
  that takes the images already imported into the node's containerd.

CLI: `python -m localinfra.scdf` starts both, prints the Data Flow URL, waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path

from localinfra.cache import cache_dir
from localinfra.proc import free_port, java_bin, owned_tmpdir, rss_bytes, stop_process_group

HACK_DIR = Path(__file__).resolve().parent.parent
POM = HACK_DIR / "scdf" / "pom.xml"
JARS_SCRIPT = HACK_DIR / "scdf-jars.sh"

# Small heaps: the machine has 2 cores and other JVMs. Serial GC and C1 only start faster
# and use less memory; neither server does heavy work in tests.
JVM_FLAGS = ["-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:MaxMetaspaceSize=192m"]
SKIPPER_HEAP = ["-Xms64m", "-Xmx192m"]
DATAFLOW_HEAP = ["-Xms64m", "-Xmx256m"]
START_TIMEOUT = 240.0
IGNORE_PROFILES_ENV = "SPRING_CLOUD_SKIPPER_SERVER_PROFILEAPPLICATIONLISTENER_IGNORE"


class ScdfError(RuntimeError):
    """A server failed to start or stop; the message names the log to read."""


@dataclass(frozen=True)
class KubernetesPlatform:
    """Skipper's Kubernetes account: where its deployer creates the apps' Deployments."""

    kubeconfig: str  # the fabric8 client reads it (KUBECONFIG), as kubectl would
    namespace: str
    # No registry is reachable: `Never` runs what the node imported and fails at once
    # (ErrImageNeverPull) for an image it lacks, where IfNotPresent would try to pull.
    image_pull_policy: str = "Never"
    account: str = "default"  # Data Flow deploys to the account named `default`
    # NAME=value pairs every app's container gets: how SCDF's own Kubernetes install gives
    # the apps the broker (SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS, which the recipe's
    # router reads and its properties leave out).
    environment_variables: tuple[str, ...] = ()


# ---------------------------------------------------------------- pure helpers


def pom_property(name: str, pom: Path = POM) -> str:
    m = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom.read_text())
    if not m:
        raise ScdfError(f"no <{name}> in {pom}")
    return m.group(1).strip()


def jar_key() -> str:
    """The key of hack/scdf-jars.sh: every file under hack/scdf (sorted paths, not under a
    target/ folder) and the script itself, by content."""
    names = sorted(
        p.relative_to(HACK_DIR).as_posix()
        for p in (HACK_DIR / "scdf").rglob("*")
        if p.is_file() and "target" not in p.relative_to(HACK_DIR).parts
    )
    digest = hashlib.sha256()
    for name in [*names, JARS_SCRIPT.name]:
        digest.update((HACK_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def jar_dir() -> Path:
    """Where hack/scdf-jars.sh puts the jars of these sources (one folder per key)."""
    return cache_dir() / "scdf" / f"{pom_property('scdf.version')}-{jar_key()}"


def common_args(*, port: int, db_path: Path) -> list[str]:
    """Spring Boot arguments both servers share."""
    return [
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        # A file database in the workdir: a restart keeps state, cleanup is rm -rf.
        f"--spring.datasource.url=jdbc:h2:file:{db_path};DB_CLOSE_ON_EXIT=FALSE",
        "--spring.datasource.username=sa",
        "--spring.datasource.password=",
        "--spring.datasource.driver-class-name=org.h2.Driver",
        # No Spring Cloud Config server and no Kubernetes/Cloud Foundry discovery here.
        "--spring.cloud.config.enabled=false",
        "--spring.cloud.kubernetes.enabled=false",
        "--spring.cloud.kubernetes.config.enabled=false",
        "--spring.cloud.kubernetes.secrets.enabled=false",
        "--spring.main.banner-mode=off",
        "--logging.file.name=",  # logs go to stdout, which the harness writes to a file
    ]


def skipper_args(*, port: int, workdir: Path, kubernetes: KubernetesPlatform | None = None) -> list[str]:
    args = common_args(port=port, db_path=workdir / "skipper-db")
    if kubernetes is None:
        return args + [
            # Only the local platform (the default account); nothing else is configured.
            "--spring.cloud.skipper.server.enable-local-platform=true",
            # A stream update waits for the new apps to be healthy before deleting the old
            # ones (default 5 min). Apps cannot start here (no Docker engine), so decide fast.
            "--spring.cloud.skipper.server.strategies.healthcheck.timeoutInMillis=10000",
            "--spring.cloud.skipper.server.strategies.healthcheck.sleepInMillis=1000",
        ]
    account = f"--spring.cloud.skipper.server.platform.kubernetes.accounts.{kubernetes.account}"
    if kubernetes.environment_variables:
        args.append(f"{account}.environment-variables={','.join(kubernetes.environment_variables)}")
    return args + [
        # (skipper_env also keeps the `local` profile, and its account `default`, off.)
        "--spring.cloud.skipper.server.enable-local-platform=false",
        f"{account}.namespace={kubernetes.namespace}",
        f"{account}.image-pull-policy={kubernetes.image_pull_policy}",
        # An update waits until the new apps are healthy before deleting the old ones;
        # JVM apps start in about a minute on two shared cores.
        "--spring.cloud.skipper.server.strategies.healthcheck.timeoutInMillis=300000",
        "--spring.cloud.skipper.server.strategies.healthcheck.sleepInMillis=2000",
    ]


def skipper_env(kubernetes: KubernetesPlatform | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Skipper's environment: fabric8's Config.autoConfigure reads KUBECONFIG (server URL,
    CA, the admin's client certificate and key)."""
    env = dict(os.environ if base is None else base)
    env.pop("KUBECONFIG", None)
    env.pop(IGNORE_PROFILES_ENV, None)
    if kubernetes is not None:
        env["KUBECONFIG"] = kubernetes.kubeconfig
        # Outside a cluster Skipper activates its `local` profile, which adds a local
        # account `default` beside ours; this switch (read from the environment or a
        # system property only) keeps it off, so `default` is the Kubernetes account.
        env[IGNORE_PROFILES_ENV] = "true"
    return env


def dataflow_args(*, port: int, workdir: Path, skipper_url: str) -> list[str]:
    return common_args(port=port, db_path=workdir / "dataflow-db") + [
        f"--spring.cloud.skipper.client.server-uri={skipper_url}/api",
        "--spring.cloud.dataflow.features.streams-enabled=true",
        "--spring.cloud.dataflow.features.tasks-enabled=false",
        "--spring.cloud.dataflow.features.schedules-enabled=false",
        # Maven lookups (app metadata) must not write to the user's ~/.m2.
        f"--maven.local-repository={workdir / 'm2'}",
    ]


# ---------------------------------------------------------------- processes


def ensure_jars() -> dict[str, Path]:
    """The two executable jars, running hack/scdf-jars.sh if the cache lacks them."""
    d = jar_dir()
    jars = {"skipper": d / "spring-cloud-skipper-server.jar", "dataflow": d / "spring-cloud-dataflow-server.jar"}
    if not (d / ".complete").exists() or not all(j.exists() for j in jars.values()):
        subprocess.run(["bash", str(JARS_SCRIPT)], check=True)
    return jars


def answers(url: str, timeout: float = 3.0) -> bool:
    """True when `url` returns 200 with a JSON body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status != 200:
                return False
            json.loads(resp.read())
            return True
    except (OSError, ValueError, urllib.error.URLError):
        return False


_LIVE: weakref.WeakSet[ScdfServers] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Last guard: a test run that dies must not leave a JVM behind.
    for servers in list(_LIVE):
        servers.stop(timeout=5)


class ScdfServers:
    """Skipper and Data Flow on 127.0.0.1; databases, logs and app dirs in `workdir`."""

    def __init__(self, workdir: str | Path | None = None, kubernetes: KubernetesPlatform | None = None):
        self.kubernetes = kubernetes
        self._own_workdir = workdir is None
        # Its own: named after this process, so a later one sweeps it if this run is killed.
        self.workdir = Path(workdir or owned_tmpdir("tsp-scdf-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.skipper_port: int | None = None
        self.dataflow_port: int | None = None
        self.skipper: subprocess.Popen | None = None
        self.dataflow: subprocess.Popen | None = None
        # Seconds from launch until the server answered (both launch together), for reports.
        self.start_seconds: dict[str, float] = {}

    # -- addresses and logs
    @property
    def skipper_url(self) -> str:
        return f"http://127.0.0.1:{self.skipper_port}"

    @property
    def dataflow_url(self) -> str:
        return f"http://127.0.0.1:{self.dataflow_port}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def rss(self) -> dict[str, int]:
        return {
            name: rss_bytes(p.pid)
            for name, p in (("skipper", self.skipper), ("dataflow", self.dataflow))
            if p is not None and p.poll() is None
        }

    # -- lifecycle
    def start(self) -> ScdfServers:
        jars = ensure_jars()
        _LIVE.add(self)
        try:
            self.skipper_port = free_port()
            self.dataflow_port = free_port()
            # Both at once: Data Flow only calls Skipper when asked to deploy or report, so
            # it needs no running Skipper to start, and two JVM starts overlap well.
            self.skipper = self._launch(
                "skipper",
                jars["skipper"],
                SKIPPER_HEAP,
                skipper_args(port=self.skipper_port, workdir=self.workdir, kubernetes=self.kubernetes),
                env=skipper_env(self.kubernetes),
            )
            self.dataflow = self._launch(
                "dataflow",
                jars["dataflow"],
                DATAFLOW_HEAP,
                dataflow_args(port=self.dataflow_port, workdir=self.workdir, skipper_url=self.skipper_url),
            )
            t0 = time.monotonic()
            self._wait("skipper", self.skipper, f"{self.skipper_url}/api/about", t0)
            self._wait("dataflow", self.dataflow, f"{self.dataflow_url}/about", t0)
        except BaseException:
            self.stop(timeout=5)
            raise
        return self

    def _launch(
        self, name: str, jar: Path, heap: list[str], args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        tmp = self.workdir / f"{name}-tmp"
        tmp.mkdir(exist_ok=True)
        # java.io.tmpdir: Skipper's local deployer puts each app's working dir there.
        cmd = [java_bin(), *heap, *JVM_FLAGS, f"-Djava.io.tmpdir={tmp}", "-jar", str(jar), *args]
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - the JVM writes to it until stop()
        try:
            # Own process group: stop() signals the JVM and anything it launched.
            return subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        finally:
            log.close()

    def _wait(self, name: str, proc: subprocess.Popen, url: str, t0: float) -> None:
        deadline = t0 + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ScdfError(f"{name} exited with code {proc.returncode} while starting; see {self.log_path(name)}")
            if answers(url):
                self.start_seconds[name] = time.monotonic() - t0
                return
            time.sleep(0.5)
        raise ScdfError(f"{name} did not answer {url} within {START_TIMEOUT:.0f}s; see {self.log_path(name)}")

    def stop(self, timeout: float = 20) -> None:
        # Data Flow first: it talks to Skipper, not the other way round.
        for attr in ("dataflow", "skipper"):
            proc = getattr(self, attr)
            if proc is not None:
                stop_process_group(proc, timeout)
                setattr(self, attr, None)
        _LIVE.discard(self)

    def cleanup(self) -> None:
        """Stop and remove the workdir if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ScdfServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m localinfra.scdf", description="Run Skipper + Data Flow on loopback until Ctrl-C."
    )
    ap.add_argument("--workdir", help="databases and logs here (default: a temp dir, removed on exit)")
    ap.add_argument("--kubeconfig", help="give Skipper a Kubernetes platform from this admin kubeconfig")
    ap.add_argument("--namespace", default="default", help="the namespace Skipper deploys into (with --kubeconfig)")
    args = ap.parse_args(argv)
    k8s = KubernetesPlatform(args.kubeconfig, args.namespace) if args.kubeconfig else None
    servers = ScdfServers(args.workdir, kubernetes=k8s)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with servers:
        rss = servers.rss()
        print(
            f"skipper   {servers.skipper_url}  started in {servers.start_seconds['skipper']:.1f}s, "
            f"RSS {rss.get('skipper', 0) / 2**20:.0f} MiB"
        )
        print(
            f"dataflow  {servers.dataflow_url}  started in {servers.start_seconds['dataflow']:.1f}s, "
            f"RSS {rss.get('dataflow', 0) / 2**20:.0f} MiB"
        )
        print(f"logs in {servers.workdir}; Ctrl-C stops both", flush=True)
        while not stop["now"]:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
