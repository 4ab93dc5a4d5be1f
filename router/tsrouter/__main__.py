"""Entry point: parse configuration, start the actuator, run the loop, stop on SIGTERM/SIGINT.

`tsp-router reset-offsets ...` instead sets the router's group's offsets once and exits
(resetoffsets.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

from .config import DEFAULT_APP_NAME, USAGE, ConfigError, HelpRequested, load

log = logging.getLogger("tsrouter")


def main(argv: list[str] | None = None) -> int:
    # Line-buffered stdout so every event shows up at once under any runner.
    with contextlib.suppress(AttributeError):  # not a TextIOWrapper (e.g. replaced by a test)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reset-offsets"]:
        # The operator's one-shot Job for a tspipe.io/reset-offsets with credentials.
        from .resetoffsets import main as reset_offsets

        return reset_offsets(argv[1:], os.environ)
    try:
        cfg = load(argv, os.environ)
    except HelpRequested:
        print(USAGE)
        return 0
    except ConfigError as exc:
        print(f"tsp-router: configuration error: {exc}", file=sys.stderr)
        return 2

    # Imports after config so a bad configuration fails fast and quietly.
    from . import __version__, logs
    from .actuator import ActuatorServer, create_app
    from .app import SWITCH_INTERVAL_S, Runner
    from .health import HealthState
    from .metrics import Metrics

    logs.setup(cfg.log_level, cfg.log_format)
    info = {"name": cfg.app_label or DEFAULT_APP_NAME, **cfg.public_info()}
    if cfg.workers > 1:
        return _run_workers(cfg, argv, info)
    health, metrics, stop = HealthState(), Metrics(), threading.Event()
    from . import authwatch

    # Before the actuator answers: the Runner's start-up check of kafka-python's internals
    # takes a moment, and a SIGTERM once the probes answer must find the handler below.
    runner = Runner(cfg, health, metrics, stop, auth_watch=authwatch.install(debug=cfg.log_level == "DEBUG"))
    try:
        server = ActuatorServer(
            create_app(health, info, metrics.registry, cfg.liveness_stall_ms / 1000.0),
            cfg.server_port,
            host=cfg.server_address,
        ).start()
    except OSError as exc:
        print(
            f"tsp-router: server.port: cannot listen on {cfg.server_address}:{cfg.server_port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    log.info("tsp-router %s starting: actuator on port %s, config %s", __version__, server.port, cfg.public_info())

    def on_signal(signum, _frame):
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: finishing in-flight records and stopping", signal.Signals(signum).name)
        runner.request_stop()
        # Bound the whole shutdown even if a client call hangs.
        t = threading.Timer(cfg.shutdown_timeout_ms / 1000.0, _force_exit)
        t.daemon = True
        t.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if os.environ.get("TSP_WORKER_PARENT", "").isdigit():
        from .workers import stop_with_parent

        stop_with_parent(int(os.environ["TSP_WORKER_PARENT"]))
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    code = runner.run()
    server.stop()
    return code


def _run_workers(cfg, argv: list[str], info: dict) -> int:
    """tsrouter.workers > 1: this process starts the workers and serves the pod's actuator."""
    from .actuator import ActuatorServer
    from .workers import Workers, create_app

    workers = Workers(cfg, argv)
    try:
        server = ActuatorServer(create_app(workers, info), cfg.server_port, host=cfg.server_address).start()
    except OSError as exc:
        print(
            f"tsp-router: server.port: cannot listen on {cfg.server_address}:{cfg.server_port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    log.info("tsp-router: %d workers, actuator on port %s", cfg.workers, server.port)

    def on_signal(signum, _frame):
        if workers.stopping.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            workers.kill_all()
            os._exit(1)
        log.info("%s received: stopping the workers", signal.Signals(signum).name)
        workers.request_stop()

        def force() -> None:
            workers.kill_all()
            _force_exit()

        # Each worker bounds its own shutdown by the same timeout; this is the backstop.
        t = threading.Timer(cfg.shutdown_timeout_ms / 1000.0 + 5.0, force)
        t.daemon = True
        t.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        workers.start()
        code = workers.wait()
    finally:
        workers.kill_all()
    server.stop()
    log.info("stopped (workers exited %s)", code)
    return code


def _force_exit() -> None:
    log.error("shutdown did not finish in time; exiting")
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
