"""What an end-to-end test prints when it fails, so CI's output alone explains it.

Each function returns text and never raises: a diagnosis that itself fails must not hide
the test's own failure. The pieces: the pipeline's status and its Deployments (API
server), the programs a runner started and the tail of each one's log, an operator's log,
and what Kafka holds (end offsets of the pipeline's topics, the consumer groups'
members, assignments and committed offsets).
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TAIL_LINES = 40  # enough for a Spring app's start-up failure or a router's last errors


def safely(title: str, produce: Callable[[], str]) -> str:
    """`produce()` under a heading; an exception becomes its traceback's last line."""
    try:
        body = produce()
    except Exception:  # noqa: BLE001 - a diagnosis must never raise
        body = "(could not collect: " + traceback.format_exc().strip().splitlines()[-1] + ")"
    return f"===== {title} =====\n{body.rstrip()}\n"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    text = Path(path).read_text(errors="replace").splitlines()
    skipped = f"[... {len(text) - lines} earlier lines]\n" if len(text) > lines else ""
    return skipped + "\n".join(text[-lines:])


def kube_state(cp, namespace: str) -> str:
    """The pipelines' status, the Deployments' rollout state and the namespace's Events."""
    out = []
    tsps = json.loads(cp.kubectl("get", "tsp", "-n", namespace, "-o", "json").stdout)["items"]
    for obj in tsps:
        meta = obj["metadata"]
        out.append(
            f"TimestampPipeline {meta['name']} generation={meta.get('generation')} "
            f"status={json.dumps(obj.get('status'), indent=1, sort_keys=True)}"
        )
    deps = json.loads(cp.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
    for d in deps:
        st, spec = d.get("status") or {}, d["spec"]
        conds = "; ".join(
            f"{c['type']}={c['status']} ({c.get('reason')}: {c.get('message')})" for c in st.get("conditions") or []
        )
        c0 = spec["template"]["spec"]["containers"][0]
        out.append(
            f"Deployment {d['metadata']['name']} gen={d['metadata'].get('generation')} "
            f"observed={st.get('observedGeneration')} replicas={spec.get('replicas')} "
            f"updated={st.get('updatedReplicas')} ready={st.get('readyReplicas')} "
            f"available={st.get('availableReplicas')} image={c0.get('image')}\n  conditions: {conds}"
        )
    events = cp.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
    out.append("Events:\n" + (events.stdout or events.stderr))
    return "\n".join(out)


def runner_state(runner) -> str:
    """Each program the runner keeps: how often it was started, its processes' state."""
    out = []
    for key, (prog, procs) in sorted(runner.running.items()):
        states = ", ".join(
            f"pid {p.pid} " + ("running" if p.poll() is None else f"exited {p.returncode}") for p in procs
        )
        out.append(f"{key} ({prog.kind}:{prog.version}) starts={runner.starts.get(key)}: {states}")
    gone = sorted(set(runner.starts) - set(runner.running))
    if gone:
        out.append("started before, not running now: " + ", ".join(gone))
    return "\n".join(out) or "(nothing running)"


_BOOT_STARTED = re.compile(r"Started \w+ in [\d.]+ seconds \(process running for [\d.]+\)")
_BOOT_FAILED = re.compile(r"APPLICATION FAILED TO START|Application run failed")


def start_times(logdir: Path) -> str:
    """Per app log: Spring Boot's own start-up time, or that it failed or has not started
    yet (tells a slow machine from a broken app)."""
    out = []
    for path in sorted(Path(logdir).glob("*.log")):
        text = path.read_text(errors="replace")
        started = _BOOT_STARTED.findall(text)
        if started:
            out.append(f"{path.name}: " + "; ".join(started))
        elif _BOOT_FAILED.search(text):
            out.append(f"{path.name}: FAILED TO START (see its tail)")
        elif "tsrouter" in text:
            out.append(f"{path.name}: router ({text.count(' starting: ')} start(s))")
        else:
            out.append(f"{path.name}: not started yet ({len(text.splitlines())} lines)")
    return "\n".join(out) or "(no logs)"


def log_tails(logdir: Path, pattern: str = "*.log") -> list[tuple[str, str]]:
    """(title, tail) for every log file under `logdir`, in name order."""
    return [(f"log {p.name}", tail(p)) for p in sorted(Path(logdir).glob(pattern))]


def kafka_state(bootstrap: str, topics: list[str], groups: list[str]) -> str:
    """End offsets of `topics`; members, assignments and committed offsets of `groups`."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    out = []
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for topic in topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                out.append(f"topic {topic}: does not exist")
                continue
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
            out.append(f"topic {topic}: end offsets " + ", ".join(f"p{tp.partition}={o}" for tp, o in ends.items()))
        for group, desc in sorted(admin.describe_groups(groups).items()):
            members = "; ".join(_member(m) for m in desc.get("members") or []) or "none"
            out.append(
                f"group {group}: state={desc.get('group_state')} protocol={desc.get('protocol_data')} "
                f"members: {members}"
            )
            offsets = admin.list_group_offsets({group: None}).get(group) or {}
            out.append(
                "  committed: "
                + (", ".join(f"{tp.topic}/p{tp.partition}={m.offset}" for tp, m in sorted(offsets.items())) or "none")
            )
    finally:
        admin.close()
        consumer.close()
    return "\n".join(out)


def _member(m: dict[str, Any]) -> str:
    """One group member as kafka-python's describe_groups decodes it."""
    topics = (m.get("member_metadata") or {}).get("topics") if isinstance(m.get("member_metadata"), dict) else None
    assignment = m.get("member_assignment")
    parts = assignment.get("assigned_partitions") if isinstance(assignment, dict) else None
    assigned = ",".join(f"{p['topic']}{p['partitions']}" for p in parts) if parts else "nothing"
    return f"{m.get('client_id')}@{m.get('client_host')} subscribed {topics} assigned {assigned}"


def report(sections: list[tuple[str, Callable[[], str]]]) -> str:
    return "\n".join(safely(title, produce) for title, produce in sections)
