"""bench/operator_soak.py and bench/soakhook.py: the audit log's writes across a rotation, the
figures the results file reports, and the hook's snapshots."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import operator_soak, soakhook


def write_ev(name: str, verb: str = "patch", agent: str = "tspipe-operator/0.1.0") -> str:
    return (
        json.dumps(
            {
                "stage": "ResponseComplete",
                "verb": verb,
                "userAgent": agent,
                "objectRef": {
                    "resource": "timestamppipelines",
                    "subresource": "status",
                    "name": name,
                    "namespace": "bench",
                },
            }
        )
        + "\n"
    )


def test_audit_counter_follows_a_rotation_into_the_backup(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text(write_ev("before-the-window"))
    audit = operator_soak.AuditCounter(str(log))
    with open(log, "a") as fh:
        fh.write(write_ev("p0001") + write_ev("p0002", verb="get") + write_ev("p0003", agent="kubectl/v1"))
    assert audit.poll() == 1
    # The API server renames the full log to a timestamped backup and starts a new one.
    with open(log, "a") as fh:
        fh.write(write_ev("p0004"))
    log.rename(tmp_path / "audit-2026-12-07T01-00-00.000.log")
    log.write_text(write_ev("p0005"))
    assert audit.poll() == 3
    assert sorted(audit.kinds) == [f"patch timestamppipelines/status p000{i}" for i in (1, 4, 5)]


def samples(rss: list[float], tm: list[float], passes_per: int = 1000) -> list[dict]:
    out = []
    for i, (r, m) in enumerate(zip(rss, tm, strict=True)):
        out.append(
            {
                "t": i * 300.0,
                "phase": "soak",
                "rss_mb": r,
                "tracemalloc_mb": m,
                "cpu_s": 10.0 * i,
                "passes": passes_per * i,
                "threads": 10,
                "fds": 20,
                "load1": 2.0,
                "writes": 0,
            }
        )
    out[2]["phase"] = "warm"
    out[-1]["phase"] = "end"
    return out


def test_growth_leaves_out_tracemalloc_s_own_memory_and_cpu_is_per_pass():
    # 5-minute samples: tracemalloc starts after the second, the warm-up ends at the third.
    r = {
        "samples": [{"t": -60, "phase": "create", "rss_mb": 50}]
        + samples([100, 101, 112, 113, 114.1], [0, 0, 10, 10.5, 11])
    }
    s = operator_soak.summarize(r, a_warmup=10, trace_at=6)
    assert s["rss_warm_adj_mb"] == 102 and s["rss_end_adj_mb"] == 103.1
    assert s["rss_growth_pct"] == pytest.approx(100 * 1.1 / 102, abs=0.01)
    assert s["rss_growth_pct_raw"] == pytest.approx(100 * 2.1 / 112, abs=0.01)
    assert s["writes"] == 0 and s["passes"] == 4000
    assert s["cpu_per_pass_ms"] == 10.0 and s["cpu_per_pass_ms_untraced"] == 10.0


def test_the_report_and_the_plot_are_written(tmp_path):
    a = SimpleNamespace(
        pipelines=1000, minutes=60, warmup=10, trace_at=6, frames=10, sample=30, batch=100, create_budget=900
    )
    r = {
        "meta": {"date": "2026-12-07 01:00 UTC", "cpus": 2, "revision": "abc", "args": vars(a)},
        "pipelines": 700,
        "requested": 1000,
        "stopped_early": True,
        "create_seconds": 900.0,
        "window_minutes": 60.0,
        "samples": samples([100, 101, 112, 113, 114.1], [0, 0, 10, 10.5, 11]),
        "write_kinds": {},
        "growth_sites": [
            {"traced_warm_kb": 1.0, "traced_end_kb": 2.0},
            {"size_diff_kb": 1.0, "size_kb": 2.0, "count_diff": 3, "frames": ["a.py:1", "b.py:2"]},
        ],
        "type_growth": [["dict", 10, 12]],
        "unreachable": {
            "status_end": {"phase": "Degraded", "conditions": []},
            "log_lines": 3,
            "last_lines": [],
            "resource_version_start": "5",
            "resource_version_end": "5",
        },
    }
    s = operator_soak.summarize(r, 10, 6)
    text = operator_soak.report(r, s, a)
    assert "**stopped at 700 of 1000**" in text and "`b.py:2 <- a.py:1`" in text
    assert "Its traces stay in the RSS" in text
    a.trace_at = None
    untraced = operator_soak.report(r, operator_soak.summarize(r, 10, None), a)
    assert "No tracemalloc in the window" in untraced and "tracemalloc on" not in untraced
    operator_soak.plot(r, tmp_path / "soak.png", 10, 6)
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"


class Blob:
    def __init__(self):
        self.data = bytearray(1000)


def test_the_hook_takes_snapshots_on_command(tmp_path):
    d = str(tmp_path)
    (tmp_path / "start-5").write_text("")
    soakhook._command(d, "start-5", str(tmp_path / "start-5"))
    try:
        kept = [Blob() for _ in range(100)]
        (tmp_path / "snap-warm").write_text("")
        soakhook._command(d, "snap-warm", str(tmp_path / "snap-warm"))
        kept += [Blob() for _ in range(300)]
        (tmp_path / "snap-end").write_text("")
        soakhook._command(d, "snap-end", str(tmp_path / "snap-end"))
    finally:
        tracemalloc.stop()
    assert (tmp_path / "snap-end.done").exists() and not (tmp_path / "snap-end").exists()
    assert json.loads((tmp_path / "end.types.json").read_text())["Blob"] >= 400
    sites = operator_soak.growth_sites(tmp_path)
    assert sites[0]["traced_end_kb"] > sites[0]["traced_warm_kb"]
    assert any("test_soak_units.py" in f for f in sites[1]["frames"]) and sites[1]["size_diff_kb"] >= 290
    del kept


class Cyclic:
    def __init__(self):
        self.me = self


def test_the_hook_counts_what_only_a_full_collection_frees(tmp_path):
    for _ in range(50):
        Cyclic()
    (tmp_path / "garbage-round").write_text("")
    soakhook._command(str(tmp_path), "garbage-round", str(tmp_path / "garbage-round"))
    assert json.loads((tmp_path / "round.garbage.json").read_text())["Cyclic"] >= 50
    assert (tmp_path / "garbage-round.done").exists()
