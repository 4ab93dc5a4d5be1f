"""Credentials for a secured Data Flow server: where they come from, that they are sent,
and that no output ever contains them."""

from __future__ import annotations

import base64
import http.server
import os
import subprocess
import sys
import threading
from typing import ClassVar

import pytest
from samples import SAMPLE_FILE as SAMPLE

from tspipe.scdf.client import AuthError, Credentials, DataFlowClient, ScdfHttpError, resolve_credentials

PASSWORD = "pw-Zq81-never-print-me"
TOKEN = "tok-Xv55-never-print-me"


def test_flags_win_over_environment(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    env = {"SCDF_USERNAME": "envuser", "SCDF_PASSWORD": "envpass"}
    c = resolve_credentials(username="alice", password_file=str(pw), env=env)
    assert (c.username, c.password, c.token) == ("alice", PASSWORD, None)
    c = resolve_credentials(env=env)
    assert (c.username, c.password) == ("envuser", "envpass")


def test_token_from_file_or_environment(tmp_path):
    tf = tmp_path / "tok"
    tf.write_text(TOKEN)
    assert resolve_credentials(token_file=str(tf), env={}).token == TOKEN
    assert resolve_credentials(env={"SCDF_TOKEN": TOKEN}).token == TOKEN
    assert resolve_credentials(env={}).kind == "none"


@pytest.mark.parametrize(
    "kwargs,env,msg",
    [
        ({"username": "bob"}, {}, "no password for user 'bob'"),
        ({}, {"SCDF_PASSWORD": PASSWORD}, "password was given without a username"),
        ({"username": "bob", "token_file": "TOKENFILE"}, {"SCDF_PASSWORD": "x"}, "either a bearer token or"),
        ({"password_file": "/nonexistent/pw"}, {}, "cannot read the password file /nonexistent/pw"),
    ],
)
def test_bad_combinations_are_named_without_secrets(tmp_path, kwargs, env, msg):
    if kwargs.get("token_file") == "TOKENFILE":
        tf = tmp_path / "tok"
        tf.write_text(TOKEN)
        kwargs["token_file"] = str(tf)
    with pytest.raises(AuthError) as ei:
        resolve_credentials(env=env, **kwargs)
    assert msg in str(ei.value)
    assert PASSWORD not in str(ei.value) and TOKEN not in str(ei.value)


@pytest.mark.parametrize(
    "c", [Credentials(username="u", password=PASSWORD), Credentials(token=TOKEN)], ids=["password", "token"]
)
def test_repr_hides_secrets(c):
    assert PASSWORD not in repr(c) and TOKEN not in repr(c) and PASSWORD not in str(c)


def test_credentials_in_the_url_are_refused_without_echo():
    with pytest.raises(Exception) as ei:
        DataFlowClient(f"http://u:{PASSWORD}@127.0.0.1:9393")
    assert PASSWORD not in str(ei.value)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error":"Unauthorized"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Recorder.seen
    srv.shutdown()
    srv.server_close()


def test_basic_and_bearer_headers_are_sent_and_401_is_explained(recorder):
    url, seen = recorder
    with pytest.raises(ScdfHttpError) as ei:
        DataFlowClient(url, Credentials(username="alice", password=PASSWORD)).about()
    assert ei.value.status == 401 and "not authorized" in str(ei.value)
    with pytest.raises(ScdfHttpError):
        DataFlowClient(url, Credentials(token=TOKEN)).about()
    assert seen == ["Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode(), f"Bearer {TOKEN}"]


def _cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCDF_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "tspipe.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_never_prints_credentials(recorder, tmp_path):
    url, seen = recorder
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    tf = tmp_path / "tok"
    tf.write_text(TOKEN)
    runs = [
        _cli("scdf", "deploy", "-f", str(SAMPLE), "--server", url, "--username", "alice", "--password-file", str(pw)),
        _cli("scdf", "status", "-f", str(SAMPLE), "--server", url, "--token-file", str(tf)),
        _cli("scdf", "deploy", "-f", str(SAMPLE), "--server", url, env_extra={"SCDF_TOKEN": TOKEN}),
        _cli(
            "scdf",
            "deploy",
            "-f",
            str(SAMPLE),
            "--server",
            url,
            env_extra={"SCDF_USERNAME": "alice", "SCDF_PASSWORD": PASSWORD},
        ),
        # Refused combinations and a closed port: still no secret in the message.
        _cli(
            "scdf",
            "deploy",
            "-f",
            str(SAMPLE),
            "--server",
            url,
            "--token-file",
            str(tf),
            "--username",
            "alice",
            "--password-file",
            str(pw),
        ),
        _cli("scdf", "deploy", "-f", str(SAMPLE), "--server", "http://127.0.0.1:1", "--token-file", str(tf)),
    ]
    for r in runs:
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert out.strip(), "each failure says why"
        assert PASSWORD not in out and TOKEN not in out
        assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in out
    assert "not authorized" in runs[0].stderr
    assert "either a bearer token or a username/password" in runs[4].stderr
    # The server did receive the credentials from files and environment.
    assert f"Bearer {TOKEN}" in seen and any(s and s.startswith("Basic ") for s in seen)
