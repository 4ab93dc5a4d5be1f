"""charts/tspipe's copies of manifests/ and crds/ are current (`make chart` writes them;
`make crd` runs it), so the chart installs the same objects and CRDs as kustomize. Pure."""

from __future__ import annotations

import shutil

import chartsync


def test_chart_copies_of_the_install_are_current():
    assert chartsync.stale() == [], "run `make chart` (hack/chartsync.py) and commit charts/tspipe"


def test_a_changed_missing_or_extra_copy_is_reported(tmp_path, monkeypatch):
    """The check itself: a copy of the chart, then one of each kind of drift."""
    chart = tmp_path / "tspipe"
    shutil.copytree(chartsync.CHART, chart)
    copies = tuple((src, chart / dst.relative_to(chartsync.CHART), pats) for src, dst, pats in chartsync.COPIES)
    monkeypatch.setattr(chartsync, "COPIES", copies)
    assert chartsync.stale() == []
    (chart / "files/manifests/base/deployment.yaml").write_text("kind: Deployment\n")
    (chart / "crds/kopf-peering.yaml").unlink()
    (chart / "files/manifests/base/extra.yaml").write_text("kind: ConfigMap\n")
    problems = "\n".join(chartsync.stale())
    assert "stale:" in problems and "base/deployment.yaml" in problems
    assert "missing:" in problems and "kopf-peering.yaml" in problems
    assert "left over:" in problems and "base/extra.yaml" in problems
    chartsync.write()
    assert chartsync.stale() == []
