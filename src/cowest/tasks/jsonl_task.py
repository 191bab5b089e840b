"""`jsonl`: any user JSON Lines file (or JSON array), described by the config instead of code.

Its options (`task.options`, `JsonlOptions`): `family` picks qa / mc / cls; `fields` maps cowest fields to the
file's keys (defaults: `id`, `question`, `answer`, `options`, `label`, `rationale`); `labels` lists the valid labels
of a cls task. Example:

    task: {name: jsonl, data: my.jsonl, options: {family: cls, labels: [positive, negative], fields: {question: text}}}

qa answers may be a string or a list of aliases; mc options a {letter: text} object or a list (lettered A, B, ...)
and the answer a letter; cls labels are strings, or integers indexing `labels`. A row without an id gets
`<file stem>-<line>`, unless `fields.id` names a key, which must then be present.
"""

from __future__ import annotations

from pathlib import Path

from cowest.core.config import TaskConfig
from cowest.core.errors import ConfigError
from cowest.core.records import Family, Sample
from cowest.tasks.rows import Row, convert, read_json_rows
from cowest.tasks.task import TASKS, Task, TaskOptions

FIELDS = ("id", "question", "answer", "options", "label", "rationale")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class JsonlOptions(TaskOptions):
    family: Family | None = None
    """qa (short answer), mc (options) or cls (labels); required to read a file."""
    fields: dict[str, str] = {}
    """Maps cowest fields (id, question, answer, options, label, rationale) to the file's keys."""
    labels: list[str] | None = None
    """Family cls: the valid labels."""


def field_map(opts: JsonlOptions) -> dict[str, str]:
    unknown = sorted(set(opts.fields) - set(FIELDS))
    if unknown:
        raise ConfigError(f"'task.options.fields.{unknown[0]}': unknown field; valid: {', '.join(FIELDS)}")
    return {f: opts.fields.get(f, f) for f in FIELDS}


def checked_options(cfg: TaskConfig) -> JsonlOptions:
    opts = JsonlOptions.of(cfg)
    if opts.family is None:
        raise ConfigError("'task.options.family': the jsonl task needs a family: qa, mc or cls")
    if opts.family == "cls" and not opts.labels:
        raise ConfigError("'task.options.labels': a jsonl task of family cls needs its list of labels")
    return opts


def to_sample(row: Row, opts: JsonlOptions, keys: dict[str, str]) -> Sample:
    if "id" in opts.fields:
        sid = str(row.get(keys["id"], (str, int)))
    else:
        sid = str(row.get("id", (str, int), default=f"{Path(row.path).stem}-{row.line}"))
    question = row.get(keys["question"]).strip()
    rationale = row.get(keys["rationale"], str, default=None, nonempty=False)
    rationale = rationale.strip() or None if rationale else None
    common = dict(id=sid, task="jsonl", family=opts.family, question=question, rationale=rationale)
    if opts.family == "qa":
        return Sample(**common, answers=row.str_list(keys["answer"]))
    if opts.family == "mc":
        raw = row.get(keys["options"], (dict, list))
        options = dict(zip(LETTERS, raw)) if isinstance(raw, list) else {str(k).strip().upper(): v for k, v in raw.items()}
        for letter, text in options.items():
            if not isinstance(text, str) or not text.strip():
                raise row.error(f"option {letter!r} must be a non-empty string, got {text!r:.60}", keys["options"])
        answer = row.get(keys["answer"]).strip().upper()
        if answer not in options:
            raise row.error(f"unknown option letter {answer!r}; valid: {', '.join(options)}", keys["answer"])
        return Sample(**common, answers=[answer], options={k: v.strip() for k, v in options.items()})
    labels = list(opts.labels or [])
    label = row.get(keys["label"], (str, int))
    if isinstance(label, int):
        if not 0 <= label < len(labels):
            raise row.error(f"label index {label} out of range 0..{len(labels) - 1}", keys["label"])
        label = labels[label]
    if label not in labels:
        raise row.error(f"unknown label {label!r}; valid: {', '.join(labels)}", keys["label"])
    return Sample(**common, answers=[label], labels=labels)


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    opts = checked_options(cfg)
    keys = field_map(opts)
    return convert(read_json_rows(path), lambda r: to_sample(r, opts, keys))


def metrics_of(cfg: TaskConfig) -> tuple[str, ...]:
    """The metrics of the configured family (qa's without one)."""
    from cowest.scoring.metrics import default_metrics

    return default_metrics(JsonlOptions.of(cfg).family or "qa")


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    """Every `<split>.jsonl` directly in the folder."""
    return {p.stem: p for p in sorted(root.glob("*.jsonl")) if p.is_file()}


TASKS.register("jsonl", Task(
    name="jsonl", family="qa", metrics=("exact_match", "f1"), read_file=read_file, find_files=find_files,
    description="any JSONL file: set task.options family (qa/mc/cls), fields, labels; metrics follow the family",
    options=JsonlOptions, metrics_of=metrics_of,
))
