"""The failure diagnostics that end-to-end tests print: they appear in a failing test's
report, and collecting them never raises."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

from localinfra import diagnose

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_test_reports_what_its_fixtures_registered(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        """
        def test_fails(on_failure):
            on_failure.append(("runner state", lambda: "router pid 42 exited 1"))
            on_failure.append(("broken probe", lambda: 1 / 0))
            assert False, "no lines in the loggers"

        def test_passes(on_failure):
            on_failure.append(("runner state", lambda: "SHOULD-NOT-APPEAR"))
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--rootdir={pytester.path}", "-o", f"pythonpath={ROOT / 'hack'}"
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "===== runner state =====" in out and "router pid 42 exited 1" in out
    # A probe that fails says so instead of hiding the test's own failure.
    assert "===== broken probe =====" in out and "ZeroDivisionError" in out
    assert "SHOULD-NOT-APPEAR" not in out


def test_tail_keeps_the_last_lines_and_says_how_many_it_skipped(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    text = diagnose.tail(log, lines=3)
    assert text.splitlines() == ["[... 97 earlier lines]", "line 97", "line 98", "line 99"]
    assert diagnose.tail(log, lines=200).splitlines()[0] == "line 0"


def test_runner_state_names_each_program_and_how_its_processes_ended():
    done = subprocess.Popen(["true"])
    done.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        prog = SimpleNamespace(kind="log-sink-kafka", version="5.1.1")
        runner = SimpleNamespace(
            running={"ns/p-evenlogger": (prog, [alive, done])}, starts={"ns/p-evenlogger": 2, "ns/p-router": 1}
        )
        text = diagnose.runner_state(runner)
    finally:
        alive.kill()
        alive.wait()
    assert f"ns/p-evenlogger (log-sink-kafka:5.1.1) starts=2: pid {alive.pid} running, pid {done.pid} exited 0" in text
    assert "started before, not running now: ns/p-router" in text


def test_start_times_tell_a_slow_app_from_a_failed_one(tmp_path):
    (tmp_path / "ns_p-time-0.log").write_text(
        "2026-11-30T04:23:19.928Z  INFO 1 --- [time-source] [main] s.c.s.a.t.s.k.TimeSourceKafkaApplication : "
        "Started TimeSourceKafkaApplication in 22.396 seconds (process running for 24.606)\n"
    )
    (tmp_path / "ns_p-evenlogger-0.log").write_text("***************************\nAPPLICATION FAILED TO START\n")
    (tmp_path / "ns_p-oddlogger-0.log").write_text("  .   ____          _\n")
    (tmp_path / "ns_p-router-0.log").write_text("INFO tsrouter: tsp-router 0.1.0 starting: actuator on port 1\n")
    lines = diagnose.start_times(tmp_path).splitlines()
    assert lines == [
        "ns_p-evenlogger-0.log: FAILED TO START (see its tail)",
        "ns_p-oddlogger-0.log: not started yet (1 lines)",
        "ns_p-router-0.log: router (1 start(s))",
        "ns_p-time-0.log: Started TimeSourceKafkaApplication in 22.396 seconds (process running for 24.606)",
    ]
