"""Helpers for the chart tests: the built helm (`make helm`), `helm template` of
charts/tspipe with values, and objects compared with Helm's own labels set aside."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml
from installhelpers import ROOT
from localinfra import cache

CHART = ROOT / "charts" / "tspipe"
RELEASE = "tspipe"
CHART_LABEL = "tspipe-" + yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


def helm_path() -> str:
    try:
        return str(cache.helm())
    except FileNotFoundError as exc:
        pytest.skip(f"helm not built (make helm): {exc}")


def helm(*args: str, check: bool = True, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([helm_path(), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr}"
    return proc


def uninstall(namespace: str, env: dict | None = None) -> None:
    """A test's teardown: `helm uninstall` the release, waiting for its objects, if it is
    installed (check=False: the rest of the teardown runs whatever helm says)."""
    if helm("status", RELEASE, "--namespace", namespace, check=False, env=env).returncode == 0:
        helm(
            "uninstall",
            RELEASE,
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "5m",
            check=False,
            timeout=360,
            env=env,
        )


def template(tmp_path: Path, values: dict | None = None, *extra: str, check: bool = True) -> list[dict] | str:
    """`helm template` of the chart with `values` (a values file): the objects, or with
    check=False the error text of a render helm refused."""
    vfile = tmp_path / "values.yaml"
    vfile.write_text(yaml.safe_dump(values or {}))
    proc = helm("template", RELEASE, str(CHART), "--values", str(vfile), *extra, check=check)
    if not check:
        assert proc.returncode != 0, "helm refused the values"
        return proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def key(o: dict) -> tuple[str, str, str | None, str]:
    return o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]


def without_helm_labels(objs: list[dict]) -> dict[tuple, dict]:
    """The objects by key, each with Helm's three labels removed after checking that it
    carries them (Helm's own: chart, managed-by, instance)."""
    out = {}
    for original in objs:
        o = copy.deepcopy(original)
        labels = o["metadata"].get("labels") or {}
        helm_labels = {
            k: labels.pop(k, None)
            for k in ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")
        }
        assert helm_labels == {
            "helm.sh/chart": CHART_LABEL,
            "app.kubernetes.io/managed-by": "Helm",
            "app.kubernetes.io/instance": RELEASE,
        }, (key(o), helm_labels)
        if not labels:
            o["metadata"].pop("labels")
        assert key(o) not in out, f"{key(o)} twice"
        out[key(o)] = o
    return out


def by_key(objs: list[dict]) -> dict[tuple, dict]:
    out = {key(o): o for o in objs}
    assert len(out) == len(objs), "an object twice"
    return out
