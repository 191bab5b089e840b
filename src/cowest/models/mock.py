"""A deterministic backend for unit tests of pure logic (strategy wiring, batching, metrics); never for results.

Specs:
- `mock/echo`: replies with the last message's content.
- `mock/answer:<text>`: always replies `<text>`.
- `mock/rules:<file.json>`: a JSON list of `[substring, reply]`; the first rule whose substring occurs in the last
  message gives the reply (`""` matches everything); no match replies `"Answer: unknown"`.
- In Python, `MockBackend("scripted", cfg, script=fn)` replies `fn(messages)`.

Token counts are whitespace word counts; with `params.logprobs` every completion token gets logprob -0.1 (or
what `logprob` says). Every `generate` call is recorded in `calls`, so tests can check batching.
"""

from __future__ import annotations

import json
from typing import Callable

from cowest.core.config import ModelConfig
from cowest.core.errors import ConfigError
from cowest.core.records import Generation, Message, SamplingParams

Script = Callable[[list[Message]], str]


class MockBackend:
    """Deterministic replies; see the module docstring for the modes."""

    has_chat_template = True

    def __init__(self, model: str, cfg: ModelConfig | None = None, *, script: Script | None = None,
                 logprob: float = -0.1):
        self.model = model
        self.cfg = cfg
        self.identity = f"mock/{model}"
        self.logprob = logprob
        self.calls: list[tuple[list[list[Message]], SamplingParams]] = []
        self.closed = False
        mode, _, arg = model.partition(":")
        if script is not None:
            self._script = script
        elif mode == "echo":
            self._script = lambda msgs: msgs[-1]["content"]
        elif mode == "answer":
            self._script = lambda msgs: arg
        elif mode == "rules":
            self._script = _rules_script(arg)
        else:
            raise ConfigError(f"mock model '{model}': use mock/echo, mock/answer:<text> or mock/rules:<file.json>")

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        self.calls.append((prompts, params))
        out = []
        for msgs in prompts:
            text = self._script(msgs)
            n_prompt = sum(len(m["content"].split()) for m in msgs)
            n_comp = len(text.split())
            lps = [self.logprob] * max(n_comp, 1) if params.logprobs else None
            gen = Generation(text=text, prompt_tokens=n_prompt, completion_tokens=n_comp, token_logprobs=lps)
            out.append([gen] * params.n)
        return out

    def close(self) -> None:
        self.closed = True


def _rules_script(path: str) -> Script:
    from cowest.core.files import CONFIG_LIMIT, read_bounded

    try:
        rules = json.loads(read_bounded(path, CONFIG_LIMIT, "mock rules file (a JSON list of [substring, reply])"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"mock rules file {path}: {e}") from None
    if not isinstance(rules, list) or not all(isinstance(r, list) and len(r) == 2 for r in rules):
        raise ConfigError(f"mock rules file {path}: expected a JSON list of [substring, reply] pairs")

    def script(msgs: list[Message]) -> str:
        last = msgs[-1]["content"]
        for sub, reply in rules:
            if sub in last:
                return reply
        return "Answer: unknown"

    return script
