"""The one batch interface every backend implements, and spec-string dispatch.

`generate(prompts, params)` takes a list of chat-message prompts and returns, per prompt, `params.n` generations.
Local backends batch; HTTP backends run requests concurrently inside `generate`, so callers stay synchronous.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cowest.core.config import ModelConfig
from cowest.core.records import Generation, Message, SamplingParams
from cowest.core.registry import Registry


@runtime_checkable
class Backend(Protocol):
    identity: str
    """Stable identity of the weights (provider, model, weights hash, adapter): part of every cache key."""

    has_chat_template: bool

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]: ...

    def close(self) -> None: ...


# provider name -> factory(model: str, cfg: ModelConfig) -> Backend
PROVIDERS: Registry = Registry("model provider")
PROVIDERS.register("hf", "cowest.models.hf:HFBackend")
PROVIDERS.register("llamacpp", "cowest.models.llamacpp:LlamaCppBackend")
PROVIDERS.register("openai", "cowest.models.openai_backend:OpenAIBackend")
PROVIDERS.register("mock", "cowest.models.mock:MockBackend")
PROVIDERS.register("embedded", "cowest.models.embedded_backend:load_embedded")


def split_spec(spec: str) -> tuple[str, str]:
    provider, sep, model = spec.partition("/")
    if not sep or not model:
        from cowest.core.errors import ConfigError

        raise ConfigError(
            f"model spec '{spec}' is not provider/model; providers: {', '.join(PROVIDERS.names())}"
        )
    PROVIDERS.check(provider)
    return provider, model


def load_backend(cfg: ModelConfig) -> Backend:
    """Build the backend a spec names. Heavy libraries are imported here, not at `import cowest`."""
    provider, model = split_spec(cfg.spec)
    if cfg.engine == "vllm":
        from cowest.models.vllm_server import VLLMBackend

        return VLLMBackend(cfg)
    return PROVIDERS.get(provider)(model, cfg)
