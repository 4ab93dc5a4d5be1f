"""The metric names that manifests/monitoring refers to, and the names a process exposes.

PromQL is parsed with `promql-parser` (PyPI; Python bindings of the Rust promql-parser
crate that GreptimeDB uses), so function names, label matchers, `by (...)` clauses,
keywords, durations and strings never pass for metric names: only vector selectors do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
DASHBOARD_FILE = MONITORING / "dashboards" / "tspipe.json"
# Series Prometheus makes itself for every target (not exposed by the process).
SYNTHETIC = frozenset({"up"})


@dataclass(frozen=True)
class Query:
    where: str  # "rule TspipeOperatorDown", "panel 'Consumer lag' A", ...
    expr: str


# Grafana's own macros and template variables: replaced by what Grafana substitutes
# before the query reaches Prometheus (a range, or a label value inside a string).
_GRAFANA_RANGE = re.compile(r"\$__(rate_interval|interval|range)\b")
_GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)


def grafana_to_promql(expr: str) -> str:
    expr = _GRAFANA_RANGE.sub("5m", expr)
    return _GRAFANA_VAR.sub("x", expr)


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (raises ValueError if it does not parse)."""
    ast = promql_parser.parse(expr)
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:  # {__name__="x"} selects by the name label
                for m in node.matchers.matchers:
                    if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                        names.add(m.value)
                    elif m.name == "__name__":
                        raise ValueError(f"a regex or negative metric-name matcher cannot be checked: {expr}")
        return True

    promql_parser.walk(ast, visit)
    return names


def rules(path: Path = RULE_FILE) -> list[dict]:
    obj = yaml.safe_load(path.read_text())
    return [r for g in obj["spec"]["groups"] for r in g["rules"]]


def rule_queries(path: Path = RULE_FILE) -> list[Query]:
    return [Query(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in rules(path)]


def dashboard_queries(dashboard: dict, to_promql: Callable[[str], str] = grafana_to_promql) -> list[Query]:
    """Every panel target's expression (rows' nested panels too) and every query variable's,
    with Grafana's macros and variables replaced by `to_promql` (by default placeholders
    that parse; a live check gives the values Grafana would substitute)."""
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(dashboard["panels"]):
        for t in p.get("targets") or []:
            out.append(Query(f"panel {p['title']!r} {t['refId']}", to_promql(t["expr"])))
    for v in dashboard.get("templating", {}).get("list", []):
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = _LABEL_VALUES.match(q)
            assert m, f"variable {v['name']}: only label_values(<selector>, <label>) is checked: {q}"
            out.append(Query(f"variable {v['name']}", to_promql(m.group(1))))
    return out


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict:
    return json.loads(path.read_text())


def referenced(queries: list[Query]) -> dict[str, list[str]]:
    """{metric name: [where it is used]}."""
    out: dict[str, list[str]] = {}
    for q in queries:
        for name in metric_names(q.expr):
            out.setdefault(name, []).append(q.where)
    return out


def exposed(text: str) -> set[str]:
    """The sample names in a Prometheus text exposition (counters with `_total`,
    histograms' `_bucket`/`_sum`/`_count`, ...), as a scrape stores them."""
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def missing(refs: dict[str, list[str]], available: set[str]) -> dict[str, list[str]]:
    """The referenced names that nothing exposes (Prometheus' own `up` aside)."""
    return {n: w for n, w in refs.items() if n not in available and n not in SYNTHETIC}
