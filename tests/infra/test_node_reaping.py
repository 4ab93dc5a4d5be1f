"""The node's teardown waits until the processes it killed are reaped: a killed process is a
zombie (empty command line, still in /proc) until its parent waits for it, and a zombie
left behind is what `leftovers()` reported after a crash sweep in CI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from localinfra.nodehost import unreaped


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_killed_child_is_reaped_and_then_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _state(proc.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(proc.pid) == "Z"
    assert Path(f"/proc/{proc.pid}/cmdline").read_bytes() == b""  # why matching by arguments misses it
    assert unreaped([proc.pid]) == [proc.pid]  # still there when looked at; reaped by the call
    assert _state(proc.pid) is None
    assert unreaped([proc.pid]) == []


def test_a_live_process_is_unreaped_until_it_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert unreaped([proc.pid]) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert unreaped([proc.pid]) == []
