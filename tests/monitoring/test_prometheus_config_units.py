"""The Prometheus configuration the monitoring tests' real Prometheus runs with is the
Prometheus operator's translation of manifests/monitoring's PodMonitors, kept in step
with the YAML: every selector label, the port, the path, the interval, honorLabels and
each relabeling (in order) are in the scrape job; a field the translation does not know
is refused rather than dropped. Pure."""

from __future__ import annotations

import copy

import pytest
import yaml
from localinfra.prometheus import podmonitor_scrape_configs, rule_file
from promnames import MONITORING, RULE_FILE

KUBECONFIG = "/tmp/kubeconfig"
PODMONITORS = sorted(MONITORING.glob("podmonitor-*.yaml"))


def load(path):
    return yaml.safe_load(path.read_text())


def test_both_podmonitors_are_translated():
    assert {p.name for p in PODMONITORS} == {"podmonitor-router.yaml", "podmonitor-operator.yaml"}


@pytest.mark.parametrize("path", PODMONITORS, ids=lambda p: p.name)
def test_translation_follows_the_podmonitor(path):
    pm = load(path)
    jobs = podmonitor_scrape_configs(pm, KUBECONFIG)
    endpoints = pm["spec"]["podMetricsEndpoints"]
    assert len(jobs) == len(endpoints)
    for i, (job, ep) in enumerate(zip(jobs, endpoints, strict=False)):
        assert job["job_name"] == f"podMonitor/{pm['metadata']['namespace']}/{pm['metadata']['name']}/{i}"
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["kubeconfig_file"] == KUBECONFIG
        ns_sel = pm["spec"]["namespaceSelector"]
        if ns_sel.get("any"):
            assert "namespaces" not in sd, "every namespace"
        else:
            assert sd["namespaces"] == {"names": ns_sel["matchNames"]}
        assert job["metrics_path"] == ep["path"]
        assert job["scrape_interval"] == ep["interval"]
        assert job["honor_labels"] is ep.get("honorLabels", False)
        rules = job["relabel_configs"]
        for k, v in pm["spec"]["selector"]["matchLabels"].items():
            san = k.replace(".", "_").replace("/", "_").replace("-", "_")
            assert {
                "action": "keep",
                "regex": f"({v});true",
                "source_labels": [f"__meta_kubernetes_pod_label_{san}", f"__meta_kubernetes_pod_labelpresent_{san}"],
            } in rules, k
        assert {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": ep["port"],
        } in rules
        # The PodMonitor's own relabelings last, in order, in Prometheus' spelling.
        own = ep["relabelings"]
        assert rules[-len(own) :] == [
            {
                {"sourceLabels": "source_labels", "targetLabel": "target_label"}.get(k, k): (
                    v.lower() if k == "action" else v
                )
                for k, v in r.items()
            }
            for r in own
        ]
        # The operator's standard target labels come before them (the user's may override).
        assert {
            "target_label": "job",
            "replacement": f"{pm['metadata']['namespace']}/{pm['metadata']['name']}",
        } in rules[: -len(own)]
        assert {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"} in rules


@pytest.mark.parametrize(
    "change",
    [
        lambda pm: pm["spec"]["podMetricsEndpoints"][0].update(metricRelabelings=[{"action": "drop"}]),
        lambda pm: pm["spec"]["podMetricsEndpoints"][0].update(scheme="https"),
        lambda pm: pm["spec"]["selector"].update(matchExpressions=[{"key": "a", "operator": "Exists"}]),
        lambda pm: pm["spec"].update(jobLabel="app"),
        lambda pm: pm["spec"]["podMetricsEndpoints"][0]["relabelings"][0].update(regex_typo="x"),
    ],
    ids=["metricRelabelings", "scheme", "matchExpressions", "jobLabel", "relabeling-field"],
)
def test_a_field_the_translation_does_not_know_is_refused(change):
    pm = copy.deepcopy(load(MONITORING / "podmonitor-router.yaml"))
    podmonitor_scrape_configs(pm, KUBECONFIG)
    change(pm)
    with pytest.raises(ValueError, match="no translation"):
        podmonitor_scrape_configs(pm, KUBECONFIG)


def test_rule_file_is_the_prometheusrule_groups():
    rule = load(RULE_FILE)
    assert rule_file(rule) == {"groups": rule["spec"]["groups"]}
    assert sum(len(g["rules"]) for g in rule_file(rule)["groups"]) == 5
