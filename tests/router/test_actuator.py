"""Actuator endpoints over the health state (Flask test client; the server itself is
exercised by the broker tests)."""

from tsrouter.actuator import create_app
from tsrouter.health import HealthState
from tsrouter.metrics import Metrics


def make(clock):
    h, m = HealthState(clock=clock), Metrics()
    info = {"name": "python-router", "bindings": {"input": "timeDest"}, "brokers": ["k:9092"]}
    return h, m, create_app(h, info, m.registry, stall_s=60).test_client()


def test_probes_follow_the_state():
    t = [0.0]
    h, _m, c = make(lambda: t[0])
    assert c.get("/actuator/health").status_code == 503
    assert c.get("/actuator/health/liveness").status_code == 200
    assert c.get("/actuator/health/readiness").status_code == 503
    h.set_kafka(True, "connected")
    h.set_assigned(1)
    r = c.get("/actuator/health")
    assert r.status_code == 200 and r.json["status"] == "UP" and r.json["components"]["kafka"]["status"] == "UP"
    assert c.get("/actuator/health/readiness").json == {"status": "UP"}
    t[0] += 120  # the loop stopped ticking
    assert c.get("/actuator/health/liveness").status_code == 503
    assert c.get("/actuator/health").status_code == 503


def test_info_prometheus_and_json_404():
    _h, m, c = make(lambda: 0.0)
    info = c.get("/actuator/info").json
    assert info["app"]["name"] == "python-router" and info["app"]["version"]
    assert info["bindings"] == {"input": "timeDest"}
    m.routed.labels("even").inc(3)
    m.latency.observe(0.004)
    text = c.get("/actuator/prometheus").get_data(as_text=True)
    assert 'tsrouter_records_routed_total{channel="even"} 3.0' in text
    assert "tsrouter_end_to_end_latency_seconds_count 1.0" in text
    r = c.get("/nope")
    assert r.status_code == 404 and r.json == {"status": 404, "error": "Not Found"}
    assert c.post("/actuator/health").status_code == 405
