"""Shadow releases (spec.rollout.strategy: Shadow) on the real control plane, the real
broker and real routers, as test_rollback_kube.py runs them: kwok plays kubelet, the
local runner runs each router Deployment's program (the shadow's too; a misrouting
release is another copy of the router package), and the test is the time source.

One pipeline: a new prefix is promoted and the real router then writes it; a release
that writes each side to the other's topic is rejected and none of its records reaches
the real topics; a shadow that never becomes available is rejected at the progress
deadline; the stable router loses nothing throughout."""

from __future__ import annotations

import time
import uuid

import pytest
from kubehelpers import conditions, wait_for
from localinfra.kafka import consumer_groups, topic_values
from localinfra.runner import Runner
from samples import SAMPLE_NAME as NAME
from samples import sample_pipeline
from test_rollback_kube import (
    GOOD_IMAGE,
    MISROUTING_IMAGE,
    Source,
    events,
    misrouting_release,
    patch,
    rollout,
    router_template,
    verdict_for,
)

from tspipe.kafka_admin import TopicAdmin

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

VERIFY_SECONDS = 8
DEADLINE_SECONDS = 20


def shadow_of(k, generation: int, verdict: str):
    def probe():
        sh = rollout(k).get("shadow") or {}
        return sh if sh.get("generation") == generation and sh.get("verdict") == verdict else None

    return probe


def parity_errors(values: list[str], parity: str) -> list[str]:
    """Values on the `parity` topic whose last digit has the other parity."""
    return [v for v in values if (int(v.rstrip()[-1]) % 2 == 0) != (parity == "even")]


def test_a_harmless_shadow_is_promoted_a_misrouting_one_rejected_and_nothing_reaches_or_leaves_the_real_topics(
    k, namespace, kubeconfig, operator_factory, kafka_bootstrap, tmp_path
):
    tag = uuid.uuid4().hex[:8]
    topics = {"input": f"in-{tag}", "even": f"even-{tag}", "odd": f"odd-{tag}"}
    obj = sample_pipeline(
        streamName=f"s{tag}",
        rollout={
            "autoRollback": True,
            "strategy": "Shadow",
            "verifySeconds": VERIFY_SECONDS,
            "progressDeadlineSeconds": DEADLINE_SECONDS,
        },
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
    timings = []
    with runner:
        # The topics first, with their two partitions: a producer that found no input topic
        # would have the broker create it with one, and write only there for the test.
        k.apply(obj)
        wait_for(
            lambda: (TopicAdmin().describe([kafka_bootstrap], [topics["input"]])[topics["input"]] or (0,))[0] == 2,
            60,
            "the input topic with two partitions",
            interval=1.0,
        )
        with Source(kafka_bootstrap, topics["input"]) as source:
            # 1. The first revision: nothing to compare with, judged by autoRollback's window.
            first = wait_for(verdict_for(k, 1, "Stable"), 180, "the first revision verified")
            assert "shadow" not in first

            # 2. A new prefix: a shadow first (the real router unchanged meanwhile), promoted.
            gen = patch(k, {"router": {"evenPrefix": "EVEN:"}})
            t0 = time.monotonic()
            running = wait_for(
                lambda: (
                    (rollout(k).get("shadow") or {}).get("state") == "Running"
                    and rollout(k)["shadow"]["generation"] == gen
                    and rollout(k)
                ),
                60,
                "the shadow running",
            )
            assert running["verdict"] == "Verifying" and running["reason"] == "Shadowing"
            shadow_name = running["shadow"]["deployment"]
            wait_for(lambda: k.get_or_none("deployment", shadow_name), 30, "the shadow Deployment")
            assert "--tsrouter.even-prefix=EVEN:" not in router_template(k)["args"], "the real router waits"
            good = wait_for(shadow_of(k, gen, "Promoted"), 120, "the harmless shadow promoted")
            timings.append(f"prefix change promoted {time.monotonic() - t0:.1f}s after the change")
            assert good["reason"] == "OutputsEqual" and good["compared"] > 0 and good["differing"] == 0, good
            # The source writes to both input partitions: each compared on its own.
            assert [x["partition"] for x in good["partitions"] if x["compared"] > 0] == [0, 1], good
            cost = good["load"]
            assert cost["consumed"] > 0 and cost["written"] >= cost["consumed"] and cost["read"] > 0, cost
            timings.append(
                f"its broker load: {cost['consumed']} records consumed, {cost['written']} written, "
                f"{cost['read']} read back by the operator ({len(source.sent)} sent so far)"
            )
            wait_for(lambda: "--tsrouter.even-prefix=EVEN:" in router_template(k)["args"], 60, "the router rolled")
            wait_for(
                lambda: any(v.startswith("EVEN:") for v in topic_values(kafka_bootstrap, topics["even"])),
                60,
                "the new prefix on the real even topic",
                interval=2.0,
            )
            wait_for(verdict_for(k, gen, "Stable"), 120, "the promoted revision verified by the window")
            assert any(e["reason"] == "ShadowPromoted" for e in events(k))
            history = k.json("tsp", NAME)["status"]["history"]
            assert any((h.get("shadow") or {}).get("verdict") == "Promoted" for h in history), history
            done = wait_for(lambda: rollout(k)["shadow"]["state"] == "Done" and rollout(k), 60, "the shadow removed")
            assert k.get_or_none("deployment", shadow_name) is None
            assert set(TopicAdmin().describe([kafka_bootstrap], done["shadow"]["topics"]).values()) == {None}

            # 3. A misrouting release: rejected by its shadow; the real router never changes.
            stable_args = router_template(k)["args"]
            gen = patch(k, {"router": {"image": MISROUTING_IMAGE}})
            t0 = time.monotonic()
            bad = wait_for(
                lambda: (
                    rollout(k).get("generation") == gen and rollout(k).get("verdict") == "ShadowRejected" and rollout(k)
                ),
                120,
                "the misrouting shadow rejected",
            )
            timings.append(f"misrouting release rejected {time.monotonic() - t0:.1f}s after the change")
            sh = bad["shadow"]
            assert bad["reason"] == "OutputsDiffer" and sh["differing"] > 0, bad
            # Every record it routed is on the wrong side, on both input partitions.
            assert [(x["partition"], x["differing"] == x["compared"] > 0) for x in sh["partitions"]] == [
                (0, True),
                (1, True),
            ], sh
            d = sh["differences"][0]
            assert d["stable"].split(":")[0] != d["shadow"].split(":")[0], d
            assert router_template(k)["image"] == GOOD_IMAGE and router_template(k)["args"] == stable_args
            degraded = wait_for(
                lambda: (o := k.json("tsp", NAME))["status"]["phase"] == "Degraded" and conditions(o)["Degraded"],
                60,
                "Degraded after the rejection",
            )
            assert degraded["reason"] == "ShadowRejected" and "offset" in degraded["message"]
            assert any(e["reason"] == "ShadowRejected" and e["type"] == "Warning" for e in events(k))
            header, row = (line.split() for line in k("get", "tsp").stdout.splitlines()[:2])
            assert dict(zip(header, row, strict=False))["ROLLOUT"] == "ShadowRejected"
            wait_for(lambda: rollout(k)["shadow"]["state"] == "Done", 60, "the rejected shadow removed")
            assert k.get_or_none("deployment", shadow_name) is None

            # 4. A shadow that never becomes available (unschedulable): rejected at the deadline.
            gen = patch(k, {"router": {"image": GOOD_IMAGE, "resources": {"requests": {"cpu": "500"}}}})
            t0 = time.monotonic()
            stuck = wait_for(shadow_of(k, gen, "ShadowRejected"), 120, "the unavailable shadow rejected")
            timings.append(
                f"unavailable shadow rejected {time.monotonic() - t0:.1f}s after the change "
                f"(progressDeadlineSeconds {DEADLINE_SECONDS})"
            )
            assert stuck["reason"] == "ProgressDeadlineExceeded", stuck
            real = router_template(k)
            assert real["args"] == stable_args and real["resources"]["requests"]["cpu"] != "500", real
            wait_for(lambda: rollout(k)["shadow"]["state"] == "Done", 60, "the unavailable shadow removed")
            time.sleep(2)  # a little more traffic through the stable router after the rejections

        # No record of the misrouting release reached the real topics (it would be on the
        # wrong one); the shadow topics are gone; nothing the source wrote was lost.
        even, odd = topic_values(kafka_bootstrap, topics["even"]), topic_values(kafka_bootstrap, topics["odd"])
        assert parity_errors(even, "even") == [] and parity_errors(odd, "odd") == []
        assert set(TopicAdmin().describe([kafka_bootstrap], sh["topics"]).values()) == {None}, "shadow topics deleted"
        routed = {v.rsplit(":", 1)[-1] for v in even + odd}
        missing = set(source.sent) - routed
        if missing:  # the last records may still be on their way
            wait_for(
                lambda: (
                    not (
                        set(source.sent)
                        - {
                            v.rsplit(":", 1)[-1]
                            for t in (topics["even"], topics["odd"])
                            for v in topic_values(kafka_bootstrap, t)
                        }
                    )
                ),
                60,
                "every timestamp routed",
                interval=2.0,
            )

        # 5. The pipeline deleted while a shadow runs: the operator deletes the shadow's
        # Deployment, waits for its router to leave its group, deletes the group and the
        # shadow topics, and only then lets the pipeline go (deleteOnRemoval is off: the
        # pipeline's own topics stay).
        gen = patch(k, {"router": {"resources": None, "oddPrefix": "ODD:"}})  # schedulable again
        running = wait_for(
            lambda: (
                (sh := rollout(k).get("shadow") or {}).get("generation") == gen
                and sh.get("state") == "Running"
                and sh.get("window")
                and sh
            ),
            60,
            "a new shadow available, its window open (its router a member of its group)",
        )
        wait_for(lambda: k.get_or_none("deployment", running["deployment"]), 30, "its Deployment")
        assert set(TopicAdmin().describe([kafka_bootstrap], running["topics"]).values()) != {None}
        assert "tspipe.io/delete-topics" in k.json("tsp", NAME)["metadata"]["finalizers"]
        t0 = time.monotonic()
        k("delete", "tsp", NAME, "--wait=false")
        wait_for(lambda: k.get_or_none("tsp", NAME) is None, 150, "the pipeline gone")
        timings.append(f"deleted mid-shadow: gone with its shadow topics in {time.monotonic() - t0:.1f}s")
        assert set(TopicAdmin().describe([kafka_bootstrap], running["topics"]).values()) == {None}, (
            "the shadow topics deleted with the pipeline"
        )
        assert running["group"] not in consumer_groups(kafka_bootstrap), "its group deleted"
        assert None not in TopicAdmin().describe([kafka_bootstrap], list(topics.values())).values()
    print(f"shadow: {'; '.join(timings)}; {len(source.sent)} timestamps, none lost, none misrouted")
