"""A real Prometheus server for the monitoring tests, and the Prometheus operator's
translation of the project's PodMonitors into its scrape configuration.

The server is the one `make prometheus` builds (hack/monitoring-tools.sh: the module of the
promtool the rule tests use, with only the Kubernetes service discovery). It discovers pods
through a real API server (`kubernetes_sd_configs`, role pod, with a kubeconfig) and keeps
its data in a folder of its own, removed at stop.

`podmonitor_scrape_configs` does what the Prometheus operator (v0.85) does with a
PodMonitor: one scrape job per endpoint, the selector as `keep` rules on the pod's labels,
the port as a `keep` on the container port's name, the operator's standard target labels
(namespace, container, pod, job, endpoint), then the PodMonitor's own relabelings (the
order of its promcfg.go; left out: the sharding rules, which keep every target with one
shard, and what the project's PodMonitors do not use). A field
it does not translate is refused (ValueError), so a PodMonitor that gains one cannot be
scraped differently here than by the operator without a test failing
(tests/monitoring/test_prometheus_config_units.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import cache
from .proc import die_with_parent, free_port, owned_tmpdir, stop_process_group, wait_for

# What the translation knows of a PodMonitor; anything else is refused.
_SPEC_FIELDS = {"namespaceSelector", "selector", "podMetricsEndpoints"}
_ENDPOINT_FIELDS = {"port", "path", "interval", "honorLabels", "relabelings"}
_RELABEL_FIELDS = {
    "action": "action",
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "replacement": "replacement",
    "regex": "regex",
    "separator": "separator",
    "modulus": "modulus",
}


def _label_name(name: str) -> str:
    """A Kubernetes label as Prometheus' discovery names it (invalid characters to `_`)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _unknown(what: str, obj: dict, known) -> None:
    extra = set(obj) - set(known)
    if extra:
        raise ValueError(f"{what}: no translation for {sorted(extra)}")


def podmonitor_scrape_configs(pm: dict, kubeconfig_file: str) -> list[dict[str, Any]]:
    """The scrape jobs the Prometheus operator makes of PodMonitor `pm` (one per endpoint),
    discovering pods through the API server of `kubeconfig_file`."""
    if pm.get("kind") != "PodMonitor":
        raise ValueError(f"not a PodMonitor: {pm.get('kind')}")
    meta, spec = pm["metadata"], pm["spec"]
    _unknown("spec", spec, _SPEC_FIELDS)
    sd: dict[str, Any] = {"role": "pod", "kubeconfig_file": kubeconfig_file}
    ns_sel = spec.get("namespaceSelector") or {}
    _unknown("spec.namespaceSelector", ns_sel, {"any", "matchNames"})
    if not ns_sel.get("any"):
        # No selector: the PodMonitor's own namespace (the operator's default).
        sd["namespaces"] = {"names": list(ns_sel.get("matchNames") or [meta["namespace"]])}
    selector = spec.get("selector") or {}
    _unknown("spec.selector", selector, {"matchLabels"})
    jobs = []
    for i, ep in enumerate(spec["podMetricsEndpoints"]):
        _unknown(f"spec.podMetricsEndpoints[{i}]", ep, _ENDPOINT_FIELDS)
        if "port" not in ep:
            raise ValueError(f"spec.podMetricsEndpoints[{i}]: only named ports are translated")
        relabel: list[dict[str, Any]] = [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        ]
        for key, value in sorted((selector.get("matchLabels") or {}).items()):
            relabel.append(
                {
                    "action": "keep",
                    "source_labels": [
                        f"__meta_kubernetes_pod_label_{_label_name(key)}",
                        f"__meta_kubernetes_pod_labelpresent_{_label_name(key)}",
                    ],
                    "regex": f"({value});true",
                }
            )
        relabel += [
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": ep["port"]},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
            {"target_label": "endpoint", "replacement": ep["port"]},
        ]
        for j, r in enumerate(ep.get("relabelings") or []):
            _unknown(f"spec.podMetricsEndpoints[{i}].relabelings[{j}]", r, _RELABEL_FIELDS)
            out = {_RELABEL_FIELDS[k]: v for k, v in r.items()}
            if "action" in out:
                out["action"] = out["action"].lower()
            relabel.append(out)
        job: dict[str, Any] = {
            "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{i}",
            "honor_labels": bool(ep.get("honorLabels", False)),
            "kubernetes_sd_configs": [sd],
            "metrics_path": ep.get("path", "/metrics"),
            "relabel_configs": relabel,
        }
        if "interval" in ep:
            job["scrape_interval"] = ep["interval"]
        jobs.append(job)
    return jobs


def rule_file(prometheus_rule: dict) -> dict:
    """A PrometheusRule's spec is a Prometheus rule file: {groups: [...]}."""
    if prometheus_rule.get("kind") != "PrometheusRule":
        raise ValueError(f"not a PrometheusRule: {prometheus_rule.get('kind')}")
    return {"groups": prometheus_rule["spec"]["groups"]}


class PrometheusServer:
    """`prometheus` on a free loopback port with `config` (rule files as given in
    `rule_groups`: {file name: rule file}), its TSDB in a folder of its own."""

    def __init__(self, config: dict, rule_groups: dict[str, dict] | None = None):
        self.config, self.rule_groups = config, rule_groups or {}
        self.port = free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> PrometheusServer:
        self.dir = owned_tmpdir("tsp-prometheus-")
        for name, rules in self.rule_groups.items():
            (self.dir / name).write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {**self.config, "rule_files": [str(self.dir / n) for n in self.rule_groups]}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 - Prometheus writes to it until stop()
        self.proc = subprocess.Popen(
            [
                str(cache.prometheus()),
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=info",
            ],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl call, no lock taken
        )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"prometheus exited:\n{self.log()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(ready, timeout, "Prometheus ready")
        return self

    def log(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace") if self.dir else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: its `data`, after checking the status is success."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's series ({metric, value})."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, 30)
            self.proc = None
            self._log.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
