"""Evaluation: run named systems (strategy + draft format + models) on the eval split, trace by trace, resumably.

Files in `out_dir` (a `cowest.core.layout.EvalDir`): `config.yaml` (the resolved config), `traces/<system>.seed<k>.jsonl`
(one `Trace` per sample, appended as soon as its chunk is done, so a killed run resumes where it stopped) and
`metrics.json` (`cowest.core.results.Metrics`, computed by `cowest.pipeline.summary`). Every name is checked and the samples are loaded before any model is.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cowest.core.config import ExperimentConfig, ModelConfig, dump_config
from cowest.core.errors import ConfigError
from cowest.core.faults import FailureBudget, FaultLog, TolerantBackend
from cowest.core.layout import EvalDir, RunLayout
from cowest.core.progress import Progress
from cowest.core.records import Sample, UnwritableRow, append_jsonl, jsonl_line, repair_torn_tail
from cowest.core.results import Metrics
from cowest.core.system_id import System
from cowest.core.traces import read_traces
from cowest.strategies import STRATEGIES, USES_DRAFT_FORMAT, StrategyContext, check_strategy, roles_of
from cowest.strategies.common import failed_step

if TYPE_CHECKING:
    from cowest.models.base import Backend


def default_systems(cfg: ExperimentConfig) -> list[System]:
    """cfg.eval.strategies, with one `collaborate-<format>` system per draft format."""
    out = []
    for strat in cfg.eval.strategies:
        if strat in USES_DRAFT_FORMAT:
            out += [System(f"{strat}-{fmt}", strat, fmt) for fmt in cfg.collaboration.formats_evaluated]
        else:
            out.append(System(strat, strat))
    return out


def check_systems(cfg: ExperimentConfig, systems: list[System], *, before_feedback: bool = False) -> None:
    """Fail on unknown strategies, draft formats, prompt names or tasks, and on clashing system names.
    `before_feedback`: a whole run is being planned, which trains the learned router itself after its feedback."""
    from cowest.tasks.base import check_task
    from cowest.tasks.prompts import check_overrides

    check_task(cfg.task)
    check_overrides(cfg.collaboration.prompts)
    seen = set()
    for s in systems:
        check_strategy(s.strategy, s.draft_format)
        if s.strategy == "route":
            from cowest.routing.checks import check_route

            check_route(cfg, s.draft_format or cfg.collaboration.formats_evaluated[0], learned_later=before_feedback)
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", s.name):
            raise ConfigError(f"system name '{s.name}' must be letters, digits and _.+- (it names a file)")
        if s.name in seen:
            raise ConfigError(f"two systems are named '{s.name}'")
        seen.add(s.name)
    if not cfg.eval.seeds:
        raise ConfigError("eval.seeds: needs at least one seed")


class ModelPool:
    """Opens each distinct (model config, cache use) once and closes them all at the end. A request that fails for
    good fails its prompt alone (`TolerantBackend`), not the batch."""

    def __init__(self, cache_dir: Path | None):
        self.cache_dir = cache_dir
        self._open: dict[tuple[str, bool], "Backend"] = {}
        self.roles: dict[str, "Backend"] = {}
        """role -> the backend it last got, for the record of which engine ran (engines.json)."""

    def get(self, mcfg: ModelConfig, role: str) -> "Backend":
        try:
            from cowest.models.cache import open_backend, use_cache
        except ImportError:  # the cache module is optional for this loop
            from cowest.models.base import load_backend

            key = (mcfg.model_dump_json(), False)
            if key not in self._open:
                self._open[key] = TolerantBackend(load_backend(mcfg))
            return self._open[key]
        key = (mcfg.model_dump_json(), use_cache(mcfg, role))
        if key not in self._open:
            self._open[key] = TolerantBackend(open_backend(mcfg, role, self.cache_dir))
        self.roles[role] = self._open[key]
        return self._open[key]


    def close(self) -> None:
        for b in self._open.values():
            b.close()
        self._open.clear()


LOCAL_BATCHES_PER_CHUNK = 4
"""A local engine gets several batches' worth of prompts per call: with continuous batching a finished reply's
slot goes to a waiting prompt, so only the chunk's last batch runs partly empty (the demo's eval took 547 s with
one batch per chunk, most of it rows waiting for the longest reply of their batch)."""


def chunk_size(cfg: ExperimentConfig) -> int:
    """Samples per strategy call (and per resume point): several batches of each local model, or the HTTP
    concurrency of each served one."""
    m = cfg.models
    return max(16, *(r.concurrency if r.is_remote else r.batch_size * LOCAL_BATCHES_PER_CHUNK
                     for r in (m.weak, m.strong)))


def run_system(system: System, seed: int, samples: list[Sample], cfg: ExperimentConfig, pool: ModelPool,
               out_dir: Path, *, chunk: int | None = None, budget: FailureBudget | None = None,
               faults: FaultLog | None = None) -> Path:
    """Run one system with one seed on the samples not yet in its trace file; return the file.

    A sample whose request failed for good is not written (the next run retries it) but charged to `budget`,
    which stops the run past its share; `faults` is rewritten after every chunk."""
    budget = budget or FailureBudget("eval", len(samples), cfg.max_failed_share)
    path = EvalDir(out_dir).trace(system.name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_torn_tail(path)  # appending after a torn line would glue two rows together
    done = {t.sample_id for t in read_traces(path)}
    todo = [s for s in samples if s.id not in done]
    if not todo:
        return path
    fn = STRATEGIES.get(system.strategy)
    roles = roles_of(system.strategy)
    weak = pool.get(system.weak or cfg.models.weak, "weak") if "weak" in roles else None
    strong = pool.get(system.strong or cfg.models.strong, "strong") if "strong" in roles else None
    ctx = StrategyContext.from_config(cfg, draft_format=system.draft_format, seed=seed, system=system.name)
    if faults is not None:
        faults.watch([b for b in (weak, strong) if b is not None])
    step = chunk or chunk_size(cfg)
    with Progress(len(samples), f"{system.name} seed {seed}", done=len(samples) - len(todo)) as prog:
        for i in range(0, len(todo), step):
            part = todo[i:i + step]
            t0 = time.monotonic()
            traces = fn(part, weak=weak, strong=strong, ctx=ctx)
            per_sample = (time.monotonic() - t0) / len(part)
            tokens = hits = 0
            failures: list[tuple[str, str]] = []
            for t in traces:
                key = f"{system.name}/seed{seed}/{t.sample_id}"
                error, line = failed_step(t), ""
                if error is None:
                    t.metadata["wall_s"] = per_sample  # a share of the chunk's wall time, so sums survive resumes
                    try:
                        line = jsonl_line(t)
                    except UnwritableRow as e:  # fails this sample alone, as a failed request does
                        error = f"trace not written: {e}"
                if error is not None:
                    failures.append((key, error))
                    continue
                budget.ok(key)
                append_jsonl(path, line)
                tokens += sum(st.output.completion_tokens for st in t.steps)
                hits += sum(st.output.cached for st in t.steps)
            try:
                for key, error in failures:
                    budget.fail(key, error)
            finally:
                fault_counts = faults.write(budget.failed) if faults else {}
            prog.update(len(part), tokens=tokens, cache_hits=hits, failed=len(failures),
                        faults=fault_counts.get("faults_total", 0))
    return path


def run_eval(cfg: ExperimentConfig, out_dir: Path, systems: list[System] | None = None, *,
             chunk: int | None = None, samples: list[Sample] | None = None) -> Metrics:
    """Evaluate every system for every seed in cfg.eval.seeds on the eval split (or on `samples`, questions chosen
    by the caller, such as a benchmark's held-out ones); write and return metrics.json.

    All systems see the same samples. Models load once per distinct config, only for systems with work left.
    """
    from cowest.pipeline.summary import summarize
    from cowest.tasks.base import load_samples

    out_dir = Path(out_dir)
    folder = EvalDir(out_dir)
    systems = systems if systems is not None else default_systems(cfg)
    check_systems(cfg, systems)
    if samples is None:
        samples = load_samples(cfg.task, cfg.task.eval_split, cfg.task.eval_limit)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder.config.write_text(dump_config(cfg), encoding="utf-8")
    pool = ModelPool(RunLayout.of(cfg).cache(cfg.cache_dir))
    budget = FailureBudget("eval", len(samples) * len(systems) * len(cfg.eval.seeds), cfg.max_failed_share)
    faults = FaultLog(out_dir, [])
    try:
        for system in systems:
            for seed in cfg.eval.seeds:
                run_system(system, seed, samples, cfg, pool, out_dir, chunk=chunk, budget=budget, faults=faults)
        if pool.roles:
            from cowest.models.calibrate import engine_record

            folder.engines.write_text(json.dumps(
                {role: engine_record(b) for role, b in pool.roles.items()}, indent=2) + "\n", encoding="utf-8")
    finally:
        pool.close()
    metrics = summarize(cfg, samples, systems, out_dir, allow_missing=bool(budget.failed))
    metrics.faults = faults.write(budget.failed)
    metrics.write(folder.metrics)
    from cowest.pipeline.costs import eval_costs, write_costs

    write_costs(out_dir, eval_costs(cfg, metrics.model_dump(mode="json")))
    return metrics
