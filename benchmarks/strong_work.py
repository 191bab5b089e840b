"""The strong role's own work, per embedded candidate: the measurement behind the strong default.

zero_shot.py ranks the models by 16-token direct answers; a strong model is asked for something else. Here each
candidate does what the strong role does, at the token budgets of the configs that use it:
- refine: the demo's refine prompt over a perfect draft (each tune question's needed facts, from the generator), so
  the score is the model's own step from given facts to the answer: the ceiling of demo collaboration;
- chain of thought alone (`strong_only`) on MedMCQA and ETHICS-justice dev at their eval configs' budget (256).
Each figure with its 95% bootstrap CI, the share of replies cut at the budget, and seconds per question. Alone,
under the CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/strong_work.py [--n 100] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from cowest.core.config import load_config
from cowest.pipeline.evaluate import System, run_eval

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import SHARED_DATA, load_average, machine, record  # noqa: E402

CANDIDATES = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
COT = {"medmcqa": "configs/eval_medmcqa.yaml", "ethics-justice": "configs/eval_ethics.yaml"}


def refine_oracle(model: str) -> tuple[str, float, float]:
    """The demo's refine prompt over the gold facts of each tune question: (metric with CI, cut share, s/question)."""
    from cowest.models.base import load_backend
    from cowest.scoring.extract import extract_answer
    from cowest.scoring.metrics import bootstrap_ci
    from cowest.tasks import demo
    from cowest.tasks.prompts import refine_messages

    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"models.strong.spec=embedded/{model}"])
    samples = demo.build("tune", cfg.task)
    backend = load_backend(cfg.models.strong)
    t0 = time.perf_counter()
    prompts = [refine_messages(s, s.knowledge or "", "knowledge", cfg.collaboration.prompts) for s in samples]
    gens = [g[0] for g in backend.generate(prompts, cfg.generation.strong)]
    secs = (time.perf_counter() - t0) / len(samples)
    backend.close()
    cut = [g.finish_reason == "length" for g in gens]
    preds = [extract_answer(g.text, s, c) for g, s, c in zip(gens, samples, cut)]
    ci = bootstrap_ci("exact_match", samples, preds)
    return f"{ci.value:.3f} [{ci.lo:.3f}, {ci.hi:.3f}]", sum(cut) / len(cut), secs


def cot_alone(task: str, n: int, out: Path) -> dict[str, tuple[str, float, float]]:
    """`strong_only` (chain of thought) of every candidate on `task`'s dev split at its eval config's budget."""
    cfg = load_config(ROOT / COT[task], [f"task.eval_limit={n}", f"run_dir={out / task}",
                                         f"task.data={SHARED_DATA}"])
    systems = []
    for m in CANDIDATES:
        strong = cfg.models.strong.model_copy(update={"spec": f"embedded/{m}"})
        systems.append(System(m, "strong_only", None, None, strong=strong))
    metrics = run_eval(cfg, Path(cfg.run_dir), systems).model_dump(mode="json")
    h, res = metrics["headline"], {}
    for m in CANDIDATES:
        s = metrics["systems"][m]
        v, u = s["metrics"][h], s["usage"]["strong"]
        res[m] = (f"{h} {v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]", u["cut"] / max(u["calls"], 1),
                  s["wall_s"] / metrics["n_samples"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="dev questions per chain-of-thought task")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-strong-work"))
    ap.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    before = load_average()
    rows = []
    for m in CANDIDATES:
        value, cut, secs = refine_oracle(m)
        rows.append(f"| demo refine over the needed facts (tune, 60) | {m} | exact_match {value} | {cut:.0%} | "
                    f"{secs:.2f} |")
    for task in COT:
        for m, (value, cut, secs) in cot_alone(task, args.n, Path(args.out)).items():
            rows.append(f"| {task} chain of thought alone (dev, {args.n}) | {m} | {value} | {cut:.0%} | {secs:.2f} |")
    text = "\n".join([
        f"### The strong role's own work (`benchmarks/strong_work.py --n {args.n}`, {datetime.date.today()}, "
        f"{machine()})", "",
        f"Greedy, the configs' engines (auto) and budgets (demo 96 strong tokens, eval configs 256); 95% bootstrap "
        f"CIs; load average {before} before, {load_average()} after.", "",
        "| work | model | metric [95% CI] | replies cut | s/question |", "|---|---|---|---|---|", *rows,
    ])
    print(text)
    if args.record:
        record("strong_work.py", text)


if __name__ == "__main__":
    main()
