"""Unit tests of the controller's decisions with an in-memory stand-in for the API
(the real API server is exercised in test_operator_kube.py)."""
import asyncio
import copy
from datetime import datetime, timezone

import yaml

from kubehelpers import SAMPLE_FILE
from tspipe.controller import Controller
from tspipe.kube import ApiException


class FakeKube:
    def __init__(self, pipeline):
        self.pipelines = {pipeline["metadata"]["name"]: pipeline}
        self.deps = {}
        self.writes = []
        self.rv = 0

    def _rv(self):
        self.rv += 1
        return str(self.rv)

    def get_pipeline(self, ns, name):
        return copy.deepcopy(self.pipelines.get(name))

    def write_status(self, ns, name, status):
        self.writes.append(("status", name))
        self.pipelines[name]["status"] = copy.deepcopy(status)

    def list_deployments(self, ns, selector):
        want = dict(kv.split("=") for kv in selector.split(","))
        return [copy.deepcopy(d) for d in self.deps.values()
                if all(d["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]

    def get_deployment(self, ns, name):
        return copy.deepcopy(self.deps.get(name))

    def create_deployment(self, ns, body):
        name = body["metadata"]["name"]
        if name in self.deps:
            raise ApiException(status=409, reason="AlreadyExists")
        d = copy.deepcopy(body)
        d["metadata"].update(resourceVersion=self._rv(), uid=f"u-{name}", generation=1)
        d["spec"]["template"]["spec"]["restartPolicy"] = "Always"  # a server default
        self.deps[name] = d
        self.writes.append(("create", name))
        return d

    def replace_deployment(self, ns, name, body):
        if body["metadata"].get("resourceVersion") != self.deps[name]["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        d = copy.deepcopy(body)
        d["metadata"]["resourceVersion"] = self._rv()
        self.deps[name] = d
        self.writes.append(("update", name))
        return d

    def delete_deployment(self, ns, name, rv):
        self.deps.pop(name, None)
        self.writes.append(("delete", name))

    def post_event(self, pipeline, type_, reason, message, now):
        self.writes.append(("event", reason))


def make():
    obj = yaml.safe_load(SAMPLE_FILE.read_text())
    obj["metadata"].update(namespace="ns", uid="p-uid", generation=1)
    kube = FakeKube(obj)
    ctl = Controller(kube, now=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    return kube, ctl


def run(coro):
    return asyncio.run(coro)


def test_first_pass_creates_then_steady_state_writes_nothing():
    kube, ctl = make()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert sorted(w for w in kube.writes if w[0] == "create") == [
        ("create", f"timestamps-{s}") for s in ("evenlogger", "oddlogger", "router", "time")]
    assert ("status", "timestamps") in kube.writes and out.error is None
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert kube.writes == [] and out.writes == 0


def test_drift_update_and_foreign_name_is_an_error_with_one_event():
    kube, ctl = make()
    run(ctl.reconcile("ns", "timestamps"))
    kube.deps["timestamps-router"]["spec"]["replicas"] = 7
    kube.deps["timestamps-time"]["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "X", "name": "x", "uid": "other", "controller": True}]
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert ("update", "timestamps-router") in kube.writes
    assert out.error and "timestamps-time" in out.error
    assert kube.pipelines["timestamps"]["status"]["phase"] == "Failed"
    assert kube.writes.count(("event", "ReconcileFailed")) == 1
    kube.writes.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.error and kube.writes == []  # same error again: no new Event, same status


def test_backoff_grows_and_resets():
    kube, ctl = make()

    async def scenario():
        from tspipe.controller import Outcome
        key = ("ns", "timestamps")
        ctl._known.add(key)
        delays = []
        for _ in range(4):
            ctl._schedule(key, Outcome(error="boom"))
            st = ctl._state[key]
            delays.append(round(st.timer.when() - asyncio.get_running_loop().time()))
        ctl._schedule(key, Outcome())
        assert ctl._state[key].timer is None and ctl._state[key].failures == 0
        return delays

    assert run(scenario()) == [1, 2, 4, 8]


def test_deleted_pipeline_is_forgotten():
    kube, ctl = make()
    kube.pipelines.clear()
    out = run(ctl.reconcile("ns", "timestamps"))
    assert out.writes == 0 and kube.writes == [] and ("ns", "timestamps") not in ctl._known


def test_deployment_events_map_to_their_pipeline():
    from tspipe.handlers import owner_of

    owned = {"metadata": {"ownerReferences": [
        {"apiVersion": "tspipe.io/v1alpha1", "kind": "TimestampPipeline", "name": "p1", "controller": True}],
        "labels": {"app.kubernetes.io/managed-by": "tspipe-operator", "app.kubernetes.io/instance": "other"}}}
    assert owner_of(owned) == "p1"
    labelled = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "tspipe-operator",
                                        "app.kubernetes.io/instance": "p2"}}}
    assert owner_of(labelled) == "p2"
    foreign = {"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "controller": True}],
        "labels": {"app.kubernetes.io/instance": "p3"}}}
    assert owner_of(foreign) is None
