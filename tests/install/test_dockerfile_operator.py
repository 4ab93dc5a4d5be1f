"""Dockerfile.operator without a Docker engine: parse it and check the properties the
image must have, then run its ENTRYPOINT (with the image's environment) in a virtual
environment holding exactly the requirements the Dockerfile installs."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import dockerparse
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.operator"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cc ", "clang", "git", "curl", "wget")


@pytest.fixture(scope="module")
def df() -> dockerparse.Dockerfile:
    return dockerparse.parse(DOCKERFILE.read_text())


def _copies(stage: dockerparse.Stage) -> list[tuple[list[str], str, dict]]:
    out = []
    for ins in stage.all("COPY"):
        words = ins.exec_form() or ins.args.split()
        out.append((words[:-1], words[-1], ins.flags))
    return out


def _venv_dir(df: dockerparse.Dockerfile) -> str:
    m = re.search(r"-m venv (\S+)", df.stages[0].run_text())
    assert m, "the build stage makes a virtual environment"
    return m.group(1)


def _requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{path}: {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


# -- the file itself ---------------------------------------------------------


def test_multi_stage_same_pinned_base(df):
    assert len(df.stages) >= 2, "multi-stage: a build stage and a runtime stage"
    bases = {s.base for s in df.stages}
    assert len(bases) == 1, f"build and runtime share one base (the venv links to its python): {bases}"
    (base,) = bases
    assert "$" not in base, f"unresolved ARG in FROM: {base}"
    assert dockerparse.is_pinned(base), f"base image must be pinned to a full version or digest: {base}"


def test_same_base_as_router_image(df):
    router = ROOT / "Dockerfile.router"
    assert router.exists(), "Dockerfile.router is the other image of the project"
    router_bases = {s.base for s in dockerparse.parse(router.read_text()).stages}
    assert df.final.base in router_bases, (df.final.base, router_bases)


def test_installs_the_pinned_requirements_then_the_package_without_deps(df):
    build = df.stages[0]
    venv = _venv_dir(df)
    copied = {dst: srcs for srcs, dst, _ in _copies(build)}
    # requirements.txt is copied from operator/ and installed with -r, alone, first.
    req_dst = next(dst for dst, srcs in copied.items() if srcs == ["operator/requirements.txt"])
    runs = build.all("RUN")
    req_runs = [i for i, r in enumerate(runs) if f"-r {req_dst}" in r.args]
    pkg_runs = [i for i, r in enumerate(runs) if re.search(r"pip install --no-deps \S*operator", r.args)]
    assert req_runs and pkg_runs and req_runs[0] < pkg_runs[0], "pins first, then the package with --no-deps"
    assert all(r.args.startswith(f"{venv}/bin/pip") for r in runs if "pip install" in r.args), (
        "everything goes into the venv"
    )
    assert "pip check" in build.run_text()


def test_runtime_stage_has_no_build_tools(df):
    final = df.final
    text = final.run_text()
    assert "pip install" not in text and "apt-get install" not in text and "apk add" not in text
    for tool in BUILD_TOOLS:
        assert tool not in text, f"runtime stage mentions {tool!r}"
    assert not final.all("ADD"), "no ADD (remote URLs, archives) in the runtime stage"
    # Only the venv comes over from the build stage; no sources.
    copies = _copies(final)
    assert copies, "the venv is copied from the build stage"
    for srcs, dst, flags in copies:
        assert flags.get("from") == df.stages[0].name, f"runtime COPY not from the build stage: {srcs}"
        assert srcs == [_venv_dir(df)] and dst == _venv_dir(df), (srcs, dst)


def test_non_root_numeric_user(df):
    user = df.final.last("USER")
    assert user, "the runtime stage sets USER"
    uid, _, gid = user.args.strip().partition(":")
    assert uid.isdigit() and int(uid) > 0, f"numeric non-root uid (runAsNonRoot needs a number): {user.args}"
    assert not gid or (gid.isdigit() and int(gid) > 0), user.args
    # It must be the uid the manifests run it as.
    deploy = (ROOT / "manifests" / "base" / "deployment.yaml").read_text()
    assert f"runAsUser: {uid}" in deploy


def test_read_only_root_filesystem_ready(df):
    env = df.final.env()
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "no .pyc writes at run time"
    # HOME and TMPDIR point at the one writable mount (an emptyDir at /tmp).
    assert env.get("HOME") == "/tmp" and env.get("TMPDIR") == "/tmp"
    workdir = df.final.last("WORKDIR")
    assert workdir and workdir.args.strip() == "/tmp"
    assert "compileall" in df.stages[0].run_text(), "bytecode compiled at build time"
    assert f"{_venv_dir(df)}/bin" in env.get("PATH", "").split(":")[0]


def test_exec_form_entrypoint(df):
    ep = df.final.last("ENTRYPOINT")
    assert ep and ep.exec_form() == ["tspipe", "operator"], ep
    assert not df.final.all("CMD"), "arguments come from the Deployment (args:)"


def test_dockerignore_keeps_the_context_small_and_clean():
    ignore = ROOT / ".dockerignore"
    assert ignore.exists()
    patterns = {
        ln.strip().rstrip("/") for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    }
    for must in (".git", ".venv"):
        assert must in patterns or f"**/{must}" in patterns, f".dockerignore lacks {must}"
    # The operator sources the Dockerfile copies must not be ignored.
    assert "operator" not in patterns and "operator/" not in patterns


# -- its entrypoint, for real -------------------------------------------------


def test_this_venv_has_exactly_the_requirements_the_image_installs(df):
    pins = _requirement_pins(ROOT / "operator" / "requirements.txt")
    assert pins, "operator/requirements.txt is empty"
    wrong = {}
    for name, version in pins.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong, f"dev venv differs from operator/requirements.txt (pinned, installed): {wrong}"


def test_entrypoint_runs_with_the_image_environment(df, tmp_path):
    venv = _venv_dir(df)
    here = sys.prefix  # the venv the tests run in, checked above to hold the same pins
    env = {k: v.replace(venv, here) for k, v in df.final.env().items()}
    # /tmp of the image -> a private scratch dir; nothing else is writable in the image.
    env = {k: (str(tmp_path) if v == "/tmp" else v) for k, v in env.items()}
    argv = df.final.last("ENTRYPOINT").exec_form() + ["--help"]
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The flags the manifests pass to this entrypoint exist.
    for flag in ("--standalone", "--liveness", "--all-namespaces", "--namespace"):
        assert flag in proc.stdout, (flag, proc.stdout)
    assert not list(Path(tmp_path).iterdir()), "--help wrote to HOME/TMPDIR"
