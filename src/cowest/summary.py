"""Trace files -> `metrics.json`: each task metric per system with a 95% bootstrap CI, paired differences, usage.

The bootstrap resamples *sample indices* (one shared draw for all systems), so it covers corpus-level metrics
such as macro-F1, pools several seeds (each drawn sample brings its traces from every seed), and gives paired
differences between systems on the same resamples. Shape of `metrics.json`:

    {"task", "n_samples", "seeds", "metrics": [...], "headline", "bootstrap_samples",
     "systems": {name: {"strategy", "draft_format", "weak", "strong",
                        "metrics": {m: {"value", "ci": [lo, hi], "per_seed": {seed: v}, "mean", "sd"}},
                        "extraction_failures": {"total", "rate", "per_seed"},
                        "usage": {role: {"calls", "cache_hits", "prompt_tokens", "completion_tokens",
                                         "tokens_per_sample"}},
                        "wall_s"}},
     "paired": [{"a", "b", "metric", "diff" (a - b), "ci", "p_value"}]}
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cowest.errors import CowestError
from cowest.records import Sample, Trace

if TYPE_CHECKING:
    from cowest.config import ExperimentConfig
    from cowest.evaluate import System

MACRO_F1 = ("macro_f1", "f1_macro")

Stat = Callable[[np.ndarray], np.ndarray]
"""Index matrix [B, n] -> metric per row [B]."""


def _mean_stat(values: np.ndarray) -> Stat:
    return lambda idx: values[idx].mean(axis=-1)


def _macro_f1_stat(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> Stat:
    """Macro-F1 over the gold classes; a failed extraction (-1) is wrong for every class."""

    def stat(idx: np.ndarray) -> np.ndarray:
        g, p = gold[idx], pred[idx]
        f1s = []
        for c in range(n_classes):
            tp = ((g == c) & (p == c)).sum(-1)
            fp = ((g != c) & (p == c)).sum(-1)
            fn = ((g == c) & (p != c)).sum(-1)
            denom = 2 * tp + fp + fn
            f1s.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
        return np.mean(f1s, axis=0)

    return stat


def metric_stat(name: str, samples: list[Sample], traces: list[Trace]) -> Stat:
    """The statistic of one metric over one seed's traces (aligned with `samples`)."""
    if name in MACRO_F1:
        classes = sorted({s.gold for s in samples})
        code = {c: i for i, c in enumerate(classes)}
        gold = np.array([code[s.gold] for s in samples])
        pred = np.array([code.get(t.prediction, -1) if t.prediction is not None else -1 for t in traces])
        return _macro_f1_stat(gold, pred, len(classes))
    missing = [t.sample_id for t in traces if name not in t.scores]
    if missing:
        raise CowestError(f"metric '{name}' is not among the per-sample scores of sample {missing[0]} "
                          f"(it has: {', '.join(sorted(traces[0].scores)) or 'none'})")
    return _mean_stat(np.array([t.scores[name] for t in traces], dtype=float))


def _usage(traces: list[Trace]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for t in traces:
        for st in t.steps:
            u = out.setdefault(st.role, {"calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0})
            u["calls"] += 1
            u["cache_hits"] += int(st.output.cached)
            u["prompt_tokens"] += st.output.prompt_tokens
            u["completion_tokens"] += st.output.completion_tokens
    for u in out.values():
        u["tokens_per_sample"] = (u["prompt_tokens"] + u["completion_tokens"]) / max(len(traces), 1)
    return out


def _ci(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def load_aligned(out_dir: Path, system: str, seed: int, samples: list[Sample]) -> list[Trace]:
    """The traces of one system and seed in sample order; fails naming the file if a sample is missing."""
    from cowest.evaluate import read_traces, trace_path

    path = trace_path(out_dir, system, seed)
    by_id = {t.sample_id: t for t in read_traces(path)}
    missing = [s.id for s in samples if s.id not in by_id]
    if missing:
        raise CowestError(f"{path}: no trace for {len(missing)} samples (first: {missing[0]}); rerun the eval")
    return [by_id[s.id] for s in samples]


def summarize(cfg: "ExperimentConfig", samples: list[Sample], systems: list["System"], out_dir: Path) -> dict:
    """Compute metrics.json's content from the trace files."""
    from cowest.tasks.base import get_task

    names = list(get_task(cfg.task.name).metrics)
    seeds = list(cfg.eval.seeds)
    n = len(samples)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, n, size=(cfg.eval.bootstrap_samples, n)) if n else np.zeros((0, 0), int)
    full = np.arange(n)[None, :]
    boots: dict[tuple[str, str], np.ndarray] = {}
    out: dict[str, Any] = {"task": cfg.task.name, "n_samples": n, "seeds": seeds, "metrics": names,
                           "headline": names[0], "bootstrap_samples": cfg.eval.bootstrap_samples,
                           "systems": {}, "paired": []}
    for system in systems:
        per_seed = {seed: load_aligned(out_dir, system.name, seed, samples) for seed in seeds}
        all_traces = [t for ts in per_seed.values() for t in ts]
        entry: dict[str, Any] = {
            "strategy": system.strategy, "draft_format": system.draft_format,
            "weak": (system.weak or cfg.models.weak).spec, "strong": (system.strong or cfg.models.strong).spec,
            "metrics": {},
        }
        for m in names:
            stats = [metric_stat(m, samples, ts) for ts in per_seed.values()]
            vals = [float(st(full)[0]) if n else float("nan") for st in stats]
            boot = np.mean([st(idx) for st in stats], axis=0) if n else np.zeros(0)
            boots[(system.name, m)] = boot
            entry["metrics"][m] = {
                "value": float(np.mean(vals)), "ci": _ci(boot) if boot.size else [float("nan")] * 2,
                "per_seed": {str(s): v for s, v in zip(seeds, vals)},
                "mean": float(np.mean(vals)), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            }
        fails = {str(s): sum(t.extraction_failed for t in ts) for s, ts in per_seed.items()}
        entry["extraction_failures"] = {"total": sum(fails.values()), "per_seed": fails,
                                        "rate": sum(fails.values()) / max(len(all_traces), 1)}
        entry["usage"] = _usage(all_traces)
        entry["wall_s"] = float(sum(t.metadata.get("wall_s", 0.0) for t in all_traces))
        out["systems"][system.name] = entry
    for i, a in enumerate(systems):
        for b in systems[i + 1:]:
            for m in names:
                va, vb = out["systems"][a.name]["metrics"][m]["value"], out["systems"][b.name]["metrics"][m]["value"]
                d = boots[(a.name, m)] - boots[(b.name, m)]
                p = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if d.size else float("nan")
                out["paired"].append({"a": a.name, "b": b.name, "metric": m, "diff": va - vb,
                                      "ci": _ci(d) if d.size else [float("nan")] * 2, "p_value": p})
    return out


def write_metrics(path: Path, metrics: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
