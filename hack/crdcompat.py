"""`make lint`'s CRD compatibility check: the generated CRD against a baseline, the CRD
of a pinned earlier revision (tspipe.crdcompat compares; this reads the files).

The baseline is a committed copy (hack/crdcompat/baseline.yaml, its first line names the
revision), not `git show REV:...` at check time: CI checks out a fresh clone, which may
be shallow or lack the pinned commit, and `make lint` must give the same answer
everywhere. When the history is there, the copy is also checked to be that revision's.

  python hack/crdcompat.py                  # check (exit 1 on an unexcused break)
  python hack/crdcompat.py --update REV     # take REV's CRD as the new baseline (at a release)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
from tspipe.crdcompat import allowed_breaks, compare, unexcused  # noqa: E402

CRD = "crds/timestamppipelines.tspipe.io.yaml"
BASELINE = ROOT / "hack" / "crdcompat" / "baseline.yaml"
HEADER = "# The CRD at revision "
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the CRD is 8,000+ lines


def _git_show(rev: str) -> str | None:
    r = subprocess.run(["git", "show", f"{rev}:{CRD}"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def update(rev: str) -> int:
    text = _git_show(rev)
    if text is None:
        print(f"crdcompat: no {CRD} at {rev!r} in this clone's history (fetch it, or unshallow)", file=sys.stderr)
        return 2
    full = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE.write_text(f"{HEADER}{full} (python hack/crdcompat.py --update REV); do not edit.\n{text}")
    print(f"crdcompat: baseline is now {CRD} at {full}")
    return 0


def check() -> int:
    text = BASELINE.read_text()
    rev = text.splitlines()[0].removeprefix(HEADER).split()[0]
    at_rev = _git_show(rev)
    if at_rev is None:
        print(f"crdcompat: {rev[:12]} is not in this clone's history; using the committed copy of its CRD")
    elif text.split("\n", 1)[1] != at_rev:
        print(
            f"crdcompat: {BASELINE.relative_to(ROOT)} is not {CRD} at {rev[:12]}: "
            f"run python hack/crdcompat.py --update {rev[:12]}",
            file=sys.stderr,
        )
        return 1
    # LOADER is a safe loader (C or Python); ruff cannot see through the name.
    breaks = compare(yaml.load(text, LOADER), yaml.load((ROOT / CRD).read_text(), LOADER))  # noqa: S506
    allowed = allowed_breaks((ROOT / "CHANGELOG.md").read_text())
    bad = unexcused(breaks, allowed)
    for b in breaks:
        print(f"crdcompat: {'BREAKS' if b in bad else 'named in CHANGELOG.md'}: {b}")
    if bad:
        print(
            f"crdcompat: {len(bad)} incompatible change(s) against the CRD at {rev[:12]}: objects or "
            f"clients written for it may break. Undo them, or name each path in CHANGELOG.md's Unreleased "
            f"section on a line with **Breaking**",
            file=sys.stderr,
        )
        return 1
    print(f"crdcompat: {CRD} is compatible with the CRD at {rev[:12]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python hack/crdcompat.py")
    ap.add_argument("--update", metavar="REV", help="take the CRD at git revision REV as the baseline")
    a = ap.parse_args(argv)
    return update(a.update) if a.update else check()


if __name__ == "__main__":
    raise SystemExit(main())
