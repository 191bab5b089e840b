"""The alignment check's record (`round<r>/select/selection.json`) and the run's best adapter read from it; the
check itself is `cowest.pipeline.loop.do_select`. Resolved below (the 95% CI of aligned − start under
0) keeps the start as the run's best adapter; anything else keeps the aligned one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from cowest.core.layout import RunLayout
from cowest.core.results import signed

SELECTION_FILE = "selection.json"

Verdict = Literal["above", "below", "unresolved"]


class Selection(BaseModel):
    """One round's check, as `round<r>/select/selection.json` holds it."""

    round: int
    split: str
    n: int
    metric: str
    start: str
    """The adapter the round started from (its feedback's drafter)."""
    aligned: str
    diff: float
    """aligned − start, paired, on `split`."""
    ci: tuple[float, float]
    verdict: Verdict
    best: str
    """The adapter the run keeps: `start` when the aligned one is resolved below it, else `aligned`."""

    @property
    def why(self) -> str:
        d = f"{signed(self.diff)} [{signed(self.ci[0])}, {signed(self.ci[1])}]"
        kept = "kept the aligned adapter" if self.best == self.aligned else "kept the adapter it started from"
        return (f"round {self.round}'s aligned weak model against its start on {self.split} (n={self.n}, "
                f"collaboration {self.metric}): {d}, {self.verdict}; {kept}")


def verdict(lo: float, hi: float) -> Verdict:
    return "above" if lo > 0 else "below" if hi < 0 else "unresolved"


def read_selection(run: RunLayout, rnd: int) -> Selection | None:
    path = run.select_dir(rnd).path / SELECTION_FILE
    if not path.is_file():
        return None
    return Selection.model_validate_json(path.read_text(encoding="utf-8"))


def best_adapter(run: RunLayout) -> Selection | None:
    """The last checked round's selection (its `best` is the run's best adapter); None when no round was checked."""
    for rnd in reversed(run.rounds_on_disk()):
        sel = read_selection(run, rnd)
        if sel is not None:
            return sel
    return None
