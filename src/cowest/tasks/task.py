"""The task contract: what a task is (`Task`), its own options (`TaskOptions`), and the registry tasks enter.

A task knows its family (qa / mc / cls), its metrics, how to read one of its files (the shared JSONL and the
original upstream formats), where its splits lie in a data folder, and optionally how to build samples without a
file (a Hugging Face dataset by name, or a seeded generator for the offline demo). Settings only one task has live in
its own section of the config, `task.options`, which the task validates with its `TaskOptions` model (e.g. MedMCQA:
`task: {name: medmcqa, options: {cop_base: 1}}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from cowest.core.config import TaskConfig
from cowest.core.errors import ConfigError
from cowest.core.records import Family, Sample
from cowest.core.registry import Registry
from cowest.core.safe_yaml import short_repr

ReadFile = Callable[[Path, TaskConfig], list[Sample]]
FindFiles = Callable[[Path, TaskConfig], dict[str, Path]]
Build = Callable[[str, TaskConfig], list[Sample]]


class TaskOptions(BaseModel):
    """A task's own settings, `task.options` in the config; a task without a subclass takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, cfg: TaskConfig) -> Self:
        """`cfg.options` validated: an unknown option or a wrong value is a one-line error naming the dotted key
        and, for an unknown one, the task's valid options."""
        try:
            return cls.model_validate(cfg.options)
        except ValidationError as e:
            valid = ", ".join(cls.model_fields) or "none (it takes no options)"
            msgs = []
            for err in e.errors():
                key = "task.options." + ".".join(str(x) for x in err["loc"])
                if err["type"] == "extra_forbidden":
                    msgs.append(f"'{key}': unknown option of task '{cfg.name}'; valid: {valid}")
                else:
                    msgs.append(f"'{key}': {err['msg']} (got {short_repr(err.get('input'))})")
            raise ConfigError("; ".join(msgs)) from None


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
    options: type[TaskOptions] = TaskOptions
    """The model of the task's own section `task.options`."""
    metrics_of: Callable[[TaskConfig], tuple[str, ...]] | None = None
    """The metrics when they follow the options (the `jsonl` task: its family's); None = `metrics`."""


TASKS: Registry[Task] = Registry("task")
