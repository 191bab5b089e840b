"""Generation speed of the local backends (hf, llamacpp) on the embedded models, next to llama.cpp's own figure.

For each model and batch size (prompts per `generate` call) it times one `generate` call end to end (prompt
evaluation included) and reports completion tokens per second. For the llamacpp backend it also reads llama.cpp's
own perf counters (`llama_perf_context`) for the same call, and it runs the library's raw path (`Llama.__call__`
on the same GGUF, same rendered prompt) as the reference. Prints a table; `--record` writes it into BENCHMARKS.md
(replacing an earlier run of this script). Load models only under the shared CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/generation.py [--models smollm2-135m qwen2.5-coder-0.5b]
        [--tokens 32] [--batches 1 8 32] [--backends llamacpp hf hf-bf16 auto] [--record]

Stage shape (`--stage 96`): the eval stage's strong calls, not uniform long answers: the strong model's solo
prompts for N questions of the demo task's dev split, greedy, max 96 new tokens (replies of ~20 to 96 tokens), in
one `generate` call, once per `--stage-batching` mode (static: one `generate` per batch; continuous: finished
rows leave, waiting prompts join). Its table counts the padding waste: useful tokens (replies) against the
row-steps computed (batch rows x decode steps), and the prompt tokens prefilled (padding included):

    flock /tmp/cowest-cpu.lock python benchmarks/generation.py --stage 96 [--stage-model qwen2.5-coder-1.5b]
        [--stage-dtype bfloat16] [--stage-batch 32] [--stage-batching static continuous vllm] [--record]

(`vllm`: the same prompts through `engine: vllm`, a local vLLM server with `--stage-batch` requests in flight.)

Roofline: in the same run it times a torch matmul of each model's MLP shape (hidden x intermediate) with as many
rows as the batch, in float32 and bfloat16, and turns the GFLOP/s into a tokens/s ceiling (2 FLOP per weight of
every linear layer, lm_head included, per token); each row's share is its tok/s over the ceiling of its dtype
(llama.cpp and auto rows: over the faster dtype's ceiling, the machine's best).
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import sys

from cowest.core.config import ModelConfig
from cowest.models.base import load_backend
from cowest.models.embedded import gguf_path
from cowest.core.records import SamplingParams

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


def linear_weights(alias: str) -> tuple[int, int, int]:
    """(weights in linear layers incl. lm_head, hidden size, MLP intermediate size) of a model, from its config."""
    import torch
    import transformers

    from cowest.models.calibrate import checkpoint_config

    config = checkpoint_config(str(gguf_path(alias)))
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    if getattr(config, "tie_word_embeddings", False) and not isinstance(model.get_output_embeddings(), torch.nn.Linear):
        n += model.get_input_embeddings().weight.numel()
    return n, config.hidden_size, config.intermediate_size


def matmul_gflops(rows: int, k: int, n: int, dtype: str, reps: int = 30) -> float:
    """Best GFLOP/s of a (rows x k) @ (k x n) torch matmul in `dtype` over `reps` runs: a ceiling is the machine's
    best (a median of 5 ran here at 0.5-0.9 of it, below what `generate` itself reached)."""
    import torch

    a = torch.randn(rows, k).to(getattr(torch, dtype))
    w = torch.randn(k, n).to(getattr(torch, dtype))
    for _ in range(3):  # warm-up
        a @ w
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ w
        times.append(time.perf_counter() - t0)
    return 2 * rows * k * n / min(times) / 1e9


def roofline(alias: str, batches: list[int]) -> dict:
    """{(dtype, batch): (GFLOP/s, tok/s ceiling)} for the model's shape on this machine, measured now."""
    weights, hidden, inter = linear_weights(alias)
    out = {}
    for dtype in ("float32", "bfloat16"):
        for bs in sorted(set(batches) | {1}):
            g = matmul_gflops(bs, hidden, inter, dtype)
            out[(dtype, bs)] = (g, g * 1e9 / (2 * weights))
    return out


def share(row: dict, roof: dict) -> tuple[float | None, float | None]:
    """(ceiling tok/s, share of it) for a result row."""
    bs = row["batch"]
    if row["backend"] in ("hf", "hf-bf16"):
        ceiling = roof[("bfloat16" if row["backend"] == "hf-bf16" else "float32", bs)][1]
    else:
        ceiling = max(roof[("float32", bs)][1], roof[("bfloat16", bs)][1])
    return ceiling, row["tps"] / ceiling


def bench_backend(backend: str, alias: str, batches: list[int], tokens: int) -> list[dict]:
    provider, dtype = ("hf", "bfloat16") if backend == "hf-bf16" else (backend, "float32")
    if backend == "auto":  # what `engine: auto, dtype: auto` picks for this batch size (calibrated, cached)
        cfg = ModelConfig(spec=f"embedded/{alias}", n_ctx=1024, batch_size=max(batches), dtype="auto")
    else:
        cfg = ModelConfig(spec=f"{provider}/{gguf_path(alias)}", n_ctx=1024, batch_size=max(batches), dtype=dtype)
    t0 = time.perf_counter()
    b = load_backend(cfg)
    if backend == "auto":
        choice = b.engine_choice
        provider = choice["engine"]
        backend = f"auto ({provider}{' ' + choice['dtype'] if provider == 'hf' else ''})"
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
    if backend == "llamacpp":
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


def stage_prompts(n: int) -> list[list[dict]]:
    """The strong model's solo prompts for n questions of the demo task's dev split, as `cowest eval
    task.eval_limit=n` loads them (the split grows past its 100 questions to hold n distinct ones)."""
    from cowest.core.config import TaskConfig
    from cowest.tasks import load_samples
    from cowest.tasks.prompts import solo_messages

    samples = load_samples(TaskConfig(name="demo", eval_limit=n), "dev", n)
    assert len({s.question for s in samples}) == n, "the demo's dev split repeats a question"
    return [solo_messages(s) for s in samples]


def bench_stage(alias: str, dtype: str, n: int, batch: int, modes: list[str], tokens: int = 96) -> list[dict]:
    """Stage-shaped generation, once per batching mode on one loaded model: waste, time and useful tok/s."""
    cfg = ModelConfig(spec=f"hf/{gguf_path(alias)}", batch_size=batch, dtype=dtype, batching="continuous")
    b = load_backend(cfg)
    continuous = b.refill  # built by the backend as `batching: continuous` (the default) builds it
    assert continuous is not None, "continuous batching does not serve this model"
    b.generate([[{"role": "user", "content": "Say hello."}]], SamplingParams(max_tokens=4))  # warm-up
    work = stage_prompts(n)
    rows = []
    for mode in modes:
        b.refill = continuous if mode == "continuous" else None  # static: one `generate` per batch of `batch`
        b.decode_stats = type(b.decode_stats)()
        t0 = time.perf_counter()
        out = b.generate(work, SamplingParams(max_tokens=tokens))
        wall = time.perf_counter() - t0
        d = b.decode_stats
        lengths = [r[0].completion_tokens for r in out]
        rows.append({"mode": mode, "model": alias, "dtype": dtype, "prompts": n, "batch": batch, "wall": wall,
                     "useful": d.useful, "computed": d.computed, "steps": d.steps, "prefilled": d.prompt_tokens,
                     "tps": d.useful / wall, "min_len": min(lengths), "max_len": max(lengths),
                     "cut": sum(r[0].finish_reason == "length" for r in out)})
        print(f"{mode}: {wall:.1f} s, {d.useful} useful tokens, {d.computed} row-steps, {d.useful / wall:.1f} tok/s",
              flush=True)
    b.close()
    return rows


def bench_stage_vllm(alias: str, dtype: str, n: int, batch: int, tokens: int = 96) -> dict:
    """The same stage on a local vLLM server (`engine: vllm`, `batch` requests in flight, continuous batching inside
    the server; its start-up is not timed). Row-steps are the server's own: not counted."""
    cfg = ModelConfig(spec=f"embedded/{alias}", engine="vllm", dtype=dtype, batch_size=batch, n_ctx=2048,
                      timeout_s=1800)
    b = load_backend(cfg)
    b.generate([[{"role": "user", "content": "Say hello."}]], SamplingParams(max_tokens=4))  # warm-up
    t0 = time.perf_counter()
    out = b.generate(stage_prompts(n), SamplingParams(max_tokens=tokens))
    wall = time.perf_counter() - t0
    b.close()
    lengths = [r[0].completion_tokens for r in out]
    useful = sum(lengths)
    print(f"vllm: {wall:.1f} s, {useful} useful tokens, {useful / wall:.1f} tok/s", flush=True)
    return {"mode": "vllm server", "model": alias, "dtype": dtype, "prompts": n, "batch": batch, "wall": wall,
            "useful": useful, "computed": None, "steps": None, "prefilled": sum(r[0].prompt_tokens for r in out),
            "tps": useful / wall, "min_len": min(lengths), "max_len": max(lengths),
            "cut": sum(r[0].finish_reason == "length" for r in out)}


def stage_table(rows: list[dict]) -> str:
    lines = ["| batching | model | dtype | prompts | batch | reply tokens (min-max, cut at 96) | useful tokens | "
             "row-steps computed | useful share | forward passes | prompt tokens prefilled | wall s | useful tok/s | "
             "roofline tok/s | share |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ceiling, tps = r.get("ceiling"), r["tps"]
        roof = "- | -" if ceiling is None else f"{ceiling:.0f} | {tps / ceiling:.2f}"
        computed = "- | -" if r["computed"] is None else f"{r['computed']} | {r['useful'] / r['computed']:.2f}"
        lines.append(f"| {r['mode']} | {r['model']} | {r['dtype']} | {r['prompts']} | {r['batch']} | "
                     f"{r['min_len']}-{r['max_len']}, {r['cut']} cut | {r['useful']} | {computed} | "
                     f"{r['steps'] if r['steps'] is not None else '-'} | {r['prefilled']} | {r['wall']:.1f} | "
                     f"{tps:.1f} | {roof} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    f = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    lines = ["| backend | model | batch | completion tokens | wall s | tok/s (incl. prompt) | "
             "llama.cpp decode tok/s | llama.cpp prompt tok/s | load s | roofline tok/s | share |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share_s = "-" if r.get("share") is None else f"{r['share']:.2f}"
        lines.append(f"| {r['backend']} | {r['model']} | {r['batch']} | {r['tokens']} | {r['wall']:.2f} | "
                     f"{r['tps']:.1f} | {f(r['cpp_decode'])} | {f(r['cpp_prompt'])} | {f(r['load'])} | "
                     f"{f(r.get('ceiling'))} | {share_s} |")
    return "\n".join(lines)


def roof_table(roofs: dict[str, dict]) -> str:
    lines = ["| model | batch (matmul rows) | fp32 GFLOP/s | bf16 GFLOP/s | fp32 ceiling tok/s | bf16 ceiling tok/s |",
             "|---|---|---|---|---|---|"]
    for alias, roof in roofs.items():
        for bs in sorted({b for _, b in roof}):
            (g32, c32), (g16, c16) = roof[("float32", bs)], roof[("bfloat16", bs)]
            lines.append(f"| {alias} | {bs} | {g32:.0f} | {g16:.0f} | {c32:.1f} | {c16:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    ap.add_argument("--backends", nargs="+", default=["llamacpp", "hf", "hf-bf16"],
                    choices=["llamacpp", "hf", "hf-bf16", "auto"],
                    help="hf-bf16: transformers with bfloat16 weights; auto: what engine/dtype auto picks")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per prompt (greedy)")
    ap.add_argument("--stage", type=int, default=0, metavar="N",
                    help="run only the stage-shaped case with N prompts (e.g. 96)")
    ap.add_argument("--stage-model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--stage-dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--stage-batch", type=int, nargs="+", default=[32],
                    help="static and vllm run at the first; continuous at each")
    ap.add_argument("--stage-batching", nargs="+", default=["static", "continuous"],
                    choices=["static", "continuous", "vllm"],
                    help="vllm: the same prompts through `engine: vllm` (needs .venv-vllm: scripts/setup.sh --vllm)")
    ap.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    if args.stage:
        return main_stage(args)
    from bench_io import load_average

    load = load_average()
    rows = []
    roofs = {}
    for alias in args.models:
        roofs[alias] = roofline(alias, args.batches)
        for provider in args.backends:
            new = bench_backend(provider, alias, args.batches, args.tokens)
            for r in new:
                r["ceiling"], r["share"] = share(r, roofs[alias])
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
    text = (f"### Local generation speed ({when}, {machine()}, load average {load} at start, {load_average()} at "
            "end)\n\n"
            f"`python benchmarks/generation.py --models {' '.join(args.models)} --backends {' '.join(args.backends)} "
            f"--batches {' '.join(map(str, args.batches))} --tokens {args.tokens}` — greedy, max {args.tokens} new tokens per prompt, batch = prompts "
            "per `generate` call, tok/s = completion tokens / wall time of the call (prompt evaluation included).\n"
            "The llamacpp backend decodes one prompt at a time (llama-cpp-python's high-level API has no "
            "multi-sequence batching); hf runs the batch left-padded in one `generate` (hf-bf16: the same with "
            "bfloat16 weights, `dtype: bfloat16`). The llama.cpp columns are "
            "its own perf counters for the same call; the raw row is `Llama.__call__` on the same GGUF and prompt."
            f"{bufts} Threads: all cores (llama.cpp n_threads, torch default). Run alone under the CPU lock.\n\n"
            "Roofline, measured in the same run: a torch matmul of each model's MLP shape with batch rows; the "
            "ceiling is GFLOP/s over 2 FLOP per linear weight per token; share = tok/s over the ceiling of the "
            "row's dtype (llama.cpp and auto rows: the faster dtype's).\n\n"
            + roof_table(roofs) + "\n\n" + table(rows))
    print()
    print(text)
    if args.record:
        record("generation.py", text)


def goal_lines(rows: list[dict], share_goal: float = 0.7, speedup_goal: float = 2.0) -> list[str]:
    """Issue 14's goal figures, met or not: useful tok/s at >= 0.7 of the roofline ceiling of the batch size, and
    the stage >= 2x faster than before (static batching, the shipped configuration when the issue was filed)."""
    label = lambda r: f"{r['mode']} at batch {r['batch']}"  # noqa: E731
    out = []
    for r in rows:
        frac = r["tps"] / r["ceiling"]
        out.append(f"- {label(r)}: useful tokens at {frac:.2f} of the roofline ceiling ({r['ceiling']:.0f} tok/s at "
                   f"batch {r['batch']}): goal >= {share_goal} **{'met' if frac >= share_goal else 'not met'}**.")
    before = next((r for r in rows if r["mode"] == "static"), None)
    if before is not None:
        for r in rows:
            if r is not before:
                x = before["wall"] / r["wall"]
                out.append(f"- {label(r)} against {label(before)} (before): {x:.2f}x faster ({before['wall']:.0f} s -> "
                           f"{r['wall']:.0f} s): goal >= {speedup_goal}x **{'met' if x >= speedup_goal else 'not met'}**.")
    return out


def main_stage(args: argparse.Namespace) -> None:
    from bench_io import load_average

    load = load_average()
    first, *more = args.stage_batch
    roof = roofline(args.stage_model, args.stage_batch)
    hf_modes = [m for m in args.stage_batching if m != "vllm"]
    rows = bench_stage(args.stage_model, args.stage_dtype, args.stage, first, hf_modes) if hf_modes else []
    if "continuous" in hf_modes:  # the larger batches: continuous only (static at the first batch is "before")
        for batch in more:
            rows += bench_stage(args.stage_model, args.stage_dtype, args.stage, batch, ["continuous"])
    if "vllm" in args.stage_batching:
        rows.append(bench_stage_vllm(args.stage_model, args.stage_dtype, args.stage, first))
    for r in rows:
        r["ceiling"] = roof[(args.stage_dtype, r["batch"])][1]
    text = (f"### Stage-shaped generation: {args.stage} dev questions, before (static) and after (continuous) "
            f"({datetime.date.today().isoformat()}, {machine()}, load average {load} at start, {load_average()} "
            "at end)\n\n"
            f"`python benchmarks/generation.py --stage {args.stage} --stage-model {args.stage_model} --stage-dtype "
            f"{args.stage_dtype} --stage-batch {' '.join(map(str, args.stage_batch))} --stage-batching "
            f"{' '.join(args.stage_batching)}`"
            " — the eval stage's strong calls: the strong model's solo prompts for the demo task's dev questions "
            f"as `cowest eval task.eval_limit={args.stage}` loads them (distinct questions), greedy, max 96 new "
            "tokens, one `generate` call. static = before: what the shipped configs ran when issue 14 was filed "
            "(hf engine, static batching: one `generate` per batch, every row runs until the batch's longest "
            "reply ends); continuous = after: what `engine: auto` runs now on this CPU (hf bfloat16, `batching: "
            "continuous`: finished rows leave, waiting prompts join); vllm server = `engine: vllm` (a local vLLM CPU "
            f"server in its own venv, {first} requests in flight, its start-up not timed). Useful "
            "tokens are the replies' tokens; row-steps computed count every batch row of every forward pass that "
            "yields a token; prompt tokens prefilled include left padding. Roofline: the same run's "
            f"{args.stage_dtype} matmul of the model's MLP shape with batch rows; share = useful tok/s over that "
            "ceiling. Run alone under the CPU lock.\n\n" + stage_table(rows) + "\n\nGoal figures (issue 14):\n"
            + "\n".join(goal_lines(rows)))
    print()
    print(text)
    if args.record:
        record("generation.py stage", text)


if __name__ == "__main__":
    main()
