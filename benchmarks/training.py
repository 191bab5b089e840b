"""Seconds per SFT and DPO step on the demo task, and what a full demo training run would cost.

Run alone on the machine (`flock /tmp/cowest-cpu.lock python benchmarks/training.py`): two CPU-heavy processes at
once make every number meaningless. Prints a markdown table. s/step is read off the recipes' own `train_log.jsonl`
(one timestamped row per step) and excludes the first step (warm-up).

    python benchmarks/training.py --weak embedded/smollm2-135m --steps 4 --batch 2 4
        [--precision float32 bfloat16] [--recipes sft dpo] [--record]

`--precision` runs the same steps under each training precision (COWEST_TRAIN_PRECISION; auto = what
`device_kwargs` picks on this machine) and lists the losses, so bf16 autocast can be checked against float32.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import machine, record  # noqa: E402


def steady_s_per_step(log: Path) -> float:
    times = [r["time"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def losses(log: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weak", default="embedded/smollm2-135m")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--train-size", type=int, default=200, help="demo samples, to project a 1-epoch SFT")
    ap.add_argument("--pairs", type=int, default=120, help="pairs, to project a 1-epoch DPO")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--recipes", nargs="+", default=["sft", "dpo"], choices=["sft", "dpo"])
    ap.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()

    from cowest.core.config import ExperimentConfig
    from cowest.models.hf_loading import load_model_and_tokenizer, resolve_source
    from cowest.core.records import PreferencePair, write_jsonl
    from cowest.tasks import demo
    from cowest.tasks.prompts import draft_messages, draft_target
    from cowest.pipeline.train.dpo import run_dpo
    from cowest.pipeline.train.sft import run_sft

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
        for precision in args.precision:
            os.environ["COWEST_TRAIN_PRECISION"] = precision
            from cowest.pipeline.train.common import train_precision

            used = train_precision()
            for batch in args.batch:
                tiny = {"max_steps": args.steps, "batch_size": batch, "max_length": args.max_length,
                        "lora_r": args.lora_r, "lora_alpha": 2 * args.lora_r}
                cfg = ExperimentConfig.model_validate({"models": {"weak": {"spec": args.weak}}, "sft": tiny,
                                                       "align": tiny})
                t0 = time.perf_counter()
                sft = run_sft(cfg, samples, tmp / f"sft{batch}{used}")
                t1 = time.perf_counter()
                runs = [("sft", sft, t1 - t0, args.train_size)]
                if "dpo" in args.recipes:
                    dpo = run_dpo(cfg, tmp / "pairs.jsonl", tmp / f"dpo{batch}{used}", weak_source=source,
                                  reference_adapter=str(sft))
                    runs.append(("dpo", dpo, time.perf_counter() - t1, args.pairs))
                for kind, out, wall, n in runs:
                    step = steady_s_per_step(out / "train_log.jsonl")
                    epoch_steps = -(-n // batch)
                    rows.append((kind, used, batch, step, wall, epoch_steps, n, epoch_steps * step / 60,
                                 losses(out / "train_log.jsonl")))
    lines = ["| recipe | precision | batch | s/step (steady) | run wall s (load+train+save) | 1 epoch | projected min "
             "| losses |", "|---|---|---|---|---|---|---|---|"]
    for kind, used, batch, step, wall, steps, n, mins, ls in rows:
        what = "samples" if kind == "sft" else "pairs"
        lines.append(f"| {kind} | {used} | {batch} | {step:.2f} | {wall:.1f} | {steps} steps ({n} {what}) | "
                     f"{mins:.1f} | {', '.join(f'{x:.3f}' for x in ls)} |")
    text = (f"### Training steps ({datetime.date.today().isoformat()}, {machine()})\n\n"
            f"`python benchmarks/training.py --weak {args.weak} --steps {args.steps} --batch "
            f"{' '.join(map(str, args.batch))} --precision {' '.join(args.precision)}` — demo task, "
            f"max_length={args.max_length}, LoRA r={args.lora_r}, same seed and data for each precision "
            "(bfloat16 = autocast, float32 master weights). s/step excludes the first step. Run alone under the "
            "CPU lock.\n\n" + "\n".join(lines))
    print()
    print(text)
    if args.record:
        record("training.py", text)


if __name__ == "__main__":
    main()
