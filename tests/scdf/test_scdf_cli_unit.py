"""The `tspipe` command line without a server: render, bad input, operator delegation."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tspipe import cli

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "timestamppipeline.yaml"


def tspipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tspipe.cli", *args], capture_output=True, text=True, timeout=120)


def test_render_prints_the_script():
    r = tspipe("scdf", "render", "-f", str(SAMPLE))
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert [ln.split(" --")[0] for ln in lines] == ["app register"] * 3 + ["stream create", "stream deploy"]


def test_unparsable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("spec: [unclosed\n")
    r = tspipe("scdf", "render", "-f", str(bad))
    assert r.returncode == 2 and r.stderr.startswith(f"tspipe: invalid pipeline file {bad}: ")
    assert r.stderr.count("\n") == 1
    r = tspipe("scdf", "render", "-f", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and r.stderr == f"tspipe: pipeline file {tmp_path / 'nope.yaml'}: not found\n"
    empty = tmp_path / "empty.yaml"
    empty.write_text("kind: ConfigMap\n")
    r = tspipe("scdf", "render", "-f", str(empty))
    assert r.returncode == 2 and "no TimestampPipeline document" in r.stderr


def test_server_is_required_and_url_checked():
    r = tspipe("scdf", "deploy", "-f", str(SAMPLE))
    assert r.returncode == 2 and "--server URL (or SCDF_SERVER_URL) is required" in r.stderr
    r = tspipe("scdf", "status", "-f", str(SAMPLE), "--server", "localhost:9393")
    assert r.returncode == 2 and "invalid server URL 'localhost:9393'" in r.stderr


def test_operator_subcommand_hands_every_argument_to_the_manager(monkeypatch):
    seen = []
    import tspipe.manager

    monkeypatch.setattr(tspipe.manager, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["operator", "--standalone", "-n", "ns1", "--help"]) == 7
    assert seen == [["--standalone", "-n", "ns1", "--help"]]


def test_operator_help_is_the_managers():
    r = tspipe("operator", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: tspipe operator")
