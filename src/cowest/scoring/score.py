"""The one way a reply is scored: its answer extracted for the sample's family, then the per-sample metrics, and
the one rule for "right". Every stage that scores a reply (eval's traces, the feedback's metric evaluator, the
rationales' check, the router's outcomes) calls `score`."""

from __future__ import annotations

from dataclasses import dataclass

from cowest.core.records import Sample
from cowest.scoring.extract import extract_answer
from cowest.scoring.metrics import per_sample


@dataclass(frozen=True)
class Scored:
    prediction: str | None
    """The extracted answer; None when none could be read (it then scores as a miss)."""
    scores: dict[str, float]
    """exact_match and f1 (qa), accuracy (mc, cls)."""

    @property
    def unreadable(self) -> bool:
        return self.prediction is None

    @property
    def right(self) -> bool:
        """The gold answer exactly: exact match for qa, accuracy for mc and cls."""
        return self.scores.get("exact_match", self.scores.get("accuracy", 0.0)) == 1.0

    @property
    def graded(self) -> float:
        """The finest score the metric evaluator compares drafts by: token F1 for qa, accuracy otherwise."""
        return self.scores.get("f1", self.scores.get("accuracy", 0.0))


def score(sample: Sample, text: str, truncated: bool = False) -> Scored:
    """`text` scored against `sample`'s gold; `truncated`: the reply hit its token limit (see `extract_answer`)."""
    prediction = extract_answer(text, sample, truncated)
    return Scored(prediction, per_sample(sample, prediction))
