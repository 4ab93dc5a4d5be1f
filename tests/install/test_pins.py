"""Runtime pins have one source: each distribution's pyproject.toml.

The images install `<dist>/requirements.txt` (so pip cannot pick other versions); that
file is generated from the pyproject's `dependencies`:

    python tests/install/test_pins.py --write

and this test fails when the two differ."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ("operator", "router")
HEADER = "# Generated from pyproject.toml by `python tests/install/test_pins.py --write`; do not edit.\n"


def expected(dist: str) -> str:
    project = tomllib.loads((ROOT / dist / "pyproject.toml").read_text())["project"]
    return HEADER + "".join(f"{dep}\n" for dep in project["dependencies"])


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_requirements_are_generated_from_pyproject(dist):
    assert (ROOT / dist / "requirements.txt").read_text() == expected(dist), (
        f"{dist}/requirements.txt differs from {dist}/pyproject.toml: run python tests/install/test_pins.py --write"
    )


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_every_runtime_dependency_is_pinned(dist):
    project = tomllib.loads((ROOT / dist / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] and all("==" in dep for dep in project["dependencies"])


def test_the_recipe_router_image_installs_the_routers_pins():
    """bench/seed_router/Dockerfile (the recipe's, for the real node's test) pins the two
    packages the recipe installs unpinned to the router's versions, the ones
    bench/router_bench.py runs the seed's code with."""
    pins = dict(
        line.split("==") for line in (ROOT / "router" / "requirements.txt").read_text().splitlines() if "==" in line
    )
    installs = [
        line.split()[-1]
        for line in (ROOT / "bench" / "seed_router" / "Dockerfile").read_text().splitlines()
        if line.startswith("RUN pip install ")
    ]
    assert installs == [f"kafka-python=={pins['kafka-python']}", f"flask=={pins['flask']}"], installs


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/install/test_pins.py --write")
    for d in DISTRIBUTIONS:
        (ROOT / d / "requirements.txt").write_text(expected(d))
