"""Seconds per SFT and DPO step on the demo task, and what a full demo training run would cost.

Run alone on the machine (`flock /tmp/cowest-cpu.lock python benchmarks/training.py`): two CPU-heavy processes at
once make every number meaningless. Prints a markdown table. s/step is read off the recipes' own `train_log.jsonl`
(one timestamped row per step) and excludes the first step (warm-up).

    python benchmarks/training.py --weak embedded/smollm2-135m --steps 4 --batch 2 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def steady_s_per_step(log: Path) -> float:
    times = [r["time"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weak", default="embedded/smollm2-135m")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--train-size", type=int, default=200, help="demo samples, to project a 1-epoch SFT")
    ap.add_argument("--pairs", type=int, default=120, help="pairs, to project a 1-epoch DPO")
    args = ap.parse_args()

    from cowest.config import ExperimentConfig
    from cowest.models.hf_loading import load_model_and_tokenizer, resolve_source
    from cowest.records import PreferencePair, write_jsonl
    from cowest.tasks import demo
    from cowest.tasks.prompts import draft_messages, draft_target
    from cowest.train.dpo import run_dpo
    from cowest.train.sft import run_sft

    source = resolve_source(args.weak)
    load_model_and_tokenizer(source)  # convert a GGUF once, outside the timings
    samples = demo.build("train", ExperimentConfig().task)
    # Demo-like pairs: the gold draft against the same draft with a wrong final number.
    pairs = [PreferencePair(prompt=draft_messages(s, "cot"),
                            chosen=[{"role": "assistant", "content": draft_target(s, "cot")}],
                            rejected=[{"role": "assistant", "content": draft_target(s, "cot").replace(s.gold, "17")}],
                            question_id=s.id, delta_chosen=1.0, delta_rejected=0.0) for s in samples[40:]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_jsonl(tmp / "pairs.jsonl", pairs)
        for batch in args.batch:
            tiny = {"max_steps": args.steps, "batch_size": batch, "max_length": args.max_length,
                    "lora_r": args.lora_r, "lora_alpha": 2 * args.lora_r}
            cfg = ExperimentConfig.model_validate({"models": {"weak": {"spec": args.weak}}, "sft": tiny, "align": tiny})
            t0 = time.perf_counter()
            sft = run_sft(cfg, samples, tmp / f"sft{batch}")
            t1 = time.perf_counter()
            dpo = run_dpo(cfg, tmp / "pairs.jsonl", tmp / f"dpo{batch}", weak_source=source, reference_adapter=str(sft))
            t2 = time.perf_counter()
            for kind, out, wall, n in (("sft", sft, t1 - t0, args.train_size), ("dpo", dpo, t2 - t1, args.pairs)):
                step = steady_s_per_step(out / "train_log.jsonl")
                epoch_steps = -(-n // batch)
                rows.append((kind, batch, step, wall, epoch_steps, n, epoch_steps * step / 60))
    print(f"\nweak={args.weak} max_length={args.max_length} lora_r={args.lora_r} steps={args.steps}\n")
    print("| recipe | batch | s/step (steady) | run wall s (load+train+save) | 1 epoch | projected min |")
    print("|---|---|---|---|---|---|")
    for kind, batch, step, wall, steps, n, mins in rows:
        what = "samples" if kind == "sft" else "pairs"
        print(f"| {kind} | {batch} | {step:.2f} | {wall:.1f} | {steps} steps ({n} {what}) | {mins:.1f} |")


if __name__ == "__main__":
    main()
