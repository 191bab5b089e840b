"""IfQA (Yu et al., EMNLP 2023): open-domain questions under a counterfactual presupposition ("If X had ...").

Rows: `idx`, `question`, `answers` (aliases), `context` (the gold Wikipedia passages). The passages are evidence,
not an input of the task as the method runs it, so they stay in `metadata["context"]` unless `task.options.show_context`.
Reads the shared JSONL files and the upstream `dataset/full_split/{train,dev,test}.json` (a JSON array).
"""

from __future__ import annotations

from pathlib import Path

from cowest.core.config import TaskConfig
from cowest.core.records import Sample
from cowest.tasks.rows import Row, convert, read_json_rows, split_files
from cowest.tasks.task import TASKS, Task, TaskOptions

UPSTREAM = "https://raw.githubusercontent.com/wyu97/IfQA/main/dataset/full_split/{split}.json"


class IfQAOptions(TaskOptions):
    show_context: bool = False
    """Show the evidence passages to the models (in the question)."""


def to_sample(row: Row, show_context: bool) -> Sample:
    idx = row.get("idx", (int, str), alt=("id",))
    question = row.get("question")
    answers = row.str_list("answers", alt=("answer",))
    context = row.get("context", (list, str), default=[], nonempty=False)
    passages = [context] if isinstance(context, str) else [str(c) for c in context]
    text = question
    if show_context and passages:
        text = "Context:\n" + "\n\n".join(passages) + f"\n\nQuestion: {question}"
    # Upstream numbers each split from 0: the split (file stem) keeps ids unique across train and dev.
    return Sample(id=f"{Path(row.path).stem}-{idx}", task="ifqa", family="qa", question=text, answers=answers,
                  metadata={"context": passages, "question_only": question})


def read_file(path: Path, cfg: TaskConfig) -> list[Sample]:
    show = IfQAOptions.of(cfg).show_context
    return convert(read_json_rows(path), lambda r: to_sample(r, show))


def find_files(root: Path, cfg: TaskConfig) -> dict[str, Path]:
    # <data>/ifqa/<split>.jsonl (shared layout), or a checkout of the upstream repository.
    return split_files([root / "ifqa", root / "dataset" / "full_split", root])


def build(split: str, cfg: TaskConfig) -> list[Sample]:
    """Download the upstream split (IfQA is published on GitHub, not on the Hugging Face hub)."""
    import tempfile
    import urllib.error
    import urllib.request

    from cowest.core.errors import CowestError, UnknownNameError

    if split not in ("train", "dev", "test"):
        raise UnknownNameError("split of ifqa", split, ["train", "dev", "test"])
    url = UPSTREAM.format(split=split)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data = resp.read()
    except (urllib.error.URLError, OSError) as e:
        raise CowestError(f"could not download IfQA {split} from {url}: {e}. Without network, download it and set "
                          "task.data to its folder (or to ../shared/data).") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{split}.json"
        path.write_bytes(data)
        return read_file(path, cfg)


TASKS.register("ifqa", Task(
    name="ifqa", family="qa", metrics=("exact_match", "f1"), read_file=read_file, find_files=find_files,
    build=build, description="IfQA counterfactual open-domain QA (EM/F1 over answer aliases)", options=IfQAOptions,
))
