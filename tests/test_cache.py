"""Response cache: keys, hit/miss accounting, partial misses, concurrent writers (threads and processes)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cowest.core.config import ModelConfig
from cowest.models.cache import CachedBackend, ResponseCache, open_backend, request_key, use_cache
from cowest.core.records import Generation, SamplingParams


class CountingBackend:
    """Pure-logic stand-in that records every call: sample i of prompt p is 'p#i@seed'."""

    identity = "count/v1@sha256:abc"
    has_chat_template = True

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per call
        self.fail = fail
        self.closed = False

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params.n))
        if self.fail:
            raise RuntimeError("backend down")
        return [[Generation(text=f"{p[-1]['content']}#{i}@{params.seed}") for i in range(params.n)] for p in prompts]

    def close(self):
        self.closed = True


def ask(s: str) -> list[dict]:
    return [{"role": "user", "content": s}]


def test_key_covers_identity_messages_params_and_sample():
    p = SamplingParams(seed=1)
    base = request_key("a", ask("q"), p, 0)
    assert base == request_key("a", ask("q"), p, 0)
    assert base == request_key("a", ask("q"), p.model_copy(update={"n": 4}), 0)  # n is not part of the key
    for other in [request_key("b", ask("q"), p, 0), request_key("a", ask("r"), p, 0),
                  request_key("a", ask("q"), p.model_copy(update={"temperature": 0.5}), 0),
                  request_key("a", ask("q"), p.model_copy(update={"seed": 2}), 0), request_key("a", ask("q"), p, 1)]:
        assert other != base


def test_hits_misses_and_zero_new_calls_on_rerun(tmp_path: Path):
    inner = CountingBackend()
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    params = SamplingParams(n=2, seed=3)
    out1 = cb.generate([ask("a"), ask("b")], params)
    assert inner.calls == [(2, 2)] and (cb.hits, cb.misses) == (0, 4)
    out2 = cb.generate([ask("a"), ask("b")], params)
    assert inner.calls == [(2, 2)] and (cb.hits, cb.misses) == (4, 4)
    assert [[g.text for g in r] for r in out1] == [[g.text for g in r] for r in out2]
    assert all(g.cached for r in out2 for g in r) and not any(g.cached for r in out1 for g in r)
    # a mixed batch sends only the miss, in one call
    out3 = cb.generate([ask("a"), ask("c"), ask("b")], params)
    assert inner.calls[-1] == (1, 2)
    assert [g.text for g in out3[1]] == ["c#0@3", "c#1@3"] and out3[0][0].cached and not out3[1][0].cached
    cb.close()
    assert inner.closed


def test_raising_n_reuses_first_samples(tmp_path: Path):
    inner = CountingBackend()
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    cb.generate([ask("a")], SamplingParams(n=2))
    out = cb.generate([ask("a")], SamplingParams(n=4))
    assert inner.calls == [(1, 2), (1, 4)]
    assert [g.cached for g in out[0]] == [True, True, False, False]
    assert [g.text for g in out[0]] == [f"a#{i}@0" for i in range(4)]
    assert len(cb.cache) == 4


def test_failed_call_stores_nothing(tmp_path: Path):
    cb = CachedBackend(CountingBackend(fail=True), tmp_path / "c.sqlite")
    with pytest.raises(RuntimeError):
        cb.generate([ask("a")], SamplingParams())
    assert len(cb.cache) == 0


def test_threads_share_one_cache(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.sqlite")

    def work(t: int) -> None:
        for i in range(50):
            cache.put_many("x", [(f"k{i}", Generation(text=f"t{t}"))])
            assert f"k{i}" in cache.get_many([f"k{i}"])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert len(cache) == 50


def _writer(path: str, worker: int, q) -> None:
    try:
        cb = CachedBackend(CountingBackend(), path)
        # overlapping prompts: every worker writes 20 of its own and 20 shared keys
        prompts = [ask(f"own{worker}-{i}") for i in range(20)] + [ask(f"shared-{i}") for i in range(20)]
        for i in range(0, 40, 5):
            cb.generate(prompts[i : i + 5], SamplingParams())
        q.put("ok")
    except BaseException as e:  # report to the parent instead of dying silently
        q.put(repr(e))


def test_concurrent_writer_processes(tmp_path: Path):
    path = str(tmp_path / "c.sqlite")
    ResponseCache(path).close()  # create the schema once; the writers race on rows, not DDL
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, q)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(q.get(timeout=5) for _ in procs) == ["ok"] * 4
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 4 * 20 + 20
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_cache_policy(tmp_path: Path):
    assert use_cache(ModelConfig(spec="x/y"), "strong") and use_cache(ModelConfig(spec="x/y"), "judge")
    assert not use_cache(ModelConfig(spec="x/y"), "weak")
    assert use_cache(ModelConfig(spec="x/y", cache=True), "weak")
    assert not use_cache(ModelConfig(spec="x/y", cache=False), "strong")


def test_open_backend_wraps_by_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from cowest.models import base

    monkeypatch.setitem(base.PROVIDERS._items, "count", lambda model, cfg: CountingBackend())
    strong = open_backend(ModelConfig(spec="count/m"), "strong", tmp_path)
    weak = open_backend(ModelConfig(spec="count/m"), "weak", tmp_path)
    assert isinstance(strong, CachedBackend) and (tmp_path / "responses.sqlite").exists()
    assert isinstance(weak, CountingBackend)
    assert isinstance(open_backend(ModelConfig(spec="count/m"), "strong", None), CountingBackend)
    strong.close()
