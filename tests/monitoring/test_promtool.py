"""The PrometheusRule's rules checked by Prometheus' own promtool: `promtool check rules`
(syntax, PromQL, templates) and `promtool test rules` (tests/monitoring/promtool/
alerts_test.yaml: each alert fires on synthetic series with its labels and annotations,
and its near-miss does not), and the dead-letter alert on the real router's scrapes.

promtool is built from the Go module proxy by `make promtool` (hack/monitoring-tools.sh),
a prerequisite of `make test`; run by hand without it, these tests skip and say so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from localinfra import cache
from promnames import RULE_FILE

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "promtool" / "alerts_test.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return str(cache.promtool())
    except FileNotFoundError as exc:
        pytest.skip(f"promtool not built (make promtool): {exc}")


def rule_groups(rule: dict) -> str:
    """A PrometheusRule's spec is a Prometheus rule file: {groups: [...]}."""
    assert rule["kind"] == "PrometheusRule"
    return yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False)


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def setup(tmp_path: Path, rule: dict) -> None:
    (tmp_path / "tspipe-rules.yaml").write_text(rule_groups(rule))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)


def test_promtool_checks_the_rules(promtool, tmp_path):
    setup(tmp_path, yaml.safe_load(RULE_FILE.read_text()))
    proc = run(promtool, "check", "rules", "tspipe-rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout + proc.stderr


def test_each_alert_fires_on_synthetic_series(promtool, tmp_path):
    setup(tmp_path, yaml.safe_load(RULE_FILE.read_text()))
    proc = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("breakage", ["longer for", "other threshold", "bad PromQL"])
def test_promtool_catches_a_changed_rule(promtool, tmp_path, breakage):
    """Both checks can fail: the same files with one rule changed."""
    rule = yaml.safe_load(RULE_FILE.read_text())
    r = rule["spec"]["groups"][0]["rules"][0]
    assert r["alert"] == "TspipeRouterLagGrowing"
    if breakage == "longer for":
        r["for"] = "45m"
    elif breakage == "other threshold":
        r["expr"] = r["expr"].replace("> 100", "> 1000")
    else:
        r["expr"] = r["expr"].replace(
            "sum by (namespace, pipeline) (tsrouter", "sum by (namespace pipeline) (tsrouter", 1
        )
    setup(tmp_path, rule)
    if breakage == "bad PromQL":
        proc = run(promtool, "check", "rules", "tspipe-rules.yaml", cwd=tmp_path)
    else:
        proc = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, (breakage, out)
    if breakage == "bad PromQL":
        assert "parse error" in out, out
    else:
        assert "FAILED" in out and "alertname: TspipeRouterLagGrowing" in out, out


# ---- one alert on the real router's series -------------------------------------------------

# The labels the PodMonitor tspipe-router gives a router's series (job and pipeline by its
# relabelings; namespace and pod are Prometheus' target labels).
TARGET = {"job": "tspipe-router", "namespace": "ns", "pipeline": "real", "pod": "real-router-0"}


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The few Go template forms the rules' annotations use, as Prometheus renders them."""
    import re

    def sub(m):
        x = m.group(1).strip()
        if x.startswith("$labels."):
            return labels[x.removeprefix("$labels.")]
        if x == "$value | humanizePercentage":
            return f"{value * 100:.4g}%"
        raise AssertionError(f"template form not handled here: {x}")

    return re.sub(r"\{\{(.*?)\}\}", sub, template)


@pytest.mark.kafka
def test_dead_letter_alert_fires_on_the_real_routers_series(promtool, kafka_bootstrap, tmp_path):
    """The real router routes batches with 2 values in 10 that are not timestamps; its
    /actuator/prometheus is scraped after each batch, and promtool replays those scrapes
    one minute apart (time compressed: the rule's 5-minute rate and 10-minute `for` need
    no real quarter of an hour) with the PodMonitor's target labels. The dead-letter
    alert fires on them, under the names and labels the router really exposes."""
    from prometheus_client.parser import text_string_to_metric_families
    from routerproc import RouterProc, create_topic, produce, timestamps, unique, wait_for

    dest = "--spring.cloud.stream.bindings.{}.destination={}"
    source = unique("time")
    create_topic(kafka_bootstrap, source)
    r = RouterProc(
        [
            f"--spring.cloud.stream.kafka.binder.brokers={kafka_bootstrap}",
            dest.format("input", source),
            dest.format("even", unique("even")),
            dest.format("odd", unique("odd")),
            f"--spring.cloud.stream.bindings.input.group={unique('grp')}",
        ]
    ).start()
    names = ("tsrouter_records_consumed_total", "tsrouter_records_dead_lettered_total")
    scrapes: dict[str, list[float]] = {n: [] for n in names}
    try:
        r.wait_ready()
        for i in range(16):
            produce(kafka_bootstrap, source, [*timestamps(8, start=1_700_000_000 + 10 * i), b"garbage", b" "])
            wait_for(lambda i=i: r.metric("tsrouter_records_consumed_total") == 10 * (i + 1), 60, f"batch {i} consumed")
            wait_for(
                lambda i=i: r.metric("tsrouter_records_dead_lettered_total") == 2 * (i + 1), 60, f"batch {i} settled"
            )
            status, text = r.get("/actuator/prometheus")
            assert status == 200, text
            samples = {s.name: s for fam in text_string_to_metric_families(text) for s in fam.samples}
            for n in names:
                assert samples[n].labels == {}, "the router adds no labels of its own to these"
                scrapes[n].append(samples[n].value)
    finally:
        try:
            r.terminate()
        finally:
            r.stop()
    labels = ",".join(f'{k}="{v}"' for k, v in TARGET.items())
    rule = yaml.safe_load(RULE_FILE.read_text())
    (dlq,) = [x for g in rule["spec"]["groups"] for x in g["rules"] if x["alert"] == "TspipeRouterDeadLetterRateHigh"]
    alert_labels = {"namespace": TARGET["namespace"], "pipeline": TARGET["pipeline"]}
    test = {
        "rule_files": ["tspipe-rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"{n}{{{labels}}}", "values": " ".join(f"{v:g}" for v in scrapes[n])} for n in names
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": dlq["alert"], "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": dlq["alert"],
                        "exp_alerts": [
                            {
                                "exp_labels": {**alert_labels, **dlq["labels"]},
                                "exp_annotations": {
                                    k: render(v, alert_labels, 0.2) for k, v in dlq["annotations"].items()
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tspipe-rules.yaml").write_text(rule_groups(rule))
    (tmp_path / "real_test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = run(promtool, "test", "rules", "real_test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "real_test.yaml").read_text()
