"""`cowest serve` streaming through an OpenAI-compatible strong endpoint, against real sockets on 127.0.0.1: clients
that drop (before the first token and mid-answer) give their slot back and close the upstream stream; an upstream
that fails is retried before the first token and reported as an error event after it.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from cowest.core.config import ExperimentConfig, ModelConfig  # noqa: E402
from cowest.models.base import load_backend  # noqa: E402
from cowest.models.mock import MockBackend  # noqa: E402
from cowest.serve import Collaboration  # noqa: E402
from sse_upstream import SSEUpstream  # noqa: E402
from test_serve import TOKEN, Served  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stream_collab(up: SSEUpstream, weak: MockBackend | None = None, max_retries: int = 2,
                  **serve: object) -> Collaboration:
    scfg = ModelConfig(spec="openai/up", base_url=up.base_url, max_retries=max_retries)
    cfg = ExperimentConfig()
    for k, v in serve.items():
        setattr(cfg.serve, k, v)
    return Collaboration(cfg, weak or MockBackend("answer:the draft says 42"), load_backend(scfg), strong_cfg=scfg)


def slow_weak(seconds: float) -> MockBackend:
    def script(msgs: list) -> str:
        time.sleep(seconds)
        return "the draft says 42"
    return MockBackend("scripted", script=script)


def body(question: str, **more: object) -> dict:
    return {"model": "cowest", "messages": [{"role": "user", "content": question}], "stream": True, **more}


def in_flight(s: Served) -> int:
    return httpx.get(s.url + "/health", headers=AUTH).json()["in_flight"]


def wait_for(cond, within: float) -> float:
    """Seconds until `cond()` held; fails past `within`."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.02)
    return time.monotonic() - t0


def raw_request(s: Served, payload: dict) -> socket.socket:
    data = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_clients_dropped_while_drafting_free_their_slots_and_skip_the_strong_call() -> None:
    with SSEUpstream() as up, Served(stream_collab(up, slow_weak(0.3), max_concurrent=4)) as s:
        socks = [raw_request(s, body("plan:ok,ok;dropped")) for _ in range(4)]
        wait_for(lambda: in_flight(s) == 4, 2)
        for sock in socks:
            sock.close()
        wait_for(lambda: in_flight(s) == 0, 1.0)  # the 0.3 s drafts end, their slots return
        assert up.hits["ok,ok"] == 0  # nobody to answer: the strong model was never called
        with httpx.Client(headers=AUTH, timeout=30) as c:
            codes = [c.post(s.url + "/v1/chat/completions", json=body("again")).status_code for _ in range(4)]
        assert codes == [200] * 4
    log = [json.loads(x) for x in s.log.getvalue().splitlines()]
    assert sum(1 for x in log if x.get("disconnected")) == 4


@pytest.mark.parametrize("plan, seen", [("stall", 0), ("slow", 3)])
def test_clients_dropped_while_streaming_free_their_slots_and_close_the_upstream(plan: str, seen: int) -> None:
    """stall: the upstream has sent nothing yet (the response has not started); slow: tokens are flowing."""
    with SSEUpstream() as up, Served(stream_collab(up, max_concurrent=2)) as s:
        clients = [httpx.Client(headers=AUTH, timeout=30) for _ in range(2)]
        if seen:
            for c in clients:
                with c.stream("POST", s.url + "/v1/chat/completions", json=body(f"plan:{plan}")) as r:
                    lines = r.iter_lines()
                    got = [next(lines) for _ in range(2 * seen)]  # event lines and their blank separators
                    assert sum(x.startswith("data: ") for x in got) == seen
        else:
            socks = [raw_request(s, body(f"plan:{plan}")) for _ in clients]
            wait_for(lambda: up.open_streams == 2, 2)
            for sock in socks:
                sock.close()
        t_drop = time.monotonic()
        assert wait_for(lambda: in_flight(s) == 0, 1.0) < 1.0
        wait_for(lambda: len(up.cancelled) == 2 and up.open_streams == 0, 1.0)
        assert max(up.cancelled) - t_drop < 1.0  # the upstream stream was closed, not left to run
        r = httpx.post(s.url + "/v1/chat/completions", json=body("plan:ok;after"), headers=AUTH, timeout=30)
        assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
        for c in clients:
            c.close()


def test_upstream_failure_before_the_first_token_is_retried() -> None:
    with SSEUpstream() as up, Served(stream_collab(up)) as s:
        chunks = list(s.client().chat.completions.create(model="cowest", stream=True,
                                                          messages=[{"role": "user", "content": "plan:500,drop,ok"}]))
    assert up.hits["500,drop,ok"] == 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "t0 t1 t2 t3 t4 "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_sdk_retries_the_open_honouring_retry_after_and_a_torn_stream_is_opened_again() -> None:
    """Opening the stream is the openai SDK's retry (the 429's `Retry-After: 1` is waited out: its own backoff
    alone is under a second); a 200 stream that ends before its first text is opened again by serve's thin retry."""
    with SSEUpstream() as up, Served(stream_collab(up, max_retries=2)) as s:
        t0 = time.monotonic()
        chunks = list(s.client().chat.completions.create(model="cowest", stream=True,
                                                          messages=[{"role": "user", "content": "plan:429,torn,ok"}]))
        waited = time.monotonic() - t0
    assert up.hits["429,torn,ok"] == 3 and waited >= 1.0
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "t0 t1 t2 t3 t4 "


@pytest.mark.parametrize("plan, hits", [("500", 2), ("400", 1)])
def test_upstream_that_keeps_failing_is_a_plain_502_without_internals(plan: str, hits: int) -> None:
    with SSEUpstream() as up, Served(stream_collab(up, max_retries=1)) as s:
        with pytest.raises(openai.APIStatusError) as e:
            list(s.client().chat.completions.create(model="cowest", stream=True,
                                                    messages=[{"role": "user", "content": f"plan:{plan}"}]))
        assert e.value.status_code == 502 and in_flight(s) == 0
    assert up.hits[plan] == hits  # a client error (400) upstream is not retried
    assert "127.0.0.1" not in e.value.response.text and "upstream says" not in e.value.response.text


def test_upstream_failure_mid_answer_is_an_error_event_not_a_success() -> None:
    with SSEUpstream() as up, Served(stream_collab(up)) as s:
        stream = s.client().chat.completions.create(model="cowest", stream=True,
                                                    messages=[{"role": "user", "content": "plan:cut"}])
        got = []
        with pytest.raises(openai.APIError, match="mid-answer"):
            for c in stream:
                got.append(c)
        raw = httpx.post(s.url + "/v1/chat/completions", json=body("plan:cut"), headers=AUTH, timeout=30).text
        assert in_flight(s) == 0
    assert "".join(c.choices[0].delta.content or "" for c in got) == "t0 t1 "
    assert all(c.choices[0].finish_reason is None for c in got)  # no fake "stop"
    assert "[DONE]" not in raw and '"error"' in raw and "127.0.0.1" not in raw
    log = [json.loads(x) for x in s.log.getvalue().splitlines() if '"/v1/chat/completions"' in x]
    assert all(x["status"] == 200 for x in log)


def test_many_parallel_streams_with_drops_leak_no_slot() -> None:
    """A small version of benchmarks/soak_serve.py: 20 streaming clients at once, every 5th drops mid-stream."""
    with SSEUpstream(tokens=20, delay_s=0.01) as up, Served(stream_collab(up, max_concurrent=20)) as s:
        results: list[int] = []

        def client(i: int) -> None:
            with httpx.Client(headers=AUTH, timeout=30) as c, \
                    c.stream("POST", s.url + "/v1/chat/completions", json=body(f"q{i}")) as r:
                for j, line in enumerate(r.iter_lines()):
                    if i % 5 == 0 and j == 4:
                        return
                results.append(r.status_code)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        wait_for(lambda: in_flight(s) == 0, 1.0)
    assert results == [200] * 16


@pytest.mark.parametrize("upstream", [True, False], ids=["streaming endpoint", "local strong model"])
def test_stream_options_include_usage_sends_the_usage_chunk_last(upstream: bool) -> None:
    """Issue 38 item 9: `stream_options.include_usage` (once refused) gives, as the OpenAI API does, a last chunk
    with no choices and the strong answer's usage: the endpoint's own figures when the strong model streams through
    one, the local model's counts when it does not. Without it, no chunk carries a usage field."""
    from test_serve import mock_collab

    with SSEUpstream(tokens=3) as up, Served(stream_collab(up) if upstream else mock_collab()) as s:
        ask = {"model": "cowest", "stream": True, "messages": [{"role": "user", "content": "q"}]}
        chunks = list(s.client().chat.completions.create(**ask, stream_options={"include_usage": True}))
        plain = httpx.post(s.url + "/v1/chat/completions", json=body("q"), headers=AUTH, timeout=30).text
    *answer, last = chunks
    assert last.choices == [] and all(c.usage is None for c in answer) and all(c.choices for c in answer)
    assert answer[-1].choices[0].finish_reason == "stop"
    if upstream:  # sse_upstream's usage chunk: 11 prompt tokens, one completion token per streamed token
        assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (11, 3, 14)
        assert "".join(c.choices[0].delta.content or "" for c in answer) == "t0 t1 t2 "
    else:
        assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert '"usage"' not in plain and plain.rstrip().endswith("data: [DONE]")
