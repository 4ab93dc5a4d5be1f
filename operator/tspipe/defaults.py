"""The operator's tunables and their defaults, in one place: the CLI's flags and help
texts, the work queue and the controller read them from here.

Each is a trade between how soon the operator notices something and what it costs the
API server or the broker; the comment says which way each leans.
"""

from __future__ import annotations

# Pass over every pipeline this often without any event: the level-based safety net for a
# missed watch event (client-go's informers resync on a similar scale).
RESYNC_SECONDS = 300.0
# A resync skips the pass of a pipeline that is settled (its last pass wrote nothing and
# asked for no timer) and that no watch event touched since, unless that pass ran longer
# ago than this: with a resync shorter than this, a settled pipeline still gets a whole
# pass this often (with the default resync, at every resync). Such a pass reads the watch
# cache, as client-go's resync does (a watch that lists again makes each pipeline's next
# pass read the API), and stops early like any other when nothing it reads changed and
# nothing it did depended on anything else (phases/context.py: `repeatable`).
REREAD_SECONDS = 300.0
# A failed pass is retried after BACKOFF_BASE seconds, doubling up to BACKOFF_MAX: a
# broken pipeline costs a few calls an hour, not a hot loop.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 300.0
# The Deployment controller updates the four children in bursts; one pass after the
# burst sees them all.
DEBOUNCE_SECONDS = 1.0
# Passes that run at once (client-go's MaxConcurrentReconciles): their API calls share
# the default executor's few threads anyway, and 2,000 pipelines applied at once started
# 2,000 passes that each held their rendered Deployments while waiting for a thread.
MAX_PASSES = 32
# Each Kafka admin call (topics, lag, offsets) is bounded by this: an unreachable broker
# becomes a condition in seconds instead of a stuck worker.
KAFKA_TIMEOUT = 5.0
# Unchanged topics are described again this often (drift, a partition added by hand).
TOPIC_RECHECK_SECONDS = 300.0
# Status changes that only move replica counters are written with the next significant
# change; > 0 also writes them alone, at most this often.
PROGRESS_INTERVAL = 0.0
# A peered replica looks at the peering object this often (at least; the manager uses a
# third of the peering lifetime).
PEERING_CHECK_SECONDS = 10.0
# How the operator reads a router pod's /actuator/prometheus, for rollouts judged by the
# router pods' own counters (a broker with credentials): "direct" at the pod's IP on its
# actuator port (as Strimzi's operator talks to its pods: the operator must reach pod
# IPs, as it does from its own pod), or "proxy" through the API server's pod proxy (RBAC
# pods/proxy get, which reaches every HTTP GET endpoint of every pod the role covers:
# opt in with manifests/pod-proxy or the chart's rbac.podProxy, which set both).
ROUTER_METRICS_DIRECT, ROUTER_METRICS_PROXY = "direct", "proxy"
ROUTER_METRICS = ROUTER_METRICS_DIRECT
# A pod that does not answer within this is left out of the verdict, not waited for.
ROUTER_METRICS_TIMEOUT = 5.0
