"""Spring-Boot-style actuator endpoints, served by waitress on a background thread."""

from __future__ import annotations

import logging
import threading

from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from . import __version__
from .config import DEFAULT_APP_NAME
from .health import HealthState, health_body, liveness, readiness

log = logging.getLogger("tsrouter.actuator")


ENDPOINTS = ("health", "health/liveness", "health/readiness", "info", "prometheus")


def links() -> dict:
    """The `/actuator` discovery body (Spring Boot's `_links`)."""
    return {"_links": {n: {"href": f"/actuator/{n}"} for n in ENDPOINTS}}


def create_app(health: HealthState, info: dict, registry, stall_s: float) -> Flask:
    app = Flask("tsrouter")

    def probe(ok: bool):
        return jsonify({"status": "UP" if ok else "DOWN"}), (200 if ok else 503)

    @app.get("/actuator/health")
    def _health():
        body, up = health_body(health.snapshot(), health.now(), stall_s)
        return jsonify(body), (200 if up else 503)

    @app.get("/actuator/health/liveness")
    def _liveness():
        return probe(liveness(health.snapshot(), health.now(), stall_s))

    @app.get("/actuator/health/readiness")
    def _readiness():
        return probe(readiness(health.snapshot()))

    @app.get("/actuator/info")
    def _info():
        return jsonify(
            {
                "app": {"name": info.get("name", DEFAULT_APP_NAME), "version": __version__},
                **{k: v for k, v in info.items() if k != "name"},
            }
        )

    @app.get("/actuator/prometheus")
    def _prometheus():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/actuator")
    def _links():
        return jsonify(links())

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify({"status": exc.code, "error": exc.name}), exc.code

    @app.errorhandler(Exception)
    def _error(exc: Exception):  # never a stack trace to the client
        log.exception("actuator error")
        return jsonify({"status": 500, "error": "Internal Server Error"}), 500

    return app


class ActuatorServer:
    """waitress on 127.0.0.1/0.0.0.0:port in a daemon thread; port 0 picks a free one."""

    def __init__(self, app: Flask, port: int, host: str = "0.0.0.0"):
        from waitress.server import create_server

        self._server = create_server(
            app, host=host, port=port, threads=2, ident="tsrouter", clear_untrusted_proxy_headers=True
        )
        self.port = self._server.effective_port
        self._thread = threading.Thread(target=self._server.run, name="actuator", daemon=True)

    def start(self) -> ActuatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.close()
