"""Process plumbing shared by the local infrastructure helpers and their tests."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Ports for the services a run starts come from below the kernel's ephemeral range. A port
# the kernel hands out for bind(0) lies inside it, and between that pick and the service's
# own bind any process's outgoing connection may take it as its source port (CI saw a
# control plane fail with "bind: address already in use"); below the range a port is only
# ever bound on purpose. Each process walks the range from a random start, so it never
# hands out a port twice and two processes rarely meet.
PORT_FLOOR = 10_000
_EPHEMERAL_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_next_port: itertools.cycle[int] | None = None


def _ports() -> itertools.cycle[int] | None:
    global _next_port  # noqa: PLW0603 - set once, on first use
    if _next_port is None:
        try:
            ephemeral_low = int(_EPHEMERAL_FILE.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if ephemeral_low - PORT_FLOOR < 1000:  # an unusual range: leave it to the kernel
            return None
        start = random.randrange(PORT_FLOOR, ephemeral_low)
        _next_port = itertools.cycle([*range(start, ephemeral_low), *range(PORT_FLOOR, start)])
    return _next_port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (services here bind loopback only), below the
    ephemeral range (PORT_FLOOR says why)."""
    ports = _ports()
    for _ in range(1000 if ports is not None else 0):
        port = next(ports)  # type: ignore[arg-type]
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PR_SET_PDEATHSIG = 1
_libc = None


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this Python process dies, even by
    SIGKILL, so an interrupted test run leaves no control plane or node behind."""
    global _libc  # noqa: PLW0603 - loaded once, on first use
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: atexit and stop() still apply
        pass


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise FileNotFoundError("java (17+) not found on PATH or in JAVA_HOME")
    return found


OWNER_FILE = "owner.pid"


def owned_tmpdir(prefix: str) -> Path:
    """A new folder `prefix`* in the system temp dir that names this process as its owner
    (OWNER_FILE), made after sweeping the folders of `prefix` whose owner is gone."""
    sweep_tmpdirs(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / OWNER_FILE).write_text(str(os.getpid()))
    return path


def sweep_tmpdirs(prefix: str) -> None:
    """Remove the `owned_tmpdir(prefix)` folders whose owning process died without cleaning
    up (a SIGKILLed test run: its children died with it, its files did not)."""
    for path in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            os.kill(int((path / OWNER_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):  # no/odd owner file, or not ours to judge
            continue


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


def wait_for(probe, timeout: float, what: str, interval: float = 0.25, retry_on: tuple[type[BaseException], ...] = ()):
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
