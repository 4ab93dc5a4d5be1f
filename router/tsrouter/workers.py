"""tsrouter.workers: N > 1: several router processes in one pod, one actuator.

One Python process routes at most what one core gives it (the GIL). With workers, the
parent starts N copies of the router (same group, one consumer and one producer each,
each its own exactly-once transactional id), each with its actuator on a loopback port,
and serves the pod's actuator itself: health UP only when every worker is, readiness
when every worker is ready, and the workers' metrics summed (same names and labels as
one router's). A worker that exits takes the pod down (the parent stops the others and
exits non-zero) so Kubernetes restarts it whole; SIGTERM is passed on to every worker.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from . import __version__
from .actuator import links
from .config import DEFAULT_APP_NAME, RouterConfig

log = logging.getLogger("tsrouter.workers")

PROBE_TIMEOUT_S = 2.0  # one worker's actuator answering the parent
WATCH_INTERVAL_S = 0.5  # how often the parent looks for a worker that exited


def sum_metrics(texts: Iterable[str]) -> str:
    """Prometheus text expositions -> one, each sample summed over them by name and labels
    (counters, histogram buckets and gauges such as assigned partitions all add up)."""
    order: list[tuple[str, str, str]] = []  # (family, type, help)
    samples: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in samples:
                order.append((fam.name, fam.type, fam.documentation))
                samples[fam.name] = {}
            acc = samples[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                acc[key] = acc.get(key, 0.0) + s.value
    out = []
    for name, typ, doc in order:
        out.append(f"# HELP {name} {doc}")
        out.append(f"# TYPE {name} {typ}")
        for (sname, labels), value in samples[name].items():
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{sname}{{{lab}}} {_num(value)}" if lab else f"{sname} {_num(value)}")
    return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) or abs(v) >= 1e15 else f"{int(v)}.0"


def combine_health(bodies: Sequence[tuple[int | None, Any]]) -> tuple[dict, bool]:
    """Each worker's (status code or None, /actuator/health body) -> the pod's body, UP?"""
    up = bool(bodies) and all(code == 200 for code, _ in bodies)
    components = {}
    for i, (code, body) in enumerate(bodies):
        if isinstance(body, dict):
            components[f"worker-{i}"] = body
        else:
            components[f"worker-{i}"] = {"status": "DOWN", "details": {"error": str(body) if code is None else code}}
    return {"status": "UP" if up else "DOWN", "components": components}, up


PARENT_ENV = "TSP_WORKER_PARENT"  # set for a worker: its parent's pid


def stop_with_parent(parent: int) -> None:
    """In a worker: a SIGTERM when the parent dies, even by SIGKILL (outside a container
    nothing else would stop an orphaned worker); if it already has, stop now. Linux only."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Workers:
    def __init__(self, cfg: RouterConfig, argv: Sequence[str]):
        self.cfg = cfg
        self.argv = list(argv)
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()

    def start(self) -> None:
        for i in range(self.cfg.workers):
            port = _free_port("127.0.0.1")
            extra = [f"--server.port={port}", "--server.address=127.0.0.1", "--tsrouter.workers=1"]
            if self.cfg.transactional_id:
                # Each producer needs its own id, stable across restarts (fencing its predecessor).
                extra.append(f"--tsrouter.transactional-id={self.cfg.transactional_id}-w{i}")
            # Later arguments win (config.load), so these override the pod's own.
            cmd = [sys.executable, "-m", "tsrouter", *self.argv, *extra]
            # The pod's own arguments, handed to the same program: nothing from outside it.
            # Own session: a terminal's Ctrl-C reaches the parent only, which passes on one SIGTERM.
            env = {**os.environ, PARENT_ENV: str(os.getpid())}
            self.procs.append(
                subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, env=env)  # noqa: S603
            )
            self.ports.append(port)
        log.info("started %d workers (pids %s)", len(self.procs), ",".join(str(p.pid) for p in self.procs))

    def get(self, i: int, path: str) -> tuple[int | None, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[i]}{path}", timeout=PROBE_TIMEOUT_S) as r:
                body = r.read().decode()
                return r.status, json.loads(body) if "json" in r.headers.get("Content-Type", "") else body
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read().decode())
            except ValueError:
                return e.code, None
        except (urllib.error.URLError, OSError) as e:
            return None, str(e)

    def all_running(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def request_stop(self) -> None:
        self.stopping.set()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        """Until every worker has exited; a worker exiting first stops the rest. The exit code:
        0 only when every worker stopped cleanly on request."""
        failed = False
        while any(p.poll() is None for p in self.procs):
            if not self.stopping.is_set() and not self.all_running():
                bad = [(i, p.returncode) for i, p in enumerate(self.procs) if p.returncode is not None]
                log.error("worker %s exited (%s); stopping the others", bad[0][0], bad[0][1])
                failed = True
                self.request_stop()
            time.sleep(WATCH_INTERVAL_S)
        codes = [p.returncode for p in self.procs]
        return 1 if failed or any(codes) else 0

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def create_app(workers: Workers, info: dict) -> Flask:
    app = Flask("tsrouter-workers")

    def each(path: str) -> list[tuple[int | None, Any]]:
        return [workers.get(i, path) for i in range(len(workers.ports))]

    def probe(ok: bool):
        return jsonify({"status": "UP" if ok else "DOWN"}), (200 if ok else 503)

    @app.get("/actuator/health")
    def _health():
        body, up = combine_health(each("/actuator/health"))
        up = up and not workers.stopping.is_set()
        body["status"] = "UP" if up else "DOWN"
        return jsonify(body), (200 if up else 503)

    @app.get("/actuator/health/liveness")
    def _liveness():
        # A worker still starting answers nothing yet: alive while its process runs.
        codes = [code for code, _ in each("/actuator/health/liveness")]
        return probe(workers.all_running() and all(c != 503 for c in codes))

    @app.get("/actuator/health/readiness")
    def _readiness():
        codes = [c for c, _ in each("/actuator/health/readiness")]
        ok = bool(codes) and not workers.stopping.is_set() and all(c == 200 for c in codes)
        return probe(ok)

    @app.get("/actuator/info")
    def _info():
        return jsonify(
            {
                "app": {"name": info.get("name", DEFAULT_APP_NAME), "version": __version__},
                **{k: v for k, v in info.items() if k != "name"},
                "workers": workers.cfg.workers,
            }
        )

    @app.get("/actuator/prometheus")
    def _prometheus():
        texts = [body for code, body in each("/actuator/prometheus") if code == 200 and isinstance(body, str)]
        return Response(sum_metrics(texts), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/actuator")
    def _links():
        return jsonify(links())

    return app
