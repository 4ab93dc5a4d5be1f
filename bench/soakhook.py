"""The operator under the soak bench: `python -m bench.soakhook <tspipe.manager's arguments>`
runs `python -m tspipe.manager` unchanged, plus one daemon thread for the bench.

The thread polls $TSP_SOAK_DIR once a second for command files the bench drops there:
  * `start-N`: tracemalloc.start(N) (N frames per trace);
  * `snap-LABEL`: a tracemalloc snapshot dumped to `LABEL.snapshot` (gc.collect() first, so
    garbage waiting for a cycle collection is not counted as growth), and a count of live
    objects by type to `LABEL.types.json` (the equivalent without tracemalloc's frames);
  * `garbage-LABEL`: the objects a full collection frees (reference cycles), counted by
    type into `LABEL.garbage.json`;
each command file is removed once done, and `LABEL.done` written. Every 30 s it appends a
line to `hook.jsonl`: tracemalloc's own memory (so the bench can tell it apart from the
operator's RSS), the traced current and peak, the thread count and the gc generation counts.
Nothing here touches the operator's code paths: without commands the thread only sleeps.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc


def _types() -> dict[str, int]:
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    return dict(counts.most_common(60))


def _command(d: str, name: str, path: str) -> None:
    if name.startswith("start-"):
        tracemalloc.start(int(name.split("-", 1)[1]))
    elif name.startswith("snap-"):
        label = name.split("-", 1)[1]
        gc.collect()
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(os.path.join(d, f"{label}.snapshot"))
        with open(os.path.join(d, f"{label}.types.json"), "w") as fh:
            json.dump(_types(), fh)
    elif name.startswith("garbage-"):
        # What only a full collection frees (reference cycles), by type: collected with
        # DEBUG_SAVEALL so that it can be counted, then dropped.
        label = name.split("-", 1)[1]
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            counts = collections.Counter(type(o).__qualname__ for o in gc.garbage)
            gc.garbage.clear()
        finally:
            gc.set_debug(0)
        with open(os.path.join(d, f"{label}.garbage.json"), "w") as fh:
            json.dump(dict(counts.most_common(60)), fh)
    else:
        return
    os.remove(path)
    with open(os.path.join(d, f"{name}.done"), "w") as fh:
        fh.write(str(time.time()))


def _loop(d: str) -> None:
    last_line = 0.0
    while True:
        time.sleep(1)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            if "." in name:
                continue
            try:
                _command(d, name, path)
            except Exception as exc:  # noqa: BLE001 - the bench waits for .done and reads .error
                with open(os.path.join(d, f"{name}.error"), "w") as fh:
                    fh.write(repr(exc))
        now = time.monotonic()

        if now - last_line >= 30:
            last_line = now
            cur, peak = tracemalloc.get_traced_memory()
            line = {
                "t": time.time(),
                "tracemalloc_bytes": tracemalloc.get_tracemalloc_memory(),
                "traced_bytes": cur,
                "traced_peak_bytes": peak,
                "threads": threading.active_count(),
                "gc_counts": gc.get_count(),
                "gc_objects": None,
            }
            with open(os.path.join(d, "hook.jsonl"), "a") as fh:
                fh.write(json.dumps(line) + "\n")


def main() -> None:
    d = os.environ.get("TSP_SOAK_DIR")
    if d:
        threading.Thread(target=_loop, args=(d,), name="soakhook", daemon=True).start()
    sys.argv = ["tspipe.manager", *sys.argv[1:]]
    runpy.run_module("tspipe.manager", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
