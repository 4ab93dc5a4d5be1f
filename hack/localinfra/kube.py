"""A real, local Kubernetes control plane: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods become
Ready without a kubelet), all on 127.0.0.1 and free ports.

The binaries come from hack/build-k8s.sh (``make k8s-bins``). Usage::

    with ControlPlane() as cp:
        cp.kubectl("get", "nodes")

``python -m localinfra.kube`` starts one and keeps it until Ctrl-C.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from localinfra import cache
from localinfra.proc import (
    OWNER_FILE,
    die_with_parent,
    free_port,
    openssl,
    owned_tmpdir,
    stop_process_group,
    sweep_tmpdirs,
    wait_for,
)

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
POD_CIDR = "10.244.0.0/16"  # pod IPs kwok writes into pod status; nothing routes them
NODE_NAME = "kwok-node-0"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Writes only, at Metadata level (no bodies, so no secrets): tests count writes.
# Leader-election and node-heartbeat leases of the system components are left
# out; they would be most of the log and say nothing about the project.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
  namespaces: [kube-system, kube-node-lease]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
"""

# The fake node. kwok keeps it Ready (node-initialize + lease heartbeat stages).
# No taint, so ordinary workloads land on it without tolerations; beside a real node it
# gets FAKE_NODE_TAINT, so ordinary workloads (the sample pipeline unchanged) run for real
# and only pods that tolerate the taint land on the fake node.
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_TAINT = {"key": "tspipe.io/fake-node", "value": "kwok", "effect": "NoSchedule"}
NODE_MANIFEST = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": NODE_NAME,
        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        },
    },
    "status": {
        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
    },
}


def _ec_key(cwd: Path, name: str) -> None:
    # P-256 keys: instant to generate, accepted for TLS, client certs and SA tokens (ES256).
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)


def issue_cert(cwd: Path, name: str, subject: str, ext: str, days: int = 30) -> None:
    """A key and a certificate signed by the local CA (ca.key/ca.crt)."""
    _ec_key(cwd, name)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        str(days),
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=cwd,
    )


def generate_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """CA, API server serving cert, etcd certs, client certs, SA signing keys.
    `extra_ips`: more addresses the API server's certificate names (a real node's)."""
    pki.mkdir(parents=True, exist_ok=True)
    _ec_key(pki, "ca")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=tspipe-local-ca",
        "-days",
        "30",
        "-sha256",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )
    server = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    client = server + "extendedKeyUsage=clientAuth\n"
    sans = ",".join(
        [
            "IP:127.0.0.1",
            f"IP:{SERVICE_IP}",
            *(f"IP:{ip}" for ip in extra_ips),
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    issue_cert(pki, "apiserver", "/CN=kube-apiserver", server + f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    issue_cert(
        pki,
        "etcd-server",
        "/CN=etcd",
        server + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    issue_cert(pki, "apiserver-etcd-client", "/CN=kube-apiserver-etcd-client", client)
    issue_cert(pki, "admin", "/O=system:masters/CN=tspipe-admin", client)
    issue_cert(pki, "controller-manager", "/CN=system:kube-controller-manager", client)
    issue_cert(pki, "scheduler", "/CN=system:kube-scheduler", client)
    # The API server's client certificate towards kubelets (logs, exec, port-forward).
    issue_cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client)
    _ec_key(pki, "sa")
    openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for f in pki.iterdir():
        if f.suffix == ".key":
            f.chmod(0o600)


def audit_events(path: str, since: int = 0):
    """Completed requests in the API server's audit log (JSON lines), from byte `since`."""
    with open(path, "rb") as fh:
        fh.seek(since)
        for line in fh:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if ev.get("stage") in (None, "ResponseComplete"):
                yield ev


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    """A kubeconfig with absolute file references (JSON is valid YAML)."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tspipe-local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "tspipe-local", "context": {"cluster": "tspipe-local", "user": user}}],
        "current-context": "tspipe-local",
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}"


@dataclass
class _Proc:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl call, no lock taken
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float) -> None:
        """SIGTERM to its process group, SIGKILL after `timeout` seconds."""
        if self.popen is not None:
            stop_process_group(self.popen, timeout)
        self.popen = None


_LIVE: weakref.WeakSet[ControlPlane] = weakref.WeakSet()
_WORKDIR_PREFIX = "tsp-kube-"


def sweep_stale_workdirs() -> None:
    """Remove the workdirs of control planes whose owning process died without cleaning up
    (a SIGKILLed test run: its components died with it, its files did not). Every start runs it."""
    sweep_tmpdirs(_WORKDIR_PREFIX)


@atexit.register
def _stop_all() -> None:
    for cp in list(_LIVE):
        cp.stop()


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok."""

    def __init__(
        self, workdir: str | os.PathLike | None = None, *, start_timeout: float = 180, node_ip: str | None = None
    ):
        """`node_ip`: a real node (localinfra.node.Node) will join at this address: the API
        server then also listens there (pods reach it), reaches kubelets by InternalIP, and
        kwok's fake node gets the FAKE_NODE_TAINT so that ordinary pods land on the real one."""
        self.node_ip = node_ip
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.start_timeout = start_timeout
        self._procs: dict[str, _Proc] = {}
        self.tspkube: Path | None = None
        self.apiserver_port: int | None = None
        self.started_in: float | None = None

    # -- public surface ----------------------------------------------------
    @property
    def kubeconfig(self) -> str:
        return str(self._require_workdir() / "admin.kubeconfig")

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def audit_log(self) -> str:
        return str(self._require_workdir() / "audit.log")

    def logs(self) -> dict[str, str]:
        """Log file of each component (for debugging failures)."""
        return {name: str(p.log) for name, p in self._procs.items()}

    def pids(self) -> dict[str, int]:
        return {name: p.popen.pid for name, p in self._procs.items() if p.alive()}

    def wait_crd_established(self, name: str, timeout: float = 60) -> None:
        """Wait until CRD `name` is Established. (`kubectl wait --for=condition=Established`
        fails outright while `.status.conditions` is still empty, which a large CRD, such as
        the TimestampPipeline's with its embedded pod-template shapes, stays for a moment.)"""

        def established() -> bool:
            proc = self.kubectl("get", "crd", name, "-o", "json", check=False)
            if proc.returncode != 0:
                return False
            conds = (json.loads(proc.stdout).get("status") or {}).get("conditions") or []
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)

        wait_for(established, timeout, f"CRD {name} Established")

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,  # noqa: A002 - subprocess.run's name
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """Run the built kubectl as admin; text output captured."""
        argv = [str(self._tspkube()), "kubectl", "--kubeconfig", self.kubeconfig, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout, env=self._env())
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        self.tspkube = cache.k8s_file("tspkube")
        kwok = cache.k8s_file("kwok")
        stages = cache.k8s_file("kwok-stages.yaml")
        if self.workdir is None:
            self.workdir = owned_tmpdir(_WORKDIR_PREFIX)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        _LIVE.add(self)
        try:
            self._start(kwok, stages, t0 + self.start_timeout)
        except BaseException as exc:
            self._stop_procs()
            raise RuntimeError(
                f"control plane failed to start: {exc}\nlogs kept in {self.workdir}:\n{self._log_tails()}"
            ) from exc
        self.started_in = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every component (reverse order) and remove a temporary workdir."""
        _LIVE.discard(self)
        self._stop_procs()
        if self._own_workdir and self.workdir is not None and not os.environ.get("TSP_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart_apiserver(self, timeout: float = 120, grace: float = 5) -> None:
        """Stop kube-apiserver only (SIGTERM, SIGKILL after `grace` s) and start
        it again on the same port and etcd data."""
        proc = self._procs["kube-apiserver"]
        # While clients hold watches open, a SIGTERMed API server drains them
        # for up to a minute; a short grace keeps restarts quick.
        proc.stop(timeout=grace)
        proc.start(self._env())
        self._wait_ready(time.monotonic() + timeout)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- start-up ----------------------------------------------------------
    def _start(self, kwok: Path, stages: Path, deadline: float) -> None:
        wd = self.workdir
        pki = wd / "pki"
        generate_pki(pki, extra_ips=(self.node_ip,) if self.node_ip else ())
        (wd / "audit-policy.yaml").write_text(AUDIT_POLICY)
        etcd_port, etcd_peer = free_port(), free_port()
        self.apiserver_port = free_port()
        for name, cert, user in (
            ("admin", "admin", "tspipe-admin"),
            ("controller-manager", "controller-manager", "system:kube-controller-manager"),
            ("scheduler", "scheduler", "system:kube-scheduler"),
        ):
            write_kubeconfig(
                wd / f"{name}.kubeconfig",
                self.apiserver_url,
                pki / "ca.crt",
                pki / f"{cert}.crt",
                pki / f"{cert}.key",
                user,
            )

        tk = str(self.tspkube)
        etcd_url = f"https://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._add(
            "etcd",
            [
                tk,
                "etcd",
                "--name=tsp",
                f"--data-dir={wd / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=tsp={peer_url}",
                "--initial-cluster-state=new",
                f"--cert-file={pki / 'etcd-server.crt'}",
                f"--key-file={pki / 'etcd-server.key'}",
                f"--trusted-ca-file={pki / 'ca.crt'}",
                "--client-cert-auth=true",
                # Throwaway test data: skipping fsync makes writes fast on slow disks.
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )
        node_args = (
            [
                # The node's pods dial the API server on the bridge address; the node's name
                # does not resolve here, its InternalIP does.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            ]
            if self.node_ip
            else []
        )
        self._add(
            "kube-apiserver",
            [
                tk,
                "kube-apiserver",
                f"--bind-address={'0.0.0.0' if self.node_ip else '127.0.0.1'}",
                f"--advertise-address={self.node_ip or '127.0.0.1'}",
                *node_args,
                f"--secure-port={self.apiserver_port}",
                f"--etcd-servers={etcd_url}",
                f"--etcd-cafile={pki / 'ca.crt'}",
                f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
                f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # A loopback address is not a valid Endpoints IP, and without kube-proxy the
                # `kubernetes` Service IP leads nowhere: pods on a real node are given the
                # advertise address instead (KUBERNETES_SERVICE_HOST/PORT, tests/node).
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={wd / 'audit-policy.yaml'}",
                f"--audit-log-path={wd / 'audit.log'}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxbackup=1",
                "--audit-log-maxsize=200",
                "--profiling=false",
            ],
        )
        common = [
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
        ]
        kcm_cfg = str(wd / "controller-manager.kubeconfig")
        self._add(
            "kube-controller-manager",
            [
                tk,
                "kube-controller-manager",
                *common,
                f"--secure-port={free_port()}",
                f"--kubeconfig={kcm_cfg}",
                f"--authentication-kubeconfig={kcm_cfg}",
                f"--authorization-kubeconfig={kcm_cfg}",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        sched_cfg = str(wd / "scheduler.kubeconfig")
        self._add(
            "kube-scheduler",
            [
                tk,
                "kube-scheduler",
                *common,
                f"--secure-port={free_port()}",
                f"--kubeconfig={sched_cfg}",
                f"--authentication-kubeconfig={sched_cfg}",
                f"--authorization-kubeconfig={sched_cfg}",
            ],
        )
        self._add(
            "kwok",
            [
                str(kwok),
                f"--config={stages}",
                f"--kubeconfig={self.kubeconfig}",
                # Only its own fake node (and that node's pods): a real node's kubelet owns the rest.
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
        )

        env = self._env()
        self._procs["etcd"].start(env)
        self._wait_tcp("etcd", etcd_port, deadline)
        self._procs["kube-apiserver"].start(env)
        self._wait_ready(deadline)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._procs[name].start(env)
        node = json.loads(json.dumps(NODE_MANIFEST))
        if self.node_ip:
            node["spec"] = {"taints": [FAKE_NODE_TAINT]}
        self.kubectl("apply", "-f", "-", input=json.dumps(node))
        self._wait_for(deadline, "node Ready (kwok)", self._node_ready)
        self._wait_for(
            deadline,
            "ServiceAccount default/default",
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        )

    def _add(self, name: str, argv: list[str]) -> None:
        self._procs[name] = _Proc(name, argv, self.workdir / f"{name}.log")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        # kwok would also read ~/.kwok/kwok.yaml; point it at an empty home.
        env["KWOK_WORKDIR"] = str((self.workdir or Path(tempfile.gettempdir())) / "kwok")
        return env

    def _tspkube(self) -> Path:
        if self.tspkube is None:
            self.tspkube = cache.k8s_file("tspkube")
        return self.tspkube

    def _require_workdir(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("control plane not started")
        return self.workdir

    def _check_alive(self) -> None:
        for p in self._procs.values():
            if p.popen is not None and not p.alive():
                raise RuntimeError(f"{p.name} exited with code {p.popen.returncode}")

    def _wait_for(self, deadline: float, what: str, probe) -> None:
        while True:
            self._check_alive()
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.25)

    def _wait_tcp(self, what: str, port: int, deadline: float) -> None:
        def probe() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        self._wait_for(deadline, f"{what} on port {port}", probe)

    def _wait_ready(self, deadline: float) -> None:
        self._wait_for(deadline, "kube-apiserver /readyz", lambda: self._get("/readyz")[0] == 200)

    def _ssl(self) -> ssl.SSLContext:
        pki = self._require_workdir() / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _get(self, path: str) -> tuple[int, bytes]:
        """GET as admin; (status, body)."""
        try:
            with urllib.request.urlopen(self.apiserver_url + path, context=self._ssl(), timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _node_ready(self) -> bool:
        status, body = self._get(f"/api/v1/nodes/{NODE_NAME}")
        if status != 200:
            return False
        conds = json.loads(body).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    # -- shutdown ----------------------------------------------------------
    def _stop_procs(self) -> None:
        # Reverse order: clients go first, so the API server has no watches to
        # drain and exits in about a second.
        for name in reversed(list(self._procs)):
            self._procs[name].stop(timeout=10)

    def _log_tails(self, lines: int = 15) -> str:
        out = []
        for p in self._procs.values():
            try:
                tail = p.log.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
            out.append(f"--- {p.log} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)


def main() -> int:
    cp = ControlPlane()
    print("starting the local control plane...", flush=True)
    cp.start()
    print(f"ready in {cp.started_in:.1f} s", flush=True)
    print(f"apiserver:  {cp.apiserver_url}")
    print(f"kubeconfig: {cp.kubeconfig}")
    print(f"logs:       {cp.workdir}")
    print(f"  export KUBECONFIG={cp.kubeconfig}")
    print("Ctrl-C stops it.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A shell's background job starts with SIGINT ignored; Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while all(p.alive() for p in cp._procs.values()):
            time.sleep(1)
        print("a component exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
