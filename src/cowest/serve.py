"""`cowest serve`: the weak-strong collaboration behind an OpenAI-compatible HTTP endpoint.

The served model drafts with the weak model (aligned when an adapter is given or the run folder has one) from the
last user message, then the strong model reads question + draft and writes the reply. This module holds the model
side (`Collaboration`: backends, prompts, one blocking call) and the command; the HTTP side is `cowest.serve_app`.

Model calls block, so the app runs them in its own thread pool; local backends (llama.cpp, transformers) are not
safe to call from two threads at once, so each is guarded by a lock, while an OpenAI-compatible backend runs
requests concurrently.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cowest.config import ExperimentConfig, ModelConfig
from cowest.errors import ConfigError, CowestError, require
from cowest.records import Generation, Message, Sample, SamplingParams


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
class Reply:
    """One collaboration: the weak draft and the strong answer, with their generations (token counts)."""

    draft: Generation
    answer: Generation


@dataclass
class Collaboration:
    """The served model: weak drafts, strong answers. Build with `Collaboration.load` or inject backends (tests)."""

    cfg: ExperimentConfig
    weak: Any
    strong: Any
    strong_cfg: ModelConfig | None = None
    """Set when the strong model is an OpenAI-compatible endpoint: the answer is then streamed token by token."""
    adapter: str | None = None
    _stream_client: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, cfg: ExperimentConfig, adapter: str | Path | None = None) -> "Collaboration":
        """Open both backends (no response cache: a server answers afresh); the weak one with `adapter` or, when
        None, the run folder's latest aligned adapter if there is one."""
        from cowest.models.base import load_backend, split_spec

        remote_weak = split_spec(cfg.models.weak.spec)[0] == "openai"
        if remote_weak and adapter:
            raise CowestError("--adapter: the weak model is an openai/ endpoint, which applies its own LoRA; "
                              "name the served adapter in models.weak.spec instead")
        # an openai/ weak model is served with its adapter already (vLLM --lora-modules): nothing to apply here
        adapter_path = Path(adapter) if adapter else (None if remote_weak else latest_aligned_adapter(cfg))
        if adapter_path is not None and not (adapter_path / "adapter_config.json").exists():
            raise CowestError(f"--adapter {adapter_path}: not a PEFT adapter folder (no adapter_config.json)")
        from cowest.loop import weak_model

        # One request at a time: `engine: auto` / `dtype: auto` choose what is fastest at batch 1.
        wcfg = weak_model(cfg, adapter_path).model_copy(update={"batch_size": 1})
        scfg = cfg.models.strong.model_copy(update={"batch_size": 1})
        remote = split_spec(scfg.spec)[0] == "openai"
        weak = _wrap(load_backend(wcfg), wcfg)
        strong = _wrap(load_backend(scfg), scfg)
        return cls(cfg, weak, strong, strong_cfg=scfg if remote else None,
                   adapter=str(adapter_path) if adapter_path else None)

    @property
    def draft_format(self) -> str:
        return self.cfg.feedback.draft_format

    def sample(self, question: str, request_id: str) -> Sample:
        return Sample(id=request_id, task="serve", family="qa", question=question, answers=[])

    def draft(self, sample: Sample) -> Generation:
        msgs = draft_prompt(sample, self.draft_format, self.cfg.eval.prompts)
        return self.weak.generate([msgs], self.cfg.generation.weak)[0][0]

    def answer_messages(self, sample: Sample, draft: str) -> list[Message]:
        from cowest.tasks.prompts import refine_messages

        return refine_messages(sample, draft, self.draft_format, self.cfg.eval.prompts)

    def strong_params(self, max_tokens: int | None, temperature: float | None) -> SamplingParams:
        p = self.cfg.generation.strong
        upd: dict[str, Any] = {}
        if max_tokens is not None:
            upd["max_tokens"] = max_tokens
        if temperature is not None:
            upd["temperature"] = temperature
        return p.model_copy(update=upd)

    def reply(self, question: str, request_id: str, params: SamplingParams) -> Reply:
        """Draft then answer, blocking (the app calls this in a worker thread)."""
        sample = self.sample(question, request_id)
        d = self.draft(sample)
        a = self.strong.generate([self.answer_messages(sample, d.text)], params)[0][0]
        return Reply(d, a)

    @property
    def streams(self) -> bool:
        """Whether the strong backend streams the answer (an OpenAI-compatible endpoint does; local ones don't)."""
        return self.strong_cfg is not None

    def stream_answer(self, messages: list[Message], params: SamplingParams) -> Iterator[str]:
        """Text deltas of the strong answer from its OpenAI-compatible endpoint (`stream=True`)."""
        assert self.strong_cfg is not None
        if self._stream_client is None:
            openai = require("openai", "openai")
            c = self.strong_cfg
            key = os.environ.get(c.api_key_env) or "sk-no-key"  # local servers take any key
            self._stream_client = openai.OpenAI(api_key=key, base_url=c.base_url, timeout=c.timeout_s, max_retries=0)
        model = self.strong_cfg.spec.partition("/")[2]
        stream = self._stream_client.chat.completions.create(
            model=model, messages=messages, temperature=params.temperature, top_p=params.top_p,
            max_tokens=params.max_tokens, stream=True, **({"stop": params.stop} if params.stop else {}))
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    def close(self) -> None:
        self.weak.close()
        self.strong.close()


def _wrap(backend: Any, mcfg: ModelConfig) -> Any:
    return backend if mcfg.spec.startswith("openai/") else _Locked(backend)


def draft_prompt(sample: Sample, fmt: str, overrides: dict[str, str] | None) -> list[Message]:
    from cowest.tasks.prompts import draft_messages

    return draft_messages(sample, fmt, overrides)


def latest_aligned_adapter(cfg: ExperimentConfig) -> Path | None:
    """The aligned adapter (align.method) of the highest round that has one, else None."""
    from cowest.loop import aligned_adapter

    for rnd in range(max(cfg.rounds, 1) + 8, 0, -1):  # a run may have gone past cfg.rounds
        p = aligned_adapter(cfg, rnd, cfg.align.method)
        if (p / "adapter_config.json").exists():
            return p
    return None


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


def cmd_serve(args: argparse.Namespace) -> int:
    from cowest.cli import config_from_args
    from cowest.serve_app import build_app

    cfg = config_from_args(args)
    if args.host:
        cfg.serve.host = args.host
    if args.port:
        cfg.serve.port = args.port
    token = server_token(cfg, args.insecure_no_auth)
    uvicorn = require("uvicorn", "serve")
    collab = Collaboration.load(cfg, args.adapter)
    app = build_app(collab, token=token)
    try:
        uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level="warning", access_log=False)
    finally:
        collab.close()
    return 0


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    """`cowest serve CONFIG [KEY=VALUE ...] [--host H] [--port P] [--adapter DIR] [--insecure-no-auth]`."""
    from cowest.cli import add_config_args

    p = sub.add_parser("serve", help="serve the collaboration as an OpenAI-compatible endpoint (/v1/chat/completions)")
    add_config_args(p)
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port, 8000)")
    p.add_argument("--adapter", default=None,
                   help="weak model adapter (default: the run folder's latest round<r>/align/adapter, else none)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="serve without a bearer token (loopback hosts only)")
    p.set_defaults(func=cmd_serve)
