"""charts/tspipe's copies of the kustomize install, generated in one direction.

The source of the install is `manifests/` (kustomize) and `crds/` (`make crd`): the
README's commands, the install tests and the real-node tests run them. The Helm chart
holds no object of its own: its templates read the objects from `files/manifests/`, a
byte-for-byte copy of `manifests/` made here, and set only what a value changes; its
`crds/` is a copy of `crds/`. `make chart` writes the copies; `--check` (and
tests/install/test_chart_units.py) fails while one is stale, missing or left over.

    python hack/chartsync.py [--check]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "tspipe"
# (source folder, copy in the chart, which files): the manifests' YAML and the
# dashboard (the chart reads kustomization.yaml files too: the dashboard's
# configMapGenerator); the CRDs into Helm's crds/ (installed first, never deleted).
COPIES = (
    (ROOT / "manifests", CHART / "files" / "manifests", ("*.yaml", "*.json")),
    (ROOT / "crds", CHART / "crds", ("*.yaml",)),
)


def _files(folder: Path, patterns: tuple[str, ...]) -> dict[Path, Path]:
    return {p.relative_to(folder): p for pat in patterns for p in folder.rglob(pat) if p.is_file()}


def stale() -> list[str]:
    """What `make chart` would change, one line each (empty when the chart is current)."""
    out = []
    for src, dst, patterns in COPIES:
        want, have = _files(src, patterns), _files(dst, patterns) if dst.exists() else {}
        for rel, path in sorted(want.items()):
            if rel not in have:
                out.append(f"missing: {dst / rel}")
            elif have[rel].read_bytes() != path.read_bytes():
                out.append(f"stale: {dst / rel} differs from {path}")
        out.extend(f"left over: {dst / rel}" for rel in sorted(set(have) - set(want)))
    return [line.replace(f"{ROOT}/", "") for line in out]


def write() -> None:
    for src, dst, patterns in COPIES:
        if dst.exists():
            shutil.rmtree(dst)
        for rel, path in sorted(_files(src, patterns).items()):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst / rel)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a copy is stale (changes nothing)")
    if ap.parse_args().check:
        problems = stale()
        print("\n".join(problems) or "charts/tspipe is current")
        return 1 if problems else 0
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
