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
from tspipe import defaults, rollback, shadow
from tspipe.kube import ApiException
from tspipe.manager import build_parser
from tspipe.phases import rollout
from tspipe.phases import shadow as shadow_phase
from tspipe.render import LABEL_COMPONENT, LABEL_INSTANCE, MANAGED_SELECTOR, SERVER_PORT

POD = "timestamps-router-abc"


class _Handler(http.server.BaseHTTPRequestHandler):
    status, body = 200, EXPOSITION

    def do_GET(self):
        self.server.paths.append(self.path)
        body = self.body.encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _RecipeActuator(_Handler):
    """The seed recipe's router: a Flask actuator with /actuator/health and /info only."""

    status, body = 404, "<!doctype html><title>404 Not Found</title>"


class _BootActuator(_Handler):
    """Another router serving Spring Boot's Prometheus endpoint, without tsrouter_* series."""

    body = "# TYPE jvm_threads_live_threads gauge\njvm_threads_live_threads 21.0\n"


def _serve(handler):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.paths = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def router_pod_server():
    """A stand-in for a router pod's actuator on 127.0.0.1: its port and the paths asked."""
    srv = _serve(_Handler)
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


RECIPE_IMAGE = "springcloud/polyglot-python-app:0.2"


def judge(ctl, ctx, image: str = "ghcr.io/tspipe/router:0.1.0") -> rollback.Judgement:
    p = SimpleNamespace(
        kafka=SimpleNamespace(credentials=object()), max_dead_letter_ratio=0.05, router=SimpleNamespace(image=image)
    )
    return run(rollout._judge(ctx, ctl.clients, p, {"window": {"counters": {}}}))


def test_by_default_the_counters_are_read_at_the_pods_ip_on_its_actuator_port(router_pod_server, monkeypatch):
    kube, ctl, ctx = operator(None)
    assert ctl.clients.router_metrics == defaults.ROUTER_METRICS_DIRECT
    # The pod's actuator port (the router's server port) is the stand-in's.
    monkeypatch.setattr(clients_mod, "SERVER_PORT", router_pod_server.server_address[1])
    counters, problems = run(rollout.router_counters(ctx, ctl.clients))
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
    counters, problems = run(rollout.router_counters(ctx, ctl.clients))
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


# --- another router image (the seed recipe's): the counters are not there ----------------------


@pytest.mark.parametrize(
    ("handler", "detail"),
    [
        (_RecipeActuator, "timestamps-router-abc: /actuator/prometheus answered HTTP 404"),
        (_BootActuator, "timestamps-router-abc: its /actuator/prometheus has no tsrouter_records_committed_total"),
    ],
)
def test_a_router_image_without_the_counters_is_judged_by_readiness_naming_the_image(handler, detail, monkeypatch):
    srv = _serve(handler)
    try:
        _, ctl, ctx = operator(None)
        monkeypatch.setattr(clients_mod, "SERVER_PORT", srv.server_address[1])
        j = judge(ctl, ctx, RECIPE_IMAGE)
    finally:
        srv.shutdown()
        srv.server_close()
    assert srv.paths == ["/actuator/prometheus"]
    # Not a verdict on the data: what is missing, why, and what decided instead.
    assert (j.ok, j.reason, j.checks) == (True, rollback.READINESS_ONLY, {}), j
    assert f"router image {RECIPE_IMAGE} does not serve them ({detail})" in j.message, j.message
    assert "the broker needs credentials (the operator never reads their Secret)" in j.message
    assert "loss and the dead-letter ratio are not checked" in j.message
    assert j.message.endswith("judged by readiness and the progress deadline only")


def test_through_the_pod_proxy_a_404_is_a_router_without_the_counters():
    kube, ctl, ctx = operator(defaults.ROUTER_METRICS_PROXY)

    def pod_proxy_text(namespace, pod, port, path):
        raise ApiException(status=404, reason="Not Found")

    kube.pod_proxy_text = pod_proxy_text
    j = judge(ctl, ctx, RECIPE_IMAGE)
    assert j.reason == rollback.READINESS_ONLY
    assert f"router image {RECIPE_IMAGE} does not serve them (timestamps-router-abc: 404 Not Found)" in j.message


def test_one_pod_that_cannot_be_reached_is_not_blamed_on_the_image():
    """Only pods that answered without the counters say "another image"; a path that does
    not work is named as such."""
    j = rollback.counters_unreadable(
        [rollback.Unread("a", "/actuator/prometheus answered HTTP 404", True), rollback.Unread("b", "timed out")],
        "at their pod IPs",
        RECIPE_IMAGE,
    )
    assert "could not be read at their pod IPs (a: /actuator/prometheus answered HTTP 404; b: timed out)" in j.message
    assert "does not serve" not in j.message
    assert "no router pod is Ready" in rollback.counters_unreadable([], "at their pod IPs", RECIPE_IMAGE).message


# --- a shadow release's pods: which router is it (phases/shadow._which_router) ------------------


@pytest.mark.parametrize(
    ("handler", "which"),
    [
        (_Handler, shadow.COUNTERS_OURS),
        (_RecipeActuator, shadow.COUNTERS_FOREIGN),
        (_BootActuator, shadow.COUNTERS_FOREIGN),
    ],
)
def test_a_shadow_pods_counters_tell_this_projects_router_from_another(handler, which, monkeypatch):
    kube, ctl, ctx = operator(None)
    kube.pods[0]["metadata"]["labels"][LABEL_COMPONENT] = shadow.SUFFIX
    srv = _serve(handler)
    try:
        monkeypatch.setattr(clients_mod, "SERVER_PORT", srv.server_address[1])
        assert run(shadow_phase._which_router(ctx, ctl.clients)) == which
        assert srv.paths == ["/actuator/prometheus"], "the shadow's pod was asked"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_shadow_pod_that_does_not_answer_is_unread_not_foreign(monkeypatch):
    kube, ctl, ctx = operator(None)
    kube.pods[0]["metadata"]["labels"][LABEL_COMPONENT] = shadow.SUFFIX
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    closed = srv.server_address[1]
    srv.server_close()  # nothing listens there now
    monkeypatch.setattr(clients_mod, "SERVER_PORT", closed)
    assert run(shadow_phase._which_router(ctx, ctl.clients)) == shadow.COUNTERS_UNREAD
