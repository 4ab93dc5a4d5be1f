"""Run the operator: `tspipe operator ...` or `python -m tspipe.manager ...`."""
from __future__ import annotations

import argparse
import logging
import sys

import kopf

from .controller import Controller
from .kube import Kube


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tspipe operator", description="Run the TimestampPipeline operator.")
    scope = ap.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="serve this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace (default)")
    ap.add_argument("--standalone", action="store_true", help="no peering with other operator instances")
    ap.add_argument("--peering", default=None, help="peering object name (when not standalone)")
    ap.add_argument("--liveness", default=None, metavar="URL",
                    help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    ap.add_argument("--resync-seconds", type=float, default=300.0,
                    help="re-check every pipeline this often even without events (default 300)")
    ap.add_argument("--inactivity-timeout", type=float, default=70.0,
                    help="reconnect a watch that delivered nothing for this long (default 70)")
    ap.add_argument("--server-timeout", type=int, default=300,
                    help="ask the API server to end each watch request after this long (default 300)")
    ap.add_argument("--backoff-max", type=float, default=300.0, help="longest retry delay after failures")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                    help="level of the operator's own log (kopf's is set by -v/-q)")
    ap.add_argument("-v", "--verbose", action="store_true", help="kopf debug logging")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    kopf.configure(verbose=args.verbose, quiet=args.quiet)
    logging.getLogger("tspipe").setLevel(args.log_level.upper())
    if not args.verbose:
        # kopf logs every handled watch event at INFO; the controller logs what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        kube = Kube()
    except Exception as exc:  # noqa: BLE001 - report config problems in one line
        print(f"tspipe operator: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    controller = Controller(kube, resync_seconds=args.resync_seconds, backoff_max=args.backoff_max)
    from . import handlers  # registers the kopf handlers

    settings = kopf.OperatorSettings()
    handlers.configure(settings, inactivity_timeout=args.inactivity_timeout, server_timeout=args.server_timeout)

    kopf.run(
        standalone=args.standalone or None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        settings=settings,
        memo=kopf.Memo(controller=controller),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
