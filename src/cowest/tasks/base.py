"""The task contract and the task registry.

A task knows its family (qa / mc / cls), its metrics, how to read one of its files (the shared JSONL and the
original upstream formats), where its splits lie in a data folder, and optionally how to build samples without a
file (a Hugging Face dataset by name, or a seeded generator for the offline demo).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cowest.config import TaskConfig
from cowest.errors import CowestError, DataError, UnknownNameError
from cowest.records import Family, Sample
from cowest.registry import Registry

ReadFile = Callable[[Path, TaskConfig], list[Sample]]
FindFiles = Callable[[Path, TaskConfig], dict[str, Path]]
Build = Callable[[str, TaskConfig], list[Sample]]


@dataclass(frozen=True)
class Task:
    name: str
    family: Family
    metrics: tuple[str, ...]
    """Metric names (cowest.scoring.metrics); the first is the headline metric."""
    read_file: ReadFile
    find_files: FindFiles
    build: Build | None = None
    """Samples without a data folder: hub download or generator. Called when `task.data` is None."""
    subsets: tuple[str, ...] = ()
    description: str = ""
    documents: Callable[[TaskConfig], list[str]] | None = None
    """The domain's knowledge as plain texts (the demo: its catalogue, one fact a sentence), for the SFT recipe's
    knowledge phase (`sft.knowledge_epochs`); None = the task has none."""
    extra: dict = field(default_factory=dict)


TASKS: Registry[Task] = Registry("task")


def get_task(name: str) -> Task:
    _import_builtin_tasks()
    return TASKS.get(name)


def task_names() -> list[str]:
    _import_builtin_tasks()
    return TASKS.names()


def _import_builtin_tasks() -> None:
    # Task modules are light (no torch); importing them registers them.
    from cowest.tasks import demo, ethics, ifqa, jsonl_task, medmcqa, prosocial_dialog, pubmedqa  # noqa: F401


def task_metrics(cfg: TaskConfig) -> tuple[str, ...]:
    """The metrics to report: the task's, or for a user `jsonl` task those of its configured family."""
    from cowest.scoring.metrics import default_metrics

    task = get_task(cfg.name)
    if cfg.name == "jsonl" and cfg.family is not None:
        return default_metrics(cfg.family)
    return task.metrics


def subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subsample that keeps file order (so the same seed gives the same rows on every machine)."""
    if limit is None or limit >= len(samples):
        return samples
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def load_samples(cfg: TaskConfig, split: str, limit: int | None = None) -> list[Sample]:
    """Samples of one split of the configured task, subsampled with `cfg.seed`."""
    task = get_task(cfg.name)
    if task.subsets and cfg.subset is not None and cfg.subset not in task.subsets:
        raise UnknownNameError(f"{task.name} subset", cfg.subset, list(task.subsets))
    if cfg.data is None:
        if task.build is None:
            raise CowestError(f"task '{task.name}' needs a data folder or file: set task.data (e.g. task.data=../shared/data)")
        samples = task.build(split, cfg)
    else:
        data = Path(cfg.data)
        if data.is_file():
            samples = task.read_file(data, cfg)
        else:
            files = task.find_files(data, cfg)
            if split not in files:
                if not files:
                    raise DataError(f"no files of task '{task.name}' found", path=str(data))
                raise UnknownNameError(f"split of task '{task.name}' in {data}", split, list(files))
            samples = task.read_file(files[split], cfg)
    return subsample(samples, limit, cfg.seed)


def _question_key(s: Sample) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.question.lower()).split())


def check_disjoint(train: list[Sample], evaluated: list[Sample], split: str) -> None:
    """Stop when a question of the evaluated split is also a training question (same id or same normalised text):
    scores on it would measure memory, not the method."""
    ids = {s.id for s in train}
    texts = {_question_key(s) for s in train}
    leaked = [s.id for s in evaluated if s.id in ids or _question_key(s) in texts]
    if leaked:
        shown = ", ".join(leaked[:10]) + (f" and {len(leaked) - 10} more" if len(leaked) > 10 else "")
        raise DataError(f"{len(leaked)} questions of the '{split}' split are also in the training data ({shown}); "
                        f"remove them from one split, or evaluate on another split (task.eval_split)")
