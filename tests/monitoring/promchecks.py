"""What a user checks on a real Prometheus that scrapes a pipeline through
manifests/monitoring: the targets and `up`, the dashboard's queries, an alert's states.
Shared by tests/monitoring/test_prometheus_kube.py (kwok's pods, scraped at local
processes) and the real-node tests (tests/node: the pods themselves, at their pod IPs).

The tests scrape and evaluate every 2 s instead of the PodMonitors' 30 s, and shorten the
`for:` of the alerts they wait for (rules_with_for), so a check takes seconds, not minutes.
"""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path

import yaml
from localinfra.prometheus import podmonitor_scrape_configs, rule_file
from promnames import DASHBOARD_FILE, MONITORING, RULE_FILE, dashboard_queries, load_dashboard

INTERVAL = "2s"
# Grafana's $__rate_interval at the dashboard's default range (1 h) and a 15 s scrape.
RATE_INTERVAL = "1m"
ROUTER_PODMONITOR = MONITORING / "podmonitor-router.yaml"
OPERATOR_PODMONITOR = MONITORING / "podmonitor-operator.yaml"
# The scrape pools the Prometheus operator names after each PodMonitor (namespace/name/endpoint).
ROUTER_POOL = "podMonitor/tspipe-system/tspipe-router/"
OPERATOR_POOL = "podMonitor/tspipe-system/tspipe-operator/"
DEAD_LETTER_ALERT = "TspipeRouterDeadLetterRateHigh"


def podmonitor_jobs(path: Path, kubeconfig: str, interval: str = INTERVAL) -> list[dict]:
    """The scrape jobs of one PodMonitor file, as the Prometheus operator makes them,
    discovering pods through the API server of `kubeconfig`, scraped every `interval`."""
    jobs = podmonitor_scrape_configs(yaml.safe_load(path.read_text()), kubeconfig)
    for job in jobs:
        job["scrape_interval"] = interval
    return jobs


def prometheus_config(jobs: list[dict], interval: str = INTERVAL) -> dict:
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


def rules_with_for(shortened: dict[str, str], interval: str = INTERVAL) -> dict:
    """The PrometheusRule's groups as a rule file, evaluated every `interval`, with the
    `for:` of the alerts named in `shortened` replaced (each must exist)."""
    rules = rule_file(yaml.safe_load(RULE_FILE.read_text()))
    seen = set()
    for group in rules["groups"]:
        group["interval"] = interval
        for r in group["rules"]:
            if r.get("alert") in shortened:
                r["for"] = shortened[r["alert"]]
                seen.add(r["alert"])
    assert seen == set(shortened), f"{sorted(shortened)} are in the rules"
    return {"groups": rules["groups"]}


def targets(prom, pool_prefix: str, namespace: str) -> list[dict]:
    """The active targets of the scrape pools starting with `pool_prefix`, in `namespace`."""
    return [
        t
        for t in prom.api("targets", state="active")["activeTargets"]
        if t["scrapePool"].startswith(pool_prefix) and t["labels"].get("namespace") == namespace
    ]


def up_pods(prom, job: str, namespace: str) -> set[str]:
    """The pods whose `up` is 1 for `job` (the PodMonitor's job label) in `namespace`."""
    return {s["metric"]["pod"] for s in prom.query(f'up{{job="{job}", namespace="{namespace}"}} == 1')}


def alert_states(prom, alertname: str, namespace: str | None = None) -> list[str]:
    return [
        a["state"]
        for a in prom.api("alerts")["alerts"]
        if a["labels"].get("alertname") == alertname
        and (namespace is None or a["labels"].get("namespace") == namespace)
    ]


class AlertWatcher:
    """An alert's states in Prometheus' /api/v1/alerts, every half second from start()
    to stop(): a `pending` that lasts only a shortened `for:` is not missed."""

    def __init__(self, prom, alertname: str, namespace: str | None = None):
        self.prom, self.alertname, self.namespace = prom, alertname, namespace
        self.states: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.states += alert_states(self.prom, self.alertname, self.namespace)
            except OSError:
                continue

    def start(self) -> AlertWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def assert_pending_then_firing(self) -> None:
        s = self.states
        assert "firing" in s, f"{self.alertname} not firing; seen {sorted(set(s))}"
        assert "pending" in s and s.index("pending") < s.index("firing"), (
            f"{self.alertname}: pending first, then firing; seen {sorted(set(s))}"
        )


def live_dashboard_queries(namespace: str, pipeline: str, dashboard_file: Path = DASHBOARD_FILE) -> list:
    """(where, PromQL) of every panel target and query variable of the dashboard, with its
    variables as Grafana substitutes them for this pipeline."""

    def substitute(expr: str) -> str:
        expr = re.sub(r"\$__rate_interval\b", RATE_INTERVAL, expr)
        return re.sub(
            r"\$\{?(namespace|pipeline)\}?", lambda m: {"namespace": namespace, "pipeline": pipeline}[m.group(1)], expr
        )

    return [(q.where, q.expr) for q in dashboard_queries(load_dashboard(dashboard_file), substitute)]


def empty_queries(prom, queries) -> list[str]:
    """The queries that return no series, or only NaN (a panel Grafana draws as No data)."""
    out = []
    for where, expr in queries:
        series = prom.query(expr)
        values = [float(s["value"][1]) for s in series]
        if not series or all(math.isnan(v) for v in values):
            out.append(f"{where}: {expr}")
    return out


def assert_every_query_returns_data(prom, queries, timeout: float = 60) -> None:
    """Every query returns at least one series (not NaN) within `timeout`; else fail
    naming each panel whose query returns nothing."""
    missing = empty_queries(prom, queries)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        missing = empty_queries(prom, queries)
    assert not missing, "panels whose query returns nothing:\n" + "\n".join(missing)
