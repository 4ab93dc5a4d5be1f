"""The `tspipe` command line without a server: render, bad input, operator delegation."""

from __future__ import annotations

import subprocess
import sys

from samples import SAMPLE_FILE as SAMPLE

from tspipe import cli
from tspipe.scdf import commands


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


def test_status_when_data_flow_cannot_compute_the_state_names_every_app(capsys):
    """As Data Flow 2.11.5 answers while Skipper cannot reach its Kubernetes API server:
    HTTP 500 for the definition and the runtime status; the release records still read."""
    from types import SimpleNamespace

    from tspipe.model import load_pipeline_file
    from tspipe.scdf.client import ScdfHttpError

    class Server:
        url = "http://scdf"

        def definition(self, name):
            raise ScdfHttpError(f"reading stream definition {name!r}", 500, "500 : [no body]")

        def current_release(self, name):
            return {"version": 2}

        def manifest(self, name, version):
            return {
                label: {"resource": "docker:img", "version": "1"}
                for label in ("evenLogger", "oddLogger", "python-router", "time")
            }

        def runtime(self, name):
            raise ScdfHttpError("reading the runtime status", 500, "500 : [no body]")

    code = commands._status(Server(), load_pipeline_file(SAMPLE), SimpleNamespace())
    out = capsys.readouterr().out
    assert code == commands.EXIT_FAILED
    assert (
        "state: unknown: Data Flow could not compute it (reading stream definition 'timeStampStream' failed: "
        "HTTP 500: 500 : [no body])" in out
    )
    assert "release: 2" in out
    assert "apps: the platform's status could not be read: reading the runtime status failed: HTTP 500" in out
    assert out.index("  time: unknown") < out.index("  python-router: unknown") < out.index("  oddLogger: unknown")


def test_import_needs_a_stream_and_a_server_but_no_file():
    r = tspipe("scdf", "import", "--server", "http://127.0.0.1:1")
    assert r.returncode == 2 and "the following arguments are required: --stream" in r.stderr
    r = tspipe("scdf", "import", "--stream", "s")
    assert r.returncode == 2 and "--server URL (or SCDF_SERVER_URL) is required" in r.stderr
