"""Session-wide real infrastructure: one Kafka broker, one three-broker Kafka cluster and
one Kubernetes control plane.

Tests that kill or restart the single broker or the API server start their own instance
instead. Tests on the cluster may kill, stop and restart its brokers (that is what it is
for) but hand it back whole: every broker running, no partition under-replicated.
"""

import uuid

import pytest


@pytest.fixture(scope="session")
def kafka_broker():
    from localinfra.kafka import KafkaBroker

    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker):
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_cluster():
    """Three brokers, replication 3 and min ISR 2 (mark the tests `kafka`); started once,
    when the first test asks for it (about 20 s on 2 cores)."""
    from localinfra.kafka import KafkaCluster

    with KafkaCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def control_plane():
    from localinfra.kube import ControlPlane

    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def kubeconfig(control_plane):
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def crd_installed(control_plane):
    """The TimestampPipeline CRD on the session's control plane, installed once."""
    from samples import CRD_FILE

    control_plane.kubectl("apply", "-f", str(CRD_FILE))
    control_plane.wait_crd_established("timestamppipelines.tspipe.io")
    return True


@pytest.fixture
def namespace(control_plane):
    """A fresh namespace on the session's control plane for one test, deleted after it
    (without waiting: nothing reuses the name)."""
    ns = f"tsp-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    yield ns
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# The real parts each session fixture starts, as the markers `make unit` deselects by:
# a test is marked by the fixtures it uses (directly or through others), so
# `-m "not kafka and not kube"` never starts a broker or a control plane.
FIXTURE_MARKERS = {
    "kafka_broker": ("kafka",),
    "sasl_broker": ("kafka",),
    "control_plane": ("kube",),
    "scdf_servers": ("scdf",),
    "node_cluster": ("kafka", "kube", "node"),
}


def pytest_collection_modifyitems(items):
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            for marker in FIXTURE_MARKERS.get(name, ()):
                item.add_marker(marker)


@pytest.fixture
def on_failure():
    """A list of (title, produce-text) pairs; when the test fails, each is run and its text
    added to the failure report (before teardown, while everything is still up)."""
    return []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    sections = item.funcargs.get("on_failure") if hasattr(item, "funcargs") else None
    if rep.when == "call" and rep.failed and sections:
        from localinfra.diagnose import report

        rep.sections.append(("diagnostics", report(sections)))
    return rep
