"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, TGI, Azure) through the SDK.

Requests run concurrently inside `generate` (`cfg.concurrency` in flight). The SDK's own retries are off
(`max_retries=0`): the loop here retries 429 (honouring Retry-After), 5xx, timeouts, dropped connections and
malformed bodies with exponential backoff, so the attempt budget is exactly `cfg.max_retries` retries. The API key
is read from the environment variable `cfg.api_key_env` and handed to the SDK client only: it is never part of
`identity` (which goes into cache keys), of an error message or of a log line.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cowest.config import ModelConfig
from cowest.errors import ConfigError, CowestError, require
from cowest.records import Generation, Message, SamplingParams

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "EMPTY"
"""Sent to a local server (any `base_url`) when no key is set: the SDK refuses an empty key, servers ignore it."""


class RequestFailedError(CowestError):
    """A request that failed for good: a client error, or a retryable one after the whole retry budget."""


class MalformedResponse(Exception):
    """A 2xx answer that is not a usable chat completion (bad JSON, no choices)."""


@dataclass
class _Failure:
    status: int | None
    reason: str
    retry_after: float | None = None
    retryable: bool = True


def redact_url(url: str) -> str:
    """The URL without user:password@ (credentials may hide there) or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible endpoint, concurrent and retried."""

    has_chat_template = True  # the server applies the model's template
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    """Longest Retry-After honoured; a longer one is capped (a server asking for hours is better seen failing)."""

    def __init__(self, model: str, cfg: ModelConfig):
        openai = require("openai", "openai")
        self._openai = openai
        self.model = model
        self.cfg = cfg
        self.endpoint = redact_url(cfg.base_url or DEFAULT_ENDPOINT)
        key = os.environ.get(cfg.api_key_env)
        if not key:
            if cfg.base_url is None:
                raise ConfigError(
                    f"models: openai/{model} needs an API key: set the environment variable {cfg.api_key_env} "
                    "(or point base_url at a local server)"
                )
            key = PLACEHOLDER_KEY
        self._client = openai.OpenAI(api_key=key, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s)
        self.identity = f"openai/{model}@{self.endpoint}"
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        """Counters over this backend's life: HTTP requests (retries included) and the tokens of the usage fields."""

    # -- one HTTP request, retried ------------------------------------------------------------------------------
    def _classify(self, e: BaseException) -> _Failure:
        o = self._openai
        if isinstance(e, o.APIStatusError):
            status = e.status_code
            retryable = status == 429 or status >= 500 or status in (408, 409)
            ra = parse_retry_after(e.response.headers) if status in (429, 503) else None
            return _Failure(status, f"HTTP {status}", ra, retryable)
        if isinstance(e, o.APITimeoutError):
            return _Failure(None, f"timeout after {self.cfg.timeout_s:g} s")
        if isinstance(e, o.APIConnectionError):
            return _Failure(None, "connection error (dropped or refused)")
        if isinstance(e, (MalformedResponse, ValueError, o.APIResponseValidationError)):
            return _Failure(None, f"malformed response ({type(e).__name__})")
        raise e

    def _request(self, messages: list[Message], params: SamplingParams, n: int, seed: int | None) -> tuple[Any, float]:
        kwargs: dict[str, Any] = dict(model=self.model, messages=messages, temperature=params.temperature,
                                      top_p=params.top_p, max_tokens=params.max_tokens)
        if n > 1:
            kwargs["n"] = n
        if params.stop:
            kwargs["stop"] = params.stop
        if seed is not None:
            kwargs["seed"] = seed
        if params.logprobs:
            kwargs["logprobs"] = True
        attempts = self.cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            t0 = time.perf_counter()
            try:
                with self._count_lock:
                    self.requests_sent += 1
                resp = self._client.chat.completions.create(**kwargs)
                if not hasattr(resp, "choices") or not resp.choices or any(
                    c.message is None for c in resp.choices
                ):
                    raise MalformedResponse("no choices")
                return resp, time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - classified below; unknown errors re-raise
                fail = self._classify(e)
            if not fail.retryable or attempt == attempts:
                what = "failed" if not fail.retryable else f"gave up after {attempts} attempts"
                raise RequestFailedError(
                    f"openai endpoint {self.endpoint} (model '{self.model}'): request {what}; "
                    f"last error: {fail.reason}" + ("" if fail.retryable else " (not retried: a client error)")
                )
            backoff = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            delay = backoff if fail.retry_after is None else min(self.retry_after_max_s, fail.retry_after)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _to_generations(self, resp: Any, latency: float, params: SamplingParams) -> list[Generation]:
        usage = getattr(resp, "usage", None)
        ptok = getattr(usage, "prompt_tokens", 0) or 0
        ctok = getattr(usage, "completion_tokens", 0) or 0
        with self._count_lock:
            self.prompt_tokens += ptok
            self.completion_tokens += ctok
        k = len(resp.choices)
        gens = []
        for i, c in enumerate(resp.choices):
            lps = None
            if params.logprobs and c.logprobs is not None and c.logprobs.content is not None:
                lps = [t.logprob for t in c.logprobs.content]
            # usage counts all choices together: share it out, the remainder to the first choices
            mine = len(lps) if lps is not None and k > 1 else ctok // k + (1 if i < ctok % k else 0)
            gens.append(Generation(text=c.message.content or "", prompt_tokens=ptok, completion_tokens=mine,
                                   finish_reason=c.finish_reason or "stop", latency_s=latency,
                                   token_logprobs=lps))
        return gens

    def _one_prompt(self, messages: list[Message], params: SamplingParams) -> list[Generation]:
        resp, dt = self._request(messages, params, params.n, params.seed)
        gens = self._to_generations(resp, dt, params)[: params.n]
        # A server that ignores `n` answers one choice: fetch the rest one by one, sample i with seed + i.
        for i in range(len(gens), params.n):
            seed = None if params.seed is None else params.seed + i
            resp, dt = self._request(messages, params, 1, seed)
            gens.append(self._to_generations(resp, dt, params)[0])
        return gens

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        if not prompts:
            return []
        workers = max(1, min(self.cfg.concurrency, len(prompts)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cowest-openai")
        try:
            futures = [pool.submit(self._one_prompt, p, params) for p in prompts]
            return [f.result() for f in futures]
        finally:
            # On a failure, queued requests are dropped; those in flight finish (the SDK cannot abort them).
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._client.close()
