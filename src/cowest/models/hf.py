"""transformers causal LM backend: batched, left-padded generation with the chat template (torch imported lazily).

Loading (local folder, hub id or .gguf file, PEFT adapter chains) is `cowest.models.hf_loading`'s job. Batches
run continuously by default (`batching: continuous`, `cowest.models.hf_refill`: finished rows leave, waiting prompts
join) or statically (one `generate` per batch). Sampling is reproducible per sample index: sample i of a prompt
is drawn from a generator seeded with `seed + i` (static: the whole batch under `torch.manual_seed(seed + i)`), so
the same request gives the same text. Greedy requests (temperature 0) are generated once and copied n times.
`decode_stats` counts the tokens kept against the row-steps computed (the padding waste).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cowest.core.config import ModelConfig
from cowest.core.errors import require
from cowest.models.hf_refill import DecodeStats
from cowest.models.identity import weights_id
from cowest.models.text import cut_at_stop, render_plain
from cowest.core.records import Generation, Message, SamplingParams


class HFBackend:
    """A transformers model on CPU (float32 or bfloat16 by `dtype`; auto measures which is faster) behind the batch
    interface."""

    def __init__(self, model: str, cfg: ModelConfig):
        self.torch = require("torch", "train")
        from cowest.models.hf_loading import adapter_chain, load_model_and_tokenizer

        if cfg.n_threads:
            self.torch.set_num_threads(cfg.n_threads)
        self.engine_choice: dict[str, Any] | None = None
        if cfg.dtype == "auto":
            cfg = cfg.model_copy(update={"dtype": self._pick_dtype(model, cfg)})
        self.cfg = cfg
        # Adapters are merged in float32 and the result cast, so only the final weights are rounded.
        self.model, self.tok = load_model_and_tokenizer(model, adapter=cfg.adapter, dtype=cfg.dtype)
        self.model.eval()
        self.tok.padding_side = "left"  # decoder-only generation continues from the right end of every row
        self.has_chat_template = bool(getattr(self.tok, "chat_template", None))
        name = Path(model).name if Path(model).exists() else model
        # Every adapter of the chain (SFT parent, DPO leaf) is in the identity: a retrained parent changes outputs.
        adapter = "".join(f"+adapter@{weights_id(a)}" for a in adapter_chain(cfg.adapter)) if cfg.adapter else ""
        self.identity = f"hf/{name}@{weights_id(model)}{adapter}" + ("+bf16" if cfg.dtype == "bfloat16" else "")
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [self.tok.eos_token_id])
        self.decode_stats = DecodeStats()
        self.refill = self._refill_generator() if cfg.batching == "continuous" else None

    def _refill_generator(self):
        from cowest.core.progress import log
        from cowest.models.hf_refill import RefillGenerator, supports_refill

        why_not = supports_refill(self.model)
        if why_not is not None:
            log(f"{self.identity}: static batching, continuous batching does not serve it: {why_not}")
            return None
        return RefillGenerator(self.model, pad_id=self.tok.pad_token_id, eos=self._eos,
                               batch_size=self.cfg.batch_size)

    def _pick_dtype(self, model: str, cfg: ModelConfig) -> str:
        """`dtype: auto`: the faster of float32 and bfloat16 at `cfg.batch_size` by measurement on this CPU."""
        from cowest.models.calibrate import pick
        from cowest.core.progress import log

        choice = pick(model, "hf", "auto", cfg.batch_size, threads=cfg.n_threads)
        log(f"hf/{Path(model).name}: {choice.dtype} at batch {cfg.batch_size} ({choice.reason})")
        self.engine_choice = choice.as_dict()
        return choice.dtype

    def _render(self, messages: list[Message]) -> str:
        if self.has_chat_template:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return render_plain(messages)

    def _run_batch(self, texts: list[str], params: SamplingParams, seed: int | None) -> list[Generation]:
        torch = self.torch
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sample = params.temperature > 0
        kwargs: dict[str, Any] = dict(max_new_tokens=params.max_tokens, do_sample=sample,
                                      return_dict_in_generate=True, output_logits=params.logprobs,
                                      pad_token_id=self.tok.pad_token_id)
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:  # silence the generation_config's sampling defaults, which greedy decoding ignores anyway
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tok)
        if seed is not None:
            torch.manual_seed(seed)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        dt = time.perf_counter() - t0
        prompt_len = enc["input_ids"].shape[1]
        new = out.sequences[:, prompt_len:]
        rows, n_steps = new.shape  # every row runs every step, whether its reply ended or not
        self.decode_stats.add(DecodeStats(computed=rows * n_steps, slot_steps=self.cfg.batch_size * n_steps,
                                          steps=n_steps, prompt_tokens=rows * prompt_len, seconds=dt))
        logprobs = None
        if params.logprobs:
            # raw logits (before temperature / top-p) -> log-probabilities of the chosen tokens
            steps = torch.stack(out.logits, dim=1).float().log_softmax(-1)
            logprobs = steps.gather(-1, new[:, : steps.shape[1]].unsqueeze(-1)).squeeze(-1)
        gens = []
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            end = next((k for k, t in enumerate(ids) if t in self._eos), None)
            # the end-of-generation token is not part of the answer (nor counted: OpenAI and llama.cpp agree)
            n_tok = len(ids) if end is None else end
            text = self.tok.decode(ids[:n_tok], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, params.stop)
            finish = "stop" if end is not None or stopped or n_tok < params.max_tokens else "length"
            self.decode_stats.useful += n_tok
            gens.append(Generation(
                text=text, prompt_tokens=int(enc["attention_mask"][row].sum()), completion_tokens=n_tok,
                finish_reason=finish, latency_s=dt,
                token_logprobs=logprobs[row, :n_tok].tolist() if logprobs is not None else None,
            ))
        return gens

    def _run_refill(self, texts: list[str], params: SamplingParams, draws: int) -> list[list[Generation]]:
        """Every prompt's `draws` samples through the continuous-batching loop, in one queue."""
        from cowest.models.hf_refill import Request, Sampler

        ids = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        seed = params.seed
        requests = [Request(ids=p, seed=None if seed is None or params.temperature <= 0 else seed + i, group=j)
                    for j, p in enumerate(ids) for i in range(draws)]
        stop, window = None, 0
        if params.stop:
            from transformers import StopStringCriteria

            stop = StopStringCriteria(tokenizer=self.tok, stop_strings=params.stop)
            window = stop.maximum_token_len
        assert self.refill is not None  # only called when continuous batching serves this model
        outs, stats = self.refill.run(requests, max_new_tokens=params.max_tokens, logprobs=params.logprobs,
                                      sampler=Sampler(params.temperature, params.top_p), stop=stop,
                                      stop_window=window)
        self.decode_stats.add(stats)
        gens: list[list[Generation]] = [[] for _ in texts]
        for r, o in zip(requests, outs):
            text, stopped = cut_at_stop(self.tok.decode(o.tokens, skip_special_tokens=True), params.stop)
            n_tok = len(o.tokens)
            gens[r.group].append(Generation(
                text=text, prompt_tokens=len(r.ids), completion_tokens=n_tok, latency_s=o.latency_s,
                finish_reason="stop" if o.ended or stopped or n_tok < params.max_tokens else "length",
                token_logprobs=o.logprobs))
        return gens

    def _run_static(self, texts: list[str], params: SamplingParams, draws: int) -> list[list[Generation]]:
        out: list[list[Generation]] = [[] for _ in texts]
        bs = max(1, self.cfg.batch_size)
        for i in range(draws):
            seed = None if params.seed is None else params.seed + i
            for start in range(0, len(texts), bs):
                for j, g in enumerate(self._run_batch(texts[start : start + bs], params, seed)):
                    out[start + j].append(g)
        return out

    def generate(self, prompts: list[list[Message]], params: SamplingParams) -> list[list[Generation]]:
        texts = [self._render(p) for p in prompts]
        draws = params.n if params.temperature > 0 else 1
        run = self._run_refill if self.refill is not None and texts else self._run_static
        out = run(texts, params, draws)
        if draws < params.n:  # greedy: every sample is the same text
            out = [[row[0].model_copy() for _ in range(params.n)] for row in out]
        return out

    def close(self) -> None:
        del self.model
