"""The operator as a local subprocess, its output in a log file: one wrapper for the
tests, the demo and the benchmark (the tests of the operator *as a pod* install it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .proc import stop_process_group

ROOT = Path(__file__).resolve().parents[2]


def manager_argv(namespace: str, *, standalone: bool = True, extra: Sequence[str] = ()) -> list[str]:
    """`python -m tspipe.manager` for one namespace, as the project's Deployment runs it."""
    return [
        sys.executable,
        "-m",
        "tspipe.manager",
        *(["--standalone"] if standalone else []),
        "--namespace",
        namespace,
        *extra,
    ]


class OperatorProcess:
    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        kubeconfig: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ):
        self.argv = list(argv)
        self.env = {
            **(env if env is not None else os.environ),
            "PYTHONUNBUFFERED": "1",
            **({"KUBECONFIG": kubeconfig} if kubeconfig else {}),
        }
        self.log_path, self.cwd = Path(log_path), cwd
        self.proc: subprocess.Popen | None = None
        self._offset = 0

    @classmethod
    def manager(
        cls, kubeconfig: str, namespace: str, log_path: Path, *, standalone: bool = True, extra: Sequence[str] = ()
    ) -> OperatorProcess:
        return cls(manager_argv(namespace, standalone=standalone, extra=extra), log_path, kubeconfig=kubeconfig)

    def start(self) -> OperatorProcess:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._fh = open(self.log_path, "ab")  # noqa: SIM115 - the operator writes to it until stop()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, since_start: bool = True) -> str:
        """What it printed since this start (or since the file began)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset if since_start else 0)
            return fh.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to its peers."""
        assert self.proc is not None, "not started"
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (kopf's graceful exit), SIGKILL after `timeout`; its exit code (again: None)."""
        if self.proc is None:
            return None
        stop_process_group(self.proc, timeout)
        self._fh.close()
        rc, self.proc = self.proc.returncode, None
        return rc
