"""What every phase of a pass shares: the pipeline as read, what the controller
remembers about it between passes, and what the pass adds up (writes, problems, when to
run again).

What one phase hands to the next is not here: each phase returns it, and the controller
passes it on (see controller.py's phase list), so the order the phases depend on is
written in their signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import autoscale
from ..replay import ResetRequest
from ..switches import RestartRequest
from ..workqueue import Outcome

# When to look again, in seconds (each the delay a pass asks the work queue for):
RECHECK_DELETED_CHILD = 2.0  # a child is being deleted (or was, to recreate it): create it once it is gone
RECHECK_CONFLICT = 1.0  # a write raced with someone (409/404): read again soon
RECHECK_FINALIZER_CONFLICT = 0.5  # the finalizer patch lost a race: the object changed, read it again
RECHECK_FINALIZE = 1.0  # a deleted pipeline's finalizer could not be removed yet
RECHECK_NEW_TOPICS = 2.0  # topics created or grown just now: describe them again to see them as they are
RECHECK_SHADOW_STARTING = 0.2  # a shadow's names are in the status now: create its topics and group
TOPIC_BACKOFF_BASE = 5.0  # first retry of an unreachable broker; doubles up to the topic recheck period


def lowest_delay(*delays: float | None) -> float | None:
    """The soonest of the requeue delays the phases asked for (None: no requeue)."""
    asked = [d for d in delays if d is not None]
    return min(asked) if asked else None


@dataclass
class Memory:
    """What the controller remembers about a pipeline between passes."""

    last_error: str | None = None
    last_status_write: float = float("-inf")  # monotonic
    # Topics: the fingerprint last ensured, its result, when to check again.
    topics_key: tuple[Any, ...] | None = None
    topics_result: dict[str, Any] | None = None
    topics_due: float = 0.0
    topics_failures: int = 0
    # The router's PodDisruptionBudget is known to be absent (none wanted, none found or
    # ours deleted): a one-replica router then costs no GET per pass.
    pdb_absent: bool = False
    # The autoscaler's recommendations so far (its stabilization windows).
    autoscale_samples: autoscale.Samples = field(default_factory=autoscale.Samples)
    # A child write found the watch cache stale (409/404): the next pass reads from the API.
    read_fresh: bool = False
    # The watch cache's epoch when a pass last read from the API (watchcache.WatchCache).
    cache_epoch: int = 0
    # What the last full pass read (watchcache.inputs) when another over the same inputs
    # would do nothing: no error, no timer, its writes' answers in the cache. A pass
    # whose inputs in the cache are these again stops before its phases.
    inputs: tuple[Any, ...] | None = None
    # The last render's spec hashes (children.py): ((name, uid), Pipeline, hashes).
    rendered: tuple[Any, Any, list[str]] | None = None
    # The pipeline as last parsed: ((uid, resourceVersion, generation), Pipeline).
    parsed: tuple[tuple[Any, Any, Any], Any] | None = None


@dataclass
class Pass:
    """One reconcile pass over one pipeline: its input, and what the phases add up."""

    resource: dict[str, Any]  # the pipeline as read from the API server
    memory: Memory
    restart: RestartRequest | None  # the tspipe.io/restart annotation, parsed
    out: Outcome = field(default_factory=Outcome)
    problems: list[str] = field(default_factory=list)
    requeue: float | None = None
    reset: ResetRequest | None = None  # the tspipe.io/reset-offsets annotation, parsed
    # Read the children and pods from the API rather than the watch cache: the last
    # pass's write found the cache stale, or a watch listed again since this pipeline's
    # last such read (watchcache.py).
    fresh: bool = False
    recheck: float | None = None  # a timer that only expires a cache (see recheck_in)
    # What the pass read, for `Memory.inputs`: the children after its writes, the pods
    # (None: not read), the pipeline as its status write answered (None: not written).
    children: list[dict[str, Any]] | None = None
    pods_read: list[dict[str, Any]] | None = None
    written: dict[str, Any] | None = None

    @property
    def namespace(self) -> str:
        return str(self.resource["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.resource["metadata"]["name"])

    @property
    def prev_status(self) -> dict[str, Any]:
        return self.resource.get("status") or {}

    def again_in(self, delay: float | None) -> None:
        self.requeue = lowest_delay(self.requeue, delay)

    def recheck_in(self, delay: float | None) -> None:
        """Run again after `delay` to refresh what a phase caches (the topics' check),
        not because anything else is due: such a timer lets the pipeline settle
        (workqueue.settled), since a pass before it would reuse the cached result."""
        self.recheck = lowest_delay(self.recheck, delay)


class ReadAgain(Exception):
    """End the pass now and run it again after `delay` (the object changed under us)."""

    def __init__(self, delay: float):
        super().__init__(delay)
        self.delay = delay


def repeatable(ctx: Pass, p: Any) -> bool:
    """Whether another pass over what this one read (its writes' answers included) would
    do nothing: no problem, no timer, nothing read from elsewhere than the pipeline, its
    Deployments and pods (Kafka, the router's counters, autoscalers, a PodDisruptionBudget),
    no annotation acted on (`p`: the pass's `Pipeline`)."""
    return (
        not ctx.problems
        and ctx.out.error is None
        and ctx.out.delay is None
        and not ctx.memory.read_fresh
        and ctx.children is not None
        and ctx.memory.pdb_absent
        and ctx.restart is None
        and ctx.reset is None
        and not p.auto_rollback
        and p.router.autoscaling is None
        and not p.kafka.topics.manage
    )
