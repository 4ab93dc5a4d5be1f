"""Fixtures for the operator tests on the real control plane: kubectl in the test's
namespace, the operator as a subprocess, the audit log (the CRD installed once and a
fresh namespace per test are the root conftest's `crd_installed` and `namespace`)."""

from __future__ import annotations

import sys

import pytest
from kubehelpers import AuditLog, Kubectl, Operator


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
