"""The seed pipeline's Spring Cloud Stream apps (time-source-kafka, log-sink-kafka) as local processes.

hack/spring-apps.sh puts the executable jars into the cache (rebuilt from their published
parts: hack/spring-apps/pom.xml says why); `jar_path` runs it on demand. `start_app` runs
`java -jar` with a small heap and fast-start flags, so the demo can run an app with exactly
a Deployment's args and env.

Wiring facts (checked by tests/infra/test_spring_apps.py): the apps alias their function
bindings to `output` (time source, `timeSupplier-out-0`) and `input` (log sink,
`byteArrayTextToString|logConsumer-in-0`), so the destinations are set with
`--spring.cloud.stream.bindings.output.destination` / `...input.destination`; a
`timeSupplier-out-0.destination` property is ignored.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from localinfra.cache import cache_dir
from localinfra.proc import java_bin, owned_tmpdir

HACK_DIR = Path(__file__).resolve().parent.parent
POM = HACK_DIR / "spring-apps" / "pom.xml"
SCRIPT = HACK_DIR / "spring-apps.sh"

APPS = ("time-source-kafka", "log-sink-kafka")
# The time source's payload format (java.text.SimpleDateFormat "MM/dd/yy HH:mm:ss").
TIME_FORMAT = "%m/%d/%y %H:%M:%S"
JVM_FLAGS = ("-Xms32m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
# The apps' java.io.tmpdir lives in folders of this prefix, removed when the app stops (and
# swept once the process that started it is gone): Spring Boot's embedded Tomcat makes its
# base dir there (tomcat.PORT.N) and never removes it, so with /tmp every start left one.
TMP_PREFIX = "tsp-springapp-"
_TMPDIRS: dict[int, Path] = {}  # start_app's process id -> its java.io.tmpdir


class SpringAppError(RuntimeError):
    """An app jar could not be provided or an app did not start; the message says where to look."""


# ---------------------------------------------------------------- pure helpers


def recipe_version(pom: Path = POM) -> str:
    """The app version hack/spring-apps/pom.xml builds (the reactor's own <version>)."""
    text = pom.read_text()
    m = re.search(r"<artifactId>stream-apps</artifactId>.*?<version>([^<]+)</version>", text, re.S)
    if not m:
        raise SpringAppError(f"no stream-apps <version> in {pom}")
    return m.group(1).strip()


def parse_time_payload(payload: bytes | str) -> datetime:
    """A time-source record's value as a datetime; ValueError if it is not that format."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    return datetime.strptime(text, TIME_FORMAT)


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    level: str
    pid: int
    app: str
    thread: str
    logger: str
    message: str


# Spring Boot 3.4's console pattern, e.g.
# 2026-11-27T22:50:55.550Z  INFO 30346 --- [log-sink] [container-0-C-1] log-sink                                 : 11/27/26 22:50:55  # noqa: E501
_BOOT_LINE = re.compile(
    r"^(?P<timestamp>\d{4}-\d\d-\d\dT\S+)\s+(?P<level>[A-Z]+)\s+(?P<pid>\d+)\s+---\s+"
    r"\[(?P<app>[^\]]*)\]\s+\[\s*(?P<thread>[^\]]*)\]\s+(?P<logger>\S+)\s+:\s(?P<message>.*)$"
)


def parse_boot_log_line(line: str) -> LogLine | None:
    """One line of a Spring Boot 3.4 console log, or None if it is not one (e.g. a stack trace)."""
    m = _BOOT_LINE.match(line.rstrip("\n"))
    if not m:
        return None
    d = m.groupdict()
    return LogLine(d["timestamp"], d["level"], int(d["pid"]), d["app"], d["thread"].strip(), d["logger"], d["message"])


def log_sink_payloads(lines, logger: str = "log-sink") -> list[str]:
    """The payloads the log sink logged: messages of its `log.name` logger (default `log-sink`)."""
    out = []
    for line in lines:
        parsed = parse_boot_log_line(line)
        if parsed and parsed.logger == logger:
            out.append(parsed.message)
    return out


# ---------------------------------------------------------------- jars and processes


def jar_path(app: str, version: str | None = None) -> Path:
    """The executable jar of `app` at `version`, building it into the cache if missing."""
    if app not in APPS:
        raise SpringAppError(f"unknown app {app!r}; known: {', '.join(APPS)}")
    buildable = recipe_version()
    version = version or buildable
    path = cache_dir() / "spring-apps" / version / f"{app}.jar"
    if path.exists():
        return path
    if version != buildable:
        raise SpringAppError(f"{app} {version} is not available: hack/spring-apps builds {buildable}")
    subprocess.run(["bash", str(SCRIPT), version], check=True)
    if not path.exists():
        raise SpringAppError(f"{SCRIPT} ran but {path} is missing")
    return path


def java_command(app: str, version: str | None = None, tmpdir: Path | None = None) -> list[str]:
    """`java <small-heap flags> -jar <app jar>`, with `tmpdir` as java.io.tmpdir when
    given (see TMP_PREFIX); append the app's args."""
    tmp = [f"-Djava.io.tmpdir={tmpdir}"] if tmpdir else []
    return [java_bin(), *JVM_FLAGS, *tmp, "-jar", str(jar_path(app, version))]


def start_app(
    app: str,
    version: str | None,
    args: list[str] | tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: str | os.PathLike | None = None,
) -> subprocess.Popen:
    """Start `app` with `args` and `env` (added to this process's environment), its stdout
    and stderr appended to `log_path` (inherited if None), in its own process group;
    its java.io.tmpdir is a folder of its own that stop_app removes."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    tmpdir = owned_tmpdir(TMP_PREFIX)
    log = None
    try:
        cmd = [*java_command(app, version, tmpdir), *args]
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the app writes to it until it stops
        proc = subprocess.Popen(
            cmd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=True,
        )
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    finally:
        if log:
            log.close()  # the child holds its own descriptor
    _TMPDIRS[proc.pid] = tmpdir
    return proc


def stop_app(proc: subprocess.Popen, timeout: float = 20) -> int:
    """SIGTERM the app's process group (Spring's graceful shutdown), SIGKILL after `timeout`."""
    from localinfra.proc import stop_process_group

    stop_process_group(proc, timeout)
    tmpdir = _TMPDIRS.pop(proc.pid, None)
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return proc.returncode


def wait_started(proc: subprocess.Popen, log_path: str | os.PathLike, timeout: float = 120) -> float:
    """Wait for Boot's `Started ...Application in N seconds` line; returns the seconds waited."""
    t0 = time.monotonic()
    started = re.compile(r"Started \w+Application in ")
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SpringAppError(f"app exited with code {proc.returncode} while starting; see {log_path}")
        try:
            if started.search(Path(log_path).read_text(errors="replace")):
                return time.monotonic() - t0
        except FileNotFoundError:
            pass
        time.sleep(0.25)
    raise SpringAppError(f"app did not start within {timeout:.0f}s; see {log_path}")
