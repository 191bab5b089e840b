"""Prefix reuse in the feedback stage's refinements (issue 14, item 3): prompt tokens computed per question.

The feedback stage asks the strong model to refine K drafts of each question; the K prompts share the question
block and differ in the draft. This script builds those prompts on a real domain (ETHICS justice train rows from
../shared/data, K drafts sampled from the embedded weak model at temperature 1, as `cowest feedback` samples them),
then runs the refinements through the strong model's continuous batching twice on one loaded model:
- shipped: `hf_refill.admission_order`, prompts by length (a refill prefills the prefix its consecutive prompts
  share once, `shared_runs`: with prompts by length, mostly the chat template's system turn);
- tried: prompts that differ only in their tail kept together (`question_blocks` below), so that a refill computes
  each question block once, the rest of each prompt padded to the longest rest of the refill.
Prompt tokens computed count padding; the prompts' own tokens are the sum of their lengths. Replies are capped at
`--tokens` new tokens: prefill is what differs. Alone, under the CPU lock, not in CI (~8 min on 2 cores):

    flock /tmp/cowest-cpu.lock python benchmarks/prefix.py [--n 24] [--k 4] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from cowest.core.config import ModelConfig, load_config
from cowest.core.records import SamplingParams
from cowest.models import hf_refill
from cowest.models.base import load_backend
from cowest.tasks import load_samples
from cowest.tasks.prompts import draft_messages, refine_messages

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import SHARED_DATA, load_average, machine, record  # noqa: E402


def question_blocks(requests: list[hf_refill.Request], share_prefix: int = 16) -> list[int]:
    """The order tried: prompts whose neighbours in token order share at least half of the shorter one kept
    together (the refinements of one question), groups by their longest prompt, prompts by length inside."""
    ids = [r.ids for r in requests]
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    groups: list[list[int]] = []
    for k, i in enumerate(order):
        a = ids[order[k - 1]] if k else []
        if k and hf_refill.common_prefix(a, ids[i]) >= max(share_prefix, min(len(a), len(ids[i])) // 2):
            groups[-1].append(i)
        else:
            groups.append([i])
    by_len = lambda i: (len(ids[i]), requests[i].group, i)  # noqa: E731
    groups = sorted((sorted(g, key=by_len) for g in groups), key=lambda g: by_len(g[-1]))
    return [i for g in groups for i in g]


def refine_prompts(n: int, k: int) -> tuple[list[list[dict]], int]:
    """The strong model's refine prompts for n ETHICS train questions x k weak drafts; and how many were distinct."""
    cfg = load_config(ROOT / "configs" / "method_ethics.yaml", [f"task.data={SHARED_DATA}"])
    samples = load_samples(cfg.task, "train", n)
    prompts = cfg.collaboration.prompts
    weak = load_backend(cfg.models.weak)
    drafts = weak.generate([draft_messages(s, "cot", prompts) for s in samples],
                           SamplingParams(temperature=1.0, n=k, max_tokens=cfg.generation.weak.max_tokens, seed=0))
    weak.close()
    out = [refine_messages(s, d.text, "cot", prompts) for s, ds in zip(samples, drafts) for d in ds]
    return out, len({str(m) for m in out})


def run(b, work: list[list[dict]], tokens: int) -> dict:
    b.decode_stats = type(b.decode_stats)()
    t0 = time.perf_counter()
    out = b.generate(work, SamplingParams(max_tokens=tokens))
    wall = time.perf_counter() - t0
    return {"wall": wall, "prefilled": b.decode_stats.prompt_tokens, "own": sum(r[0].prompt_tokens for r in out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="questions")
    ap.add_argument("--k", type=int, default=4, help="drafts per question")
    ap.add_argument("--tokens", type=int, default=8, help="new tokens per refinement")
    ap.add_argument("--model", default="embedded/qwen2.5-coder-1.5b")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    load_before = load_average()
    work, distinct = refine_prompts(args.n, args.k)
    b = load_backend(ModelConfig(spec=args.model, engine="hf", dtype="bfloat16", batch_size=args.batch))
    assert b.refill is not None, "continuous batching does not serve this model"
    b.generate([[{"role": "user", "content": "Say hello."}]], SamplingParams(max_tokens=4))  # warm-up
    current = hf_refill.admission_order
    rows = []
    for name, order in (("shipped: by length", current), ("tried: question blocks together", question_blocks)):
        hf_refill.admission_order = order  # type: ignore[assignment]
        try:
            r = run(b, work, args.tokens)
        finally:
            hf_refill.admission_order = current  # type: ignore[assignment]
        rows.append((name, r))
        print(f"{name}: {r['prefilled']} prompt tokens computed, {r['wall']:.1f} s", flush=True)
    b.close()
    own = rows[0][1]["own"]
    text = "\n".join([
        f"### Prefix reuse in the feedback stage's refinements (`benchmarks/prefix.py`, {datetime.date.today()}, "
        f"{machine()}, load average {load_before} before, {load_average()} after)", "",
        f"`python benchmarks/prefix.py --n {args.n} --k {args.k} --tokens {args.tokens} --batch {args.batch}` — the "
        f"strong model's refine prompts (`configs/method_ethics.yaml`) for {args.n} ETHICS-justice train questions x "
        f"K = {args.k} drafts sampled from the embedded weak model at temperature 1 ({distinct} distinct prompts, "
        f"{own} prompt tokens of their own, {own / args.n:.0f} a question); {args.model}, hf bfloat16, continuous "
        f"batching at batch {args.batch}, greedy, {args.tokens} new tokens each. Prompt tokens computed include "
        "padding. Run alone under the CPU lock.", "",
        "| admission order | prompt tokens computed | per question | of the prompts' own | wall s |",
        "|---|---|---|---|---|",
        *[f"| {name} | {r['prefilled']} | {r['prefilled'] / args.n:.0f} | {r['prefilled'] / own:.2f} | "
          f"{r['wall']:.1f} |" for name, r in rows],
    ])
    print(text)
    if args.record:
        record("prefix.py", text)


if __name__ == "__main__":
    main()
