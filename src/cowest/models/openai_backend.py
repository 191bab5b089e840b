"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, TGI, Azure) through the SDK.

Requests run concurrently inside `generate` (`cfg.concurrency` in flight). Retries are the openai SDK's own
(`max_retries=cfg.max_retries`: 429 honouring Retry-After, 408/409, 5xx, timeouts, dropped connections, with its
exponential backoff); the loop here only adds a thin retry, with the same budget, for a 2xx body that is not a
usable chat completion (torn JSON, another content type, no or null choices, non-string content). Each HTTP
attempt has an overall deadline of `cfg.timeout_s` (connect, headers and body), so a server that trickles its body
a byte at a time times out like one that stalls. Every faulty attempt is counted per kind in `tally`
(`cowest.core.faults`). A batch in which some prompts fail for good still finishes the others and raises
`PartialFailure` carrying them. The API key is read from the environment variable `cfg.api_key_env` and handed
to the SDK client only: it is never part of `identity` (which goes into cache keys), of an error message or of a
log line; neither is a key-like segment of `base_url`'s path (`cowest.core.redact`).
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from cowest.core.config import ModelConfig
from cowest.core.errors import ConfigError, require
from cowest.core.faults import FaultTally, PartialFailure, RequestFailedError
from cowest.core.records import Generation, Message, SamplingParams
from cowest.core.redact import redact_url

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "EMPTY"
"""Sent to a local server (any `base_url`) when no key is set: the SDK refuses an empty key, servers ignore it."""

__all__ = ["OpenAIBackend", "RequestFailedError", "MalformedResponse", "malformed_backoff_s", "redact_url"]


class MalformedResponse(Exception):
    """A 2xx answer that is not a usable chat completion."""


def malformed_backoff_s(attempt: int, base_s: float = 0.5) -> float:
    """The wait before retrying a malformed 2xx answer (here and in `cowest serve`'s streams) after `attempt` tries:
    `base_s` doubling up to 8 s, with jitter; the SDK times its own retries."""
    return min(8.0, base_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def check_completion(resp: Any) -> None:
    """Raise `MalformedResponse` unless `resp` is a chat completion whose every choice has a message with UTF-8
    string (or null) content and a string (or null) finish_reason: the SDK builds its objects without validating
    them."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("no choices" if not isinstance(resp, str) else "not JSON")
    for c in choices:
        message = getattr(c, "message", None)
        if message is None:
            raise MalformedResponse("a choice without a message")
        content = getattr(message, "content", None)
        if not isinstance(content, (str, type(None))):
            raise MalformedResponse("non-string content")
        if content is not None and not _utf8(content):  # `\ud800` in the JSON: no file or cache can store it
            raise MalformedResponse("content with a lone surrogate (not UTF-8)")
        if not isinstance(getattr(c, "finish_reason", None), (str, type(None))):
            raise MalformedResponse("non-string finish_reason")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _transport(httpx: Any, tally: FaultTally, deadline_s: float, limits: Any) -> Any:
    """An httpx transport that counts faulty attempts and gives each attempt an overall deadline."""

    class DeadlinePassed(httpx.ReadTimeout):
        """The attempt's overall deadline (counted as `deadline`, not as the socket's own `timeout`)."""

    class DeadlineStream(httpx.SyncByteStream):
        def __init__(self, inner: Any, deadline: float, request: Any):
            self.inner, self.deadline, self.request = inner, deadline, request

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self.inner:
                    if time.monotonic() > self.deadline:
                        tally.fault("deadline")
                        raise DeadlinePassed(f"no complete answer within {deadline_s:g} s", request=self.request)
                    yield chunk
            except DeadlinePassed:
                raise
            except httpx.TimeoutException:
                tally.fault("timeout")
                raise
            except httpx.RemoteProtocolError:  # a body shorter than its Content-Length, cut by the peer
                tally.fault("truncated_body")
                raise
            except httpx.TransportError:
                tally.fault("connection")
                raise

        def close(self) -> None:
            self.inner.close()

    class CountingTransport(httpx.HTTPTransport):
        def handle_request(self, request: Any) -> Any:
            deadline = time.monotonic() + deadline_s
            tally.attempt()
            try:
                response = super().handle_request(request)
            except httpx.TimeoutException:
                tally.fault("timeout")
                raise
            except httpx.TransportError:
                tally.fault("connection")
                raise
            status = response.status_code
            if status >= 400:
                tally.fault("http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx")
            response.stream = DeadlineStream(response.stream, deadline, request)
            return response

    return CountingTransport(limits=limits)


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible endpoint, concurrent and retried."""

    has_chat_template = True  # the server applies the model's template
    backoff_base_s: float = 0.5
    """First wait before retrying a malformed 2xx body (`malformed_backoff_s`)."""

    def __init__(self, model: str, cfg: ModelConfig, *, api_key: str | None = None):
        """`api_key`: a key held in memory by the caller (a server it started), in place of `cfg.api_key_env`."""
        openai = require("openai", "openai")
        httpx = require("httpx", "openai")
        self._openai = openai
        self.model = model
        self.cfg = cfg
        self.endpoint = redact_url(cfg.base_url or DEFAULT_ENDPOINT)
        key = api_key or os.environ.get(cfg.api_key_env)
        if not key:
            if cfg.base_url is None:
                raise ConfigError(
                    f"models: openai/{model} needs an API key: set the environment variable {cfg.api_key_env} "
                    "(or point base_url at a local server)"
                )
            key = PLACEHOLDER_KEY
        self.tally = FaultTally()
        limits = httpx.Limits(max_connections=max(100, cfg.concurrency), max_keepalive_connections=max(20, cfg.concurrency))
        http_client = httpx.Client(transport=_transport(httpx, self.tally, cfg.timeout_s, limits),
                                   timeout=cfg.timeout_s, follow_redirects=True)
        self._client = openai.OpenAI(api_key=key, base_url=cfg.base_url, max_retries=cfg.max_retries,
                                     timeout=cfg.timeout_s, http_client=http_client)
        self.identity = f"openai/{model}@{self.endpoint}"
        self._count_lock = threading.Lock()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        """Counters over this backend's life: the tokens of the usage fields (HTTP attempts: `requests_sent`)."""

    @property
    def requests_sent(self) -> int:
        """HTTP attempts over this backend's life, every retry included."""
        return self.tally.attempts

    # -- one request, retried ------------------------------------------------------------------------------------
    def _failure(self, e: BaseException) -> tuple[str, str, bool]:
        """(kind, reason, retried) of an error the SDK raised after its own retries."""
        o = self._openai
        if isinstance(e, o.APIStatusError):
            status = e.status_code
            kind = "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
            return kind, f"HTTP {status}", status in (408, 409, 429) or status >= 500
        if isinstance(e, o.APITimeoutError):
            return "timeout", f"timeout after {self.cfg.timeout_s:g} s", True
        if isinstance(e, o.APIConnectionError):
            return "connection", "connection error (dropped or refused)", True
        raise e

    def _fail(self, kind: str, reason: str, retried: bool, attempts: int) -> RequestFailedError:
        self.tally.give_up(kind)
        what = f"gave up after {attempts} attempts" if retried else "failed"
        return RequestFailedError(
            f"openai endpoint {self.endpoint} (model '{self.model}'): request {what}; last error: {kind}: "
            f"{reason}" + ("" if retried else " (not retried: a client error)"), kind)

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
        o = self._openai
        attempts = self.cfg.max_retries + 1
        reason = ""
        for attempt in range(1, attempts + 1):
            t0 = time.perf_counter()
            try:
                resp = self._client.chat.completions.create(**kwargs)
                check_completion(resp)
                return resp, time.perf_counter() - t0
            except (MalformedResponse, ValueError, o.APIResponseValidationError) as e:
                # ValueError: the SDK's json.loads of a torn body
                self.tally.fault("malformed")
                reason = f"malformed response ({e if isinstance(e, MalformedResponse) else type(e).__name__})"
            except o.OpenAIError as e:
                kind, why, retried = self._failure(e)
                raise self._fail(kind, why, retried, attempts) from None
            if attempt < attempts:
                time.sleep(malformed_backoff_s(attempt, self.backoff_base_s))
        raise self._fail("malformed", reason, True, attempts)

    def _to_generations(self, resp: Any, latency: float, params: SamplingParams) -> list[Generation]:
        usage = getattr(resp, "usage", None)
        ptok = _count(getattr(usage, "prompt_tokens", 0))
        ctok = _count(getattr(usage, "completion_tokens", 0))
        with self._count_lock:
            self.prompt_tokens += ptok
            self.completion_tokens += ctok
        k = len(resp.choices)
        gens = []
        for i, c in enumerate(resp.choices):
            lps = None
            content = getattr(getattr(c, "logprobs", None), "content", None)
            if params.logprobs and isinstance(content, list):
                lps = [float(t.logprob) for t in content if isinstance(getattr(t, "logprob", None), (int, float))]
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
        """One list of `params.n` generations per prompt. When some prompts fail for good, the others still finish
        and `PartialFailure` carries them; any other error propagates at once."""
        if not prompts:
            return []
        workers = max(1, min(self.cfg.concurrency, len(prompts)))
        results: list[list[Generation] | None] = [None] * len(prompts)
        errors: dict[int, RequestFailedError] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cowest-openai") as pool:
            futures = [pool.submit(self._one_prompt, p, params) for p in prompts]
            try:
                for i, f in enumerate(futures):
                    try:
                        results[i] = f.result()
                    except RequestFailedError as e:
                        errors[i] = e
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # queued requests dropped; those in flight finish
                raise
        if errors:
            raise PartialFailure(results, errors)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._client.close()


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
