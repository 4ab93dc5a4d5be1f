"""A small Dockerfile reader (pure): enough of the syntax to check our own Dockerfiles
without a Docker engine. Continuation lines, comments, ARG defaults in FROM, JSON
(exec) and shell forms, and `KEY=VALUE ...` ENV lines.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field


@dataclass
class Instruction:
    cmd: str  # upper case: FROM, RUN, ...
    args: str  # the raw rest of the line, continuation lines joined
    flags: dict[str, str] = field(default_factory=dict)  # --from=build, --chown=...

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form RUN/CMD/ENTRYPOINT, else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    base: str  # image reference after ARG substitution
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            out.update(parse_env(ins.args, out))
        return out

    def run_text(self) -> str:
        return "\n".join(i.args for i in self.all("RUN"))


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARG defaults (before the first FROM)
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def logical_lines(text: str) -> list[str]:
    """Join backslash continuations; drop comment and blank lines (also inside a
    continuation, as Docker does)."""
    out: list[str] = []
    buf: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append(" ".join(p for p in buf if p))
        buf = []
    if buf:
        out.append(" ".join(p for p in buf if p))
    return out


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def substitute(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_env(args: str, current: dict[str, str] | None = None) -> dict[str, str]:
    """`ENV A=1 B="x y"` (or the legacy `ENV A 1`), with $VAR from earlier ENV lines."""
    current = dict(current or {})
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    out = {}
    for w in words:
        key, _, value = w.partition("=")
        value = substitute(value, {**current, **out})
        out[key] = value
    return out


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
            rest = rest.lstrip()
        if cmd == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
            continue
        if cmd == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=substitute(words[0], global_args), name=name))
            continue
        if not stages:
            raise ValueError(f"{cmd} before the first FROM")
        stages[-1].instructions.append(Instruction(cmd, rest, flags))
    if not stages:
        raise ValueError("no FROM")
    return Dockerfile(global_args, stages)


_PINNED_TAG = re.compile(r"^\d+(\.\d+){2,}")  # 3.11.14-slim-bookworm: full version


def is_pinned(image: str) -> bool:
    """A digest, or a tag that names a full version (not `latest`, not just `3.11`)."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return bool(_PINNED_TAG.match(tag))
