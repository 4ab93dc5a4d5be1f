"""The controller's unit tests' stand-ins: the Kubernetes API and the Kafka admin client
in memory, a monotonic clock to move by hand, `make()` for a controller over them
(test_controller.py, test_autoscale_units.py, test_rollback_units.py), and `eventually` for
scenarios that run on the event loop."""

import asyncio
import copy
from datetime import UTC, datetime

from samples import sample_pipeline

from tspipe.autoscale import GroupLag
from tspipe.controller import Controller
from tspipe.kube import ApiException

# How long a scenario on the event loop waits for what it expects: generous, since a loaded
# CI machine can starve the loop for a while; a scenario that holds returns at once.
EVENTUALLY_SECONDS = 10.0


async def eventually(condition, what: str) -> None:
    """Let the event loop run until `condition()` holds; fail naming `what` if it never does."""
    try:
        async with asyncio.timeout(EVENTUALLY_SECONDS):
            while not condition():  # noqa: ASYNC110 (the state polled has no event to wait on)
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {EVENTUALLY_SECONDS} s: {what}") from None


class FakeKube:
    def __init__(self, pipeline):
        self.pipelines = {pipeline["metadata"]["name"]: pipeline}
        self.deps = {}
        self.pdbs = {}
        self.hpas = []
        self.pdb_reads = 0
        self.fail_pdb_delete = False
        self.pods = []
        self.jobs = {}
        self.events = []
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
        return [
            copy.deepcopy(d)
            for d in self.deps.values()
            if all(d["metadata"].get("labels", {}).get(k) == v for k, v in want.items())
        ]

    def get_deployment(self, ns, name):
        return copy.deepcopy(self.deps.get(name))

    def list_pods(self, ns, selector):
        want = dict(kv.split("=") for kv in selector.split(","))
        return [
            copy.deepcopy(p)
            for p in self.pods
            if all(p["metadata"].get("labels", {}).get(k) == v for k, v in want.items())
        ]

    def get_job(self, ns, name):
        return copy.deepcopy(self.jobs.get(name))

    def create_job(self, ns, body):
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.writes.append(("create job", name))
        self.jobs[name] = copy.deepcopy(body)
        return copy.deepcopy(body)

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
        self.events.append((type_, reason, message))

    def get_pdb(self, ns, name):
        self.pdb_reads += 1
        return copy.deepcopy(self.pdbs.get(name))

    def create_pdb(self, ns, body):
        name = body["metadata"]["name"]
        if name in self.pdbs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.pdbs[name] = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": self._rv()}}
        self.writes.append(("create-pdb", name))

    def replace_pdb(self, ns, name, body):
        self.pdbs[name] = copy.deepcopy(body)
        self.writes.append(("update-pdb", name))

    def delete_pdb(self, ns, name, rv):
        if self.fail_pdb_delete:
            raise ApiException(status=500, reason="test failed")
        self.pdbs.pop(name, None)
        self.writes.append(("delete-pdb", name))

    def list_hpas(self, ns):
        return copy.deepcopy(self.hpas)

    def remove_annotation(self, ns, name, key, value):
        ann = self.pipelines[name]["metadata"].get("annotations") or {}
        if ann.get(key) != value:
            raise ApiException(status=422, reason="test failed")
        del ann[key]
        self.writes.append(("unannotate", key))

    def set_finalizers(self, ns, name, finalizers, rv):
        self.writes.append(("finalizers", tuple(finalizers)))
        self.pipelines[name]["metadata"]["finalizers"] = list(finalizers)


class FakeAdmin:
    """Kafka admin stand-in: topics in a dict; `down` makes every call fail."""

    def __init__(self):
        self.topics = {}
        self.calls = []
        self.down = False
        self.lag_value = 0
        self.partitions = 1
        self.committed_partitions = None  # partitions the router group committed on (None: all)

    def _check(self, what):
        self.calls.append(what)
        if self.down:
            from tspipe.kafka_admin import KafkaUnavailable

            raise KafkaUnavailable("Unable to bootstrap")

    def ensure(self, brokers, desired, plan_fn):
        self._check("ensure")
        actual = {d.name: self.topics.get(d.name) for d in desired}
        plan = plan_fn(desired, actual)
        for n, v in plan.create.items():
            self.topics[n] = v
        for n, parts in plan.grow.items():
            self.topics[n] = (parts, self.topics[n][1])
        return actual, plan, {}

    def delete(self, brokers, names):
        self._check("delete")
        for n in names:
            self.topics.pop(n, None)

    def lag(self, brokers, group, topic):
        self._check("lag")
        return self.lag_value

    def group_lag(self, brokers, group, topic):
        self._check("lag")
        committed = self.partitions if self.committed_partitions is None else self.committed_partitions
        return GroupLag(self.lag_value, self.partitions, committed)

    # A rollout's window (rollback.py): the offsets to return next, the records to read back.
    offsets_value: dict | None = None
    records: dict | None = None

    def offsets(self, brokers, group, input_topic, outputs, *, commits_first, grace_s):
        self._check("offsets")
        return copy.deepcopy(self.offsets_value)

    def read(self, brokers, topic, ranges, timeout_s, read_committed=False):
        self._check("read")
        return list((self.records or {}).get(topic, []))


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def make(**kw):
    obj = sample_pipeline(stored=True, metadata={"uid": "p-uid"})
    kube = FakeKube(obj)
    clock = Clock()
    kw.setdefault("now", lambda: datetime(2026, 1, 1, tzinfo=UTC))
    ctl = Controller(kube, admin=FakeAdmin(), monotonic=clock, **kw)
    ctl.clock = clock
    return kube, ctl


def run(coro):
    return asyncio.run(coro)


def _ready(kube):
    """Make every Deployment look rolled out (what the Deployment controller + kwok do)."""
    for d in kube.deps.values():
        n = d["spec"]["replicas"]
        d["metadata"].setdefault("generation", 1)
        d["status"] = {
            "observedGeneration": d["metadata"]["generation"],
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
        }
