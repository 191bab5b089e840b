"""`cowest serve`: the weak-strong collaboration behind an OpenAI-compatible HTTP endpoint.

The served model drafts with the weak model (aligned when an adapter is given or the run folder has one) from the
last user message, then the strong model reads question + draft and writes the reply. This module holds the model
side (`Collaboration`: backends, prompts, the draft and answer calls) and the bearer token; the HTTP side is
`cowest.serve_app`, the request it accepts `cowest.serve_request`, the command `cowest.cli.serve`.

Draft and non-streamed answer calls block, so the app runs them in its own thread pool; local backends (llama.cpp,
transformers) are not safe to call from two threads at once, so each is guarded by a lock, while an
OpenAI-compatible backend runs requests concurrently. A streamed answer from an OpenAI-compatible strong model is
async (the SDK's AsyncOpenAI), so a client that leaves cancels it and closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator

from cowest.core.config import ExperimentConfig, ModelConfig
from cowest.core.errors import ConfigError, CowestError, require
from cowest.core.layout import ADAPTER_CONFIG
from cowest.core.progress import log
from cowest.models.openai_backend import malformed_backoff_s
from cowest.core.records import Generation, Message, Sample, SamplingParams
from cowest.routing.routers import ANSWERLESS_FORMATS


class _Locked:
    """A backend called by one thread at a time (llama.cpp and torch models keep per-call state)."""

    def __init__(self, inner: Any):
        self.inner, self._lock = inner, threading.Lock()
        self.identity, self.has_chat_template = inner.identity, inner.has_chat_template

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        with self._lock:
            return self.inner.generate(prompts, params)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Delta:
    """A piece of a streamed answer: text, and the finish reason on the last one; or, after it, the answer's token
    usage (`prompt_tokens`, `completion_tokens`) where it was asked for and the endpoint sent it."""

    text: str
    finish: str | None = None
    usage: dict[str, int] | None = None


class UpstreamError(CowestError):
    """The strong model's endpoint failed a streamed answer (after its retries, or mid-answer). The message names
    the kind of failure only: no upstream URL or body reaches a client."""


def _delta(chunk: Any) -> Delta | None:
    choice = chunk.choices[0] if getattr(chunk, "choices", None) else None
    if choice is None:
        usage = getattr(chunk, "usage", None)
        return Delta("", usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}) \
            if usage is not None else None
    text = (choice.delta.content if choice.delta is not None else None) or ""
    if not isinstance(text, str):
        raise ValueError("non-string content in a stream chunk")
    return Delta(text, choice.finish_reason) if text or choice.finish_reason else None


def _is_upstream_failure(e: BaseException) -> bool:
    """Whether `e` is the endpoint's failure (an HTTP status, a timeout, a dropped connection, an error event, a
    torn chunk, an early end) rather than a bug, which re-raises."""
    import httpx

    openai = require("openai", "openai")
    return isinstance(e, (openai.APIError, httpx.HTTPError, ValueError))


def _open_failed(e: BaseException) -> UpstreamError:
    """The error of a stream the SDK could not open, after its retries (a client error is not retried)."""
    openai = require("openai", "openai")
    status = e.status_code if isinstance(e, openai.APIStatusError) else None
    retried = status is None or status in (408, 409, 429) or status >= 500
    return UpstreamError(f"strong model: request {'gave up after its retries' if retried else 'failed'} "
                         f"({type(e).__name__})")


class TruncatedStream(ValueError):
    """The upstream stream ended without a finish reason: cut off, not finished (treated as a torn body)."""


async def _deltas(stream: Any, until_text: bool = False, usage: bool = False,
                  finished: bool = False) -> AsyncIterator[Delta]:
    """The stream's deltas (with `until_text`, up to and including the first with text: the part that may be
    retried); with `usage`, also the usage chunk that follows the finish (`finished`: already seen);
    TruncatedStream when it ends before a finish reason."""
    async for chunk in stream:
        d = _delta(chunk)
        if d is None:
            continue
        yield d
        finished = finished or bool(d.finish)
        if d.usage is not None or (finished and not usage) or (until_text and d.text):
            return
    if not finished:
        raise TruncatedStream("the stream ended without a finish reason")


@dataclass
class Collaboration:
    """The served model: weak drafts, strong answers. Build with `Collaboration.load` or inject backends (tests)."""

    cfg: ExperimentConfig
    weak: Any
    strong: Any
    strong_cfg: ModelConfig | None = None
    """Set when the strong model is an OpenAI-compatible endpoint: the answer is then streamed token by token."""
    adapter: str | None = None
    router: Any = None
    """A `cowest.routing.serve_route.ServeRoute` when `route.serve` is on: the question then goes to the strong model
    only where the router says so."""
    _stream_client: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, cfg: ExperimentConfig, adapter: str | Path | None = None) -> "Collaboration":
        """Open both backends (no response cache: a server answers afresh); the weak one with `adapter` or, when
        None, the run folder's latest aligned adapter if there is one."""
        from cowest.models.base import load_backend

        remote_weak = cfg.models.weak.is_remote
        if remote_weak and adapter:
            raise CowestError("--adapter: the weak model is an openai/ endpoint, which applies its own LoRA; "
                              "name the served adapter in models.weak.spec instead")
        # an openai/ weak model is served with its adapter already (vLLM --lora-modules): nothing to apply here
        if adapter:
            adapter_path: Path | None = Path(adapter)
        elif not remote_weak:
            adapter_path, why = default_adapter(cfg)
            log(f"serve: weak adapter {adapter_path or 'none'}: {why}")
        else:
            adapter_path = None
        if adapter_path is not None and not (adapter_path / ADAPTER_CONFIG).exists():
            raise CowestError(f"--adapter {adapter_path}: not a PEFT adapter folder (no adapter_config.json)")
        from cowest.pipeline.loop import weak_model

        # One request at a time: `engine: auto` / `dtype: auto` choose what is fastest at batch 1.
        wcfg = weak_model(cfg, adapter_path).model_copy(update={"batch_size": 1})
        scfg = cfg.models.strong.model_copy(update={"batch_size": 1})
        remote = scfg.is_remote
        if cfg.route.serve:  # a missing learned router fails before any model loads
            from cowest.routing.checks import check_route

            check_route(cfg, cfg.collaboration.draft_format)
        weak = _wrap(load_backend(wcfg), wcfg)
        strong = _wrap(load_backend(scfg), scfg)
        router = None
        if cfg.route.serve:
            from cowest.routing.serve_route import ServeRoute

            router = ServeRoute.build(cfg, weak, cfg.collaboration.draft_format)
        return cls(cfg, weak, strong, strong_cfg=scfg if remote else None,
                   adapter=str(adapter_path) if adapter_path else None, router=router)

    @property
    def draft_format(self) -> str:
        return self.cfg.collaboration.draft_format

    def sample(self, question: str, request_id: str) -> Sample:
        return Sample(id=request_id, task="serve", family="qa", question=question, answers=[])

    def draft(self, sample: Sample) -> Generation:
        msgs = draft_prompt(sample, self.draft_format, self.cfg.collaboration.prompts)
        answerless = self.draft_format in ANSWERLESS_FORMATS
        params = self.router.draft_params(self.cfg.generation.weak) if self.router and not answerless \
            else self.cfg.generation.weak
        return self.weak.generate([msgs], params)[0][0]

    def draft_and_route(self, sample: Sample) -> tuple[Generation, Any]:
        """The draft and the route the question takes (a `RouteChoice`; always collaborate without a router)."""
        from cowest.routing.serve_route import COLLABORATE

        draft = self.draft(sample)
        if self.router is None or draft.error is not None:
            return draft, COLLABORATE
        return draft, self.router.choose(sample, draft, self.weak, self.cfg.generation.weak, self.draft_format)

    def answer_messages(self, sample: Sample, draft: str, route: str = "collaborate") -> list[Message]:
        """The strong model's prompt: question + draft, or (route `strong`) the question alone."""
        from cowest.tasks.prompts import refine_messages, solo_messages

        if route == "strong":
            return solo_messages(sample, self.cfg.collaboration.prompts)
        return refine_messages(sample, draft, self.draft_format, self.cfg.collaboration.prompts)

    def strong_params(self, max_tokens: int | None, temperature: float | None,
                      top_p: float | None = None) -> SamplingParams:
        """The strong model's sampling settings with a client's values: `max_tokens` clamped to
        `serve.max_tokens`, the result validated (the client's ranges are checked by the request model)."""
        upd: dict[str, Any] = {"temperature": temperature, "top_p": top_p,
                               "max_tokens": None if max_tokens is None else min(max_tokens, self.cfg.serve.max_tokens)}
        base = self.cfg.generation.strong.model_dump()
        return SamplingParams.model_validate({**base, **{k: v for k, v in upd.items() if v is not None}})

    def answer(self, sample: Sample, draft: str, params: SamplingParams, route: str = "collaborate") -> Generation:
        """The strong model's answer to question + draft (or the question alone), blocking."""
        return self.strong.generate([self.answer_messages(sample, draft, route)], params)[0][0]

    @property
    def streams(self) -> bool:
        """Whether the strong backend streams the answer (an OpenAI-compatible endpoint does; local ones don't)."""
        return self.strong_cfg is not None

    async def stream_answer(self, messages: list[Message], params: SamplingParams,
                            usage: bool = False) -> AsyncGenerator[Delta, None]:
        """Deltas of the strong answer from its OpenAI-compatible endpoint (`stream=True`, async: closing this
        generator, or cancelling the task awaiting it, closes the upstream connection).

        Opening the stream is retried by the openai SDK (`max_retries` of the strong model: 429 honouring
        Retry-After, 408, 409, 5xx, timeouts, dropped connections, with its backoff). A stream that opened but
        broke before its first text (an error event, a torn chunk, an early end) is opened again, as the
        non-streaming backend retries a malformed 2xx body, with the same budget. Past the first text a failure
        raises `UpstreamError` (the answer cannot be taken back). With `usage`, the endpoint is asked for its usage
        chunk (`stream_options.include_usage`), passed on as the last delta where it sends one."""
        assert self.strong_cfg is not None
        attempts = self.strong_cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                stream = await self._open_stream(messages, params, usage)
            except Exception as e:  # noqa: BLE001 - classified: anything else is a bug and re-raises
                if not _is_upstream_failure(e):
                    raise
                raise _open_failed(e) from None
            try:
                pending = [d async for d in _deltas(stream, until_text=True)]
                break
            except Exception as e:  # noqa: BLE001 - classified: anything else is a bug and re-raises
                await stream.close()
                if not _is_upstream_failure(e):
                    raise
                if attempt == attempts:
                    raise UpstreamError(f"strong model: stream broke before its first text {attempts} times "
                                        f"({type(e).__name__})") from None
                await asyncio.sleep(malformed_backoff_s(attempt))
        try:
            for d in pending:
                yield d
            if not pending[-1].finish or usage:
                async for d in _deltas(stream, usage=usage, finished=bool(pending[-1].finish)):
                    yield d
        except Exception as e:  # noqa: BLE001 - mid-answer: the app tells the client with an error event
            if not _is_upstream_failure(e):
                raise
            raise UpstreamError(f"strong model failed mid-answer ({type(e).__name__})") from None
        finally:
            await stream.close()

    async def _open_stream(self, messages: list[Message], params: SamplingParams, usage: bool) -> Any:
        c = self.strong_cfg
        assert c is not None  # only a streaming (openai/) strong model opens streams
        if self._stream_client is None:
            openai = require("openai", "openai")
            key = os.environ.get(c.api_key_env) or "sk-no-key"  # local servers take any key
            self._stream_client = openai.AsyncOpenAI(api_key=key, base_url=c.base_url, timeout=c.timeout_s,
                                                     max_retries=c.max_retries)
        model = c.spec.partition("/")[2]
        return await self._stream_client.chat.completions.create(
            model=model, messages=messages, temperature=params.temperature, top_p=params.top_p,
            max_tokens=params.max_tokens, stream=True, **({"stop": params.stop} if params.stop else {}),
            **({"stream_options": {"include_usage": True}} if usage else {}))

    async def aclose(self) -> None:
        """Close the streaming client (its connections belong to the event loop that used them)."""
        if self._stream_client is not None:
            await self._stream_client.close()
            self._stream_client = None

    def close(self) -> None:
        self.weak.close()
        self.strong.close()


def _wrap(backend: Any, mcfg: ModelConfig) -> Any:
    return backend if mcfg.is_remote else _Locked(backend)


def draft_prompt(sample: Sample, fmt: str, overrides: dict[str, str] | None) -> list[Message]:
    from cowest.tasks.prompts import draft_messages

    return draft_messages(sample, fmt, overrides)


def latest_aligned_adapter(cfg: ExperimentConfig) -> Path | None:
    """The aligned adapter (align.method) of the highest round that has one (a run may have gone past
    cfg.rounds), else None."""
    from cowest.core.layout import RunLayout

    return RunLayout.of(cfg).latest_aligned_adapter(cfg.align.method)


def default_adapter(cfg: ExperimentConfig) -> tuple[Path | None, str]:
    """The adapter served when none is named, and why: the run's best by its last alignment check
    (`align.select_split`, cowest.core.selection), else the latest aligned adapter, else none (the base model)."""
    from cowest.core.layout import RunLayout
    from cowest.core.selection import best_adapter

    sel = best_adapter(RunLayout.of(cfg))
    if sel is not None and (Path(sel.best) / ADAPTER_CONFIG).exists():
        return Path(sel.best), f"the run's best by its alignment check ({sel.why})"
    latest = latest_aligned_adapter(cfg)
    if latest is not None:
        return latest, "the latest aligned adapter (no alignment check recorded: align.select_split unset)"
    return None, "no aligned adapter in the run folder: the base weak model"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_token(cfg: ExperimentConfig, insecure_no_auth: bool) -> str | None:
    """The bearer token from `serve.token_env`; without one, refuse to start unless auth is explicitly off on
    a loopback address."""
    token = os.environ.get(cfg.serve.token_env)
    if token:
        return token
    if not insecure_no_auth:
        raise ConfigError(f"serve: set the environment variable {cfg.serve.token_env} to the bearer token clients "
                          "must send (or pass --insecure-no-auth on a loopback host)")
    if not is_loopback(cfg.serve.host):
        raise ConfigError(f"serve: --insecure-no-auth is only allowed on a loopback host, not '{cfg.serve.host}'")
    return None
