"""Continuous batching for a transformers causal LM: finished rows leave the batch, waiting prompts join it.

Static batching (one `model.generate` per batch) keeps every row until the longest reply of its batch ends. Here
one decode step feeds each live row its last token; a row that ends (EOS, a stop string, `max_new_tokens`)
leaves the KV cache at once, and when enough slots are free the next prompts are prefilled together and their
cache rows join the batch, left-padded to a common length like the rows of a static batch (the attention mask
hides the padding; positions count real tokens only, as `generate` does). The samples of one prompt (n > 1)
are prefilled once and their cache rows copied: the prompt is computed once per question, not once per draft.

Each request samples from its own `torch.Generator` seeded with its seed, so a reply does not depend on which
other prompts shared its batch; greedy requests take the argmax, and in float32 give the tokens of one-at-a-time
`generate` (tests/test_hf_refill.py checks it on SmolLM2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Request:
    ids: list[int]
    """Prompt token ids."""
    seed: int | None = None
    """Sampling seed of this request's own generator; None = torch's global generator."""
    group: int = -1
    """Requests with the same group (>= 0) and ids share one prefill (the samples of one prompt)."""


@dataclass
class Output:
    tokens: list[int]
    """Generated ids, the end-of-generation token excluded."""
    logprobs: list[float] | None
    """Log-probabilities of `tokens` under the raw logits (before temperature and top-p)."""
    ended: bool
    """True when an EOS token or a stop string ended the reply (False: it ran to max_new_tokens)."""
    latency_s: float
    """From this request's prefill to its last token."""


@dataclass
class DecodeStats:
    """What a generation computed against what it kept: padding waste is `1 - useful / computed`."""

    useful: int = 0
    """Tokens returned to callers (EOS tokens excluded)."""
    computed: int = 0
    """Row-steps run: every row of every decode step (and the first token of every prefilled row)."""
    slot_steps: int = 0
    """batch_size x token-producing forward passes: how full the batch ran."""
    steps: int = 0
    """Token-producing forward passes (decode steps and prefills)."""
    prompt_tokens: int = 0
    """Prompt tokens prefilled (a prompt shared by n samples counts once here)."""
    seconds: float = 0.0

    def add(self, other: DecodeStats) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["useful_share"] = round(self.useful / self.computed, 4) if self.computed else None
        return d


@dataclass
class _Row:
    req: int
    tokens: list[int]
    """Prompt tail + generated ids (for stop strings); `new` counts the generated ones."""
    new: int = 0
    logprobs: list[float] = field(default_factory=list)
    generator: Any = None
    t0: float = 0.0
    ended: bool = False
    done: bool = False


@dataclass
class Sampler:
    """How the next token is chosen from a row's logits: argmax at temperature 0, else temperature and top-p."""

    temperature: float = 0.0
    top_p: float = 1.0

    def pick(self, torch: Any, logits: Any, rows: list[_Row]) -> list[int]:
        if self.temperature <= 0:
            return logits.argmax(-1).tolist()
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        scores = TemperatureLogitsWarper(self.temperature)(None, logits)
        if self.top_p < 1.0:
            scores = TopPLogitsWarper(self.top_p)(None, scores)
        probs = scores.softmax(-1)
        return [int(torch.multinomial(probs[i], 1, generator=r.generator)) for i, r in enumerate(rows)]


class RefillGenerator:
    """Continuous-batching decode loop over a transformers model with a `DynamicCache` of full-attention layers."""

    def __init__(self, model: Any, *, pad_id: int, eos: set[int], batch_size: int, refill_at: int | None = None,
                 share_prefix: int = 16):
        import torch

        self.torch = torch
        self.model = model
        self.pad_id = pad_id
        self.eos = eos
        self.batch_size = max(1, batch_size)
        self.refill_at = refill_at or max(1, self.batch_size // 8)
        """Free slots that trigger a prefill of waiting prompts (fewer, larger prefills; less time half-empty)."""
        self.share_prefix = share_prefix
        """Prompts prefilled together that start with at least this many equal tokens compute them once (0: off)."""

    def run(self, requests: list[Request], *, max_new_tokens: int, sampler: Sampler, logprobs: bool = False,
            stop: Callable[[Any], Any] | None = None, stop_window: int = 0) -> tuple[list[Output], DecodeStats]:
        """Generate every request; `stop` (a transformers StoppingCriteria on the last `stop_window` ids of
        each row) ends a row whose text ends with a stop string."""
        torch = self.torch
        stats = DecodeStats()
        outputs: list[Output | None] = [None] * len(requests)
        waiting = admission_order(requests)[::-1]  # a stack: pop() takes the next
        rows: list[_Row] = []
        cache = mask = None
        t_start = time.perf_counter()
        with torch.inference_mode():
            while waiting or rows:
                take = self._admit(requests, waiting, self.batch_size - len(rows), bool(rows))
                if take:
                    new_rows, new_cache, new_mask, logits = self._prefill(requests, take, stats)
                    self._advance(new_rows, logits, sampler, logprobs, stop, stop_window, max_new_tokens, stats)
                    cache, mask = self._join(cache, mask, new_cache, new_mask)
                    rows += new_rows
                else:
                    logits, mask = self._decode(rows, cache, mask)
                    self._advance(rows, logits, sampler, logprobs, stop, stop_window, max_new_tokens, stats)
                stats.steps += 1
                stats.slot_steps += self.batch_size
                now = time.perf_counter()
                for r in rows:
                    if r.done:
                        gen = r.tokens[len(r.tokens) - r.new:] if r.new else []
                        outputs[r.req] = Output(tokens=gen, logprobs=r.logprobs if logprobs else None,
                                                ended=r.ended, latency_s=now - r.t0)
                        stats.useful += len(gen)
                if any(r.done for r in rows):
                    keep = [i for i, r in enumerate(rows) if not r.done]
                    rows = [rows[i] for i in keep]
                    cache, mask = self._select(cache, mask, keep)
        stats.seconds = time.perf_counter() - t_start
        return [o for o in outputs if o is not None], stats

    def _admit(self, requests: list[Request], waiting: list[int], free: int, busy: bool) -> list[int]:
        """The waiting requests to prefill now: none while fewer than `refill_at` slots are free (unless the queue
        fits), and whole groups only while others run, so the samples of a prompt share one prefill."""
        if not waiting or (busy and free < min(self.refill_at, len(waiting))):
            return []
        take: list[int] = []
        while waiting and len(take) < free:
            group = requests[waiting[-1]].group
            size = 1
            while group >= 0 and size < len(waiting) and requests[waiting[-1 - size]].group == group:
                size += 1
            if len(take) + size > free and (take or busy):
                break
            take += [waiting.pop() for _ in range(min(size, free - len(take)))]
        return take

    def _prefill(self, requests: list[Request], take: list[int], stats: DecodeStats):
        """Prefill the distinct prompts of `take` (a shared prefix once, see `shared_runs`); samples of a prompt
        copy its rows."""
        torch = self.torch
        t0 = time.perf_counter()
        key = lambda i: (requests[i].group, tuple(requests[i].ids)) if requests[i].group >= 0 else (-1, i)  # noqa: E731
        first: dict[tuple, int] = {}  # distinct prompt -> its first request in `take`
        for i in take:
            first.setdefault(key(i), i)
        prompts = [requests[i].ids for i in first.values()]
        runs = shared_runs(prompts, self.share_prefix) if self.share_prefix and len(prompts) > 1 else []
        if any(end - start > 1 for start, end, _ in runs) and all(n > 0 for _, _, n in runs):
            logits, cache, mask = self._forward_shared(prompts, runs, stats)
        else:
            logits, cache, mask = self._forward(prompts, stats)
        slot = {k: j for j, k in enumerate(first)}
        copy = [slot[key(i)] for i in take]
        if copy != list(range(len(prompts))):
            logits, mask = logits[copy], mask[copy]
            cache = self._select(cache, None, copy)[0]
        rows = []
        for i in take:
            r = requests[i]
            gen = None if r.seed is None else torch.Generator().manual_seed(r.seed)
            rows.append(_Row(req=i, tokens=list(r.ids[-64:]), generator=gen, t0=t0))
        return rows, cache, mask, logits

    def _forward(self, prompts: list[list[int]], stats: DecodeStats, cache: Any = None, mask: Any = None):
        """One forward over `prompts` left-padded to a common width, after `cache` (rows aligned with prompts, its
        padding in `mask`) or from scratch: (last position's logits, cache, mask of everything in the cache)."""
        torch = self.torch
        from transformers import DynamicCache

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts])
        new_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        stats.prompt_tokens += len(prompts) * width  # padding included: it is computed too
        mask = new_mask if mask is None else torch.cat([mask, new_mask], dim=1)
        cache = DynamicCache(config=self.model.config) if cache is None else cache
        positions = self._positions(mask)[:, -width:]
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                         logits_to_keep=1)
        cache = out.cache if getattr(out, "cache", None) is not None else cache
        return out.logits[:, -1, :].float(), cache, mask

    def _forward_shared(self, prompts: list[list[int]], runs: list[tuple[int, int, int]], stats: DecodeStats):
        """Each run's shared prefix once, its cache rows copied to the run's prompts, then every prompt's rest (the
        padding between a prefix and a shorter rest is masked, positions count real tokens only)."""
        _, cache, mask = self._forward([prompts[start][:n] for start, _, n in runs], stats)
        rows = [r for r, (start, end, _) in enumerate(runs) for _ in range(start, end)]
        cache = self._select(cache, None, rows)[0]
        rest = [prompts[j][n:] for start, end, n in runs for j in range(start, end)]
        return self._forward(rest, stats, cache=cache, mask=mask[rows])

    def _decode(self, rows: list[_Row], cache: Any, mask: Any):
        """One step: each row's last token in, next-token logits out."""
        torch = self.torch
        ids = torch.tensor([[r.tokens[-1]] for r in rows])
        positions = mask.sum(-1, keepdim=True)  # real tokens so far = the new token's position
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        return out.logits[:, -1, :].float(), mask

    def _advance(self, rows: list[_Row], logits: Any, sampler: Sampler, logprobs: bool, stop, stop_window: int,
                 max_new_tokens: int, stats: DecodeStats) -> None:
        """Append each row's next token and mark the rows that end with it."""
        torch = self.torch
        picks = sampler.pick(torch, logits, rows)
        stats.computed += len(rows)
        if logprobs:
            lp = logits.log_softmax(-1).gather(-1, torch.tensor(picks).unsqueeze(-1)).squeeze(-1).tolist()
        for i, (r, t) in enumerate(zip(rows, picks)):
            if t in self.eos:
                r.ended = r.done = True
                continue
            r.tokens.append(t)
            r.new += 1
            if logprobs:
                r.logprobs.append(lp[i])
            if r.new >= max_new_tokens:
                r.done = True
        if stop is not None:
            live = [r for r in rows if not r.done]
            if live:
                window = [([self.pad_id] * stop_window + r.tokens)[-stop_window:] for r in live]
                hits = stop(torch.tensor(window), None).tolist()
                for r, hit in zip(live, hits):
                    if hit:
                        r.ended = r.done = True

    def _positions(self, mask: Any) -> Any:
        return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)

    def _join(self, cache: Any, mask: Any, new_cache: Any, new_mask: Any):
        """The union of two batches, the shorter left-padded to the longer's length."""
        torch = self.torch
        if cache is None:
            return new_cache, new_mask
        width, new_width = mask.shape[1], new_mask.shape[1]
        pad_old, pad_new = max(0, new_width - width), max(0, width - new_width)
        F = torch.nn.functional
        for layer, new in zip(cache.layers, new_cache.layers):
            layer.keys = torch.cat([F.pad(layer.keys, (0, 0, pad_old, 0)), F.pad(new.keys, (0, 0, pad_new, 0))])
            layer.values = torch.cat([F.pad(layer.values, (0, 0, pad_old, 0)),
                                      F.pad(new.values, (0, 0, pad_new, 0))])
        return cache, torch.cat([F.pad(mask, (pad_old, 0)), F.pad(new_mask, (pad_new, 0))])

    def _select(self, cache: Any, mask: Any, keep: list[int]):
        """Keep rows `keep` (in that order, repeats allowed) and drop the left columns no row uses any more."""
        if not keep:
            return None, None
        index = self.torch.tensor(keep, dtype=self.torch.long)
        start = 0
        if mask is not None:
            mask = mask[index]
            used = mask.any(0).nonzero()
            start = int(used[0]) if len(used) else mask.shape[1]
            mask = mask[:, start:]
        for layer in cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        return cache, mask


def admission_order(requests: list[Request]) -> list[int]:
    """Requests by prompt length, the samples of one prompt together: prompts prefilled together are left-padded
    to the longest of them, and on the demo's eval prompts (60 to 200 tokens) taking them in the order given padded
    a fifth of the prefill (measured: 11.5k prompt tokens computed in the order given, 9.2k by length; the
    prompts' own tokens after their shared prefix are 8.0k). The outputs keep the callers'
    order, and each row's reply depends only on its own prompt and seed."""
    return sorted(range(len(requests)), key=lambda i: (len(requests[i].ids), requests[i].group, i))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shared_runs(prompts: list[list[int]], at_least: int) -> list[tuple[int, int, int]]:
    """Consecutive prompts that share a prefix: (start, end, prefix length) covering every prompt in order.

    A run grows while the next prompt shares at least `at_least` tokens and at least half of the run's prefix with
    it (so the refinements of one question keep their question block rather than falling back to the system
    prompt every prompt shares). Every prompt keeps one token after the prefix (the forward that yields its first
    logits); a prompt alone in its run keeps one prefix token, so no row of the prefix pass is empty."""
    runs: list[tuple[int, int, int]] = []
    start, n = 0, len(prompts[0]) - 1
    for j in range(1, len(prompts) + 1):
        if j < len(prompts):
            shared = min(common_prefix(prompts[start], prompts[j]), len(prompts[j]) - 1)
            if shared >= at_least and (j - start == 1 or shared >= n // 2):
                n = min(n, shared)
                continue
        runs.append((start, j, max(1, n) if j - start > 1 else min(1, len(prompts[start]) - 1)))
        if j < len(prompts):
            start, n = j, len(prompts[j]) - 1
    return runs


def supports_refill(model: Any) -> str | None:
    """None when the model's cache and generation settings fit the refill loop, else why not."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    kinds = {type(layer) for layer in DynamicCache(config=model.config).layers}
    if kinds and kinds != {DynamicLayer}:
        return f"its cache has {', '.join(sorted(k.__name__ for k in kinds))} layers (sliding or hybrid attention)"
    gc = model.generation_config
    extra = [k for k, off in (("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0), ("min_new_tokens", 0),
                              ("bad_words_ids", None), ("sequence_bias", None), ("suppress_tokens", None))
             if getattr(gc, k, off) not in (off, None)]
    if extra:
        return f"its generation_config sets {', '.join(extra)}"
    return None
