"""OpenAIBackend against a real OpenAI-compatible server: llama-cpp-python's, serving SmolLM2 on 127.0.0.1.

Run under the shared CPU lock. The server gets n_threads=1 so it never fights the test process for the cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engines import needs_llama_cpp

from cowest.core.config import ModelConfig
from cowest.models.cache import CachedBackend
from cowest.models.embedded import gguf_path
from cowest.models.openai_backend import OpenAIBackend
from cowest.core.records import SamplingParams

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    needs_llama_cpp()
    needs_llama_cpp("sse_starlette")
    httpx = pytest.importorskip("httpx")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "cowest.models.llamacpp_server", "--model", str(gguf_path("smollm2-135m")),
           "--model_alias", "smollm2", "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "1024",
           "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90  # bounded readiness poll
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp server not ready after 90 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_backend_against_llamacpp_server(server: str, tmp_path: Path):
    cfg = ModelConfig(spec="openai/smollm2", base_url=server, api_key_env="COWEST_TEST_UNSET_KEY",
                      concurrency=2, timeout_s=60, max_retries=1)
    b = OpenAIBackend("smollm2", cfg)
    prompts = [[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
               [{"role": "user", "content": "Name a red fruit."}]]
    out = b.generate(prompts, SamplingParams(max_tokens=8, n=2, seed=1, temperature=0.7))
    assert [len(r) for r in out] == [2, 2]
    assert all(g.text.strip() and 0 < g.completion_tokens <= 8 and g.prompt_tokens > 5 for r in out for g in r)
    assert b.prompt_tokens > 0 and b.completion_tokens >= sum(g.completion_tokens for r in out for g in r) // 2
    # through the cache, a re-run reaches the server zero times
    cb = CachedBackend(b, tmp_path / "responses.sqlite")
    first = cb.generate(prompts[:1], SamplingParams(max_tokens=8))
    sent = b.requests_sent
    again = cb.generate(prompts[:1], SamplingParams(max_tokens=8))
    assert b.requests_sent == sent and again[0][0].cached and again[0][0].text == first[0][0].text
    assert "Paris" in first[0][0].text
    cb.close()
