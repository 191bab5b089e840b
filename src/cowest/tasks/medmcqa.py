"""MedMCQA (Pal et al., CHIL 2022): four-option medical entrance-exam questions.

Two row formats:
- the shared JSONL: `id`, `question`, `options` ({A..D}), `answer` (letter);
- the original release / Hugging Face `openlifescienceai/medmcqa`: `opa`..`opd`, `cop` (correct option), `exp`
  (explanation, kept as the rationale), `subject_name`, `topic_name`, `choice_type`.

`cop` is 0-based on the hub (0..3) and 1-based in the original release's JSON (1..4). A file is read as 1-based
when some row has `cop` 4 and none has 0, else as 0-based (the hub's convention); a file with both is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cowest.core.config import TaskConfig
from cowest.core.records import Sample
from cowest.tasks.rows import Row, convert, hub_rows, read_json_rows, split_files
from cowest.tasks.task import TASKS, Task, TaskOptions

LETTERS = ("A", "B", "C", "D")
ORIGINAL_KEYS = ("opa", "opb", "opc", "opd")
HUB = "openlifescienceai/medmcqa"
HUB_SPLITS = {"train": "train", "dev": "validation", "validation": "validation"}


def to_sample(row: Row, cop_base: int = 0) -> Sample:
    sid = row.get("id", (str, int))
    question = row.get("question")
    meta = {}
    if "options" in row.data:
        raw = row.get("options", (dict, list))
        if isinstance(raw, list):
            raw = dict(zip("ABCDEFGH", raw))
        options = {}
        for letter, text in raw.items():
            if not isinstance(text, str) or not text.strip():
                raise row.error(f"option {letter!r} must be a non-empty string, got {text!r:.60}", "options")
            options[str(letter).strip().upper()] = text.strip()
        answer = row.get("answer").strip().upper()
    elif "opa" not in row.data:
        raise row.error("missing (neither 'options' nor the original 'opa'..'opd' columns)", "options")
    else:
        options = {letter: str(row.get(key, (str, int, float))).strip() for letter, key in zip(LETTERS, ORIGINAL_KEYS)}
        cop = row.get("cop", int)
        if not 0 <= cop - cop_base < len(LETTERS):
            valid = f"{cop_base}..{cop_base + 3}"
            raise row.error(f"unknown correct option {cop} (valid: {valid}; -1 marks an unlabelled test row)", "cop")
        answer = LETTERS[cop - cop_base]
        for key in ("subject_name", "topic_name", "choice_type"):
            if row.data.get(key):
                meta[key] = row.data[key]
    if answer not in options:
        raise row.error(f"unknown option letter {answer!r}; valid: {', '.join(options)}", "answer")
    exp = row.data.get("exp")
    rationale = exp.strip() if isinstance(exp, str) and exp.strip() else None
    return Sample(id=str(sid), task="medmcqa", family="mc", question=question.strip(), answers=[answer],
                  options=options, rationale=rationale, metadata=meta)


class MedMCQAOptions(TaskOptions):
    cop_base: Literal[0, 1] | None = None
    """Rows with `cop`: 0 = hub (0..3), 1 = original release (1..4); None = read off the values."""


def cop_base_of(rows: list[Row], configured: int | None = None) -> int:
    """0 (hub rows) or 1 (original release) for `cop`: configured, or read off the values when they settle it."""
    original = [r for r in rows if "opa" in r.data]
    if configured is not None or not original:
        return configured or 0
    cops = {c for r in original if isinstance(c := r.data.get("cop"), int)}  # other values fail row by row later
    if 0 in cops and 4 in cops:
        first = next(r for r in rows if r.data.get("cop") == 4)
        raise first.error("'cop' takes both 0 and 4 in this file: it is neither 0-based (hub) nor 1-based "
                          "(original release)", "cop")
    if cops & {1, 2, 3} and not cops & {0, 4}:
        # Guessing would shift every gold letter silently on a small or filtered file.
        raise original[0].error("'cop' is ambiguous here (no 0 and no 4): set task.options.cop_base=0 for hub "
                                "rows (0..3) or task.options.cop_base=1 for the original release (1..4)", "cop")
    return 1 if 4 in cops else 0


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    rows = read_json_rows(path)
    base = cop_base_of(rows, MedMCQAOptions.of(cfg).cop_base)
    return convert(rows, lambda r: to_sample(r, base))


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    return split_files([root / "medmcqa", root])


def build(split: str, cfg: TaskConfig) -> list[Sample]:
    """The hub dataset (its test split has no public labels, so it is not offered)."""
    return convert(hub_rows(HUB, None, split, HUB_SPLITS), lambda r: to_sample(r, 0))


TASKS.register("medmcqa", Task(
    name="medmcqa", family="mc", metrics=("accuracy", "macro_f1"), read_file=read_file, find_files=find_files,
    build=build, description="MedMCQA medical multiple choice, options A-D (accuracy / macro-F1)",
    options=MedMCQAOptions,
))
