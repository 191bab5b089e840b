"""Malformed HTTP requests against a real `cowest serve` app on 127.0.0.1: each gets a 4xx with an OpenAI-style
error body and a log line, never a 500 or a traceback (in the reply or in the server's log).

The cases: the ones issue 13 reported, then generated variants (each field of a good request given values of the
wrong type, bodies cut short at every structural point, nesting, sizes, content types, auth headers).
"""

from __future__ import annotations

import json
import logging
import random

import httpx
import pytest

pytest.importorskip("uvicorn")

from test_serve import TOKEN, Served, log_rows, mock_collab  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
GOOD = {"model": "cowest", "messages": [{"role": "user", "content": "What is six times seven?"}]}
GOOD_RAW = json.dumps(GOOD).encode()


def with_(**fields: object) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def reported() -> list[tuple[str, bytes, dict]]:
    """The cases the issue names."""
    return [
        ("non-utf-8 body", b'{"model": "cowest", "messages": [{"role": "user", "content": "caf\xe9"}]}', JSON),
        ("nested 100k deep", b"[" * 100_000 + b"]" * 100_000, JSON),
        ("text 5", with_(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]), JSON),
        ("text null", with_(messages=[{"role": "user", "content": [{"type": "text", "text": None}]}]), JSON),
        ("max_tokens -1", with_(max_tokens=-1), JSON),
        ("temperature -3", with_(temperature=-3), JSON),
        ("top_p 7", with_(top_p=7), JSON),
    ]


def wrong_types() -> list[tuple[str, bytes, dict]]:
    """Every field of a good request with values of the wrong type."""
    bad = {"model": [5, None, ["cowest"]], "messages": ["hi", 5, None, {}, [5], [{"role": "pirate", "content": "x"}],
                                                         [{"content": "no role"}],
                                                         [{"role": "user", "content": {"text": "x"}}],
                                                         [{"role": "user", "content": [5]}]],
           "max_tokens": ["ten", 1.5, [1]], "temperature": ["hot", {}], "top_p": ["all"],
           "stream": [[1], {"a": 1}], "cowest": ["yes", {"return_draft": "maybe"}, {"unknown_option": 1}]}
    return [(f"{k}={json.dumps(v)[:30]}", with_(**{k: v}), JSON) for k, vs in bad.items() for v in vs]


def torn_bodies() -> list[tuple[str, bytes, dict]]:
    """The good body cut short at each structural character, plus other broken JSON."""
    cuts = [i for i, ch in enumerate(GOOD_RAW.decode()) if ch in '{[:,"']
    cases = [(f"cut at {i}", GOOD_RAW[:i], JSON) for i in cuts[::3]]
    return cases + [("empty body", b"", JSON), ("a number", b"42", JSON), ("a list", b"[1, 2]", JSON),
                    ("NaN temperature", GOOD_RAW[:-1] + b', "temperature": NaN}', JSON),
                    ("trailing garbage", GOOD_RAW + b"xyz", JSON), ("utf-16", json.dumps(GOOD).encode("utf-16"), JSON),
                    ("random bytes", random.Random(0).randbytes(300), JSON)]


def other_requests() -> list[tuple[str, bytes, dict]]:
    """Sizes, content types and auth."""
    return [
        ("over max_request_bytes", with_(messages=[{"role": "user", "content": "x" * 400_000}]), JSON),
        ("prompt over max_prompt_chars", with_(messages=[{"role": "user", "content": "y" * 1000}]), JSON),
        ("text/plain", GOOD_RAW, {**AUTH, "Content-Type": "text/plain"}),
        ("form", b"model=cowest", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}),
        ("no auth", GOOD_RAW, {"Content-Type": "application/json"}),
        ("wrong token", GOOD_RAW, {"Authorization": "Bearer nope", "Content-Type": "application/json"}),
        ("basic auth", GOOD_RAW, {"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"}),
        ("token without scheme", GOOD_RAW, {"Authorization": TOKEN, "Content-Type": "application/json"}),
        ("unknown model", with_(model="gpt-4"), JSON),
        ("no user message", with_(messages=[{"role": "system", "content": "x"}]), JSON),
        ("blank question", with_(messages=[{"role": "user", "content": "   "}]), JSON),
        ("no messages", with_(messages=[]), JSON),
    ]


def unsupported() -> list[tuple[str, bytes, dict]]:
    """Issue 38 item 9: once silently answered with one choice, no log probabilities and no usage."""
    return [("n 0", with_(n=0), JSON), ("n many", with_(n="many"), JSON), ("n 3", with_(n=3), JSON),
            ("max_tokens true", with_(max_tokens=True), JSON), ("stream yes", with_(stream="yes"), JSON),
            ("logprobs", with_(logprobs=True), JSON), ("top_logprobs", with_(top_logprobs=2), JSON),
            ("tools required", with_(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="required"),
             JSON),
            ("include_usage not a bool", with_(stream=True, stream_options={"include_usage": "yes"}), JSON)]


CASES = reported() + wrong_types() + torn_bodies() + other_requests() + unsupported()


def test_an_unsupported_feature_is_named_as_such(server) -> None:
    s, _ = server
    for fields, param in (({"n": 3}, "n"), ({"logprobs": True}, "logprobs"), ({"tools": [{"type": "function"}]}, "tools")):
        r = httpx.post(s.url + "/v1/chat/completions", content=with_(**fields), headers=JSON, timeout=30)
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "unsupported_parameter" and err["param"] == param
        assert err["message"].startswith(f"'{param}': not supported by cowest serve (")
    ok = httpx.post(s.url + "/v1/chat/completions", content=with_(n=1, tool_choice="none"), headers=JSON, timeout=30)
    assert ok.status_code == 200


def test_enough_cases() -> None:
    assert len(CASES) >= 50


@pytest.fixture(scope="module")
def server():
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(self.format(record))

    handler = Collect()
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        with Served(mock_collab(max_request_bytes=300_000, max_prompt_chars=500)) as s:
            yield s, errors
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)


@pytest.mark.parametrize("name, raw, headers", CASES, ids=[c[0] for c in CASES])
def test_malformed_request_is_a_4xx(server, name: str, raw: bytes, headers: dict) -> None:
    s, errors = server
    before = len(s.log.getvalue().splitlines())
    r = httpx.post(s.url + "/v1/chat/completions", content=raw, headers=headers, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["message"] and len(err["message"]) < 300 and "Traceback" not in r.text
    assert [x["status"] for x in log_rows(s, 1, skip=before)] == [r.status_code]
    assert not errors, errors  # uvicorn logged no exception


def test_a_trickling_client_is_cut_after_the_receive_timeout_and_others_are_served() -> None:
    """Issue 38 item 10: connections trickling their headers or body stayed open for ever. With
    serve.receive_timeout_s=0.5, a client that sends half its headers, or its headers and a byte of body a while,
    is closed by the server; a client that sends its request in time is answered, also on the same cut-off window."""
    import socket
    import time

    with Served(mock_collab(receive_timeout_s=0.5)) as s:
        def slow(first: bytes, trickle: bytes = b"") -> tuple[bytes, float]:
            c = socket.create_connection(("127.0.0.1", s.port))
            c.settimeout(5)
            t0 = time.monotonic()
            c.sendall(first)
            try:
                for b in trickle:
                    c.sendall(bytes([b]))
                    time.sleep(0.1)
                got = c.recv(100)
            except OSError:  # reset by the server while we trickle: cut as well
                got = b""
            c.close()
            return got, time.monotonic() - t0

        got, took = slow(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        assert got == b"" and 0.4 < took < 3  # closed, not answered, about the timeout after connecting
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(GOOD_RAW)}\r\n\r\n").encode()
        got, took = slow(head, GOOD_RAW[:20])
        assert got == b"" and took < 3
        idle = socket.create_connection(("127.0.0.1", s.port))  # connects and says nothing
        time.sleep(0.8)
        idle.settimeout(2)
        assert idle.recv(10) == b""
        r = httpx.post(s.url + "/v1/chat/completions", content=GOOD_RAW, headers=JSON, timeout=30)
        assert r.status_code == 200
