"""Trace files -> `metrics.json` (`cowest.core.results.Metrics`): each task metric per system with a 95% bootstrap CI,
paired differences, usage.

Metrics and intervals come from `cowest.scoring.metrics` (`compute`, `bootstrap_ci`, `paired_bootstrap`), which
resample question indices, so macro-F1 gets an interval too. With several seeds the rows are (sample, seed)
pairs: `value` is over the pooled rows (for mean metrics the mean over seeds), `ci` a cluster bootstrap that resamples
questions with all their seeds (repeated seeds are not more questions), and
`per_seed`, `mean` and `sd` give the seed-to-seed spread. Paired differences use the same rows in the same order
for both systems. The shape of `metrics.json` is `cowest.core.results.Metrics`; paired differences are stored
once per pair of systems, in system order, as a − b (`Metrics.diff` reads either order).

`faults` (added by `cowest.pipeline.evaluate.run_eval`, see `cowest.core.faults.FaultLog`) counts the faulty HTTP attempts per
kind over every run of the stage, how many were retried, and the samples whose requests failed for good.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cowest.core.errors import CowestError
from cowest.core.layout import EvalDir
from cowest.core.records import Sample, Trace
from cowest.core.results import Metrics
from cowest.core.traces import read_traces

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.core.system_id import System


def _usage(traces: list[Trace]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for t in traces:
        for st in t.steps:
            u = out.setdefault(st.role, {"calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                         "cut": 0})
            u["calls"] += 1
            u["cut"] += int(st.output.finish_reason == "length")
            u["cache_hits"] += int(st.output.cached)
            u["prompt_tokens"] += st.output.prompt_tokens
            u["completion_tokens"] += st.output.completion_tokens
    for u in out.values():
        u["tokens_per_sample"] = (u["prompt_tokens"] + u["completion_tokens"]) / max(len(traces), 1)
    return out


def load_aligned(out_dir: Path, system: str, seed: int, samples: list[Sample]) -> list[Trace]:
    """The traces of one system and seed in sample order; fails naming the file if a sample is missing."""
    return traces_in_order(EvalDir(out_dir).trace(system, seed), samples)


def traces_in_order(path: Path, samples: list[Sample]) -> list[Trace]:
    """The traces of one trace file in `samples`' order; fails naming the file if a sample is missing."""
    by_id = {t.sample_id: t for t in read_traces(path)}
    missing = [s.id for s in samples if s.id not in by_id]
    if missing:
        raise CowestError(f"{path}: no trace for {len(missing)} samples (first: {missing[0]}); rerun the eval")
    return [by_id[s.id] for s in samples]


def present_in_all(out_dir: Path, systems: list["System"], seeds: list[int], samples: list[Sample]) -> list[Sample]:
    """The samples with a trace for every system and seed (failed requests leave a sample out until rerun)."""
    ids = {s.id for s in samples}
    for system in systems:
        for seed in seeds:
            ids &= {t.sample_id for t in read_traces(EvalDir(out_dir).trace(system.name, seed))}
    return [s for s in samples if s.id in ids]


def summarize(cfg: "ExperimentConfig", samples: list[Sample], systems: list["System"], out_dir: Path, *,
              allow_missing: bool = False) -> Metrics:
    """Compute metrics.json's content from the trace files. With `allow_missing` (some requests failed for good),
    the metrics are over the samples every system answered and `failed_samples` counts the others."""
    n_all = len(samples)
    if allow_missing:
        samples = present_in_all(out_dir, systems, list(cfg.eval.seeds), samples)
    from cowest.scoring.metrics import bootstrap_ci, compute, paired_bootstrap
    from cowest.strategies.common import StrategyContext, finish
    from cowest.tasks.base import task_metrics

    names = list(task_metrics(cfg.task))
    seeds = list(cfg.eval.seeds)
    n_boot = cfg.eval.bootstrap_samples
    pooled_samples = samples * len(seeds)
    preds: dict[str, list[str | None]] = {}
    # weak_only has no draft format of its own, but under collaboration.weak_answer=draft it answers with its draft:
    # the report's draft column then names that format instead of "–".
    answer_format = StrategyContext.from_config(cfg).weak_answer_format
    out: dict[str, Any] = {"task": cfg.task.name, "n_samples": len(samples), "failed_samples": n_all - len(samples),
                           "seeds": seeds, "metrics": names,
                           "headline": names[0], "bootstrap_samples": n_boot, "systems": {}, "paired": []}
    for system in systems:
        # Traces keep the model's text; answers are read from it again here, so metrics always follow the current
        # extraction rules, also for traces written before a rule changed.
        per_seed = {seed: finish(load_aligned(out_dir, system.name, seed, samples), samples) for seed in seeds}
        all_traces = [t for ts in per_seed.values() for t in ts]
        preds[system.name] = [t.prediction for t in all_traces]
        entry: dict[str, Any] = {
            "strategy": system.strategy,
            "draft_format": system.draft_format or (answer_format if system.strategy == "weak_only" else None),
            "weak": (system.weak or cfg.models.weak).spec, "strong": (system.strong or cfg.models.strong).spec,
            "metrics": {},
        }
        seed_vals = {s: compute(names, samples, [t.prediction for t in ts]) for s, ts in per_seed.items()}
        for m in names:
            vals = [seed_vals[s][m] for s in seeds]
            if samples:
                ci = bootstrap_ci(m, pooled_samples, preds[system.name], n_boot=n_boot, groups=len(seeds))
                value, bounds = ci.value, [ci.lo, ci.hi]
            else:
                value, bounds = float("nan"), [float("nan")] * 2
            entry["metrics"][m] = {"value": value, "ci": bounds, "per_seed": {str(s): v for s, v in zip(seeds, vals)},
                                   "mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0}
        # The one scoring of each sample: the report compares systems sample by sample on these, not on the scores
        # the trace files were written with.
        entry["per_sample"] = {str(s): {t.sample_id: {"prediction": t.prediction, "score": t.scores.get(names[0])}
                                        for t in ts} for s, ts in per_seed.items()}
        fails = {str(s): sum(t.extraction_failed for t in ts) for s, ts in per_seed.items()}
        entry["extraction_failures"] = {"total": sum(fails.values()), "per_seed": fails,
                                        "rate": sum(fails.values()) / max(len(all_traces), 1)}
        entry["usage"] = _usage(all_traces)
        entry["wall_s"] = float(sum(t.metadata.get("wall_s", 0.0) for t in all_traces))
        out["systems"][system.name] = entry
    if samples:
        for i, a in enumerate(systems):
            for b in systems[i + 1:]:
                for m in names:
                    d = paired_bootstrap(m, pooled_samples, preds[a.name], preds[b.name], n_boot=n_boot,
                                         groups=len(seeds))
                    out["paired"].append({"a": a.name, "b": b.name, "metric": m, "diff": d.value, "ci": [d.lo, d.hi]})
    return Metrics.model_validate(out)


def cut_warnings(metrics: Metrics, cfg: "ExperimentConfig") -> list[str]:
    """One line per role whose replies hit their token limit more often than `eval.max_cut_share`: the budget then
    decides the scores (a cut reply has no finished answer), so the setting to raise is named."""
    calls: dict[str, int] = {}
    cut: dict[str, int] = {}
    for s in metrics.systems.values():
        for role, u in s.usage.items():
            calls[role] = calls.get(role, 0) + u.calls
            cut[role] = cut.get(role, 0) + u.cut
    out = []
    for role, n in calls.items():
        share = cut[role] / n if n else 0.0
        if share > cfg.eval.max_cut_share:
            limit = getattr(cfg.generation, role).max_tokens
            out.append(f"{cut[role]} of {n} {role} replies ({share:.0%}) hit their token limit; raise "
                       f"generation.{role}.max_tokens (now {limit}) or ask for shorter replies")
    return out
