"""In-process llama.cpp (llama-cpp-python) backend for GGUF files, 4-6x faster than transformers on CPU.

The prompt is rendered with the chat template stored in the GGUF (the same Jinja formatter llama-cpp-python's
`create_chat_completion` builds from the file), then decoded token by token through `Llama.generate`, so this
module sees every token: it stops on end-of-generation tokens, stop strings and `max_tokens`, counts tokens
exactly, and reads each chosen token's log-probability from the raw logits (a logits processor) without
`logits_all=True`, which would hold n_ctx x vocab floats (2.5 GB for Qwen). Sample i of a request is drawn with
seed `seed + i`, so the same request gives the same text. Sampling is plain temperature + top-p (top-k and min-p
off), the OpenAI semantics.

The wheel is an OpenMP build: two CPU-heavy processes sharing the cores make each decode stall (a 20x collapse
measured here). When something else runs beside it, give it `n_threads=1` or start the process with
`OMP_WAIT_POLICY=PASSIVE`; this module does not set the variable itself, because alone it costs ~30% speed.

A wheel built with `-march=native` on a CPU with AMX crashes (SIGSEGV in `ggml_backend_amx_mul_mat`) on the
first decode in this project's sandboxed machines, for every model tried. Such builds load models with llama.cpp's
extra buffer types off (`use_extra_bufts=False`: no AMX and no weight repacking); set `COWEST_LLAMACPP_EXTRA_BUFTS=1`
to keep them where AMX works.
"""

from __future__ import annotations

import os
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cowest.core.config import ModelConfig
from cowest.core.errors import CowestError, require
from cowest.models.identity import weights_id
from cowest.models.text import cut_at_stop, render_plain
from cowest.core.records import Generation, Message, SamplingParams


def default_threads() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_PARAMS_LOCK = threading.Lock()


def extra_bufts_unsafe(llama_cpp: Any) -> bool:
    """True when the library was built with AMX kernels (see the module notes) and the user has not opted in."""
    if os.environ.get("COWEST_LLAMACPP_EXTRA_BUFTS") == "1":
        return False
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


@contextmanager
def safe_model_params(llama_cpp: Any) -> Iterator[None]:
    """While active, `Llama(...)` loads models with `use_extra_bufts=False` when `extra_bufts_unsafe`.

    `Llama.__init__` takes its model params from `llama_model_default_params()` and exposes no argument for this
    field, so the function is swapped for the duration of the constructor (under a lock; restored after). There is
    no public way (checked in llama-cpp-python 0.3.36): `Llama` has no such argument and drops unknown keyword
    arguments, ggml reads no environment variable for it, and llama.cpp's own switch (`--no-repack`) belongs to its
    CLI and server only. Replace this with the argument once `Llama` takes one.
    """
    if not extra_bufts_unsafe(llama_cpp):
        yield
        return
    import llama_cpp.llama as high

    with _PARAMS_LOCK:
        orig = high.llama_cpp.llama_model_default_params

        def params() -> Any:
            p = orig()
            p.use_extra_bufts = False
            return p

        high.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            high.llama_cpp.llama_model_default_params = orig


class _LogprobRecorder:
    """A logits processor that keeps the log-softmax of the latest step's raw logits."""

    def __init__(self) -> None:
        self.last: np.ndarray | None = None

    def __call__(self, input_ids: Any, logits: np.ndarray) -> np.ndarray:
        x = logits.astype(np.float64)
        m = x.max()
        self.last = x - m - np.log(np.exp(x - m).sum())
        return logits


class LlamaCppBackend:
    """A GGUF model in llama.cpp, one prompt at a time (the high-level API has no multi-sequence batching)."""

    def __init__(self, model: str, cfg: ModelConfig):
        llama_cpp = require("llama_cpp", "llamacpp")
        self._lib = llama_cpp
        path = Path(model)
        if not path.is_file():
            raise CowestError(f"llamacpp: GGUF file not found: {model}")
        lora = cfg.adapter
        if lora is not None and not (Path(lora).is_file() and str(lora).endswith(".gguf")):
            raise CowestError(
                f"llamacpp: adapter '{lora}' is not a GGUF LoRA file; PEFT adapter folders load with hf/<model>"
            )
        self.cfg = cfg
        self.n_threads = cfg.n_threads or default_threads()
        with safe_model_params(llama_cpp):
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=cfg.n_ctx, n_threads=self.n_threads,
                                       n_threads_batch=self.n_threads, lora_path=lora, verbose=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.has_chat_template = bool(template)
        self._formatter = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            m = self.llm._model
            eos, bos = self.llm.token_eos(), self.llm.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=m.token_get_text(eos) if eos != -1 else "",
                bos_token=m.token_get_text(bos) if bos != -1 else "",
            )
        adapter = f"+lora@{weights_id(lora)}" if lora else ""
        self.identity = f"llamacpp/{path.name}@{weights_id(path)}{adapter}"

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The token ids the model reads for `messages` (chat template from the GGUF, else plain turns)."""
        if self._formatter is not None:
            text = self._formatter(messages=messages).prompt  # type: ignore[arg-type] # OpenAI-shaped dicts
            return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return self.llm.tokenize(render_plain(messages).encode("utf-8"), add_bos=True, special=False)

    def _is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.llm._model.vocab, token))

    def _sample(self, tokens: list[int], params: SamplingParams, seed: int) -> Generation:
        if len(tokens) >= self.cfg.n_ctx:
            raise CowestError(f"llamacpp: prompt of {len(tokens)} tokens does not fit n_ctx={self.cfg.n_ctx}")
        max_new = min(params.max_tokens, self.cfg.n_ctx - len(tokens))
        rec = _LogprobRecorder() if params.logprobs else None
        self.llm.set_seed(seed)
        t0 = time.perf_counter()
        out: list[int] = []
        lps: list[float] = []
        finish, text = "length", ""
        gen = self.llm.generate(tokens, temp=params.temperature, top_p=params.top_p, top_k=0, min_p=0.0,
                                repeat_penalty=1.0, logits_processor=[rec] if rec else None)
        for tok in gen:
            if self._is_eog(tok):
                finish = "stop"
                break
            out.append(tok)
            if rec is not None and rec.last is not None:
                lps.append(float(rec.last[tok]))
            if params.stop:
                text, hit = cut_at_stop(self.llm.detokenize(out).decode("utf-8", errors="ignore"), params.stop)
                if hit:
                    finish = "stop"
                    break
            if len(out) >= max_new:
                break
        gen.close()
        if not (params.stop and finish == "stop" and out):
            text = self.llm.detokenize(out).decode("utf-8", errors="ignore")
        return Generation(text=text, prompt_tokens=len(tokens), completion_tokens=len(out), finish_reason=finish,
                          latency_s=time.perf_counter() - t0, token_logprobs=lps if rec is not None else None)

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        results = []
        for messages in prompts:
            tokens = self.prompt_tokens(messages)
            base = params.seed if params.seed is not None else random.randrange(2**31)
            # The KV cache keeps the prompt between samples: Llama.generate reuses the longest common prefix.
            results.append([self._sample(tokens, params, base + i) for i in range(params.n)])
        return results

    def close(self) -> None:
        self.llm.close()
