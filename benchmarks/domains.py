"""Weak alone, strong alone and collaboration (each draft format) on the three domains' dev splits.

Uses configs/eval_{ifqa,medmcqa,ethics}.yaml with the embedded models (n samples each, default 200), runs
`cowest.pipeline.evaluate.run_eval` into runs/bench-domains/<task> (resumable: rerun to continue), and prints one table
with 95% bootstrap CIs; `--record` appends it to BENCHMARKS.md. Load models only under the shared CPU lock.

    flock /tmp/cowest-cpu.lock python benchmarks/domains.py [--n 200] [--strong embedded/qwen2.5-coder-0.5b]
        [--max-tokens 128] [--tasks ifqa medmcqa ethics] [--set KEY=VALUE ...] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from cowest.core.config import load_config
from cowest.pipeline.evaluate import System, run_eval

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import SHARED_DATA, machine, record  # noqa: E402

FORMATS = ("cot", "knowledge", "direct")


def systems() -> list[System]:
    return [System("weak_only", "weak_only"), System("strong_only", "strong_only")] + [
        System(f"collaborate-{f}", "collaborate", f) for f in FORMATS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="dev samples per task")
    ap.add_argument("--tasks", nargs="+", default=["ifqa", "medmcqa", "ethics"])
    ap.add_argument("--strong", help="strong model spec (default: the configs', embedded/qwen2.5-coder-1.5b)")
    ap.add_argument("--max-tokens", type=int, help="max new tokens for both roles (default: the configs')")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-domains"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. models.strong.engine=hf models.strong.dtype=bfloat16")
    ap.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = ap.parse_args()
    rows, specs, work = [], set(), 0.0
    for task in args.tasks:
        ov = [f"task.eval_limit={args.n}", f"run_dir={args.out}/{task}", f"task.data={SHARED_DATA}"]
        if args.strong:
            ov.append(f"models.strong.spec={args.strong}")
        if args.max_tokens:
            ov += [f"generation.weak.max_tokens={args.max_tokens}", f"generation.strong.max_tokens={args.max_tokens}"]
        cfg = load_config(ROOT / "configs" / f"eval_{task}.yaml", ov + args.set)
        engines = "; ".join(f"{r} {m.spec} ({m.engine} engine, {m.dtype}, batch {m.batch_size})"
                            for r, m in (("weak", cfg.models.weak), ("strong", cfg.models.strong)))
        specs.add(f"{engines}, "
                  f"max tokens {cfg.generation.weak.max_tokens}/{cfg.generation.strong.max_tokens}")
        m = run_eval(cfg, Path(cfg.run_dir), systems())
        name = task + (f"/{cfg.task.subset}" if cfg.task.subset else "")
        for sys_name, s in m.systems.items():
            cells = [f"{v.value:.3f} [{v.ci[0]:.2f}, {v.ci[1]:.2f}]" for v in s.metrics.values()]
            work += s.wall_s  # summed over every attempt, so a resumed run still reports its whole cost
            rows.append(f"| {name} | {sys_name} | {' / '.join(m.metrics)} | {' / '.join(cells)} | "
                        f"{s.extraction_failures.total}/{m.n_samples} | {s.tokens_per_sample('strong'):.0f} | "
                        f"{s.wall_s:.0f} |")
    lines = [f"### Domains: weak, strong, collaboration ({datetime.date.today()}, {machine()})", "",
             f"`python benchmarks/domains.py {' '.join(sys.argv[1:])}` — dev splits, {args.n} samples per task, greedy, "
             f"{'; '.join(sorted(specs))}; 95% bootstrap CIs; {work:.0f} s of generation "
             "in all (systems' wall time summed over every attempt of a resumed run).", "",
             "| task | system | metrics | values [95% CI] | extraction failures | strong tok/sample | wall s |",
             "|---|---|---|---|---|---|---|"] + rows
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        record("domains.py", text)


if __name__ == "__main__":
    main()
