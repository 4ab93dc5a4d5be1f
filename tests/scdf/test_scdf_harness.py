"""The local Skipper + Data Flow harness (hack/localinfra/scdf.py) against itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from localinfra.scdf import (
    IGNORE_PROFILES_ENV,
    KubernetesPlatform,
    ScdfServers,
    common_args,
    dataflow_args,
    skipper_args,
    skipper_env,
)

pytestmark = pytest.mark.scdf


# 127.0.0.1 in /proc/net/tcp, and as IPv4-mapped ::ffff:127.0.0.1 in /proc/net/tcp6 (Java's
# default dual-stack sockets); both are loopback only.
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on `port` (IPv4 and IPv6 /proc tables)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.rsplit(":", 1)
                if state == "0A" and int(p, 16) == port:
                    found.add(addr)
    return found


@pytest.mark.parametrize("server", ["skipper", "dataflow"])
def test_args_keep_everything_local(tmp_path, server):
    args = (
        skipper_args(port=1, workdir=tmp_path)
        if server == "skipper"
        else dataflow_args(port=2, workdir=tmp_path, skipper_url="http://127.0.0.1:1")
    )
    assert "--server.address=127.0.0.1" in args
    assert any(a.startswith(f"--spring.datasource.url=jdbc:h2:file:{tmp_path}/") for a in args)
    assert "--spring.cloud.config.enabled=false" in args


def test_dataflow_args_name_the_local_skipper_and_streams_only(tmp_path):
    d = dataflow_args(port=2, workdir=tmp_path, skipper_url="http://127.0.0.1:1")
    assert "--spring.cloud.skipper.client.server-uri=http://127.0.0.1:1/api" in d
    assert "--spring.cloud.dataflow.features.tasks-enabled=false" in d
    assert common_args(port=3, db_path=tmp_path / "x")[0] == "--server.port=3"


def test_kubernetes_mode_gives_skipper_one_default_account_in_the_given_namespace(tmp_path):
    k8s = KubernetesPlatform("/x/admin.kubeconfig", "ns1")
    args = skipper_args(port=1, workdir=tmp_path, kubernetes=k8s)
    account = "--spring.cloud.skipper.server.platform.kubernetes.accounts.default"
    assert f"{account}.namespace=ns1" in args
    assert f"{account}.image-pull-policy=Never" in args
    assert "--spring.cloud.skipper.server.enable-local-platform=false" in args
    env = skipper_env(k8s, base={"PATH": "/bin", "KUBECONFIG": "/elsewhere"})
    # fabric8 reads the admin kubeconfig; Skipper's `local` profile (a second `default`) stays off.
    assert env == {"PATH": "/bin", "KUBECONFIG": "/x/admin.kubeconfig", IGNORE_PROFILES_ENV: "true"}
    # Local mode: no kubeconfig leaks in from the caller's environment.
    assert skipper_env(None, base={"PATH": "/bin", "KUBECONFIG": "/elsewhere"}) == {"PATH": "/bin"}
    assert "--spring.cloud.skipper.server.enable-local-platform=true" in skipper_args(port=1, workdir=tmp_path)
    assert not [a for a in args if "environment-variables" in a]


def test_the_kubernetes_account_can_give_every_app_environment_variables(tmp_path):
    """As SCDF's own Kubernetes install gives the apps the broker (the recipe's router reads it
    from the environment only)."""
    k8s = KubernetesPlatform("/x/admin.kubeconfig", "ns1", environment_variables=("A=1", "B=h:9092"))
    args = skipper_args(port=1, workdir=tmp_path, kubernetes=k8s)
    account = "--spring.cloud.skipper.server.platform.kubernetes.accounts.default"
    assert f"{account}.environment-variables=A=1,B=h:9092" in args


def test_servers_answer_on_loopback_with_streams_only(scdf_servers):
    about = requests.get(f"{scdf_servers.dataflow_url}/about", timeout=10).json()
    assert about["featureInfo"]["streamsEnabled"] is True
    assert about["featureInfo"]["tasksEnabled"] is False
    assert about["versionInfo"]["core"]["version"] == "2.11.5"
    # Data Flow deploys streams through our Skipper, not a platform of its own.
    assert about["runtimeEnvironment"]["appDeployer"]["deployerName"] == "Spring Cloud Skipper Server"
    skipper = requests.get(f"{scdf_servers.skipper_url}/api/about", timeout=10).json()
    assert skipper["versionInfo"]["server"]["name"] == "Spring Cloud Skipper Server"
    for port in (scdf_servers.skipper_port, scdf_servers.dataflow_port):
        addrs = listening_addresses(port)
        assert addrs and addrs <= LOOPBACK, f"bound to 127.0.0.1 only, got {addrs}"
    assert (scdf_servers.workdir / "skipper-db.mv.db").exists()
    assert (scdf_servers.workdir / "dataflow-db.mv.db").exists()
    assert set(scdf_servers.rss()) == {"skipper", "dataflow"}


def test_own_instance_starts_logs_in_workdir_and_stops_everything(tmp_path):
    servers = ScdfServers(tmp_path)
    with servers:
        pids = [servers.skipper.pid, servers.dataflow.pid]
        ports = [servers.skipper_port, servers.dataflow_port]
        assert requests.get(f"{servers.dataflow_url}/about", timeout=10).status_code == 200
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text()
    for port in ports:
        assert listening_addresses(port) == set()
    assert "Started" in (tmp_path / "dataflow.log").read_text()
    assert "Started SkipperServerApplication" in (tmp_path / "skipper.log").read_text()
    # A workdir given by the caller is kept (logs stay readable after a failure).
    assert tmp_path.exists()
