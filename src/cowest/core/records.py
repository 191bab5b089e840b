"""Serialisable records that stages exchange through files in the run directory.

Every JSONL row carries `schema_version` so a later release can read (or refuse) files written by an older one.
Messages are OpenAI chat messages (`{"role": ..., "content": ...}`); preference pairs are TRL rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cowest.core.errors import DataError

SCHEMA_VERSION = 1

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Family = Literal["qa", "mc", "cls"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION


class Sample(Record):
    """One labelled example of a task.

    `family` decides prompts, extraction and metrics: `qa` (short free answer, gold = aliases), `mc` (multiple
    choice, gold = one option letter), `cls` (classification, gold = one of `labels`).
    """

    id: str
    task: str
    family: Family
    question: str
    answers: list[str]
    options: dict[str, str] | None = None
    labels: list[str] | None = None
    label_descriptions: dict[str, str] | None = None
    rationale: str | None = None
    knowledge: str | None = None
    """The background knowledge the answer needs, without the step to it or the answer (a `knowledge` draft's
    SFT target); None = the rationale stands in."""
    answer_format: Literal["free", "number", "choice"] = "free"
    """qa: `free` text (EM/F1 against the aliases), a `number`, or one of `choices`. A closed form lets the
    matcher find the answer inside a sentence and refuse one that names several."""
    choices: list[str] | None = None
    """qa with answer_format `choice`: every valid answer (the gold one among them)."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def gold(self) -> str:
        return self.answers[0]


class SamplingParams(BaseModel):
    """Sampling parameters shared by every backend."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.0, ge=0, le=2)
    """0 = greedy; the OpenAI API accepts 0..2."""
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 0
    n: int = Field(1, ge=1)
    logprobs: bool = False


class Generation(Record):
    """One completion of one prompt."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    token_logprobs: list[float] | None = None
    cached: bool = False
    error: str | None = None
    """Set only on the placeholder of a request that failed for good (`cowest.core.faults`): such a generation is
    never cached nor written; its sample counts as failed and is retried on the next run."""


class Step(Record):
    """One model call inside a strategy: who was asked what, and what came back."""

    role: Literal["weak", "strong", "judge"]
    name: str
    messages: list[Message]
    output: Generation


class Trace(Record):
    """Everything a strategy did for one sample, and its scored outcome."""

    sample_id: str
    strategy: str
    seed: int = 0
    steps: list[Step] = Field(default_factory=list)
    prediction: str | None = None
    extraction_failed: bool = False
    scores: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def final(self) -> str:
        return self.steps[-1].output.text if self.steps else ""


class PreferencePair(BaseModel):
    """A TRL preference row (`prompt`/`chosen`/`rejected`) plus provenance.

    Conversational form: prompt is a list of messages, chosen/rejected a one-message assistant list; standard form:
    three strings. Both load with `datasets` unchanged.
    """

    model_config = ConfigDict(extra="forbid")
    prompt: list[Message] | str
    chosen: list[Message] | str
    rejected: list[Message] | str
    question_id: str
    delta_chosen: float
    delta_rejected: float


R = TypeVar("R", bound=BaseModel)


def write_jsonl(path: str | Path, rows: list[BaseModel], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as f:
        for row in rows:
            f.write(row.model_dump_json() + "\n")


class UnwritableRow(ValueError):
    """A row whose text cannot be stored as UTF-8 JSON (a lone surrogate from a model's reply, for one)."""


def jsonl_line(row: BaseModel) -> str:
    """The row as one JSON line; UnwritableRow naming why, so the caller can fail that row alone."""
    from pydantic_core import PydanticSerializationError

    try:
        line = row.model_dump_json()
        line.encode("utf-8")
    except (PydanticSerializationError, UnicodeEncodeError) as e:
        raise UnwritableRow(f"its text cannot be stored as UTF-8 ({str(e).splitlines()[0][:120]})") from None
    return line


def append_jsonl(path: str | Path, row: BaseModel | str) -> None:
    """Append one row (or a line from `jsonl_line`) and flush it to disk, so a crash loses at most the row being
    written."""
    import os

    from cowest.core.files import naming

    line = row if isinstance(row, str) else jsonl_line(row)
    with naming(path), open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def repair_torn_tail(path: str | Path) -> int:
    """Cut an unterminated last line (left by a kill mid-write) so appends start on a fresh line.

    Returns the number of bytes removed.
    """
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
    return len(data) - keep


def iter_jsonl(path: str | Path, model: type[R], *, tolerate_torn_tail: bool = False) -> Iterator[R]:
    """Read records, failing on a bad row with the file, line and field.

    `tolerate_torn_tail` drops an unterminated last line (what a SIGKILL mid-write leaves) instead of failing:
    stages that append as they go read their own files this way when resuming.
    """
    from cowest.core.files import DATA_LIMIT, read_bounded

    path = Path(path)
    try:
        lines = read_bounded(path, DATA_LIMIT, "JSON Lines file", DataError).decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if tolerate_torn_tail and i == len(lines) and not line.endswith("\n"):
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e.msg})", path=str(path), line=i) from None
        except RecursionError:
            raise DataError("JSON nested too deep", path=str(path), line=i) from None
        try:
            yield model.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or None
            raise DataError(err["msg"], path=str(path), line=i, field=field) from None


def read_jsonl(path: str | Path, model: type[R], **kw: Any) -> list[R]:
    return list(iter_jsonl(path, model, **kw))
