"""Data-gated rollouts on the real control plane, the real broker and real routers: kwok
plays kubelet for the pods, the local runner runs each router Deployment's program for
real (a misrouting release is another copy of the router package, standing in for an
image), and the test itself is the time source (it writes numbered timestamps)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kubehelpers import conditions, wait_for
from localinfra.kafka import topic_values
from localinfra.runner import Runner
from samples import SAMPLE_NAME as NAME
from samples import sample_pipeline

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

ROUTER_SRC = Path(__file__).resolve().parents[2] / "router" / "tsrouter"
GOOD_IMAGE = "ghcr.io/tspipe/router:0.1.0"
MISROUTING_IMAGE = "ghcr.io/tspipe/router:0.2.0-misroute"
VERIFY_SECONDS = 8


def misrouting_release(tmp_path: Path) -> Path:
    """A copy of the router that writes each channel to the other channel's topic (the
    swap is in its configuration, so it holds on every routing path)."""
    root = tmp_path / "misroute"
    shutil.copytree(ROUTER_SRC, root / "tsrouter")
    config = root / "tsrouter" / "config.py"
    wiring = "        even_topic=even_topic,\n        odd_topic=odd_topic,\n"
    text = config.read_text()
    assert wiring in text, "config.py changed: update the misrouting release"
    config.write_text(text.replace(wiring, "        even_topic=odd_topic,\n        odd_topic=even_topic,\n"))
    return root


class Source:
    """The time source's stand-in: numbered timestamps, 20 a second, every one acknowledged."""

    def __init__(self, bootstrap: str, topic: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.topic, self.sent, self._stop = topic, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            value = f"11/27/26 {i:08d}"
            self.producer.send(self.topic, value.encode()).get(timeout=30)
            self.sent.append(value)
            i += 1
            self._stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(30)
        self.producer.close()


def rollout(k) -> dict:
    return ((k.get_or_none("tsp", NAME) or {}).get("status") or {}).get("rollout") or {}


def verdict_for(k, generation: int, verdict: str):
    def probe():
        r = rollout(k)
        return r if r.get("generation") == generation and r.get("verdict") == verdict else None

    return probe


def router_template(k) -> dict:
    return k.json("deployment", f"{NAME}-router")["spec"]["template"]["spec"]["containers"][0]


def patch(k, spec: dict) -> int:
    k("patch", "tsp", NAME, "--type=merge", "-p", json.dumps({"spec": spec}))
    return k.json("tsp", NAME)["metadata"]["generation"]


def events(k) -> list[dict]:
    return k.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]


def test_bad_rollouts_roll_back_a_good_one_is_stable_and_no_timestamp_is_lost(
    k, namespace, kubeconfig, operator_factory, kafka_bootstrap, tmp_path
):
    tag = uuid.uuid4().hex[:8]
    topics = {"input": f"in-{tag}", "even": f"even-{tag}", "odd": f"odd-{tag}"}
    obj = sample_pipeline(
        streamName=f"s{tag}",
        rollout={"autoRollback": True, "verifySeconds": VERIFY_SECONDS, "progressDeadlineSeconds": 10},
    )
    obj["spec"]["kafka"] = {"brokers": [kafka_bootstrap], "topics": {**topics, "partitions": 2}}
    obj["spec"]["router"]["image"] = GOOD_IMAGE
    runner = Runner(
        kubeconfig,
        namespace,
        tmp_path / "apps",
        kinds=("router",),
        router_sources={MISROUTING_IMAGE: misrouting_release(tmp_path)},
    )
    operator_factory().start()
    with runner:
        source = Source(kafka_bootstrap, topics["input"])
        with source:
            sent = run_the_rollouts(k, obj)

        # Nothing lost: every timestamp the source wrote is on even or odd (some on the wrong
        # one while the misrouting release ran: that is what the check caught). The prefixes
        # end in ':' and the timestamps have none.
        def missing() -> set[str]:
            routed = {
                v.rsplit(":", 1)[-1] for t in (topics["even"], topics["odd"]) for v in topic_values(kafka_bootstrap, t)
            }
            return set(source.sent) - routed

        wait_for(lambda: not missing(), 90, "every timestamp routed", interval=2.0)
    print(f"rollback: {sent}; {len(source.sent)} timestamps, none lost")


def run_the_rollouts(k, obj) -> str:
    """The four rollouts of the test above; returns the decision times measured."""
    # 1. The first revision: Ready, watched for the window, stable.
    k.apply(obj)
    first = wait_for(verdict_for(k, 1, "Stable"), 180, "the first revision verified")
    assert first["reason"] == "ChecksPassed" and first["checks"]["consumed"] > 0, first
    assert first["checks"]["lost"] == 0 and first["checks"]["misrouted"] == 0
    assert conditions(k.json("tsp", NAME))["RolloutVerified"]["status"] == "True"

    # 2. A good rollout (a new prefix): stable, and now the revision to return to.
    gen = patch(k, {"router": {"evenPrefix": "EVEN:"}})
    good = wait_for(verdict_for(k, gen, "Stable"), 120, "the good rollout verified")
    assert good["stable"]["generation"] == gen and good["checks"]["sampled"] > 0

    # 3. A misrouting release: Ready (kwok), but the data check sees it and rolls it back.
    gen = patch(k, {"router": {"image": MISROUTING_IMAGE}})
    wait_for(lambda: rollout(k).get("window") and rollout(k).get("generation") == gen, 120, "its window opened")
    t_ready = time.monotonic()
    bad = wait_for(verdict_for(k, gen, "RolledBack"), 120, "the misrouting release rolled back")
    misroute_to_rollback = time.monotonic() - t_ready
    assert bad["reason"] == "Misrouted" and bad["checks"]["misrouted"] > 0, bad
    assert bad["message"].startswith(f"rolled back to generation {good['stable']['generation']}")
    wait_for(lambda: router_template(k)["image"] == GOOD_IMAGE, 60, "the router back on the stable image")
    obj_now = k.json("tsp", NAME)
    assert obj_now["spec"]["router"]["image"] == MISROUTING_IMAGE, "the user's spec is not edited"
    degraded = wait_for(
        lambda: (o := k.json("tsp", NAME))["status"]["phase"] == "Degraded" and conditions(o)["Degraded"],
        120,
        "Degraded after the rollback",
    )
    assert degraded["reason"] == "RolledBack" and "Misrouted" in degraded["message"]
    assert any(e["reason"] == "RolledBack" and e["type"] == "Warning" for e in events(k))
    header, row = (line.split() for line in k("get", "tsp").stdout.splitlines()[:2])
    assert dict(zip(header, row, strict=False))["ROLLOUT"] == "RolledBack", "kubectl get shows the verdict"

    # 4. A release that never becomes available (unschedulable): rolled back at the deadline.
    gen = patch(k, {"router": {"image": GOOD_IMAGE, "resources": {"requests": {"cpu": "500"}}}})
    t_change = time.monotonic()
    stuck = wait_for(verdict_for(k, gen, "RolledBack"), 180, "the unschedulable release rolled back")
    deadline_to_rollback = time.monotonic() - t_change
    assert stuck["reason"] == "ProgressDeadlineExceeded", stuck
    wait_for(
        lambda: router_template(k)["resources"]["requests"]["cpu"] != "500",
        60,
        "the router back on the stable revision's resources",
    )
    return (
        f"misrouting release rolled back {misroute_to_rollback:.1f}s after its window opened (verifySeconds "
        f"{VERIFY_SECONDS}); unschedulable release rolled back {deadline_to_rollback:.1f}s after the change "
        "(progressDeadlineSeconds 10)"
    )
