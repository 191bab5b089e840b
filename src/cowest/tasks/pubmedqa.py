"""PubMedQA PQA-L (Jin et al., EMNLP 2019): a research question answered yes / no / maybe from an abstract.

The abstract (without its conclusion) IS the input of this task, so unlike IfQA's evidence passages it is always
part of the question text; `long_answer` (the conclusion) is the rationale. Row formats: the shared JSONL
(lower-case keys), the original `ori_pqal.json` / split files (`{pubid: {"QUESTION", "CONTEXTS", ...}}`), and the
Hugging Face `qiaojin/PubMedQA` `pqa_labeled` rows (`context: {contexts, labels, meshes}`).
"""

from __future__ import annotations

from pathlib import Path

from cowest.core.config import TaskConfig
from cowest.core.records import Sample
from cowest.tasks.rows import Row, convert, hub_rows, read_json_rows, split_files
from cowest.tasks.task import TASKS, Task

LABELS = ["yes", "no", "maybe"]
LABEL_DESCRIPTIONS = {
    "yes": "the study's results support a positive answer to the question",
    "no": "the study's results support a negative answer",
    "maybe": "the results are mixed or inconclusive",
}
HUB = "qiaojin/PubMedQA"


def _lower_keys(d: dict) -> dict:
    return {k.lower(): v for k, v in d.items()}


def to_sample(row: Row) -> Sample:
    row = Row(_lower_keys(row.data), row.path, row.line)
    if isinstance(row.data.get("context"), dict):  # hub rows nest the abstract
        row = Row({**row.data, **_lower_keys(row.data["context"])}, row.path, row.line)
    pubid = row.get("pubid", (str, int))
    question = row.get("question").strip()
    contexts = row.str_list("contexts")
    sections = row.data.get("labels") or []
    decision = row.get("final_decision").strip().lower()
    if decision not in LABELS:
        raise row.error(f"unknown label {decision!r}; valid: {', '.join(LABELS)}", "final_decision")
    if len(sections) == len(contexts):
        abstract = "\n".join(f"{str(s).capitalize()}: {c}" for s, c in zip(sections, contexts))
    else:
        abstract = "\n".join(contexts)
    long_answer = row.data.get("long_answer")
    return Sample(
        id=str(pubid), task="pubmedqa", family="cls", question=f"Abstract:\n{abstract}\n\nQuestion: {question}",
        answers=[decision], labels=list(LABELS), label_descriptions=dict(LABEL_DESCRIPTIONS),
        rationale=long_answer.strip() if isinstance(long_answer, str) and long_answer.strip() else None,
        metadata={"question_only": question, "contexts": contexts, "sections": sections,
                  "meshes": row.data.get("meshes") or [], "year": row.data.get("year")},
    )


def _rows(path: Path) -> list[Row]:
    rows = read_json_rows(path)
    if len(rows) == 1 and "question" not in _lower_keys(rows[0].data):
        # The original format: one object keyed by PubMed id; point each row at the line of its key.
        obj, text = rows[0].data, path.read_text(encoding="utf-8")
        out = []
        for pubid, body in obj.items():
            pos = text.find(f'"{pubid}"')
            line = text.count("\n", 0, pos) + 1 if pos >= 0 else 1
            if not isinstance(body, dict):
                raise Row({}, str(path), line).error(f"expected an object under PubMed id {pubid!r}")
            out.append(Row({"pubid": pubid, **body}, str(path), line))
        return out
    return rows


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    return convert(_rows(path), to_sample)


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    found = split_files([root / "pubmedqa", root])
    if not found:  # the official split script's output: pqal_fold0/{train,dev}_set.json
        for d in (root / "pubmedqa" / "pqal_fold0", root / "pqal_fold0", root):
            found = {s: d / f"{s}_set.json" for s in ("train", "dev", "test") if (d / f"{s}_set.json").is_file()}
            if found:
                break
    return found


def build(split: str, cfg: TaskConfig) -> list[Sample]:
    """The hub's `pqa_labeled` rows: one `train` split of all 1,000 labelled questions (no official dev)."""
    return convert(hub_rows(HUB, "pqa_labeled", split, {"train": "train"}), to_sample)


TASKS.register("pubmedqa", Task(
    name="pubmedqa", family="cls", metrics=("accuracy", "macro_f1"), read_file=read_file, find_files=find_files,
    build=build, description="PubMedQA PQA-L yes/no/maybe from an abstract (accuracy / macro-F1)",
))
