"""Zero-shot strength of each embedded model on the dev splits: the measurement behind the strong default.

Each embedded model answers directly (the `weak_only` strategy: one "Answer: ..." line, no draft) the first n dev
questions (seeded subsample) of IfQA, MedMCQA and ETHICS-justice; the table gives each headline metric with its 95%
bootstrap CI, the paired difference against SmolLM2-135M (the weak default) and seconds per question. Load models
only under the shared CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/zero_shot.py [--n 100] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from cowest.core.config import ModelConfig, load_config
from cowest.pipeline.evaluate import System, run_eval

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import SHARED_DATA, ci, machine, record  # noqa: E402

MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
TASKS = {"ifqa": "configs/eval_ifqa.yaml", "medmcqa": "configs/eval_medmcqa.yaml", "ethics-justice": "configs/eval_ethics.yaml"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-zero-shot"))
    ap.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    systems = [System(m, "weak_only", weak=ModelConfig(spec=f"embedded/{m}", n_threads=2)) for m in MODELS]
    lines = [f"| task (n) | metric | {' | '.join(MODELS)} | 1.5B − SmolLM2 | 0.5B − SmolLM2 |", "|---|---|" + "---|" * (len(MODELS) + 2)]
    speed: dict[str, list[float]] = {m: [] for m in MODELS}
    for task, path in TASKS.items():
        cfg = load_config(ROOT / path, [f"task.eval_limit={args.n}", f"run_dir={args.out}/{task}",
                                        f"task.data={SHARED_DATA}", "generation.weak.max_tokens=16"])
        t0 = time.perf_counter()
        m = run_eval(cfg, Path(cfg.run_dir), systems)
        h = m.headline
        cells = []
        for name in MODELS:
            cells.append(ci(m.value(name)))
            speed[name].append(m.systems[name].wall_s / m.n_samples)
        for big in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"):
            cells.append(str(m.diff(big, "smollm2-135m")))
        lines.append(f"| {task} ({m.n_samples}) | {h} | " + " | ".join(cells) + " |")
        print(f"{task}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    lines.append("| s/question (mean) | | " + " | ".join(f"{sum(v) / len(v):.2f}" for v in speed.values()) + " | | |")
    table = "\n".join(lines)
    print(table)
    if args.record:
        head = (f"## Zero-shot strength of the embedded models (`benchmarks/zero_shot.py --n {args.n}`)\n\n"
                f"{machine()}, {datetime.date.today()}. Direct answer (`weak_only`, max 16 new tokens, greedy), "
                "llama.cpp. Values with 95% bootstrap CIs; differences are paired on the same questions.\n\n")
        record("zero_shot.py", head + table)


if __name__ == "__main__":
    main()
