"""The PrometheusRule's rules checked by Prometheus' own promtool: `promtool check rules`
(syntax, PromQL, templates) and `promtool test rules` (tests/monitoring/promtool/
alerts_test.yaml: each alert fires on synthetic series with its labels and annotations,
and its near-miss does not).

promtool is built from the Go module proxy by `make promtool` (hack/monitoring-tools.sh);
it is opt-in, not part of `make test`, because its cold build is long on 2 cores (see
manifests/README.md, *Monitoring*). Without it these tests skip and say so."""
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
        pytest.skip(f"promtool not built (opt-in): {exc}")


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
        r["expr"] = r["expr"].replace("sum by (namespace, pipeline) (tsrouter", "sum by (namespace pipeline) (tsrouter", 1)
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
