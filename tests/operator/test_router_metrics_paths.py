"""How the operator reads a router pod's /actuator/prometheus (rollouts judged by the
router pods' counters, with Kafka credentials): at the pod's IP by default, through the
API server's pod proxy when told to (`--router-metrics=proxy`); when the path it was
given does not work, the rollout is judged by readiness and the message names the path.

The direct read goes to a local HTTP server standing in for a pod (the real node shows
it on real router pods: tests/node/test_node_rollback.py and test_node_install.py)."""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace

import pytest
from controllerfakes import make, run
from test_rollback_counters_unit import EXPOSITION

from tspipe import clients as clients_mod
from tspipe import defaults, rollback
from tspipe.kube import ApiException
from tspipe.manager import build_parser
from tspipe.phases import rollout
from tspipe.render import LABEL_COMPONENT, LABEL_INSTANCE, MANAGED_SELECTOR, SERVER_PORT

POD = "timestamps-router-abc"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.paths.append(self.path)
        body = EXPOSITION.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def router_pod_server():
    """A stand-in for a router pod's actuator on 127.0.0.1: its port and the paths asked."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.paths = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def ready_router_pod(ip: str | None) -> dict:
    key, value = MANAGED_SELECTOR.split("=")
    status = {"conditions": [{"type": "Ready", "status": "True"}]}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {
            "name": POD,
            "namespace": "ns",
            "labels": {key: value, LABEL_INSTANCE: "timestamps", LABEL_COMPONENT: "router"},
        },
        "status": status,
    }


def operator(path: str | None, pod_ip: str | None = "127.0.0.1"):
    kw = {} if path is None else {"router_metrics": path}
    kube, ctl = make(**kw)
    kube.pods = [ready_router_pod(pod_ip)]
    ctx = SimpleNamespace(namespace="ns", name="timestamps")
    return kube, ctl, ctx


def judge(ctl, ctx) -> rollback.Judgement:
    p = SimpleNamespace(kafka=SimpleNamespace(credentials=object()), max_dead_letter_ratio=0.05)
    return run(rollout._judge(ctx, ctl.clients, p, {"window": {"counters": {}}}))


def test_by_default_the_counters_are_read_at_the_pods_ip_on_its_actuator_port(router_pod_server, monkeypatch):
    kube, ctl, ctx = operator(None)
    assert ctl.clients.router_metrics == defaults.ROUTER_METRICS_DIRECT
    # The pod's actuator port (the router's server port) is the stand-in's.
    monkeypatch.setattr(clients_mod, "SERVER_PORT", router_pod_server.server_address[1])
    counters, problems = run(rollout._router_counters(ctx, ctl.clients))
    assert problems == [] and counters == {POD: {"committed": 120, "even": 70, "odd": 55, "deadLetter": 1, "lag": 7}}
    assert router_pod_server.paths == ["/actuator/prometheus"]
    assert not hasattr(kube, "proxied"), "no API server call"


def test_with_proxy_the_counters_come_through_the_api_servers_pod_proxy():
    kube, ctl, ctx = operator(defaults.ROUTER_METRICS_PROXY, pod_ip=None)
    kube.proxied = []

    def pod_proxy_text(namespace, pod, port, path):
        kube.proxied.append((namespace, pod, port, path))
        return EXPOSITION

    kube.pod_proxy_text = pod_proxy_text
    counters, problems = run(rollout._router_counters(ctx, ctl.clients))
    assert problems == [] and counters[POD]["committed"] == 120
    assert kube.proxied == [("ns", POD, SERVER_PORT, "actuator/prometheus")]


def test_a_pod_that_does_not_answer_at_its_ip_leaves_the_verdict_to_readiness_naming_the_path(monkeypatch):
    _, ctl, ctx = operator(None)
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    closed = srv.server_address[1]
    srv.server_close()  # nothing listens there now
    monkeypatch.setattr(clients_mod, "SERVER_PORT", closed)
    j = judge(ctl, ctx)
    assert j.ok and j.reason == rollback.READINESS_ONLY, j
    assert "the router pods' counters could not be read at their pod IPs (timestamps-router-abc: " in j.message
    assert "refused" in j.message and j.message.endswith("judged by readiness and the progress deadline only")


def test_a_pod_without_an_ip_is_named(monkeypatch):
    _, ctl, ctx = operator(None, pod_ip=None)
    j = judge(ctl, ctx)
    assert j.reason == rollback.READINESS_ONLY
    assert "at their pod IPs (timestamps-router-abc: the pod has no IP)" in j.message


def test_a_refused_pod_proxy_leaves_the_verdict_to_readiness_naming_the_path():
    kube, ctl, ctx = operator(defaults.ROUTER_METRICS_PROXY)

    def pod_proxy_text(namespace, pod, port, path):
        raise ApiException(status=403, reason="Forbidden")

    kube.pod_proxy_text = pod_proxy_text
    j = judge(ctl, ctx)
    assert j.reason == rollback.READINESS_ONLY
    assert "could not be read through the API server's pod proxy (timestamps-router-abc: 403 Forbidden)" in j.message


def test_the_flag_chooses_the_path_and_defaults_to_direct():
    assert build_parser().parse_args([]).router_metrics == "direct"
    assert build_parser().parse_args(["--router-metrics=proxy"]).router_metrics == "proxy"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--router-metrics=exec"])
