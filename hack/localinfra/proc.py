"""Process plumbing shared by the local infrastructure helpers and their tests."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (services here bind loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise FileNotFoundError("java (17+) not found on PATH or in JAVA_HOME")
    return found


def stop_process_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it outlives `timeout` seconds. The
    group is SIGKILLed once its leader is gone too: a child the leader left behind (a
    JVM's launcher, a shell's program) must not outlive the stop. The one way every
    harness process is stopped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def openssl(*args: str, cwd: Path | None = None) -> None:
    """Run `openssl` (test certificates); its error output in the exception if it fails."""
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()[-1000:]}")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc), for reports and benchmarks."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_for(probe, timeout: float, what: str, interval: float = 0.25,
             retry_on: tuple[type[BaseException], ...] = ()):
    """Poll `probe` until it returns something truthy and return that; raise AssertionError
    naming `what` (and the last value seen) after `timeout` seconds. Exceptions of the
    `retry_on` types mean "not yet" (the last one is named if time runs out)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except retry_on as exc:
            last = exc
        if last and not isinstance(last, BaseException):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"[:4000])
