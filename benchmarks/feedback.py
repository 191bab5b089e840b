"""Collaborative feedback at benchmark size: wall time per step, strong calls per pair, positive share, pairs.

Runs `cowest.pipeline.feedback.run_feedback` on n IfQA train questions (seeded subsample of ../shared/data) with the embedded
models: the weak model drafts K chain-of-thought drafts at temperature 1 (llama.cpp; the base SmolLM2, not an SFT
model, so the benchmark isolates the feedback stage), the strong model answers alone and refines every distinct
draft, the metric evaluator (token F1) scores both. Resumable (rerun to continue). Load models only under the CPU
lock:

    flock /tmp/cowest-cpu.lock python benchmarks/feedback.py [--n 100] [--k 4] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from cowest.core.config import ModelConfig, load_config
from cowest.pipeline.feedback import load_done, run_feedback
from cowest.models.base import load_backend
from cowest.models.cache import open_backend
from cowest.pipeline.pairs import write_pairs
from cowest.core.progress import Progress
from cowest.tasks.base import load_samples

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import SHARED_DATA, machine, record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--weak", default="embedded/smollm2-135m")
    ap.add_argument("--strong", default="embedded/qwen2.5-coder-0.5b")
    ap.add_argument("--weak-tokens", type=int, default=48)
    ap.add_argument("--strong-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-feedback"))
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    cfg = load_config(None, [
        "task.name=ifqa", f"task.data={SHARED_DATA}", f"run_dir={out}",
        f"feedback.k={args.k}", "feedback.evaluator=metric", f"models.weak.spec={args.weak}",
        f"models.strong.spec={args.strong}", f"generation.weak.max_tokens={args.weak_tokens}",
        f"generation.strong.max_tokens={args.strong_tokens}",
    ])
    samples = load_samples(cfg.task, "train", args.n)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    weak = load_backend(ModelConfig(spec=args.weak, n_threads=2))
    strong = open_backend(ModelConfig(spec=args.strong, n_threads=2), "strong", out / "cache")
    load_s = time.perf_counter() - t0
    bar = Progress(len(samples), "feedback")
    t1 = time.perf_counter()
    path = run_feedback(cfg, samples, out, weak=weak, strong=strong, judge=None, progress=bar, timings=timings)
    bar.close()
    run_s = time.perf_counter() - t1
    records = list(load_done(path).values())
    t2 = time.perf_counter()
    stats = write_pairs(records, cfg.feedback, out, conversational=weak.has_chat_template)
    timings["pairs"] = time.perf_counter() - t2
    (out / "timings.json").write_text(json.dumps({"load_s": load_s, "run_s": run_s, **timings}, indent=2))
    rows = [("questions", stats["questions"]), ("drafts (K per question)", stats["drafts"]),
            ("load models, s", f"{load_s:.1f}")]
    rows += [(f"wall s: {k}", f"{v:.1f}") for k, v in timings.items()]
    rows += [("wall s: feedback total (this invocation)", f"{run_s:.1f}"),
             ("strong requests (solo + distinct refinements)", stats["requests"].get("strong", 0)),
             ("strong calls made (cache misses)", stats["calls"].get("strong", 0)),
             ("naive strong + judge calls (a plain script: K refinements + 1 solo per question, and K + 1 judge "
              "calls where the evaluator judges)",
              stats["naive_strong_and_judge_calls"]),
             ("pairs", stats["pairs"]),
             ("strong calls per pair (naive)", f"{stats['strong_calls_per_pair'] or float('nan'):.2f} "
              f"({stats['naive_strong_calls_per_pair'] or float('nan'):.2f})"),
             ("positive share of drafts (Δ > 0)", f"{stats['positive_share']:.3f}"),
             ("questions without a pair", f"{stats['questions_without_pair']} {stats['no_pair_reasons']}"),
             ("tokens per role", stats["tokens"])]
    table = "| quantity | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    if args.record:
        head = (f"### Collaborative feedback (`benchmarks/feedback.py --n {args.n} --k {args.k}`)\n\n"
                f"{machine()}, {datetime.date.today()}. IfQA train, {args.n} questions (seed 0), K={args.k} drafts at "
                f"temperature 1 from {args.weak} (base model, llama.cpp, max {args.weak_tokens} tokens); "
                f"{args.strong} solo and refinements (greedy, max {args.strong_tokens} tokens); metric evaluator "
                "(token F1). Wall times are for the run that produced the file (a resumed run adds up only its "
                "own part).\n\n")
        record("feedback.py", head + table)


if __name__ == "__main__":
    main()
