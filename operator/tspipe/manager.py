"""Run the operator: `tspipe operator ...` or `python -m tspipe.manager ...`."""

from __future__ import annotations

import argparse
import logging
import random
import sys

import kopf

from . import defaults
from .controller import Controller
from .kube import Kube


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tspipe operator", description="Run the TimestampPipeline operator.")
    scope = ap.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="serve this namespace (repeatable; globs allowed)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace (default)")
    ap.add_argument("--standalone", action="store_true", help="no peering with other operator instances")
    ap.add_argument(
        "--peering",
        default=None,
        help="kopf peering object name: run several replicas, one active (needs the peering CRDs)",
    )
    ap.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default: random, so two replicas never tie and both pause)",
    )
    ap.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        help="seconds a silent peer counts as alive; a standby takes over after this (default 60)",
    )
    ap.add_argument(
        "--liveness", default=None, metavar="URL", help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    ap.add_argument(
        "--resync-seconds",
        type=float,
        default=defaults.RESYNC_SECONDS,
        help="re-check every pipeline this often even without events (default %(default)g)",
    )
    ap.add_argument(
        "--inactivity-timeout",
        type=float,
        default=70.0,
        help="reconnect a watch that delivered nothing for this long (default 70)",
    )
    ap.add_argument(
        "--server-timeout",
        type=int,
        default=300,
        help="ask the API server to end each watch request after this long (default 300)",
    )
    ap.add_argument(
        "--backoff-max",
        type=float,
        default=defaults.BACKOFF_MAX,
        help="longest retry delay after failures (default %(default)g)",
    )
    ap.add_argument(
        "--progress-interval",
        type=float,
        default=defaults.PROGRESS_INTERVAL,
        help="also write status changes that only move replica counters, at most this often "
        "(default %(default)g: only together with a phase or condition change)",
    )
    ap.add_argument(
        "--debounce-seconds",
        type=float,
        default=defaults.DEBOUNCE_SECONDS,
        help="coalesce Deployment events per pipeline for this long (default %(default)g)",
    )
    ap.add_argument(
        "--kafka-timeout",
        type=float,
        default=defaults.KAFKA_TIMEOUT,
        help="seconds per Kafka admin call (topics, lag); unreachable means a condition (default %(default)g)",
    )
    ap.add_argument(
        "--topic-recheck-seconds",
        type=float,
        default=defaults.TOPIC_RECHECK_SECONDS,
        help="re-describe unchanged topics this often (default %(default)g)",
    )
    ap.add_argument(
        "--router-metrics",
        default=defaults.ROUTER_METRICS,
        choices=[defaults.ROUTER_METRICS_DIRECT, defaults.ROUTER_METRICS_PROXY],
        help="how to read a router pod's /actuator/prometheus when judging a rollout by its counters "
        "(Kafka credentials): direct, at the pod's IP on its actuator port, or proxy, through the API "
        "server's pod proxy (needs RBAC pods/proxy get: manifests/pod-proxy, the chart's rbac.podProxy) "
        "(default %(default)s)",
    )
    ap.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port (/metrics)")
    ap.add_argument("--metrics-address", default="0.0.0.0", help="address for --metrics-port (default 0.0.0.0)")
    ap.add_argument("--log-format", default="text", choices=["text", "json"], help="log line format")
    ap.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="level of the operator's own log (kopf's is set by -v/-q)",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="kopf debug logging")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    # kopf's own JSON formatter: one object per line, with the object a line is about.
    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger("tspipe").setLevel(args.log_level.upper())
    # kafka-python logs every failed connection attempt at ERROR; the operator reports
    # an unreachable broker once, as a condition and an Event.
    logging.getLogger("kafka").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    if not args.verbose:
        # kopf logs every handled watch event at INFO; the controller logs what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        kube = Kube()
    except Exception as exc:  # noqa: BLE001 - report config problems in one line
        print(f"tspipe operator: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    controller = Controller(
        kube,
        resync_seconds=args.resync_seconds,
        backoff_max=args.backoff_max,
        progress_interval=args.progress_interval,
        debounce_seconds=args.debounce_seconds,
        kafka_timeout=args.kafka_timeout,
        topic_recheck_seconds=args.topic_recheck_seconds,
        router_metrics=args.router_metrics,
    )
    if args.metrics_port is not None:
        controller.metrics.serve(args.metrics_port, args.metrics_address)
    from . import handlers  # registers the kopf handlers

    settings = kopf.OperatorSettings()
    handlers.configure(settings, inactivity_timeout=args.inactivity_timeout, server_timeout=args.server_timeout)
    priority = None
    if args.peering and not args.standalone:
        # Peering asked for: without its CRDs kopf would run unpeered (two active replicas).
        settings.peering.mandatory = True
        settings.peering.lifetime = args.peering_lifetime
        priority = args.priority if args.priority is not None else random.randint(1, 1_000_000)
        # The controller's own timers follow the same election (kopf only pauses its watches).
        controller.peering = (args.namespace[0] if args.namespace else None, args.peering, priority)
        controller.peering_check_seconds = max(1.0, args.peering_lifetime / 3)

    kopf.run(
        standalone=args.standalone or None,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=args.liveness,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        settings=settings,
        memo=kopf.Memo(controller=controller),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
