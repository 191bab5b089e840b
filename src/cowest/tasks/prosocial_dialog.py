"""ProsocialDialog (Kim et al., EMNLP 2022): the dialogue-safety label of a potentially problematic utterance.

The method's ethics domain. Rows in the Hugging Face `allenai/prosocial-dialog` format: `context` (the utterance
to classify), `response` (the prosocial reply), `rots` (rules of thumb), `safety_label`, `safety_annotations`,
`safety_annotation_reasons`, `source`, `dialogue_id`, `response_id`, `episode_done`. The question is the
utterance alone: the response was written knowing the label, so showing it would leak the answer. The rules of
thumb are the rationale. The original release (a JSON array of dialogues, each a list of turns with `text` and
`labels`) is read too.
"""

from __future__ import annotations

from pathlib import Path

from cowest.core.config import TaskConfig
from cowest.core.errors import DataError
from cowest.core.records import Sample
from cowest.tasks.rows import Row, convert, hub_rows, read_json_rows, split_files
from cowest.tasks.task import TASKS, Task

LABELS = ["__casual__", "__possibly_needs_caution__", "__probably_needs_caution__", "__needs_caution__",
          "__needs_intervention__"]
LABEL_DESCRIPTIONS = {
    "__casual__": "casual, harmless talk",
    "__possibly_needs_caution__": "possibly problematic; a careful reply may be needed",
    "__probably_needs_caution__": "probably problematic; a careful reply is needed",
    "__needs_caution__": "problematic; needs a cautious, prosocial reply",
    "__needs_intervention__": "dangerous; needs intervention (self-harm, violence, crime)",
}
HUB = "allenai/prosocial-dialog"
HUB_SPLITS = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}


def to_sample(row: Row) -> Sample:
    context = row.get("context", alt=("text",)).strip()
    label = row.get("safety_label").strip()
    if label not in LABELS:
        raise row.error(f"unknown label {label!r}; valid: {', '.join(LABELS)}", "safety_label")
    rots = row.get("rots", list, default=[], nonempty=False)
    response = row.data.get("response")
    if response is None and isinstance(row.data.get("labels"), list) and row.data["labels"]:
        response = row.data["labels"][0]  # the original release keeps the reply under "labels"
    if "dialogue_id" in row.data and "response_id" in row.data:
        sid = f"{row.data['dialogue_id']}-{row.data['response_id']}"
    else:
        sid = f"{Path(row.path).stem}-{row.line}"
    return Sample(
        id=sid, task="prosocial_dialog", family="cls", question=f"Utterance: {context}", answers=[label],
        labels=list(LABELS), label_descriptions=dict(LABEL_DESCRIPTIONS),
        rationale=" ".join(str(r).strip() for r in rots if str(r).strip()) or None,
        metadata={"response": response, "rots": rots, "source": row.data.get("source"),
                  "safety_annotations": row.data.get("safety_annotations") or [],
                  "safety_annotation_reasons": row.data.get("safety_annotation_reasons") or []},
    )


def _read_rows(path: Path) -> list[Row]:
    import json
    import re

    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if re.match(r"\s*\[\s*\[", text):  # the original release: an array of dialogues, each an array of turns
        try:
            dialogues = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e.msg})", path=str(path), line=e.lineno) from None
        rows = []
        for d, turns in enumerate(dialogues):
            if not isinstance(turns, list):
                raise DataError(f"dialogue {d}: expected a list of turns", path=str(path))
            for t, turn in enumerate(turns):
                if not isinstance(turn, dict):
                    raise DataError(f"dialogue {d} turn {t}: expected an object", path=str(path))
                # No line numbers in a parsed array of arrays: the location names the dialogue and turn instead.
                rows.append(Row({"dialogue_id": d, "response_id": t, **turn}, f"{path} [dialogue {d}, turn {t}]", 1))
        if not rows:
            raise DataError("no rows (empty file)", path=str(path))
        return rows
    return read_json_rows(path)


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    return convert(_read_rows(path), to_sample)


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    found = split_files([root / "prosocial_dialog", root / "prosocial-dialog"], splits=("train", "dev", "valid", "test"))
    if "valid" in found and "dev" not in found:
        found["dev"] = found.pop("valid")  # the original release calls its dev split "valid"
    return found


def build(split: str, cfg: TaskConfig) -> list[Sample]:
    return convert(hub_rows(HUB, None, split, HUB_SPLITS), to_sample)


TASKS.register("prosocial_dialog", Task(
    name="prosocial_dialog", family="cls", metrics=("accuracy", "macro_f1"), read_file=read_file,
    find_files=find_files, build=build,
    description="ProsocialDialog safety label of an utterance, 5 classes (accuracy / macro-F1)",
))
