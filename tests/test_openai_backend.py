"""OpenAIBackend against a fault-injecting HTTP server on 127.0.0.1: retries, budgets, n, usage, the API key."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fault_server import FaultServer

from cowest.core.config import ModelConfig
from cowest.models.cache import CachedBackend
from cowest.core.faults import PartialFailure, TolerantBackend
from cowest.models.openai_backend import OpenAIBackend, RequestFailedError
from cowest.core.redact import redact_url
from cowest.core.records import SamplingParams

pytest.importorskip("openai")


def make(server: FaultServer, **kw) -> OpenAIBackend:
    cfg = ModelConfig(spec="openai/test-model", base_url=server.base_url, api_key_env="COWEST_TEST_NO_SUCH_KEY",
                      **{"timeout_s": 0.5, "max_retries": 3, "concurrency": 4, **kw})
    b = OpenAIBackend("test-model", cfg)
    b.backoff_base_s = 0.01  # keep the test fast; the backoff schedule itself is not under test
    return b


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def test_every_fault_is_retried_and_each_request_completes_exactly_once():
    plans = ["plan:ok", "plan:429,ok", "plan:500,500,ok", "plan:badjson,ok", "plan:html,ok", "plan:stall,ok",
             "plan:drop,ok", "plan:drop,500,429,ok"]
    with FaultServer() as srv:
        b = make(srv)
        out = b.generate([ask(p) for p in plans], SamplingParams(seed=5))
        b.close()
    assert [len(g) for g in out] == [1] * len(plans)
    for p, gens in zip(plans, out):
        assert gens[0].text == f"echo:{p}|seed=5|i=0"
        assert srv.hits[p] == len(p.removeprefix("plan:").split(","))  # one hit per planned step, no more
        assert srv.delivered[p] == 1
    # Retry-After: 1 was honoured: the retry came at least a second after the 429 (backoff alone is 10 ms).
    t429 = srv.hit_times["plan:429,ok"]
    assert t429[1] - t429[0] >= 0.9
    assert b.requests_sent == sum(srv.hits.values())
    assert b.prompt_tokens == 7 * len(plans) and b.completion_tokens == 3 * len(plans)
    assert out[0][0].prompt_tokens == 7 and out[0][0].completion_tokens == 3


def test_exhausted_budget_raises_naming_endpoint_status_and_attempts():
    with FaultServer() as srv:
        b = make(srv, max_retries=2)
        with pytest.raises(RequestFailedError) as e:
            b.generate([ask("plan:500")], SamplingParams())
    msg = str(e.value)
    assert srv.base_url in msg and "HTTP 500" in msg and "3 attempts" in msg and "test-model" in msg
    assert srv.hits["plan:500"] == 3


def test_client_error_is_not_retried():
    with FaultServer() as srv:
        b = make(srv)
        with pytest.raises(RequestFailedError, match="HTTP 400.*not retried"):
            b.generate([ask("plan:400")], SamplingParams())
    assert srv.hits["plan:400"] == 1


def test_timeouts_exhaust_the_budget():
    with FaultServer(stall_s=1.0) as srv:
        b = make(srv, max_retries=1, timeout_s=0.3)
        with pytest.raises(RequestFailedError, match="timeout after 0.3 s"):
            b.generate([ask("plan:stall")], SamplingParams())
    assert srv.hits["plan:stall"] == 2


def test_n_uses_the_api_n_or_falls_back_to_one_request_per_sample():
    with FaultServer() as srv:
        b = make(srv)
        both = b.generate([ask("plan:ok;a"), ask("plan:one;b")], SamplingParams(n=3, seed=10, logprobs=True))
    assert [g.text for g in both[0]] == [f"echo:plan:ok;a|seed=10|i={i}" for i in range(3)]
    assert srv.hits["plan:ok;a"] == 1  # one request carrying n=3
    # The server ignored n: samples 1 and 2 came from separate requests with seeds 11 and 12.
    assert [g.text for g in both[1]] == [f"echo:plan:one;b|seed={s}|i=0" for s in (10, 11, 12)]
    assert srv.hits["plan:one;b"] == 3
    assert both[0][0].token_logprobs == [-0.5, -0.5, -0.5]
    assert sum(g.completion_tokens for g in both[0]) == 9


def test_concurrency_is_bounded():
    with FaultServer() as srv:
        b = make(srv, concurrency=2)
        out = b.generate([ask(f"plan:slow;{i}") for i in range(6)], SamplingParams())
    assert len(out) == 6 and 1 <= srv.max_inflight <= 2


def test_failed_request_leaves_nothing_in_the_cache_and_reruns_make_no_calls(tmp_path: Path):
    db = tmp_path / "cache.sqlite"
    with FaultServer() as srv:
        cb = CachedBackend(make(srv, max_retries=1), db)
        with pytest.raises(PartialFailure) as e:
            cb.generate([ask("plan:500;bad"), ask("plan:ok;good")], SamplingParams())
        assert len(cb.cache) == 1  # the finished request is kept; the failed one left nothing
        assert e.value.results[0] is None and set(e.value.errors) == {0}
        first = e.value.results[1]
        assert cb.generate([ask("plan:ok;good")], SamplingParams())[0][0].cached
        first = [first]
        hits_after_first = sum(srv.hits.values())
        again = cb.generate([ask("plan:ok;good")], SamplingParams())
        cb.close()
        cb2 = CachedBackend(make(srv), db)  # a new process-like reopen of the same file
        third = cb2.generate([ask("plan:ok;good")], SamplingParams())
        cb2.close()
    assert sum(srv.hits.values()) == hits_after_first  # zero new calls on re-run
    assert not first[0][0].cached and again[0][0].cached and third[0][0].cached
    assert again[0][0].text == first[0][0].text == third[0][0].text


def test_api_key_never_reaches_cache_run_dir_or_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    secret = "sk-test-SECRET123"
    monkeypatch.setenv("COWEST_TEST_KEY", secret)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    handler = logging.FileHandler(run_dir / "debug.log")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the SDK and httpx log requests at DEBUG: they must not carry the key either
    try:
        with FaultServer() as srv:
            cfg = ModelConfig(spec="openai/test-model", base_url=srv.base_url, api_key_env="COWEST_TEST_KEY",
                              timeout_s=2, max_retries=1)
            cb = CachedBackend(OpenAIBackend("test-model", cfg), run_dir / "cache" / "responses.sqlite")
            cb.inner.backoff_base_s = 0.01
            cb.generate([ask("plan:ok;x"), ask("plan:429,ok;y")], SamplingParams(n=2))
            with pytest.raises(RequestFailedError) as e:
                cb.generate([ask("plan:500;z")], SamplingParams())
            logging.getLogger("cowest").error("failure: %s identity=%s", e.value, cb.identity)
            cb.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert srv.auth_headers and all(h == f"Bearer {secret}" for h in srv.auth_headers)  # the key was used
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "responses.sqlite" for p in files) and (run_dir / "debug.log").stat().st_size > 0
    for p in files:
        assert secret.encode() not in p.read_bytes(), p
    assert secret not in str(e.value) and secret not in cb.identity


def test_missing_key_without_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("COWEST_TEST_NO_SUCH_KEY", raising=False)
    from cowest.core.errors import ConfigError

    with pytest.raises(ConfigError, match="COWEST_TEST_NO_SUCH_KEY"):
        OpenAIBackend("gpt-x", ModelConfig(spec="openai/gpt-x", api_key_env="COWEST_TEST_NO_SUCH_KEY"))


def test_redact_url_drops_credentials_query_fragment_and_key_like_segments():
    assert redact_url("http://user:pw@host:8000/v1?key=abc") == "http://host:8000/v1"
    assert redact_url("https://gw.example/v1/sk-proj-abcDEF123456789xyz/openai#k") == "https://gw.example/v1/***/openai"
    assert redact_url("https://gw.example/a1b2c3d4e5f6a7b8c9d0e1f2/v1") == "https://gw.example/***/v1"
    assert redact_url("https://api.example/v1/models/gpt-4o-mini") == "https://api.example/v1/models/gpt-4o-mini"
    # issue 38 item 7: a path parameter and an encoded header kept the key
    assert redact_url("http://h/v1;key=sk-abcdef123456") == "http://h/***"
    assert redact_url("http://h/v1/Bearer%20sk-abcdef123456/chat") == "http://h/v1/***/chat"
    assert redact_url("http://h/v1;version=2/chat") == "http://h/v1;version=2/chat"


@pytest.mark.parametrize("fault", ["429soon", "429date", "502", "503", "badjson", "html", "plain", "empty",
                                   "nullchoice", "content5", "finish5", "drop", "short"])
def test_each_malformed_or_faulty_reply_is_retried_and_counted(fault: str):
    """Issue 13 item 4: `Retry-After: soon`, non-string content or finish_reason, `choices: [null]` and the other
    faults are retried (never a traceback) and counted per kind."""
    prompt = f"plan:{fault},ok;x"
    with FaultServer() as srv:
        b = make(srv)
        out = b.generate([ask(prompt)], SamplingParams(seed=1))
        b.close()
    assert out[0][0].text == f"echo:{prompt}|seed=1|i=0"
    assert srv.hits[prompt] == 2 and srv.delivered[prompt] == 1
    faults, gave_up = b.tally.snapshot()
    kind = {"429soon": "http_429", "429date": "http_429", "502": "http_5xx", "503": "http_5xx",
            "drop": "connection", "short": "truncated_body"}.get(fault, "malformed")
    assert faults == {kind: 1} and not gave_up


def test_malformed_replies_exhaust_the_budget_as_a_request_failure():
    with FaultServer() as srv:
        b = make(srv, max_retries=2)
        with pytest.raises(RequestFailedError, match=r"3 attempts; last error: malformed: .*non-string content"):
            b.generate([ask("plan:content5")], SamplingParams())
    assert srv.hits["plan:content5"] == 3
    assert b.tally.snapshot() == ({"malformed": 3}, {"malformed": 1})


def test_a_trickled_body_hits_the_overall_deadline():
    """Issue 13 item 5: one byte every 0.2 s never trips a per-read timeout of 0.5 s; the attempt's deadline does."""
    with FaultServer(trickle_s=0.2) as srv:
        b = make(srv, max_retries=1, timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(RequestFailedError, match="timeout"):
            b.generate([ask("plan:trickle")], SamplingParams())
        took = time.monotonic() - t0
    assert srv.hits["plan:trickle"] == 2
    assert took < 5, took  # two attempts of ~0.5 s and the SDK's backoff, not the ~60 s the body takes
    faults, gave_up = b.tally.snapshot()
    assert faults["deadline"] == 2 and gave_up == {"timeout": 1}


def test_one_failed_prompt_does_not_lose_the_others():
    """Issue 13 item 6: the batch finishes; the failure carries the finished results, and a stage's
    `TolerantBackend` turns the failed prompt into placeholders with `error` set."""
    prompts = [ask("plan:ok;a"), ask("plan:400;b"), ask("plan:500,ok;c")]
    with FaultServer() as srv:
        b = make(srv)
        with pytest.raises(PartialFailure) as e:
            b.generate(prompts, SamplingParams(seed=2))
        assert set(e.value.errors) == {1} and e.value.results[0][0].text == "echo:plan:ok;a|seed=2|i=0"
        assert e.value.results[2][0].text == "echo:plan:500,ok;c|seed=2|i=0"
        out = TolerantBackend(b).generate(prompts, SamplingParams(seed=2, n=2))
    assert [g.error is None for g in out[0]] == [True, True]
    assert [g.text for g in out[1]] == ["", ""] and all("HTTP 400" in g.error for g in out[1])
    assert out[2][0].error is None


def test_a_key_in_the_base_url_path_reaches_neither_the_cache_nor_an_error(tmp_path: Path):
    """Issue 13 item 10: the request goes to the real URL; identity, SQLite file and messages show `***`."""
    secret = "sk-live-A1b2C3d4E5f6G7h8I9j0"
    with FaultServer() as srv:
        url = srv.base_url.replace("/v1", f"/{secret}/v1")
        cfg = ModelConfig(spec="openai/m", base_url=url, api_key_env="COWEST_TEST_NO_SUCH_KEY", max_retries=0)
        cb = CachedBackend(OpenAIBackend("m", cfg), tmp_path / "responses.sqlite")
        ok = cb.generate([ask("plan:ok;k")], SamplingParams())
        with pytest.raises(RequestFailedError) as e:
            cb.generate([ask("plan:500;k")], SamplingParams())
        cb.close()
    assert ok[0][0].text.startswith("echo:plan:ok;k")
    assert secret not in cb.identity and "/***/v1" in cb.identity
    assert secret not in str(e.value) and "/***/v1" in str(e.value)
    for p in tmp_path.iterdir():
        assert secret.encode() not in p.read_bytes(), p
