"""`jsonl`: any user JSON Lines file (or JSON array), described by the config instead of code.

`task.family` picks qa / mc / cls; `task.fields` maps cowest fields to the file's keys (defaults: `id`, `question`,
`answer`, `options`, `label`, `rationale`); `task.labels` lists the valid labels of a cls task. Example:

    task: {name: jsonl, data: my.jsonl, family: cls, labels: [positive, negative], fields: {question: text}}

qa answers may be a string or a list of aliases; mc options a {letter: text} object or a list (lettered A, B, ...)
and the answer a letter; cls labels are strings, or integers indexing `task.labels`. A row without an id gets
`<file stem>-<line>`, unless `fields.id` names a key, which must then be present.
"""

from __future__ import annotations

from pathlib import Path

from cowest.config import TaskConfig
from cowest.errors import ConfigError
from cowest.records import Sample
from cowest.tasks.base import TASKS, Task
from cowest.tasks.rows import Row, convert, read_json_rows

FIELDS = ("id", "question", "answer", "options", "label", "rationale")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def field_map(cfg: TaskConfig) -> dict[str, str]:
    unknown = sorted(set(cfg.fields) - set(FIELDS))
    if unknown:
        raise ConfigError(f"'task.fields.{unknown[0]}': unknown field; valid: {', '.join(FIELDS)}")
    return {f: cfg.fields.get(f, f) for f in FIELDS}


def check_config(cfg: TaskConfig) -> None:
    if cfg.family is None:
        raise ConfigError("'task.family': the jsonl task needs a family: qa, mc or cls")
    if cfg.family == "cls" and not cfg.labels:
        raise ConfigError("'task.labels': a jsonl task of family cls needs its list of labels")


def to_sample(row: Row, cfg: TaskConfig, keys: dict[str, str]) -> Sample:
    if "id" in cfg.fields:
        sid = str(row.get(keys["id"], (str, int)))
    else:
        sid = str(row.get("id", (str, int), default=f"{Path(row.path).stem}-{row.line}"))
    question = row.get(keys["question"]).strip()
    rationale = row.get(keys["rationale"], str, default=None, nonempty=False)
    rationale = rationale.strip() or None if rationale else None
    common = dict(id=sid, task="jsonl", family=cfg.family, question=question, rationale=rationale)
    if cfg.family == "qa":
        return Sample(**common, answers=row.str_list(keys["answer"]))
    if cfg.family == "mc":
        raw = row.get(keys["options"], (dict, list))
        options = dict(zip(LETTERS, raw)) if isinstance(raw, list) else {str(k).strip().upper(): v for k, v in raw.items()}
        for letter, text in options.items():
            if not isinstance(text, str) or not text.strip():
                raise row.error(f"option {letter!r} must be a non-empty string, got {text!r:.60}", keys["options"])
        answer = row.get(keys["answer"]).strip().upper()
        if answer not in options:
            raise row.error(f"unknown option letter {answer!r}; valid: {', '.join(options)}", keys["answer"])
        return Sample(**common, answers=[answer], options={k: v.strip() for k, v in options.items()})
    labels = list(cfg.labels or [])
    label = row.get(keys["label"], (str, int))
    if isinstance(label, int):
        if not 0 <= label < len(labels):
            raise row.error(f"label index {label} out of range 0..{len(labels) - 1}", keys["label"])
        label = labels[label]
    if label not in labels:
        raise row.error(f"unknown label {label!r}; valid: {', '.join(labels)}", keys["label"])
    return Sample(**common, answers=[label], labels=labels)


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    check_config(cfg)
    keys = field_map(cfg)
    return convert(read_json_rows(path), lambda r: to_sample(r, cfg, keys))


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    """Every `<split>.jsonl` directly in the folder."""
    return {p.stem: p for p in sorted(root.glob("*.jsonl")) if p.is_file()}


TASKS.register("jsonl", Task(
    name="jsonl", family="qa", metrics=("exact_match", "f1"), read_file=read_file, find_files=find_files,
    description="any JSONL file: set task.family (qa/mc/cls), task.fields, task.labels; metrics follow the family",
))
