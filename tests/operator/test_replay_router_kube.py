"""Replay with a real router in the group: the operator does not touch the offsets while
a router consumer is still a member (the autoscaler standing aside meanwhile), and once
it has stopped, a reset to `earliest` re-delivers every record of the input to the right
output (counted), at-least-once and exactly-once.

kwok's router pods consume nothing, so the test plays the kubelet for one real router
process: it runs `tsp-router` under the hostname of a router pod (a UTS namespace:
`unshare --uts`, root only), stops it when the operator scales the Deployment to zero
and starts it again when the operator scales it back."""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid

import pytest
from kubehelpers import conditions, settled, wait_for
from routerproc import RouterProc, produce, read_all, timestamps
from samples import SAMPLE_NAME as NAME
from samples import sample_pipeline
from test_replay_kube import ANNOTATION, committed

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

if os.geteuid() != 0 or not shutil.which("unshare"):
    pytest.skip("the router pod's hostname needs a UTS namespace: root and unshare", allow_module_level=True)

POD = f"{NAME}-router-5d4f8b7c9-replay"  # a router pod's name: its consumer is the operator's own
N = 40


class PodRouter(RouterProc):
    """The router as if in a pod: its hostname (so its client id, tsrouter-<hostname>) is the pod's."""

    def start(self) -> PodRouter:
        import subprocess

        argv = [
            "unshare",
            "--uts",
            "sh",
            "-c",
            f'hostname {POD} && exec "$@"',
            "sh",
            sys.executable,
            "-m",
            "tsrouter",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return self


def router_replicas(k) -> int:
    return k.json("deployment", f"{NAME}-router")["spec"]["replicas"]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_reset_waits_for_the_router_to_leave_and_replays_every_record(k, operator_factory, kafka_bootstrap, guarantee):
    tag = uuid.uuid4().hex[:8]
    group, topic, even, odd = f"s{tag}", f"in-{tag}", f"even-{tag}", f"odd-{tag}"
    obj = sample_pipeline()
    obj["spec"]["streamName"] = group
    obj["spec"]["kafka"] = {"brokers": [kafka_bootstrap], "topics": {"input": topic, "even": even, "odd": odd}}
    obj["spec"]["router"]["processingGuarantee"] = guarantee
    # The autoscaler (Enforce) must stand aside while the reset holds the router at zero.
    obj["spec"]["router"]["autoscaling"] = {"maxReplicas": 2, "targetLagPerReplica": 1000}
    operator_factory().start()
    k.apply(obj)
    wait_for(settled(k, "Running"), 180, "pipeline Running")
    args = [
        f"--spring.cloud.stream.kafka.binder.brokers={kafka_bootstrap}",
        f"--spring.cloud.stream.bindings.input.destination={topic}",
        f"--spring.cloud.stream.bindings.even.destination={even}",
        f"--spring.cloud.stream.bindings.odd.destination={odd}",
        f"--spring.cloud.stream.bindings.input.group={group}",
        f"--tsrouter.processing-guarantee={guarantee.replace('_', '-')}",
    ]
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    values = timestamps(N)
    routers = []
    try:
        routers.append(PodRouter(args).start().wait_ready())
        produce(kafka_bootstrap, topic, values)
        wait_for(lambda: committed(kafka_bootstrap, topic, group).get(0) == N, 120, "the router committed all")

        # 1. The reset holds the router at zero; its consumer is still in the group, so
        #    the offsets stay as they are, however long it takes.
        k("annotate", "tsp", NAME, f"{ANNOTATION}=earliest")
        wait_for(lambda: router_replicas(k) == 0, 60, "the router Deployment at zero")
        time.sleep(8)  # several passes of the operator (it looks again every second)
        assert committed(kafka_bootstrap, topic, group) == {0: N}, "not reset while a router consumer is a member"
        pipe = k.json("tsp", NAME)
        assert pipe["metadata"]["annotations"][ANNOTATION] == "earliest"
        assert pipe["status"]["offsetReset"]["state"] == "StoppingRouter"
        assert "waiting for its consumers to leave the group" in pipe["status"]["offsetReset"]["message"]
        assert pipe["status"]["phase"] == "Progressing"
        aside = conditions(pipe)["Autoscaling"]
        assert (aside["status"], aside["reason"]) == ("False", "OffsetReset"), aside

        # 2. The kubelet's part: stop the pod's process (it leaves the group, commits, and
        #    with exactly-once ends its transaction); the operator resets, then starts it.
        assert routers[-1].terminate() == 0
        wait_for(lambda: router_replicas(k) == 1, 120, "the router Deployment back at one")
        assert committed(kafka_bootstrap, topic, group) == {0: 0}
        pipe = k.json("tsp", NAME)
        assert ANNOTATION not in (pipe["metadata"].get("annotations") or {})
        assert pipe["status"]["history"][-1]["offsetReset"]["partitions"] == [{"partition": 0, "from": N, "to": 0}]

        # 3. Started again, the router routes the whole input a second time: each record
        #    twice, each to the right side.
        routers.append(PodRouter(args).start().wait_ready())
        wait_for(lambda: committed(kafka_bootstrap, topic, group).get(0) == N, 120, "the replay committed")
        want_even = [v for v in values if int(chr(v[-1])) % 2 == 0]
        want_odd = [v for v in values if int(chr(v[-1])) % 2 == 1]
        # settle: a few seconds more, for any record beyond the expected (a third copy).
        evens = read_all(kafka_bootstrap, even, 2 * len(want_even), isolation_level=isolation, settle=2)
        odds = read_all(kafka_bootstrap, odd, 2 * len(want_odd), isolation_level=isolation, settle=2)
        got_even = sorted(r.value.split(b":", 1)[1] for r in evens)
        got_odd = sorted(r.value.split(b":", 1)[1] for r in odds)
        assert got_even == sorted(want_even * 2), f"{len(got_even)} on even"
        assert got_odd == sorted(want_odd * 2), f"{len(got_odd)} on odd"
        wait_for(settled(k, "Running"), 120, "Running again")
        wait_for(
            lambda: conditions(k.json("tsp", NAME))["Autoscaling"]["reason"] == "Enforcing", 60, "the autoscaler back"
        )
        assert router_replicas(k) == 1
    finally:
        for r in routers:
            r.stop()
