"""Checks of everything the stages of `cowest run` will read, made before the first stage starts.

A bad eval split, an unknown model, a missing adapter or a budget that leaves nothing to do fails in seconds with a
one-line error, not after the hours of the stages before the one that reads it. Each check raises the error the
stage itself would raise (the task loaders', the model registry's), so there is one wording per problem.
"""

from __future__ import annotations

from pathlib import Path

from cowest.core.config import ExperimentConfig, ModelConfig
from cowest.core.errors import ConfigError, CowestError
from cowest.core.records import Sample
from cowest.pipeline.stages import Stage
from cowest.core.system_id import System


def check_run(cfg: ExperimentConfig, stages: list[tuple[str, Stage]], force: set[str],
              systems: list[System]) -> None:
    """Every stage's inputs: budgets, recorded configs, the eval `systems`, models, adapters, then the data splits
    (the slowest check: it reads the files)."""
    from cowest.pipeline.evaluate import check_systems

    check_budgets(cfg)
    for name, st in stages:
        if name not in force:
            st.check_config()
    check_systems(cfg, systems, before_feedback=True)
    check_models(cfg)
    check_splits(cfg)


def check_budgets(cfg: ExperimentConfig) -> None:
    """Counts that would leave a stage with nothing to do, or fail only when it starts."""
    for key, value in [("rounds", cfg.rounds), ("task.train_limit", cfg.task.train_limit),
                       ("task.eval_limit", cfg.task.eval_limit), ("feedback.questions", cfg.feedback.questions),
                       ("feedback.k", cfg.feedback.k)]:
        if value is not None and value < 1:
            raise ConfigError(f"{key}: {value} leaves nothing to do; use a number >= 1")
    for key, value in [("sft.max_steps", cfg.sft.max_steps), ("align.max_steps", cfg.align.max_steps)]:
        if value == 0 or value < -1:
            raise ConfigError(f"{key}: {value}; use a number of steps >= 1, or -1 for the epochs")


def check_models(cfg: ExperimentConfig) -> None:
    """Every model spec names a known provider and model, its local files exist, and the weak model has weights to
    train."""
    from cowest.models.hf_loading import resolve_source

    roles = {"weak": cfg.models.weak, "strong": cfg.models.strong, "judge": cfg.models.judge}
    for role, m in roles.items():
        if m is not None:
            check_model(f"models.{role}", m)
    resolve_source(cfg.models.weak.spec)  # the loop trains the weak model: it needs local weights


def check_model(key: str, m: ModelConfig) -> None:
    from cowest.models.base import split_spec

    provider, model = split_spec(m.spec)
    if m.engine == "vllm":
        from cowest.models.vllm_server import vllm_python

        vllm_python()  # its venv is made on request (scripts/setup.sh --vllm): say so before any stage starts
    if provider == "embedded":
        from cowest.models.embedded import get_embedded

        get_embedded(model)
    elif provider == "llamacpp" or (provider == "hf" and _looks_like_path(model)):
        if not Path(model).exists():
            raise ConfigError(f"{key}.spec: {m.spec}: {model} does not exist")
    elif provider in ("mock", "openai"):
        from cowest.models.base import load_backend

        load_backend(m).close()  # no weights: building one is cheap and checks the name and the API key
    if m.adapter is not None and not Path(m.adapter).exists():
        raise ConfigError(f"{key}.adapter: {m.adapter} does not exist")


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".")) or model.endswith(".gguf") or Path(model).exists()


def check_splits(cfg: ExperimentConfig) -> None:
    """The train and eval splits (and `eval.recall_split`, `feedback.split`, `align.select_split`) exist, read
    without error and keep at least one sample after their limits, and no evaluated question is one SFT or the
    feedback learned from."""
    from cowest.tasks.base import check_disjoint, load_samples

    loaded: dict[str, tuple[str, list[Sample]]] = {}
    for key, split, limit in [("task.train_split", cfg.task.train_split, cfg.task.train_limit),
                              ("task.eval_split", cfg.task.eval_split, cfg.task.eval_limit),
                              ("eval.recall_split", cfg.eval.recall_split, None),
                              ("feedback.split", cfg.feedback.split, None),
                              ("align.select_split", cfg.align.select_split, cfg.task.eval_limit)]:
        if split is None:
            continue
        samples = load_samples(cfg.task, split, limit)
        if not samples:
            raise CowestError(f"{key}: split '{split}' of task '{cfg.task.name}' has no samples")
        loaded[key] = (split, samples)
    # what is evaluated (the report's split, the alignment check's) holds no question SFT or feedback learned from
    for learned in ("task.train_split", "feedback.split"):
        for evaluated in ("task.eval_split", "align.select_split"):
            if learned in loaded and evaluated in loaded:
                check_disjoint(loaded[learned][1], loaded[evaluated][1], loaded[evaluated][0])
