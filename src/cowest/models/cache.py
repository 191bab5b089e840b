"""SQLite response cache and `CachedBackend`, a wrapper with the same batch interface.

A cached generation is keyed by the SHA-256 of the whole request: the backend identity (weights hash, adapter),
the messages, the sampling parameters (less `n`) and the sample index. Sample i of a request therefore matches
sample i of the same request asked with a larger `n`, so raising K reuses the first samples. The database runs in
WAL mode with a busy timeout, so several threads and processes may read and write it at once. Only successful
responses are stored: a backend call that raises leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from cowest.core.config import ModelConfig
from cowest.models.base import Backend, load_backend
from cowest.core.errors import CowestError
from cowest.core.records import Generation, Message, SamplingParams

CACHE_FILE = "responses.sqlite"
CACHED_ROLES = ("strong", "judge")
"""Roles cached by default: calls to the (possibly paid) strong model and the judge; weak drafts vary by design."""


def request_key(identity: str, messages: list[Message], params: SamplingParams, sample: int) -> str:
    """SHA-256 of everything that decides one generation."""
    payload = {
        "identity": identity,
        "messages": messages,
        "params": params.model_dump(mode="json", exclude={"n"}),
        "sample": sample,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """A key -> Generation store in one SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 60_000):
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by this object's threads behind a lock; other processes open their own.
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_ms / 1000, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, identity TEXT NOT NULL, "
                "generation TEXT NOT NULL, created REAL NOT NULL DEFAULT (julianday('now')))"
            )
        except (OSError, sqlite3.Error) as e:  # cache_dir=/dev/null, a read-only or full disk
            full = (isinstance(e, sqlite3.Error) and "full" in str(e)) or getattr(e, "errno", None) == errno.ENOSPC
            fix = ("free space on that disk, then rerun the same command to resume" if full else
                   "set cache_dir to a folder this user can write, or models.<role>.cache=false")
            raise CowestError(f"response cache {self.path}: cannot open it ({e}); {fix}") from None

    def get_many(self, keys: list[str]) -> dict[str, Generation]:
        """The cached generations among `keys` (counted as hits; the rest as misses)."""
        found: dict[str, Generation] = {}
        with self._lock:
            for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(
                    f"SELECT key, generation FROM responses WHERE key IN ({marks})", chunk
                ):
                    found[key] = Generation.model_validate_json(blob)
            self.hits += len(found)
            self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, identity: str, items: list[tuple[str, Generation]]) -> None:
        """Store generations in one transaction (first writer wins on a duplicate key)."""
        rows = [(k, identity, g.model_copy(update={"cached": False}).model_dump_json()) for k, g in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO responses (key, identity, generation) VALUES (?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend:
    """Wraps a backend: answers cached requests from SQLite and sends only the misses, in one batch call."""

    def __init__(self, backend: Backend, path: str | Path):
        self.inner = backend
        self.cache = ResponseCache(path)
        self.identity = backend.identity
        self.has_chat_template = backend.has_chat_template

    @property
    def hits(self) -> int:
        return self.cache.hits

    @property
    def misses(self) -> int:
        return self.cache.misses

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        from cowest.core.faults import PartialFailure

        keys = [[request_key(self.identity, p, params, i) for i in range(params.n)] for p in prompts]
        found = self.cache.get_many([k for row in keys for k in row])
        todo = [j for j, row in enumerate(keys) if any(k not in found for k in row)]
        fresh: dict[str, Generation] = {}
        failed: dict[int, Exception] = {}
        if todo:
            # Ask for samples 0..m-1, m = the highest missing index + 1: sample i must come from the same seed
            # offset as when it is asked alone, so a partial miss regenerates a prefix rather than shifting seeds.
            m = max(i + 1 for j in todo for i, k in enumerate(keys[j]) if k not in found)
            try:
                out: list = self.inner.generate([prompts[j] for j in todo], params.model_copy(update={"n": m}))
            except PartialFailure as e:  # the prompts that did finish are stored all the same
                out = e.results
                failed = {todo[i]: err for i, err in e.errors.items()}
            new: list[tuple[str, Generation]] = []
            for j, gens in zip(todo, out):
                for i, g in enumerate((gens or [])[:m]):
                    if keys[j][i] not in found:
                        fresh[keys[j][i]] = g
                        new.append((keys[j][i], g))
            self.cache.put_many(self.identity, new)
        rows = [None if j in failed else
                [found[k].model_copy(update={"cached": True}) if k in found else fresh[k] for k in row]
                for j, row in enumerate(keys)]
        if failed:
            raise PartialFailure(rows, failed)  # type: ignore[arg-type]
        return rows  # type: ignore[return-value]

    def close(self) -> None:
        self.cache.close()
        self.inner.close()


def use_cache(mcfg: ModelConfig, role: str) -> bool:
    """The configured choice, else the default: on for strong and judge, off for weak."""
    return mcfg.cache if mcfg.cache is not None else role in CACHED_ROLES


def open_backend(mcfg: ModelConfig, role: str, cache_dir: Path | None) -> Backend:
    """Load the backend a model config names, wrapped in the response cache when the role uses one."""
    backend = load_backend(mcfg)
    if cache_dir is not None and use_cache(mcfg, role):
        return CachedBackend(backend, Path(cache_dir) / CACHE_FILE)
    return backend
