"""Generation speed of the local backends (hf, llamacpp) on the embedded models, next to llama.cpp's own figure.

For each model and batch size (prompts per `generate` call) it times one `generate` call end to end (prompt
evaluation included) and reports completion tokens per second. For the llamacpp backend it also reads llama.cpp's
own perf counters (`llama_perf_context`) for the same call, and it runs the library's raw path (`Llama.__call__`
on the same GGUF, same rendered prompt) as the reference. Prints a table; `--record` writes it into BENCHMARKS.md
(replacing an earlier run of this script). Load models only under the shared CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/generation.py [--models smollm2-135m qwen2.5-coder-0.5b]
        [--tokens 32] [--batches 1 8 32] [--backends llamacpp hf hf-bf16] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import sys

from cowest.config import ModelConfig
from cowest.models.base import load_backend
from cowest.models.embedded import gguf_path
from cowest.records import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import machine, record  # noqa: E402
TOPICS = ["a lighthouse keeper", "a lost dog", "a chess match", "a rainy market", "a night train", "a old clock",
          "a mountain village", "a robot gardener"]


def prompts(n: int) -> list[list[dict]]:
    # long-answer prompts, so most rows run to max_tokens rather than stopping early
    return [[{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}."}]
            for i in range(n)]


def perf(llm) -> tuple[float, int, float, int]:
    """llama.cpp's counters: (prompt eval ms, prompt tokens, decode ms, decode tokens)."""
    import llama_cpp

    d = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return d.t_p_eval_ms, d.n_p_eval, d.t_eval_ms, d.n_eval


def reset_perf(llm) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)


def bench_backend(backend: str, alias: str, batches: list[int], tokens: int) -> list[dict]:
    provider, dtype = ("hf", "bfloat16") if backend == "hf-bf16" else (backend, "float32")
    cfg = ModelConfig(spec=f"{provider}/{gguf_path(alias)}", n_ctx=1024, batch_size=max(batches), dtype=dtype)
    t0 = time.perf_counter()
    b = load_backend(cfg)
    load_s = time.perf_counter() - t0
    params = SamplingParams(max_tokens=tokens)
    # warm-up (first-call allocations) on another prompt, so the timed calls evaluate their prompts in full
    b.generate([[{"role": "user", "content": "Say hello."}]], SamplingParams(max_tokens=4))
    rows = []
    for bs in batches:
        if provider == "llamacpp":
            reset_perf(b.llm)
        t0 = time.perf_counter()
        out = b.generate(prompts(bs), params)
        wall = time.perf_counter() - t0
        ntok = sum(g.completion_tokens for r in out for g in r)
        row = {"backend": backend, "model": alias, "batch": bs, "tokens": ntok, "wall": wall,
               "tps": ntok / wall, "load": load_s, "cpp_decode": None, "cpp_prompt": None}
        if provider == "llamacpp":
            pms, pn, dms, dn = perf(b.llm)
            row["cpp_decode"] = dn / (dms / 1000) if dms else None
            row["cpp_prompt"] = pn / (pms / 1000) if pms else None
        rows.append(row)
    if provider == "llamacpp":
        rows.append(bench_raw(b, alias, tokens))
    b.close()
    return rows


def bench_raw(b, alias: str, tokens: int) -> dict:
    """llama-cpp-python's own completion path on the same context and prompt tokens: the reference figure."""
    toks = b.prompt_tokens(prompts(1)[0])
    b.llm.reset()
    reset_perf(b.llm)
    t0 = time.perf_counter()
    r = b.llm(toks, max_tokens=tokens, temperature=0.0)
    wall = time.perf_counter() - t0
    pms, pn, dms, dn = perf(b.llm)
    ntok = r["usage"]["completion_tokens"]
    return {"backend": "llama.cpp raw (Llama.__call__)", "model": alias, "batch": 1, "tokens": ntok, "wall": wall,
            "tps": ntok / wall, "load": None, "cpp_decode": dn / (dms / 1000) if dms else None,
            "cpp_prompt": pn / (pms / 1000) if pms else None}


def table(rows: list[dict]) -> str:
    f = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    lines = ["| backend | model | batch | completion tokens | wall s | tok/s (incl. prompt) | "
             "llama.cpp decode tok/s | llama.cpp prompt tok/s | load s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['model']} | {r['batch']} | {r['tokens']} | {r['wall']:.2f} | "
                     f"{r['tps']:.1f} | {f(r['cpp_decode'])} | {f(r['cpp_prompt'])} | {f(r['load'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    ap.add_argument("--backends", nargs="+", default=["llamacpp", "hf", "hf-bf16"],
                    choices=["llamacpp", "hf", "hf-bf16"], help="hf-bf16: transformers with bfloat16 weights")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per prompt (greedy)")
    ap.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    for alias in args.models:
        for provider in args.backends:
            new = bench_backend(provider, alias, args.batches, args.tokens)
            print("\n".join(table(new).splitlines()[2:]), flush=True)
            rows += new
    when = datetime.date.today().isoformat()
    bufts = ""
    if "llamacpp" in args.backends:
        import llama_cpp

        from cowest.models.llamacpp import extra_bufts_unsafe

        bufts = (" llama.cpp ran with its extra buffer types off (no AMX, no weight repacking): this wheel has AMX "
                 "kernels, which crash on this machine (see cowest.models.llamacpp)." if extra_bufts_unsafe(llama_cpp)
                 else " llama.cpp ran with its default extra buffer types (weight repacking on).")
    text = (f"### Local generation speed ({when}, {machine()})\n\n"
            f"`python benchmarks/generation.py` — greedy, max {args.tokens} new tokens per prompt, batch = prompts "
            "per `generate` call, tok/s = completion tokens / wall time of the call (prompt evaluation included).\n"
            "The llamacpp backend decodes one prompt at a time (llama-cpp-python's high-level API has no "
            "multi-sequence batching); hf runs the batch left-padded in one `generate` (hf-bf16: the same with "
            "bfloat16 weights, `dtype: bfloat16`). The llama.cpp columns are "
            "its own perf counters for the same call; the raw row is `Llama.__call__` on the same GGUF and prompt."
            f"{bufts} Threads: all cores (llama.cpp n_threads, torch default). Run alone under the CPU lock.\n\n"
            + table(rows))
    print()
    print(text)
    if args.record:
        record("generation.py", text)


if __name__ == "__main__":
    main()
