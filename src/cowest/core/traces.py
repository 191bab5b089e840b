"""Reading an evaluation's trace files (`EvalDir.trace`): one `Trace` per sample, appended as chunks finish."""

from __future__ import annotations

from pathlib import Path

from cowest.core.records import Trace, iter_jsonl


def read_traces(path: Path) -> list[Trace]:
    """The traces of a file, tolerating a torn last line; an absent file has none."""
    return list(iter_jsonl(path, Trace, tolerate_torn_tail=True)) if path.exists() else []
