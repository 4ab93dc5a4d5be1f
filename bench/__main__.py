"""`make bench`: every benchmark, each writing its table and plot under bench/results/.

Opt-in only (named with `make bench BENCH=...`, or `make bench-soak`): bench.operator_soak,
the operator's hour-long soak (70+ minutes)."""

import importlib
import sys

BENCHES = ["bench.router_bench", "bench.operator_bench"]
OPT_IN = ["bench.operator_soak"]


def main(argv: list[str]) -> int:
    wanted = argv or BENCHES
    failed = 0
    for name in wanted:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"bench: {name} not present, skipped", flush=True)
            continue
        print(f"bench: running {name}", flush=True)
        failed |= int(mod.main([]) or 0)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
