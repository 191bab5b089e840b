"""`cowest serve`: a real HTTP server on 127.0.0.1 driven by the official `openai` client.

Auth, limits and concurrency use mock backends in an in-process uvicorn server (fast, and a scripted strong model
can be held mid-answer to fill the concurrency slots); the round trip runs `python -m cowest.cli serve` in a
subprocess with the embedded models (weak SmolLM2-135M, strong Qwen2.5-Coder-0.5B) and a few tokens.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from engines import needs_llama_cpp

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from cowest.core.config import ExperimentConfig  # noqa: E402
from cowest.models.mock import MockBackend  # noqa: E402
from uvicorn_thread import InThread, free_port  # noqa: E402
from cowest.serve import Collaboration, is_loopback, server_token  # noqa: E402
from cowest.serve_app import build_app  # noqa: E402

TOKEN = "test-token-0123456789"


class Served(InThread):
    """`cowest serve`'s app in a thread, with the app's log captured."""

    def __init__(self, collab: Collaboration, token: str | None = TOKEN):
        from cowest.serve_http import server_config

        self.log = io.StringIO()
        self.app = build_app(collab, token=token, log=self.log)
        port = free_port()
        served = collab.cfg.serve.model_copy(update={"host": "127.0.0.1", "port": port})
        super().__init__(server_config(self.app, served, log_level="error"), port)  # as `cowest serve` runs

    def client(self, token: str = TOKEN) -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.url + "/v1", api_key=token, max_retries=0)


def log_rows(s: "Served", n: int, skip: int = 0) -> list[dict]:
    """The app's log lines after the first `skip`, once there are `n` (a line is written after its response)."""
    for _ in range(200):
        rows = [json.loads(x) for x in s.log.getvalue().splitlines()[skip:]]
        if len(rows) >= n:
            return rows
        time.sleep(0.01)
    return rows


def mock_collab(strong: MockBackend | None = None, **serve: object) -> Collaboration:
    cfg = ExperimentConfig()
    for k, v in serve.items():
        setattr(cfg.serve, k, v)
    return Collaboration(cfg, MockBackend("answer:the draft says 42"), strong or MockBackend("echo"))


def ask(token: str | None = TOKEN, **body: object) -> dict:
    return {"model": "cowest", "messages": [{"role": "user", "content": "What is six times seven?"}], **body}


def test_mock_round_trip_prompts_and_draft() -> None:
    strong = MockBackend("echo")  # echoes the refine prompt: shows what the strong model was given
    with Served(mock_collab(strong)) as s:
        resp = s.client().chat.completions.create(model="cowest", messages=ask()["messages"],
                                                  extra_body={"cowest": {"return_draft": True}})
        plain = s.client().chat.completions.create(model="cowest", messages=ask()["messages"])
    answer = resp.choices[0].message.content
    assert "What is six times seven?" in answer and "the draft says 42" in answer  # question + draft reached strong
    assert resp.model_extra["cowest"]["draft"] == "the draft says 42"
    assert resp.model_extra["cowest"]["draft_format"] == "cot"
    assert set(resp.model_extra["cowest"]) == {"draft", "draft_format", "draft_tokens"}  # no weak model path
    assert "cowest" not in (plain.model_extra or {})
    assert len(strong.calls) == 2
    lines = [json.loads(x) for x in s.log.getvalue().splitlines()]
    chat = [x for x in lines if x["path"] == "/v1/chat/completions"]
    assert [x["status"] for x in chat] == [200, 200] and all("completion_tokens" in x for x in chat)
    assert TOKEN not in s.log.getvalue() and "six times seven" not in s.log.getvalue()  # no secrets, no prompts


def test_log_prompts_on_puts_question_in_log() -> None:
    with Served(mock_collab(log_prompts=True)) as s:
        s.client().chat.completions.create(model="cowest", messages=ask()["messages"])
    assert "six times seven" in s.log.getvalue() and TOKEN not in s.log.getvalue()


def test_auth_refused() -> None:
    with Served(mock_collab()) as s:
        with pytest.raises(openai.AuthenticationError):
            s.client(token="wrong").chat.completions.create(model="cowest", messages=ask()["messages"])
        r = httpx.post(s.url + "/v1/chat/completions", json=ask())  # no Authorization header
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(s.url + "/v1/models").status_code == 401
        assert httpx.get(s.url + "/health").json() == {"status": "ok"}  # liveness needs no token, says no more
        assert httpx.get(s.url + "/health", headers={"Authorization": "Bearer wrong"}).json() == {"status": "ok"}
        full = httpx.get(s.url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert full["in_flight"] == 0 and full["max_concurrent"] == 4


def test_limits_and_bad_requests() -> None:
    h = {"Authorization": f"Bearer {TOKEN}"}
    with Served(mock_collab(max_request_bytes=2000, max_prompt_chars=100)) as s:
        big = ask(messages=[{"role": "user", "content": "x" * 5000}])
        assert httpx.post(s.url + "/v1/chat/completions", json=big, headers=h).status_code == 413
        long = ask(messages=[{"role": "user", "content": "y" * 500}])
        r = httpx.post(s.url + "/v1/chat/completions", json=long, headers=h)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        r = httpx.post(s.url + "/v1/chat/completions", content=b'{"model": "cowest", "messages": [',
                       headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        r = httpx.post(s.url + "/v1/chat/completions", json={"model": "cowest", "messages": "hi"}, headers=h)
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(model="gpt-4"), headers=h)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(messages=[{"role": "system", "content": "x"}]),
                       headers=h)
        assert r.status_code == 400
        with pytest.raises(openai.BadRequestError):  # the client sees the length limit as a 400
            s.client().chat.completions.create(model="cowest", messages=long["messages"])


def held_strong(release: threading.Event) -> MockBackend:
    def script(msgs: list) -> str:
        release.wait(30)
        return "Answer: 42"
    return MockBackend("scripted", script=script)


def wait_in_flight(s: Served, n: int) -> None:
    for _ in range(1000):
        if httpx.get(s.url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()["in_flight"] == n:
            return
        time.sleep(0.01)
    raise AssertionError(f"never saw {n} requests in flight")


def test_concurrency_limit_429_then_recovers() -> None:
    release = threading.Event()
    h = {"Authorization": f"Bearer {TOKEN}"}
    with Served(mock_collab(held_strong(release), max_concurrent=2)) as s:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h, timeout=30).status_code))
            for _ in range(2)]
        for t in threads:
            t.start()
        wait_in_flight(s, 2)
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        release.set()
        for t in threads:
            t.join(30)
        assert results == [200, 200]
        assert httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h).status_code == 200


def test_timeout_504_keeps_slot_until_the_call_ends() -> None:
    release = threading.Event()
    h = {"Authorization": f"Bearer {TOKEN}"}
    with Served(mock_collab(held_strong(release), timeout_s=0.2, max_concurrent=1)) as s:
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        # the model call is still running in its thread: its slot stays taken until it finishes
        assert httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h).status_code == 429
        release.set()
        wait_in_flight(s, 0)


def test_stream_local_strong_is_one_chunk() -> None:
    with Served(mock_collab(MockBackend("answer:Answer: 42"))) as s:
        stream = s.client().chat.completions.create(model="cowest", messages=ask()["messages"], stream=True,
                                                    extra_body={"cowest": {"return_draft": True}})
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Answer: 42"
    assert chunks[0].model_extra["cowest"]["draft"] == "the draft says 42"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_token_required_unless_insecure_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ExperimentConfig()
    monkeypatch.delenv(cfg.serve.token_env, raising=False)
    with pytest.raises(Exception, match="COWEST_SERVE_TOKEN"):
        server_token(cfg, insecure_no_auth=False)
    assert server_token(cfg, insecure_no_auth=True) is None
    cfg.serve.host = "0.0.0.0"
    with pytest.raises(Exception, match="loopback"):
        server_token(cfg, insecure_no_auth=True)
    monkeypatch.setenv(cfg.serve.token_env, "abc")
    assert server_token(cfg, insecure_no_auth=False) == "abc"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("10.0.0.1")


def test_cli_refuses_to_start_without_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COWEST_SERVE_TOKEN"}
    p = subprocess.run([sys.executable, "-m", "cowest.cli", "serve", "configs/demo.yaml", "--host", "0.0.0.0",
                        "--insecure-no-auth"], capture_output=True, text=True, env=env,
                       cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert p.returncode == 2 and "loopback" in p.stderr


# ---- real models, real subprocess ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory):
    needs_llama_cpp()
    tmp = tmp_path_factory.mktemp("serve")
    cfg = tmp / "serve.yaml"
    cfg.write_text(f"run_dir: {tmp / 'run'}\nmodels:\n  strong: {{spec: embedded/qwen2.5-coder-0.5b}}\n"
                   "generation:\n  weak: {max_tokens: 12}\n  strong: {max_tokens: 12}\n")
    port = free_port()
    env = {**os.environ, "COWEST_SERVE_TOKEN": TOKEN}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cowest.cli", "serve", str(cfg), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield url, tmp / "server.log"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_real_round_trip_with_openai_client(real_server) -> None:
    url, log = real_server
    client = openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0, timeout=300)
    models = client.models.list()
    assert [m.id for m in models.data] == ["cowest"]
    assert not {"weak", "strong", "adapter"} & set(models.data[0].model_extra or {})  # no paths to clients
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    resp = client.chat.completions.create(model="cowest", messages=msgs, max_tokens=8,
                                          extra_body={"cowest": {"return_draft": True}})
    assert resp.choices[0].message.content.strip()
    assert resp.model_extra["cowest"]["draft"].strip()
    assert 0 < resp.usage.completion_tokens <= 8
    chunks = list(client.chat.completions.create(model="cowest", messages=msgs, max_tokens=8, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == resp.choices[0].message.content  # greedy decoding: the same answer, sent as one chunk
    # A stream's log line is written when the server's stream ends, which may be just after the client read [DONE].
    deadline = time.monotonic() + 10
    while True:
        rows = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        statuses = [r["status"] for r in rows if r["path"] == "/v1/chat/completions"]
        if len(statuses) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert statuses == [200, 200]
    assert not any("France" in x for x in log.read_text().splitlines())


def test_stream_through_an_openai_strong_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """An `openai/` strong model streams: here the upstream is another cowest server (an OpenAI-compatible endpoint
    itself), so the outer server's answer arrives as the upstream's SSE deltas."""
    from cowest.core.config import ModelConfig
    from cowest.models.base import load_backend

    with Served(mock_collab(MockBackend("answer:Answer: 42"))) as upstream:
        monkeypatch.setenv("UPSTREAM_KEY", TOKEN)
        scfg = ModelConfig(spec="openai/cowest", base_url=upstream.url + "/v1", api_key_env="UPSTREAM_KEY")
        cfg = ExperimentConfig()
        outer = Collaboration(cfg, MockBackend("answer:the draft says 42"), load_backend(scfg), strong_cfg=scfg)
        assert outer.streams
        with Served(outer) as s:
            chunks = list(s.client().chat.completions.create(model="cowest", messages=ask()["messages"],
                                                             stream=True))
            plain = s.client().chat.completions.create(model="cowest", messages=ask()["messages"])
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Answer: 42"
    assert plain.choices[0].message.content == "Answer: 42"
    assert chunks[-1].choices[0].finish_reason == "stop"


# ---- hardening (issue 13) ---------------------------------------------------------------------------------------

H = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def chunked_post(s: Served, chunks: list[bytes], finish: bool) -> bytes:
    """POST a chunked body (no Content-Length) over a raw socket; `finish=False` never ends it. The raw reply."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\r\n".encode())
        for c in chunks:
            sock.sendall(f"{len(c):x}\r\n".encode() + c + b"\r\n")
        if finish:
            sock.sendall(b"0\r\n\r\n")
        return sock.recv(65536)


def test_chunked_body_over_the_limit_is_refused_before_it_ends() -> None:
    with Served(mock_collab(max_request_bytes=2000)) as s:
        reply = chunked_post(s, [b"{" + b" " * 999, b" " * 1000, b" " * 1000], finish=False)
        assert reply.startswith(b"HTTP/1.1 413")
        body = json.dumps(ask()).encode()
        assert chunked_post(s, [body[:20], body[20:]], finish=True).startswith(b"HTTP/1.1 200")
    assert [r["status"] for r in log_rows(s, 2)] == [413, 200]


@pytest.mark.parametrize("name, raw", [
    ("not utf-8", b'{"model": "cowest", "messages": [{"role": "user", "content": "\xff\xfe caf\xe9"}]}'),
    ("nested 100k", b"[" * 100_000 + b"]" * 100_000),
    ("nested in a field", b'{"model": "cowest", "messages": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("text is a number", json.dumps(ask(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]))
     .encode()),
    ("text is null", json.dumps(ask(messages=[{"role": "user", "content": [{"type": "text", "text": None}]}]))
     .encode()),
])
def test_malformed_bodies_are_400_with_a_log_line(name: str, raw: bytes) -> None:
    with Served(mock_collab()) as s:
        r = httpx.post(s.url + "/v1/chat/completions", content=raw, headers=H)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and len(r.json()["error"]["message"]) < 300
    assert [x["status"] for x in log_rows(s, 1)] == [400]


def test_text_parts_reach_the_model() -> None:
    strong = MockBackend("echo")
    parts = [{"type": "text", "text": "What is six "}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "times seven?"}]
    with Served(mock_collab(strong)) as s:
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(messages=[{"role": "user", "content": parts}]),
                       headers=H)
    assert r.status_code == 200 and "What is six times seven?" in r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("field, value", [("max_tokens", -1), ("max_tokens", 0), ("max_completion_tokens", -5),
                                          ("temperature", -3), ("temperature", 2.5), ("top_p", 7), ("top_p", -0.1)])
def test_client_sampling_values_out_of_range_are_400(field: str, value: float) -> None:
    strong = MockBackend("echo")
    with Served(mock_collab(strong)) as s:
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(**{field: value}), headers=H)
    assert r.status_code == 400 and r.json()["error"]["param"] == field
    assert strong.calls == []


def test_client_sampling_values_are_clamped_and_passed() -> None:
    strong = MockBackend("echo")
    with Served(mock_collab(strong, max_tokens=64)) as s:
        for extra in ({"max_tokens": 10**9, "temperature": 0.7, "top_p": 0.9}, {"max_completion_tokens": 12}):
            assert httpx.post(s.url + "/v1/chat/completions", json=ask(**extra), headers=H).status_code == 200
    first, second = strong.calls[0][1], strong.calls[1][1]
    assert (first.max_tokens, first.temperature, first.top_p) == (64, 0.7, 0.9)
    assert second.max_tokens == 12 and second.temperature == 0.0


@pytest.mark.parametrize("override, key", [("serve.max_concurrent=0", "serve.max_concurrent"),
                                           ("serve.port=70000", "serve.port"), ("serve.port=0", "serve.port"),
                                           ("serve.max_request_bytes=-1", "serve.max_request_bytes"),
                                           ("serve.timeout_s=0", "serve.timeout_s"),
                                           ("serve.max_tokens=0", "serve.max_tokens")])
def test_serve_config_ranges_are_one_line_errors(override: str, key: str) -> None:
    from cowest.core.config import load_config
    from cowest.core.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"'{key}'" in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_port_is_a_one_line_error() -> None:
    env = {**os.environ, "COWEST_SERVE_TOKEN": TOKEN}
    p = subprocess.run([sys.executable, "-m", "cowest.cli", "serve", "configs/demo.yaml", "--port", "70000"],
                       capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert p.returncode == 2 and "serve.port" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_upstream_urls_and_adapter_paths_never_reach_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    from cowest.core.config import ModelConfig
    from cowest.models.base import load_backend

    scfg = ModelConfig(spec="openai/secret-model", base_url="http://127.0.0.1:9/v1/internal-route", max_retries=0)
    cfg = ExperimentConfig()
    collab = Collaboration(cfg, MockBackend("answer:d"), load_backend(scfg), strong_cfg=scfg,
                           adapter="/home/me/private/adapter")
    with Served(collab) as s:
        texts = [httpx.get(s.url + "/v1/models", headers=H).text,
                 httpx.post(s.url + "/v1/chat/completions", json=ask(cowest={"return_draft": True}), headers=H).text,
                 httpx.post(s.url + "/v1/chat/completions", json=ask(stream=True), headers=H).text]
    assert all(x for x in texts)
    for text in texts:
        assert "127.0.0.1:9" not in text and "internal-route" not in text and "private" not in text


def test_client_gone_mid_upload_is_logged_as_499_not_500() -> None:
    with Served(mock_collab()) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                         + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\r\n".encode()
                         + b'{"model": "cowest", ')
            time.sleep(0.1)
        rows = log_rows(s, 1)
    assert [r["status"] for r in rows] == [499]


def test_sampling_settings_the_strong_model_refuses_are_a_400_and_take_no_slot() -> None:
    """top_p 0 lies in OpenAI's range but not in the strong model's settings: the client gets a one-line 400 naming
    the field, and (one slot) the next request is still answered; before, each such request kept its slot for good."""
    h = {"Authorization": f"Bearer {TOKEN}"}
    with Served(mock_collab(max_concurrent=1)) as s:
        for _ in range(2):
            r = httpx.post(s.url + "/v1/chat/completions", json=ask(top_p=0), headers=h)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "top_p" and "top_p" in r.json()["error"]["message"]
        assert httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h).status_code == 200
        wait_in_flight(s, 0)


def test_a_failure_between_admission_and_answer_gives_the_slot_back() -> None:
    """Anything that raises after the slot is taken (here the request's sample, scripted to fail once) releases it:
    a JSON 500 for that request, then (one slot) the next is answered."""
    collab = mock_collab(max_concurrent=1)
    real_sample, failures = collab.sample, [RuntimeError("scripted failure")]

    def sample_failing_once(question: str, request_id: str) -> object:
        if failures:
            raise failures.pop()
        return real_sample(question, request_id)

    collab.sample = sample_failing_once  # type: ignore[method-assign]
    h = {"Authorization": f"Bearer {TOKEN}"}
    with Served(collab) as s:
        r = httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error" and not failures
        assert httpx.post(s.url + "/v1/chat/completions", json=ask(), headers=h).status_code == 200
        wait_in_flight(s, 0)
