"""metrics.json as a typed, versioned record, and paired differences with one sign convention.

`Metrics.diff(a, b)` is `a − b` whichever order the pair was stored in (summary stores each pair once, in system
order); `signed` prints a difference so that a zero is `+0.000`, never `-0.000`. Files written before the version
field read as version 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cowest.core.errors import CowestError

METRICS_VERSION = 1


class _Record(BaseModel):
    # Fields added by later versions are ignored by this one rather than refused.
    model_config = ConfigDict(extra="ignore")


class MetricValue(_Record):
    value: float
    ci: tuple[float, float]
    """95% bootstrap interval."""
    per_seed: dict[str, float] = Field(default_factory=dict)
    mean: float = math.nan
    sd: float = 0.0


class ExtractionFailures(_Record):
    total: int = 0
    per_seed: dict[str, int] = Field(default_factory=dict)
    rate: float = 0.0


class Usage(_Record):
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cut: int = 0
    """Replies that hit the token limit."""
    tokens_per_sample: float = 0.0


class SampleScore(_Record):
    """One sample's answer as the summary read it from the trace, and its headline score (None: the headline has no
    per-sample score, macro-F1)."""

    prediction: str | None = None
    score: float | None = None


class SystemMetrics(_Record):
    strategy: str
    draft_format: str | None = None
    weak: str | None = None
    strong: str | None = None
    metrics: dict[str, MetricValue]
    extraction_failures: ExtractionFailures = Field(default_factory=ExtractionFailures)
    usage: dict[str, Usage] = Field(default_factory=dict)
    """Per role."""
    wall_s: float = 0.0
    per_sample: dict[str, dict[str, SampleScore]] = Field(default_factory=dict)
    """Seed -> sample id -> its answer and headline score (empty in files of before it was recorded)."""

    def tokens_per_sample(self, role: str) -> float:
        u = self.usage.get(role)
        return u.tokens_per_sample if u else 0.0


class Paired(_Record):
    """A paired bootstrap difference as stored: diff = a − b on the same rows."""

    a: str
    b: str
    metric: str
    diff: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Difference:
    """`a − b` in `metric` with its 95% interval."""

    a: str
    b: str
    metric: str
    value: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def __str__(self) -> str:
        return f"{signed(self.value)} [{signed(self.lo)}, {signed(self.hi)}]"


def signed(x: float, digits: int = 3) -> str:
    """`x` with its sign; a value that rounds to zero prints as +0.000."""
    text = f"{x:+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text


class Metrics(_Record):
    """The content of an evaluation's metrics.json (written by `cowest.pipeline.summary`, faults by `cowest.pipeline.evaluate`)."""

    version: int = METRICS_VERSION
    task: str
    n_samples: int
    failed_samples: int = 0
    """Samples left out because a request failed for good (they are retried by the next run)."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    metrics: list[str]
    headline: str
    bootstrap_samples: int | None = None
    systems: dict[str, SystemMetrics] = Field(default_factory=dict)
    paired: list[Paired] = Field(default_factory=list)
    faults: dict[str, Any] = Field(default_factory=dict)
    """cowest.core.faults.FaultLog's counts over every run of the stage."""

    def value(self, system: str, metric: str | None = None) -> MetricValue:
        return self.systems[system].metrics[metric or self.headline]

    def diff(self, a: str, b: str, metric: str | None = None) -> Difference | None:
        """`a − b` in `metric` (default: the headline), None when the pair was not computed."""
        metric = metric or self.headline
        for p in self.paired:
            if p.metric != metric:
                continue
            if (p.a, p.b) == (a, b):
                return Difference(a, b, metric, p.diff, p.ci[0], p.ci[1])
            if (p.a, p.b) == (b, a):
                return Difference(a, b, metric, -p.diff, -p.ci[1], -p.ci[0])
        return None

    @property
    def work_s(self) -> float:
        return sum(s.wall_s for s in self.systems.values())

    def write(self, path: Path) -> None:
        """Replace `path` atomically (NaN, for an evaluation with no samples, is written as JSON's NaN)."""
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="python"), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> "Metrics":
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:  # pydantic's ValidationError is a ValueError
            first = str(e).splitlines()[0]
            raise CowestError(f"{path}: not a readable metrics.json ({first}); rerun the evaluation "
                              "(`cowest eval --force`)") from None
