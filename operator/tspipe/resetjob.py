"""The one-shot Job that resets the router's offsets when the broker needs credentials (pure).

The operator never reads Secrets, so with `spec.kafka.credentials` it cannot connect to
the broker itself. The reset then runs as a Job of the pipeline's router image with the
router's own pod: the same arguments (topics, group, brokers), the same credential env
(secretKeyRef and the `$(VAR)` JAAS line, the CA mount), the same podTemplate security
and scheduling settings, non-root with a read-only root filesystem; only the command
differs (`tsp-router reset-offsets`, router/tsrouter/resetoffsets.py) and the probes and
port are left out. The Job writes its result to its termination message, which the
operator reads back from the Job's pod (offsetplan.parse_result).
"""

from __future__ import annotations

import copy
from typing import Any

from .components import ROUTER
from .model import Pipeline
from .names import LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, MANAGER, PART_OF
from .render import deployment_name, owner_reference, render_deployment
from .stamps import digest

COMPONENT = "reset-offsets"
COMMAND = ["tsp-router", "reset-offsets"]
# The Job's own bound: its wait for the router's consumers to leave (WAIT_SECONDS) and a
# few broker round trips fit; a Job stuck longer (an image that cannot be pulled, a
# broker that never answers) fails, and the failure is the reset's refusal.
WAIT_SECONDS = 60
ACTIVE_DEADLINE_SECONDS = 240
TTL_SECONDS = 600  # the finished Job and its pod are kept this long to look at, then removed
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
TERMINATION_LOG = "/dev/termination-log"


def job_name(pipeline: str, request: str, since: str) -> str:
    """One Job per request: the name carries a digest of the value and when it was first
    asked, so a new request never reads an older one's Job. At most 63 characters (the
    Job controller puts the name in a label)."""
    return f"{pipeline[:44]}-reset-{digest([request, since], 8)}"


def job_labels(pipeline: str) -> dict[str, str]:
    """The Job's labels. Its pod carries none of the router's: neither the router's
    Deployment nor the operator's pod reads may take it for a router pod."""
    return {
        LABEL_NAME: "tsp-router",
        LABEL_INSTANCE: pipeline,
        LABEL_COMPONENT: COMPONENT,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGER,
    }


def render_job(resource: dict[str, Any], p: Pipeline, name: str, request: str) -> dict[str, Any]:
    router = render_deployment(resource, p, ROUTER)
    template = copy.deepcopy(router["spec"]["template"])
    pod = template["spec"]
    container = pod["containers"][0]
    for key in ("readinessProbe", "livenessProbe", "startupProbe", "ports"):
        container.pop(key, None)
    container["name"] = COMPONENT
    container["command"] = list(COMMAND)
    container["args"] = [
        f"--reset.to={request}",
        f"--reset.router={deployment_name(p.name, ROUTER)}",
        f"--reset.wait-seconds={WAIT_SECONDS}",
        *container["args"],
    ]
    container["terminationMessagePath"] = TERMINATION_LOG
    container["terminationMessagePolicy"] = "File"
    pod["restartPolicy"] = "Never"
    # Spread constraints select the router's pods and mean nothing for a single Job pod.
    pod.pop("topologySpreadConstraints", None)
    template["metadata"] = {"labels": {LABEL_PART_OF: PART_OF}}
    if (router["spec"]["template"].get("metadata") or {}).get("annotations"):
        template["metadata"]["annotations"] = dict(router["spec"]["template"]["metadata"]["annotations"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": p.namespace,
            "labels": job_labels(p.name),
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            "backoffLimit": 0,  # a failed reset is a refusal, never retried behind the user's back
            "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "template": template,
        },
    }


def finished(job: dict[str, Any]) -> str:
    """'Complete', 'Failed', or '' while it runs."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return str(c["type"])
    return ""


def failure(job: dict[str, Any]) -> str:
    """Why a failed Job failed, as its Failed condition says."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")
    return ""


def termination_message(pods: list[dict[str, Any]]) -> str:
    """The reset container's termination message from the Job's pod ('' if none yet)."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            done = (cs.get("state") or {}).get("terminated") or {}
            if done.get("message"):
                return str(done["message"])
    return ""
