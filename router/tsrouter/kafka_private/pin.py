"""The one kafka-python version the router's private paths were written and tested against."""

from __future__ import annotations

import inspect
from typing import Any

import kafka

# router/pyproject.toml pins it; another version may move what tsrouter.kafka_private reads
# or patches, so on another one the router takes kafka-python's public paths instead.
PINNED_KAFKA_PYTHON = "3.0.12"


def source_of(obj: Any) -> str:
    """The source of a kafka-python function or class, "" when it cannot be read (then
    every check that looks for a line in it fails, as it should)."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def version_problems() -> list[str]:
    """[] on the pinned kafka-python, else one line saying which is installed."""
    if kafka.__version__ == PINNED_KAFKA_PYTHON:
        return []
    return [f"kafka-python {kafka.__version__} installed, {PINNED_KAFKA_PYTHON} expected"]
