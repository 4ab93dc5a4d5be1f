"""Operating the operator, on the real control plane: Prometheus metrics, the liveness
endpoint, JSON logs, and two replicas with kopf peering (one active; SIGKILL it and
the other takes over)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from kubehelpers import wait_for
from localinfra.proc import free_port
from samples import sample_pipeline

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]
PEERING_CRDS = ROOT / "crds" / "kopf-peering.yaml"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, labels: str = "") -> float | None:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def running(k, name):
    def probe():
        obj = k.get_or_none("tsp", name)
        st = (obj or {}).get("status") or {}
        return (
            obj
            if st.get("phase") == "Running" and st.get("observedGeneration") == obj["metadata"]["generation"]
            else None
        )

    return probe


def pipeline(name: str) -> dict:
    obj = sample_pipeline()
    obj["metadata"]["name"] = name
    obj["spec"]["kafka"]["topics"]["manage"] = False
    return obj


def test_metrics_liveness_and_json_logs(k, operator_factory):
    mport, lport = free_port(), free_port()
    op = operator_factory(
        "--metrics-port",
        str(mport),
        "--metrics-address",
        "127.0.0.1",
        "--liveness",
        f"http://127.0.0.1:{lport}/healthz",
        "--log-format",
        "json",
    ).start()
    k.apply(pipeline("timestamps"))
    wait_for(running(k, "timestamps"), 180, "pipeline Running")

    def scraped():
        code, text = get(f"http://127.0.0.1:{mport}/metrics")
        return text if code == 200 and metric(text, "tspipe_pipelines", '{phase="Running"}') == 1.0 else None

    text = wait_for(scraped, 30, "metrics showing one Running pipeline")
    assert metric(text, "tspipe_reconciles_total", '{result="ok"}') >= 2
    assert metric(text, "tspipe_reconcile_duration_seconds_count") >= 2
    assert metric(text, "tspipe_reconcile_errors_total") == 0
    assert metric(text, "tspipe_pipelines", '{phase="Failed"}') == 0
    assert metric(text, "tspipe_api_writes_total") >= 4
    code, _ = get(f"http://127.0.0.1:{lport}/healthz")
    assert code == 200
    # Every log line is one JSON object.
    lines = [ln for ln in op.log().splitlines() if ln.strip()]
    assert lines
    records = [json.loads(ln) for ln in lines]
    assert any("created Deployment timestamps-router" in r["message"] for r in records)
    assert all({"message", "timestamp", "severity"} <= set(r) for r in records)


# kopf's own log lines for a replica's peering transitions (kopf/_core/engines/peering.py).
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


def peering_state(log: str) -> str:
    """kopf's state of a peered replica after its last logged transition: 'active' or
    'paused' (kopf starts a peered replica paused and logs only when that changes)."""
    return "active" if log.rfind(RESUMED) > log.rfind(PAUSED) else "paused"


def controller_role(log: str) -> str:
    """The controller's own role (it gates its resync and retry timers) after its last logged
    change: 'standby' or 'active'. It polls the peering object every lifetime/3, so it can
    miss a role shorter than that and log nothing: no line since the last is no change."""
    return "standby" if log.rfind("peering: standby") > log.rfind("peering: active") else "active"


def test_two_replicas_with_peering_one_active_then_failover(k, operator_factory, control_plane, namespace):
    control_plane.kubectl("apply", "-f", str(PEERING_CRDS))
    wait_for(
        lambda: "kopfpeerings" in control_plane.kubectl("api-resources", "--api-group=kopf.dev", check=False).stdout,
        60,
        "peering CRDs served",
    )
    k.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "tspipe"}})
    common = ("--peering", "tspipe", "--peering-lifetime", "10")
    # Both replicas start together, as a 2-replica Deployment's pods do: either may
    # register first. A replica that is alone for a moment works until a higher-priority
    # peer appears; the guarantee is that once it sees one, it pauses and reconciles nothing.
    active = operator_factory(*common, "--priority", "200", standalone=False, log_name="operator-a.log").start()
    standby = operator_factory(
        *common, "--priority", "100", "--resync-seconds", "2", standalone=False, log_name="operator-b.log"
    ).start()

    def both_peers():
        st = (k.get_or_none("kopfpeering", "tspipe") or {}).get("status") or {}
        return st if sorted(v.get("priority") for v in st.values()) == [100, 200] else None

    wait_for(both_peers, 60, "two peers in the KopfPeering")
    wait_for(lambda: peering_state(active.log()) == "active", 60, "the priority-200 replica active")
    # The standby has seen the active peer (its controller says so) and kopf has it paused.
    wait_for(
        lambda: "peering: standby" in standby.log() and peering_state(standby.log()) == "paused",
        60,
        "the priority-100 replica paused",
    )
    k.apply(pipeline("first"))
    wait_for(running(k, "first"), 180, "first pipeline Running")
    assert active.reconciles("first") and not standby.reconciles("first")
    assert peering_state(standby.log()) == "paused", standby.log()[-3000:]

    # The active replica dies without a word; the standby takes over once its lease lapses.
    resumes_before = standby.log().count(RESUMED)
    active.kill()
    k.apply(pipeline("second"))
    wait_for(running(k, "second"), 180, "second pipeline Running (reconciled by the standby)")
    assert standby.reconciles("second")
    assert standby.log().count(RESUMED) > resumes_before
    # And it keeps the first one as declared: drift is repaired.
    k("scale", "deployment", "first-time", "--replicas=3")
    wait_for(lambda: k.json("deployment", "first-time")["spec"]["replicas"] == 1, 60, "drift repaired by the standby")
    assert standby.alive()

    # A newer replica with a higher priority arrives: it takes over, and the demoted one
    # stops its own resync timer too (not only kopf's watches).
    # Its controller may still be standby from before: the active spell since the failover can
    # be shorter than its poll (then it logged no change). kopf pausing it again is the news.
    pauses = standby.log().count(PAUSED)
    newer = operator_factory(
        *common, "--priority", "300", "--resync-seconds", "2", standalone=False, log_name="operator-c.log"
    ).start()
    wait_for(
        lambda: (
            standby.log().count(PAUSED) > pauses
            and peering_state(standby.log()) == "paused"
            and controller_role(standby.log()) == "standby"
        ),
        60,
        "the demoted replica notices",
    )
    before = len(standby.reconciles("first"))
    wait_for(lambda: len(newer.reconciles("first")) >= 3, 60, "the newer replica resyncs")
    assert len(standby.reconciles("first")) <= before + 1  # at most one pass already under way
