"""Fixtures for the operator tests on the real control plane: the CRD installed once,
a fresh namespace per test, the operator as a subprocess, the audit log."""
from __future__ import annotations

import sys
import uuid

import pytest

from kubehelpers import CRD_FILE, AuditLog, Kubectl, Operator


@pytest.fixture(scope="session")
def crd_installed(control_plane):
    control_plane.kubectl("apply", "-f", str(CRD_FILE))
    control_plane.wait_crd_established("timestamppipelines.tspipe.io")
    return True


@pytest.fixture
def namespace(control_plane):
    ns = f"tsp-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    yield ns
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def k(control_plane, namespace):
    return Kubectl(control_plane, namespace)


@pytest.fixture
def audit(control_plane):
    return AuditLog(control_plane.audit_log)


@pytest.fixture
def operator_factory(kubeconfig, namespace, tmp_path, crd_installed):
    started = []

    def make(*extra, standalone=True, log_name="operator.log"):
        op = Operator(kubeconfig, namespace, tmp_path / log_name, extra, standalone=standalone)
        started.append(op)
        return op

    yield make
    for op in started:
        op.stop()
    # Keep the logs visible when a test fails.
    for log in sorted(tmp_path.glob("operator*.log")):
        sys.stderr.write(f"\n--- operator log ({log}) tail ---\n" + log.read_text(errors="replace")[-4000:])
