"""`tspipe`: the operator and the SCDF fallback in one command.

    tspipe operator ...                         run the operator (tspipe.manager)
    tspipe scdf render   -f FILE                print the SCDF shell script for a pipeline
    tspipe scdf deploy   -f FILE --server URL   register, create and deploy (idempotent)
    tspipe scdf status   -f FILE --server URL
    tspipe scdf undeploy -f FILE --server URL
    tspipe scdf destroy  -f FILE --server URL
    tspipe scdf import   --stream NAME --server URL   print the TimestampPipeline of a deployed stream

Exit codes: 0 done, 1 the server or the network refused, 2 bad input (pipeline file,
options, credentials).
"""

from __future__ import annotations

import argparse
import sys

from .scdf import commands as scdf_commands


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tspipe", description="TimestampPipeline operator and SCDF fallback.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    op = sub.add_parser("operator", help="run the Kubernetes operator (all further arguments go to it)", add_help=False)
    op.add_argument("rest", nargs=argparse.REMAINDER)
    scdf_commands.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after `operator` belongs to the operator, including -h.
    if argv[:1] == ["operator"]:
        from .manager import main as operator_main  # lazy: kopf is heavy and not needed for scdf

        return operator_main(argv[1:])
    args = build_parser().parse_args(argv)
    return scdf_commands.run(args)


if __name__ == "__main__":
    sys.exit(main())
