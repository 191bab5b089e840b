"""The whole CoWeST loop on IfQA with the embedded models: metric per system, aligned-vs-SFT difference, stage times,
and DPO seconds per pair against a plain TRL script on the same pairs.

Runs `cowest run configs/loop_ifqa.yaml` (SFT on 600 train questions, feedback on 300 with K = 4, DPO, eval on the
whole dev split) into --out, resumable (rerun the same command after a crash or a stop: finished stages are
skipped, feedback and eval continue where they were). Then trains DPO twice more on round 1's pairs, once with
cowest's recipe and once with benchmarks/plain_dpo.py, same hyper-parameters, one after the other, and prints
one markdown report; `--record` puts it in BENCHMARKS.md. About 2 h on 2 cores; alone, under the CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/loop.py [--out runs/bench-loop] [--set KEY=VALUE ...] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cowest.core.config import ExperimentConfig, load_config
from cowest.core.layout import RunLayout
from cowest.core.results import Metrics
from cowest.core.system_id import SystemId

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import SHARED_DATA, machine, paired_rows, record, run_loop, stage_rows, system_rows  # noqa: E402


def train_runtime(log: Path) -> float:
    """The Trainer's own train_runtime (the training loop, no load or save) from cowest's train_log.jsonl."""
    return next(r["train_runtime"] for r in map(json.loads, log.read_text().splitlines()) if "train_runtime" in r)


def dpo_comparison(cfg: ExperimentConfig, tmp: Path, epochs: float) -> list[str]:
    """cowest's DPO recipe and the plain TRL script on round 1's pairs, same settings, one after the other."""
    from cowest.models.hf_loading import convert_gguf, resolve_source
    from cowest.pipeline.train.dpo import load_pairs, run_dpo

    cfg = cfg.model_copy(update={"align": cfg.align.model_copy(update={"epochs": epochs})})
    run = RunLayout.of(cfg)
    a, pairs_file = cfg.align, run.pairs(1)
    n = len(load_pairs(pairs_file))
    source = resolve_source(cfg.models.weak.spec)
    t0 = time.perf_counter()
    out = run_dpo(cfg, pairs_file, tmp / "cowest", weak_source=source, reference_adapter=str(run.sft_adapter))
    ours = {"train_s": train_runtime(out / "train_log.jsonl"), "total_s": time.perf_counter() - t0}
    model_dir = convert_gguf(source) if source.endswith(".gguf") else source
    cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_dpo.py"), "--model", str(model_dir),
           "--sft-adapter", str(run.sft_adapter), "--pairs", str(pairs_file), "--out", str(tmp / "plain"),
           "--lr", str(a.lr), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
           "--max-length", str(a.max_length), "--beta", str(a.beta), "--lora-r", str(a.lora_r),
           "--lora-alpha", str(a.lora_alpha), "--seed", str(a.seed)]
    plain = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    seen = n * a.epochs
    return [
        f"| cowest `run_dpo` (in process, converted model cached) | {n} | {ours['train_s']:.1f} | "
        f"{ours['train_s'] / seen:.2f} | {ours['total_s']:.1f} |",
        f"| plain TRL script (`benchmarks/plain_dpo.py`, new process) | {plain['pairs']} | {plain['train_s']:.1f} | "
        f"{plain['train_s'] / (plain['pairs'] * a.epochs):.2f} | {plain['total_s']:.1f} |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "loop_ifqa.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-loop"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--compare-epochs", type=float, help="epochs of the two timed DPO runs (default: align.epochs)")
    ap.add_argument("--record", action="store_true", help="put the report in BENCHMARKS.md")
    args = ap.parse_args()
    overrides = [f"run_dir={args.out}", f"task.data={SHARED_DATA}", *args.set]
    cfg = load_config(args.config, overrides)
    layout = run_loop(cfg)
    run = layout.root
    metrics = Metrics.read(layout.eval.metrics)
    with tempfile.TemporaryDirectory() as tmp:
        epochs = args.compare_epochs or cfg.align.epochs
        dpo = dpo_comparison(cfg, Path(tmp), epochs)
    last, sft, weak = (SystemId.collab("aligned", cfg.rounds).name, SystemId.collab().name,
                       SystemId.weak_sft().name)
    fb = cfg.feedback
    lines = [
        f"### The loop on IfQA (`benchmarks/loop.py`, {datetime.date.today()}, {machine()})", "",
        f"`{' '.join(['python benchmarks/loop.py', *('--set ' + s for s in args.set)])}`: config "
        f"`{Path(args.config).relative_to(ROOT)}`; weak {cfg.models.weak.spec}, strong {cfg.models.strong.spec}; "
        f"SFT on {cfg.task.train_limit} IfQA train questions, feedback on {fb.questions} of them with K = {fb.k} "
        f"(temperature {fb.temperature}, {fb.evaluator} evaluator), {cfg.rounds} round(s) of DPO, evaluation on "
        f"{metrics.n_samples} IfQA dev questions (greedy); 95% bootstrap CIs. Alone on the machine.", "",
        "| stage | wall s | what |", "|---|---|---|", *stage_rows(run), "",
        f"| system | {' | '.join(metrics.metrics)} | extraction failures | strong tok/sample | wall s |",
        "|---|" + "---|" * (len(metrics.metrics) + 3), *system_rows(metrics), "",
        "| paired difference | metric | value [95% CI] |", "|---|---|---|",
        *paired_rows(metrics, [(sft, last), (SystemId.strong().name, sft), (weak, sft)]), "",
        f"DPO on round 1's pairs, same hyper-parameters (lr {cfg.align.lr}, {epochs} epochs, batch "
        f"{cfg.align.batch_size}, beta {cfg.align.beta}, LoRA r {cfg.align.lora_r}), one after the other in this run:", "",
        "| recipe | pairs | train loop s | s per pair-epoch | total s (load + train + save) |", "|---|---|---|---|---|",
        *dpo,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        record("loop.py", text)
    # The aligned adapter the eval used, so a reader can find it.
    print(f"aligned adapter: {layout.aligned_adapter(cfg.rounds, cfg.align.method)}", file=sys.stderr)


if __name__ == "__main__":
    main()
