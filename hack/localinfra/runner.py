"""A stand-in kubelet for the local demo: runs each rendered Deployment's program for real.

kwok marks pods Ready without running containers, so this runner reads the operator's
Deployments from the API server and starts the program each one names, with exactly
that Deployment's container args and environment: the router from this repository, the
time source and log sink as the prebuilt Spring Cloud Stream jars at the version in the
image tag. When a Deployment's pod template changes it restarts the program; when the
Deployment goes away (or scales to zero) it stops it.

The one local adaptation: every pod would own port 8080 in its network namespace, but
here they share the host's loopback, so `--server.port` is rewritten to a free port.

A test can stand in for image pulls: `router_sources` maps a router image reference to a
directory holding another `tsrouter` package (a release under test), and `kinds` limits
what runs (a test that writes the input itself needs no time source or log sinks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from localinfra.proc import free_port, owned_tmpdir, stop_process_group

REPO = Path(__file__).resolve().parents[2]
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=tspipe-operator"
SPRING_APPS = ("time-source-kafka", "log-sink-kafka")


@dataclass(frozen=True)
class Program:
    """What to run for one Deployment: a Spring jar or the router, with args and env."""

    key: str  # namespace/name of the Deployment
    kind: str  # "router" or a Spring app name (SPRING_APPS)
    image: str
    version: str  # image tag
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    replicas: int
    fingerprint: str = field(compare=False, default="")


def image_kind(image: str) -> tuple[str, str]:
    """('time-source-kafka', '5.1.1') for springcloudstream/time-source-kafka:5.1.1; the
    router for any other image (it is this project's own)."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag, or a registry port mistaken for one
        name, tag = image, "latest"
    base = name.rsplit("/", 1)[-1]
    return (base if base in SPRING_APPS else "router"), tag


def expand_refs(text: str, mapping: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion of env values and args (k8s third_party expansion):
    `$(NAME)` becomes mapping[NAME] when defined and stays as written otherwise; `$$` is a
    literal `$`; a `$` before anything else, or an unclosed `$(`, is kept as is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(mapping.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def _template_container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def program_for(deployment: dict, resolve_env_from) -> Program:
    """Pure mapping of a Deployment to the program it runs. `resolve_env_from(namespace,
    value_from) -> str | None` resolves secretKeyRef/configMapKeyRef entries."""
    meta = deployment["metadata"]
    container = _template_container(deployment)
    kind, version = image_kind(container["image"])
    env = []
    for e in container.get("env") or []:
        if "value" in e:
            # Like the kubelet: a value may name earlier variables as $(VAR).
            env.append((e["name"], expand_refs(e["value"], dict(env))))
        elif "valueFrom" in e:
            ref = e["valueFrom"]
            field_path = (ref.get("fieldRef") or {}).get("fieldPath")
            if field_path == "metadata.uid":
                continue  # unique per pod; filled in at start
            if field_path == "metadata.name":
                env.append((e["name"], meta["name"]))
            elif field_path == "metadata.namespace":
                env.append((e["name"], meta["namespace"]))
            else:
                value = resolve_env_from(meta["namespace"], ref)
                if value is not None:
                    env.append((e["name"], value))
    args = tuple(expand_refs(a, dict(env)) for a in container.get("args") or ())
    replicas = deployment["spec"].get("replicas", 1)
    fp = hashlib.sha256(json.dumps([container["image"], args, env, replicas]).encode()).hexdigest()[:12]
    return Program(
        f"{meta['namespace']}/{meta['name']}", kind, container["image"], version, args, tuple(env), replicas, fp
    )


def with_port(args: tuple[str, ...], port: int) -> list[str]:
    """Args with `--server.port` set to `port` (replaced, never duplicated)."""
    out = [a for a in args if not a.startswith("--server.port=")]
    return out + [f"--server.port={port}"]


class Runner:
    """Polls the API server for managed Deployments and keeps one process per replica."""

    def __init__(
        self,
        kubeconfig: str,
        namespace: str | None,
        logdir: Path,
        on_line=None,
        poll_seconds: float = 1.0,
        router_sources: dict[str, Path] | None = None,
        kinds: tuple[str, ...] | None = None,
    ):
        from kubernetes import client, config

        self._api_client = config.new_client_from_config(config_file=kubeconfig)
        self.apps = client.AppsV1Api(self._api_client)
        self.core = client.CoreV1Api(self._api_client)
        self.namespace = namespace
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.on_line = on_line  # callback(program_key, line) for every output line
        self.poll_seconds = poll_seconds
        self.router_sources = dict(router_sources or {})
        self.kinds = kinds
        self.running: dict[str, tuple[Program, list[subprocess.Popen]]] = {}
        self.starts: dict[str, int] = {}  # restarts are visible to tests
        self._stop = threading.Event()
        # Held for a whole sync pass and by stop(): a pass still under way when stop()
        # gives up waiting must not start programs after stop() ended the rest.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # The Spring apps' java.io.tmpdir (springapps.TMP_PREFIX), made at the first start.
        self._java_tmpdir: Path | None = None

    # -- API reads ---------------------------------------------------------------
    def _resolve(self, namespace: str, value_from: dict) -> str | None:
        import base64

        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            data = self.core.read_namespaced_secret(ref["name"], namespace).data or {}
            raw = data.get(ref["key"])
            return base64.b64decode(raw).decode() if raw is not None else None
        if "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            return (self.core.read_namespaced_config_map(ref["name"], namespace).data or {}).get(ref["key"])
        return None

    def desired(self) -> dict[str, Program]:
        if self.namespace:
            items = self.apps.list_namespaced_deployment(self.namespace, label_selector=MANAGED_SELECTOR).items
        else:
            items = self.apps.list_deployment_for_all_namespaces(label_selector=MANAGED_SELECTOR).items
        out = {}
        for d in items:
            raw = self._api_client.sanitize_for_serialization(d)
            if raw["metadata"].get("deletionTimestamp"):
                continue
            prog = program_for(raw, self._resolve)
            if self.kinds is None or prog.kind in self.kinds:
                out[prog.key] = prog
        return out

    # -- processes ---------------------------------------------------------------
    def _command(self, prog: Program, port: int) -> list[str]:
        args = with_port(prog.args, port)
        if prog.kind == "router":
            return [sys.executable, "-m", "tsrouter", *args]
        from localinfra import springapps

        if self._java_tmpdir is None:
            self._java_tmpdir = owned_tmpdir(springapps.TMP_PREFIX)
        return [*springapps.java_command(prog.kind, prog.version, self._java_tmpdir), *args]

    def _spawn(self, prog: Program, replica: int) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPRING_")}
        env.update(dict(prog.env))
        env["SPRING_CLOUD_APPLICATION_GUID"] = str(uuid.uuid4())  # the pod UID stand-in
        env["PYTHONUNBUFFERED"] = "1"
        if prog.kind == "router" and prog.image in self.router_sources:
            env["PYTHONPATH"] = os.pathsep.join([str(self.router_sources[prog.image]), env.get("PYTHONPATH", "")])
        name = prog.key.replace("/", "_") + f"-{replica}"
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - the program writes to it until it stops
        proc = subprocess.Popen(
            self._command(prog, free_port()),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(prog.key, proc, log), daemon=True).start()
        self.starts[prog.key] = self.starts.get(prog.key, 0) + 1
        return proc

    def _pump(self, key: str, proc: subprocess.Popen, log) -> None:
        with log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                if self.on_line:
                    self.on_line(key, raw.decode(errors="replace").rstrip("\n"))

    @staticmethod
    def _terminate(procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
        # Every replica is told at once (they shut down in parallel), then each is waited for.
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            stop_process_group(p, max(0.1, deadline - time.monotonic()))

    def sync(self) -> None:
        """One level-based pass: start, restart or stop programs to match the API server."""
        want = self.desired()
        for key in list(self.running):
            prog, procs = self.running[key]
            if key not in want or want[key].fingerprint != prog.fingerprint:
                self._terminate(procs)
                del self.running[key]
        for key, prog in want.items():
            if key in self.running:
                _, procs = self.running[key]
                # A program that died is restarted, as the kubelet would.
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        procs[i] = self._spawn(prog, i)
                continue
            self.running[key] = (prog, [self._spawn(prog, i) for i in range(prog.replicas)])

    def pids(self) -> list[int]:
        return [p.pid for _, procs in self.running.values() for p in procs if p.poll() is None]

    # -- lifecycle ---------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    break
                try:
                    self.sync()
                except Exception as exc:  # noqa: BLE001 - an API hiccup must not kill the runner
                    print(f"runner: sync failed: {exc}", file=sys.stderr, flush=True)
            self._stop.wait(self.poll_seconds)

    def start(self) -> Runner:
        self._thread = threading.Thread(target=self._loop, name="runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        with self._lock:
            procs = [p for _, ps in self.running.values() for p in ps]
            self._terminate(procs)
            self.running.clear()
            if self._java_tmpdir is not None:
                shutil.rmtree(self._java_tmpdir, ignore_errors=True)
                self._java_tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
