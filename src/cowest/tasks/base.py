"""The task registry and what every task shares: find a task by name, check its options, load a split's samples
(subsampled with the task's seed), and refuse evaluation questions that are also training questions. The contract
itself, `Task` and `TaskOptions`, is `cowest.tasks.task`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from cowest.core.config import TaskConfig
from cowest.core.errors import CowestError, DataError, UnknownNameError
from cowest.core.records import Sample
from cowest.tasks.task import TASKS, Task, TaskOptions


def get_task(name: str) -> Task:
    _import_builtin_tasks()
    return TASKS.get(name)


def task_names() -> list[str]:
    _import_builtin_tasks()
    return TASKS.names()


def _import_builtin_tasks() -> None:
    # Task modules are light (no torch); importing them registers them.
    from cowest.tasks import demo, ethics, ifqa, jsonl_task, medmcqa, prosocial_dialog, pubmedqa  # noqa: F401


def check_task(cfg: TaskConfig) -> Task:
    """The configured task, its subset and its options checked (one-line errors naming the valid choices)."""
    task = get_task(cfg.name)
    if task.subsets and cfg.subset is not None and cfg.subset not in task.subsets:
        raise UnknownNameError(f"{task.name} subset", cfg.subset, list(task.subsets))
    task.options.of(cfg)
    return task


def task_options(cfg: TaskConfig) -> TaskOptions:
    """The configured task's options, validated, defaults filled in."""
    return get_task(cfg.name).options.of(cfg)


def task_metrics(cfg: TaskConfig) -> tuple[str, ...]:
    """The metrics to report: the task's, or those its options choose (a user `jsonl` task: its family's)."""
    task = get_task(cfg.name)
    return task.metrics_of(cfg) if task.metrics_of is not None else task.metrics


def subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subsample that keeps file order (so the same seed gives the same rows on every machine)."""
    if limit is None or limit >= len(samples):
        return samples
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def load_samples(cfg: TaskConfig, split: str, limit: int | None = None) -> list[Sample]:
    """Samples of one split of the configured task, subsampled with `cfg.seed`."""
    task = check_task(cfg)
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
