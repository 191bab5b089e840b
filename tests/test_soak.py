"""The short soak of benchmarks/soak.py in CI: `cowest feedback` and `cowest eval` as real processes over the
`openai` provider against a server on 127.0.0.1 injecting 30% faults of every kind, started twice at once on one
run directory, killed with SIGKILL mid-stage and resumed. Nothing lost, nothing duplicated, no traceback, the faults counted per kind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("openai")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from soak import soak  # noqa: E402


def test_short_soak_loses_nothing_duplicates_nothing_and_counts_faults(tmp_path: Path) -> None:
    res = soak(tmp_path, questions=40, eval_n=24, fault_rate=0.3, kills=2, seed=3)
    assert res["requests"] >= 300 and sum(res["injected"].values()) >= 0.2 * res["requests"]
    for name, stage in res["stages"].items():
        assert stage["done"], name
        assert stage["present"] == stage["expected"], name
        assert stage["duplicated"] == 0 and stage["tracebacks"] == 0 and stage["failed_final"] == 0, name
        assert stage["race_refused"], name  # two processes on one run directory: one refused
    counted = {k for s in res["stages"].values() for k in s["faults"]}
    assert {"http_429", "http_5xx", "malformed"} <= counted
    assert sum(sum(s["retried"].values()) for s in res["stages"].values()) > 0
