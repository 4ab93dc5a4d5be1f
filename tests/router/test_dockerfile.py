"""Dockerfile.router: checked by parsing (no Docker engine here), and its ENTRYPOINT run in a
virtual environment built from the same pinned requirements the image installs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.router"


def parse(text: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with comments dropped and continuation lines joined."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, args = buf.partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def stages(instrs):
    """Global ARGs and [(from_line, [instructions])] per stage."""
    args, result = {}, []
    for instr, rest in instrs:
        if instr == "FROM":
            result.append((rest, []))
        elif not result and instr == "ARG":
            k, _, v = rest.partition("=")
            args[k] = v
        elif result:
            result[-1][1].append((instr, rest))
    return args, result


INSTRS = parse(DOCKERFILE.read_text())
ARGS, STAGES = stages(INSTRS)
FINAL = STAGES[-1][1]


def expand(s: str) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: ARGS.get(m.group(1) or m.group(2), ""), s)


def final(instr: str) -> list[str]:
    return [rest for i, rest in FINAL if i == instr]


def test_multi_stage_with_pinned_base():
    assert len(STAGES) >= 2
    for from_line, _ in STAGES:
        image = expand(from_line.split()[0])
        if image in {f.split()[-1] for f, _ in STAGES if " AS " in f.upper()}:
            continue  # FROM an earlier stage
        _name, _, tag = image.partition(":")
        assert tag and tag != "latest", image
        assert re.match(r"^\d+\.\d+\.\d+-slim-\w+$", tag) or "@sha256:" in image, image


def test_build_stage_installs_the_pinned_requirements_then_the_package():
    build = STAGES[0][1]
    runs = [r for i, r in build if i == "RUN"]
    copies = [r for i, r in build if i == "COPY"]
    req_run = next(k for k, r in enumerate(runs) if "-r /src/router/requirements.txt" in r)
    pkg_run = next(k for k, r in enumerate(runs) if re.search(r"pip install --no-deps /src/router\b", r))
    assert req_run < pkg_run
    assert any(c.split()[0] == "router/requirements.txt" for c in copies)
    reqs = [
        ln.strip()
        for ln in (ROOT / "router/requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert reqs and all(re.match(r"^[A-Za-z0-9_.-]+==[\w.]+$", r) for r in reqs)
    pyproject = (ROOT / "router/pyproject.toml").read_text()
    for r in reqs:  # the package declares exactly the same pins
        assert f'"{r}"' in pyproject


def test_final_stage_is_non_root_without_build_tools():
    users = final("USER")
    assert users, "final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    text = " ".join(r for i, r in FINAL if i == "RUN")
    for tool in ("gcc", "build-essential", "make ", "apt-get install", "pip install", "git "):
        assert tool not in text, tool
    assert "pip uninstall" in text  # pip itself does not ship in the final image
    assert any(i == "COPY" and "--from=" in r for i, r in FINAL)
    assert not any(i == "ADD" for i, _ in FINAL)


def test_final_stage_env_entrypoint_and_port():
    env = " ".join(final("ENV"))
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)
    assert "8080" in " ".join(final("EXPOSE")).split()
    entry = json.loads(final("ENTRYPOINT")[-1])  # exec form is a JSON array
    assert isinstance(entry, list) and entry
    cmd = final("CMD")
    assert not cmd or json.loads(cmd[-1]) == []  # nothing that would swallow SCDF's args


def test_dockerignore_is_generic():
    lines = {
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    }
    for pattern in (".venv", ".git", "tests", "bench", "hack"):
        assert pattern in lines, pattern
    assert not ({"router", "operator", "router/", "operator/"} & lines)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory):
    """/opt/venv of the image, rebuilt here: same requirements file, then the package --no-deps."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "router/requirements.txt")], check=True, timeout=600)
    subprocess.run([*pip, "--no-deps", str(ROOT / "router")], check=True, timeout=600)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "check"], check=True)
    return venv


def entrypoint(venv: Path) -> list[str]:
    """The ENTRYPOINT with the image's PATH (/opt/venv/bin first) mapped onto the venv."""
    entry = json.loads(final("ENTRYPOINT")[-1])
    path = re.search(r"PATH=(\S+)", " ".join(final("ENV"))).group(1)
    if "/" not in entry[0]:
        for d in path.split(":"):
            if d.startswith("/opt/venv"):
                candidate = venv / d[len("/opt/venv/") :] / entry[0]
                if candidate.exists():
                    return [str(candidate), *entry[1:]]
        raise AssertionError(f"{entry[0]} not found on the image PATH {path}")
    return [str(venv / entry[0][len("/opt/venv/") :]), *entry[1:]]


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRING_", "SERVER_", "TSROUTER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_entrypoint_help_and_config_error(image_venv):
    cmd = entrypoint(image_venv)
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 0 and "spring.cloud.stream.bindings" in out.stdout
    bad = subprocess.run([*cmd, "--server.port=http"], capture_output=True, text=True, timeout=60, env=_env())
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "server.port" in bad.stderr


def test_entrypoint_starts_serves_probes_and_stops_on_sigterm(image_venv):
    from routerproc import free_port, wait_for

    port = free_port()
    # SCDF exec style: arguments appended to the ENTRYPOINT
    proc = subprocess.Popen(
        [
            *entrypoint(image_venv),
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--spring.cloud.stream.kafka.binder.brokers=127.0.0.1:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:

        def live():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/actuator/health/liveness", timeout=2) as r:
                    return r.status == 200
            except Exception:  # noqa: BLE001 - a probe: not live yet
                return False

        wait_for(live, 60, "liveness")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "SIGTERM received" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_image_uses_the_c_crc32c(image_venv):
    # kafka-python silently falls back to pure-Python CRC32C, several times slower per batch
    out = subprocess.run(
        [str(image_venv / "bin/python"), "-c", "from kafka.record import util; print(util.crc32c_c is not None)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "True", out.stderr
