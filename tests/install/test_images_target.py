"""`make images` (a user's Docker or Podman) builds both images from their Dockerfiles
with the tags the install runs: the operator's in manifests/ and the chart's values, the
router's in the sample and the CRD's default. Pure: `make -n` prints the commands (no
image is built here; the tests build theirs with buildah)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from installhelpers import CRD_FILE, MANIFESTS, ROOT

from tspipe.components import ROUTER

CHART = ROOT / "charts" / "tspipe"


def builds(tmp_path: Path, tools: tuple[str, ...] = (), **variables: str) -> list[tuple[str, str, str]]:
    """(tool, Dockerfile, tag) of each build `make -n images` would run, with only `tools`
    (stand-ins that do nothing) and the system's own folders on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for t in tools:
        (bin_dir / t).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / t).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_TOOL", "MAKEFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    proc = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT), "images", *(f"{k}={v}" for k, v in variables.items())],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    out = []
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        if len(words) > 1 and words[1] == "build":
            assert words[-1] == ".", f"the repository is the build context: {line}"
            out.append((words[0], words[words.index("-f") + 1], words[words.index("-t") + 1]))
    return out


def test_the_images_get_the_tags_the_install_and_the_chart_name(tmp_path):
    got = {dockerfile: tag for _, dockerfile, tag in builds(tmp_path, ("docker",))}
    assert sorted(got) == ["Dockerfile.operator", "Dockerfile.router"]
    assert all((ROOT / f).is_file() for f in got)

    deployment = yaml.safe_load((MANIFESTS / "base" / "deployment.yaml").read_text())
    assert got["Dockerfile.operator"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert got["Dockerfile.operator"] == f"{values['image']['repository']}:{values['image']['tag'] or app_version}"

    sample = yaml.safe_load((MANIFESTS / "samples" / "timestamppipeline.yaml").read_text())
    assert got["Dockerfile.router"] == sample["spec"]["router"]["image"] == ROUTER.default_image
    assert f"default: {got['Dockerfile.router']}" in CRD_FILE.read_text()


def test_docker_or_podman_whichever_is_on_path_or_the_one_asked_for(tmp_path):
    assert {t for t, _, _ in builds(tmp_path, ("docker", "podman"))} == {"docker"}
    assert {t for t, _, _ in builds(tmp_path / "p", ("podman",))} == {"podman"}
    assert {t for t, _, _ in builds(tmp_path / "c", ("docker",), CONTAINER_TOOL="podman")} == {"podman"}


def test_without_either_it_says_what_is_missing(tmp_path):
    (tmp_path / "bin").mkdir()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    env.pop("CONTAINER_TOOL", None)
    if any(Path(d, t).exists() for d in ("/usr/bin", "/bin") for t in ("docker", "podman")):
        pytest.skip("docker or podman is installed in /usr/bin here")
    proc = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "images"], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode != 0 and "neither docker nor podman on PATH" in proc.stdout + proc.stderr
