"""The sample pipeline the tests start from (manifests/samples/timestamppipeline.yaml),
and the CRD they install.

Its path is declared once, in the harness (`localinfra.demo.SAMPLE`, which the demo and
bench/operator_bench.py use too); every test builds its pipeline with `sample_pipeline`.
The sample shows each field at its default value, so merging a change in (objects merge
key by key) describes the same pipeline as replacing the objects the change touches.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml
from localinfra.demo import SAMPLE as SAMPLE_FILE

CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "timestamppipelines.tspipe.io.yaml"
SAMPLE_NAME = "timestamps"  # the sample pipeline's metadata.name
# What the API server adds to a stored pipeline, as the pure tests' stand-ins assume it.
STORED = {"namespace": "ns", "uid": "uid-1", "generation": 1}


def merged(base: dict, patch: dict) -> dict:
    """`base` with `patch` merged in (objects merge, anything else replaces), a copy."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@functools.cache
def _sample() -> dict:
    return yaml.safe_load(SAMPLE_FILE.read_text())


def sample_pipeline(*, stored: bool = False, metadata: dict | None = None, **spec) -> dict:
    """The sample pipeline, a fresh copy, with `spec` (its keys as keyword arguments) and
    `metadata` merged in; `stored=True` adds STORED's metadata first (what the pure tests
    hand to the renderer, the status and the controller's fakes)."""
    return merged(_sample(), {"metadata": {**(STORED if stored else {}), **(metadata or {})}, "spec": spec})
