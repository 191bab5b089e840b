"""Progress of a long loop on stderr: items done/total, tokens/s, cache hits, ETA.

Drawn in place when the stream is a TTY. A log file gets one line a minute (`HEARTBEAT_S`) and the last line, and
nothing from work that ends within the minute, so a run left in the background says how far it is without filling
its log; `enabled=True` forces a line per update and `False` silences it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

HEARTBEAT_S = 60.0
"""How often a progress line goes to a stream that is not a TTY (a log file)."""


class Progress:
    """`with Progress(total, "eval strong_only") as p: ... p.update(n, tokens=t, cache_hits=h)`."""

    def __init__(self, total: int, desc: str = "", *, stream: TextIO | None = None, enabled: bool | None = None,
                 min_interval_s: float = 0.5, done: int = 0):
        self.total, self.desc = total, desc
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.heartbeat = enabled is None and not self.tty
        self.enabled = True if enabled is None else enabled
        self.min_interval_s = max(min_interval_s, HEARTBEAT_S) if self.heartbeat else min_interval_s
        self.done = done
        self.start_done = done  # items already done before this run (resume) do not count toward the rate
        self.tokens = 0
        self.cache_hits = 0
        self.failed = 0
        self.faults = 0
        self.note = ""
        self.t0 = time.monotonic()
        self._last_draw = self.t0 if self.heartbeat else 0.0
        self._drawn = self._final_drawn = False

    def update(self, n: int = 1, *, tokens: int = 0, cache_hits: int = 0, note: str | None = None,
               failed: int = 0, faults: int | None = None) -> None:
        """`n` more items done; `note` replaces the line's free-text part (e.g. a training loss); `failed` of the
        `n` failed for good; `faults`: the running count of faulty requests (retried or not)."""
        if note is not None:
            self.note = note
        self.failed += failed
        if faults is not None:
            self.faults = faults
        self.done += n
        self.tokens += tokens
        self.cache_hits += cache_hits
        now = time.monotonic()
        final = self.done >= self.total
        if not self.enabled or (final and self._final_drawn):  # a log file gets the last line once
            return
        if now - self._last_draw >= self.min_interval_s or (final and (self._drawn or not self.heartbeat)):
            self._last_draw = now
            self._draw(now)
            self._final_drawn = final

    def line(self, now: float | None = None) -> str:
        """The status line (also what tests read)."""
        elapsed = max((now or time.monotonic()) - self.t0, 1e-9)
        new = self.done - self.start_done
        parts = [f"{self.desc} {self.done}/{self.total}".strip()]
        if self.note:
            parts.append(self.note)
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:.1f} tok/s")
        if self.cache_hits:
            parts.append(f"cache hits {self.cache_hits}")
        if self.faults or self.failed:
            parts.append(f"faults {self.faults}, failed {self.failed}")
        if 0 < new and self.done < self.total:
            parts.append(f"ETA {_fmt_s(elapsed / new * (self.total - self.done))}")
        else:
            parts.append(f"{_fmt_s(elapsed)}")
        return " | ".join(parts)

    def _draw(self, now: float) -> None:
        end = "\r" if self.tty else "\n"
        self.stream.write(self.line(now) + end)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def log(msg: str) -> None:
    """One `[cowest] ...` line on stderr: what a stage decided or warns about (not its progress line)."""
    print(f"[cowest] {msg}", file=sys.stderr, flush=True)
