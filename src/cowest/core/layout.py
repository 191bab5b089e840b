"""Every path of a run directory, in one place: the stages write there, the report, `serve` and the benchmarks
read there, and nobody else builds a path by hand.

    run_dir/config.yaml                          resolved config (written once a stage accepted it)
    run_dir/versions.json                        cowest's version and git commit, Python, library versions
    run_dir/run.lock                             held by the command working on the run
    run_dir/sft/adapter/                         the specialised weak model (LoRA); rationales.jsonl beside it
    run_dir/round<r>/feedback/                   feedback.jsonl, pairs.jsonl, pairs_stats.json, pairs.png
    run_dir/round<r>/align/adapter/              the aligned weak model (DPO LoRA on top of the SFT model)
    run_dir/round<r>/<method>/adapter/           another alignment method's adapter (sft_positive, the control)
    run_dir/round<r>/select/                     an `EvalDir`: the aligned model checked against its start, selection.json
    run_dir/eval/                                an `EvalDir`: traces/, metrics.json, config.yaml, engines.json
    run_dir/recall/                              an `EvalDir`: the SFT weak model on eval.recall_split
    run_dir/report.md, *.png
    run_dir/cache/                               response cache (unless `cache_dir` names another folder)

The names are those of every run directory written so far, so old run directories read unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig

CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"
RUN_LOCK = "run.lock"
REPORT_FILE = "report.md"
ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
"""PEFT's file in every adapter folder: its presence is what makes a folder an adapter."""
TRAIN_LOG = "train_log.jsonl"
ADAPTER_META = "cowest_adapter.json"
"""cowest's own file in every adapter folder: its base model, parent adapter, method and recipe."""
COSTS_FILE = "costs.json"
FEEDBACK_FILE = "feedback.jsonl"
PAIRS_FILE = "pairs.jsonl"
PAIRS_STATS = "pairs_stats.json"
PAIRS_PLOT = "pairs.png"
FAULTS_FILE = "faults.json"
TRACES_DIR = "traces"
METRICS_FILE = "metrics.json"
ENGINES_FILE = "engines.json"
ROUTER_DIR = "router"
LIBRARIES_LOG = "logs/libraries.log"
"""Which engine and dtype each role's model ran with, and why (cowest.models.calibrate)."""
DEFAULT_METHOD = "dpo"
"""align.method whose folder is `align` (other methods' folders are named after the method)."""


@dataclass(frozen=True)
class EvalDir:
    """An evaluation's folder (run_dir/eval, run_dir/recall, or `cowest eval --out DIR`)."""

    path: Path

    @property
    def traces(self) -> Path:
        return self.path / TRACES_DIR

    def trace(self, system: str, seed: int) -> Path:
        """One system's traces for one seed: one `Trace` per sample, appended as its chunk finishes."""
        return self.traces / f"{system}.seed{seed}.jsonl"

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def engines(self) -> Path:
        return self.path / ENGINES_FILE

    @property
    def faults(self) -> Path:
        return self.path / FAULTS_FILE


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory. `RunLayout.of(cfg)` for a config's, `RunLayout(path)` for one on disk."""

    root: Path

    @classmethod
    def of(cls, cfg: "ExperimentConfig") -> "RunLayout":
        return cls(Path(cfg.run_dir))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def versions(self) -> Path:
        """What produced the run (cowest.pipeline.provenance), rewritten whenever a stage starts."""
        return self.root / VERSIONS_FILE

    @property
    def lock(self) -> Path:
        return self.root / RUN_LOCK

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    def cache(self, cache_dir: str | None) -> Path:
        """The response cache: `cache_dir` when the config names one, else run_dir/cache."""
        return Path(cache_dir) if cache_dir else self.root / "cache"

    @property
    def sft_dir(self) -> Path:
        return self.root / "sft"

    @property
    def sft_adapter(self) -> Path:
        return self.sft_dir / ADAPTER_DIR

    def round_dir(self, rnd: int) -> Path:
        return self.root / f"round{rnd}"

    def feedback_dir(self, rnd: int) -> Path:
        return self.round_dir(rnd) / "feedback"

    def pairs(self, rnd: int) -> Path:
        return self.feedback_dir(rnd) / PAIRS_FILE

    def feedback(self, rnd: int) -> Path:
        return self.feedback_dir(rnd) / FEEDBACK_FILE

    @property
    def router_dir(self) -> Path:
        """The learned router and the routing calibrations (cowest.routing)."""
        return self.root / ROUTER_DIR

    @property
    def libraries_log(self) -> Path:
        """The libraries' own console output (progress bars, training dicts) unless --verbose."""
        return self.root / LIBRARIES_LOG

    def align_dir(self, rnd: int, method: str = DEFAULT_METHOD) -> Path:
        return self.round_dir(rnd) / ("align" if method == DEFAULT_METHOD else method)

    def aligned_adapter(self, rnd: int, method: str = DEFAULT_METHOD) -> Path:
        return self.align_dir(rnd, method) / ADAPTER_DIR

    def select_dir(self, rnd: int) -> EvalDir:
        """Round r's alignment check on `align.select_split` (cowest.pipeline.loop.do_select): an `EvalDir` with
        selection.json."""
        return EvalDir(self.round_dir(rnd) / "select")

    @property
    def eval(self) -> EvalDir:
        return EvalDir(self.root / "eval")

    @property
    def recall(self) -> EvalDir:
        return EvalDir(self.root / "recall")

    def metrics_file(self) -> Path | None:
        """The run's metrics.json: eval/ first (the loop's and `cowest eval`'s); a bare one is an eval run with
        --out RUN_DIR. None when neither exists."""
        for cand in (self.eval.metrics, self.root / METRICS_FILE):
            if cand.is_file():
                return cand
        return None

    def rounds_on_disk(self) -> list[int]:
        """The round numbers that have a folder, ascending (a run may have gone past its config's `rounds`)."""
        found = (re.fullmatch(r"round(\d+)", p.name) for p in self.root.glob("round*") if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest_aligned_adapter(self, method: str = DEFAULT_METHOD) -> Path | None:
        """The `method` adapter of the highest round that has one, else None."""
        for rnd in reversed(self.rounds_on_disk()):
            path = self.aligned_adapter(rnd, method)
            if (path / ADAPTER_CONFIG).exists():
                return path
        return None

    def feedback_stats(self) -> list[tuple[int, Path]]:
        """(round, pairs_stats.json) of every round that has one, ascending."""
        return [(r, p) for r in self.rounds_on_disk() if (p := self.feedback_dir(r) / PAIRS_STATS).is_file()]

    def pair_plots(self) -> list[tuple[int, Path]]:
        return [(r, p) for r in self.rounds_on_disk() if (p := self.feedback_dir(r) / PAIRS_PLOT).is_file()]

    def train_logs(self) -> list[Path]:
        """Every adapter folder of a round that has a training log (align and the other methods), sorted."""
        return sorted(p.parent for p in self.root.glob(f"round*/*/{ADAPTER_DIR}/{TRAIN_LOG}"))
