"""Faults of remote model calls, counted per kind, and the failure budget of a stage.

A backend that talks to a server (openai) counts every faulty HTTP attempt in a `FaultTally` (by kind: http_429,
http_5xx, http_4xx, timeout, deadline, connection, malformed) and, per kind, the requests that failed for good
after their retries. Stages sum the tallies of their backends into `faults.json` (added up across resumes) and copy
it into metrics.json / pairs_stats.json. A request that failed for good fails its sample: the stage writes nothing
for it, counts it, and goes on while `FailureBudget` allows; the next run retries it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cowest.core.errors import CowestError
from cowest.core.layout import FAULTS_FILE
from cowest.core.records import Generation


class FaultTally:
    """Thread-safe counts: `faults` (every faulty attempt) and `gave_up` (requests failed for good), per kind."""

    def __init__(self) -> None:
        self.faults: Counter[str] = Counter()
        self.gave_up: Counter[str] = Counter()
        self.attempts = 0
        """HTTP attempts, retries included."""
        self._lock = threading.Lock()

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def give_up(self, kind: str) -> None:
        with self._lock:
            self.gave_up[kind] += 1

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            return Counter(self.faults), Counter(self.gave_up)


def tally_of(backend: Any) -> FaultTally | None:
    """The tally of a backend or of the backend it wraps (`.inner`, e.g. the response cache)."""
    seen = 0
    while backend is not None and seen < 8:
        tally = getattr(backend, "tally", None)
        if isinstance(tally, FaultTally):
            return tally
        backend, seen = getattr(backend, "inner", None), seen + 1
    return None


class RequestFailedError(CowestError):
    """A request that failed for good: a client error, or a retryable one after the whole retry budget."""

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.kind = kind


class PartialFailure(RequestFailedError):
    """Some prompts of a batch failed for good: `results[i]` is None for those, `errors[i]` says why (the others
    finished). A caller that knows nothing of it sees a `RequestFailedError`."""

    def __init__(self, results: list[list[Generation] | None], errors: dict[int, RequestFailedError]):
        self.results, self.errors = results, errors
        first = errors[min(errors)]
        many = f"{len(errors)} of {len(results)} requests failed; first: " if len(results) > 1 else ""
        super().__init__(f"{many}{first}", first.kind)


def failed_generations(n: int, error: str) -> list[Generation]:
    """Placeholders for a prompt whose request failed: empty text, `error` set; never cached or written."""
    return [Generation(text="", finish_reason="error", error=error) for _ in range(n)]


class TolerantBackend:
    """Wraps a backend for a stage: a prompt whose request failed for good gets failed generations (`error` set)
    instead of failing the whole batch, so the stage can fail that sample alone."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.identity = inner.identity
        self.has_chat_template = inner.has_chat_template

    def generate(self, prompts: list[list[dict[str, str]]], params: Any) -> list[list[Generation]]:
        try:
            out: list[list[Generation]] = self.inner.generate(prompts, params)
            return out
        except PartialFailure as e:
            return [r if r is not None else failed_generations(params.n, str(e.errors[i]))
                    for i, r in enumerate(e.results)]

    def close(self) -> None:
        self.inner.close()


class StageFailed(CowestError):
    """More samples failed than the stage's failure budget allows."""


@dataclass
class FailureBudget:
    """`fail(id, reason)` records a failed sample and stops the stage once more than `share` of `total` failed."""

    stage: str
    total: int
    share: float
    failed: dict[str, str] = field(default_factory=dict)

    def fail(self, sample_id: str, reason: str) -> None:
        self.failed[sample_id] = reason
        if len(self.failed) > self.share * self.total:
            raise StageFailed(
                f"{self.stage}: {len(self.failed)} of {self.total} samples failed for good (more than "
                f"max_failed_share {self.share:g}); what finished is kept, rerun to retry the rest "
                f"(or raise max_failed_share). Last: {reason}")

    def ok(self, sample_id: str) -> None:
        self.failed.pop(sample_id, None)


class FaultLog:
    """`faults.json` of one stage folder: fault counts added up over every run (resumes included)."""

    def __init__(self, out_dir: Path, backends: list[Any]):
        self.path = Path(out_dir) / FAULTS_FILE
        self.tallies: list[FaultTally] = []
        self._start: list[tuple[Counter[str], Counter[str]]] = []
        self.base = self._read()
        self.watch(backends)

    def watch(self, backends: list[Any]) -> None:
        """Count the faults of these backends too, from now on (backends opened later are added as they open)."""
        for b in backends:
            tally = tally_of(b)
            if tally is not None and all(tally is not t for t in self.tallies):
                self.tallies.append(tally)
                self._start.append(tally.snapshot())

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):  # absent, or torn by a kill: start again from zero
            return {}

    def current(self, failed: dict[str, str] | None = None) -> dict[str, Any]:
        faults: Counter[str] = Counter(self.base.get("faults", {}))
        gave_up: Counter[str] = Counter(self.base.get("gave_up", {}))
        for tally, (f0, g0) in zip(self.tallies, self._start):
            f1, g1 = tally.snapshot()
            faults.update(f1 - f0)
            gave_up.update(g1 - g0)
        retried = {k: faults[k] - gave_up.get(k, 0) for k in faults}
        out = {"faults": dict(sorted(faults.items())), "retried": dict(sorted(retried.items())),
               "gave_up": dict(sorted(gave_up.items())), "faults_total": sum(faults.values()),
               "failed_samples": len(failed or {})}
        if failed:
            out["failed_ids"] = sorted(failed)[:20]
            out["failed_reasons"] = dict(Counter(_kind_of(r) for r in failed.values()))
        return out

    def write(self, failed: dict[str, str] | None = None) -> dict[str, Any]:
        data = self.current(failed)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)
        return data


def _kind_of(reason: str) -> str:
    # RequestFailedError messages end with "last error: <kind>: ..." (see openai_backend).
    marker = "last error: "
    return reason.split(marker, 1)[1].split(" ", 1)[0].rstrip(":;,") if marker in reason else "other"
