"""Alignment recipe options measured on a real domain's tuning questions, never on the questions a report shows.

Starts from a finished method run (`benchmarks/method.py`) and keeps its SFT model and feedback: each variant is a
copy of that run directory with `align.*` overrides (`align.rpo_alpha=null`, `align.loss_type=robust`, ...) or
pair-selection overrides (`feedback.pair_rule=best_vs_worst`, `feedback.min_gap=0.5`, ...), run again with
`cowest run`: DPO and the eval are redone, the SFT model and the scored drafts are reused (a new pair selection is
made from them in seconds), and so is the SFT-on-chosen control where it reads no changed setting. Every variant
evaluates collaboration with the SFT, the aligned and the SFT-on-chosen weak model on the whole dev split; the table
scores only the dev questions that the method block does not report (the rows outside its seeded subsample), so
a default chosen here is not tuned on the figures the method block shows. `--tune N` scores a seeded subsample of N
of those questions instead, evaluating collaboration with the SFT and the aligned weak model only (in each
variant's `tune-N`; the control column is left out), for a split whose rest is too large to evaluate five systems
on (ETHICS-justice: 2404 questions); the questions of the base run's `--fresh` check (`method.py`) are never among
them, so that check stays held out.

The systems no variant changes (weak SFT and strong alone, collaboration with the SFT weak model, and the control
where a variant keeps it) are evaluated by the first variant only; the later ones copy its traces (two variants that
each ran them wrote the same 500 predictions, the control's but 3). Resumable: rerun the same command; finished
variants and stages are skipped. On 2 cores (MedMCQA): the first variant about 80 min (34 min of DPO on 301 pairs,
500 dev questions in five systems), a later one about 50 (DPO, then the aligned model's 500 collaborations); alone,
under the CPU lock, never in CI:

    flock /tmp/cowest-cpu.lock python benchmarks/recipe.py --base runs/method-medmcqa --out runs/recipe \\
        --variant rpo1 --variant plain_dpo align.rpo_alpha=null --variant one_pair feedback.pair_rule=best_vs_worst \\
        [--tune 200] [--record]
"""

from __future__ import annotations

import argparse
from collections import Counter
import datetime
import json
import shutil
import sys
from pathlib import Path

from cowest.core.config import load_config
from cowest.core.layout import ADAPTER_META, PAIRS_STATS, EvalDir, RunLayout
from cowest.core.system_id import SystemId
from cowest.core.traces import read_traces
from cowest.pipeline.evaluate import run_eval
from cowest.pipeline.loop import loop_system
from cowest.pipeline.report import chosen_logp_drop, dpo_log
from cowest.pipeline.stage_inputs import DPO_ONLY, PAIR_SELECTION
from cowest.pipeline.stages import fingerprint
from cowest.scoring.extract import extract_answer
from cowest.scoring.metrics import bootstrap_ci, paired_bootstrap
from cowest.tasks.base import subsample

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import (difference, library_log, load_average, machine, predictions, record,  # noqa: E402
                      reported_and_rest, run_loop, value)

SFT, ALIGNED, CONTROL = (SystemId.collab().name, SystemId.collab("aligned", 1).name,
                         SystemId.collab("sft_positive", 1).name)
METRIC = "accuracy"
EVAL_ALL = ["task.eval_limit=null", "eval.strategies=[collaborate]", "eval.recall_split=null"]
"""What every variant evaluates: the loop's own systems (weak SFT and strong alone, collaboration with the SFT, the
aligned and the control weak model) and nothing else, on every dev question. Only the strong model's replies are
cached, so each variant drafts all of them again; the strong model's refinements of unchanged drafts are cache
hits."""


def tune_samples(base: RunLayout, n: int | None) -> tuple[list, int]:
    """The eval split's questions outside the base run's reported subsample (`n` of them, seeded, none of the base
    run's `--fresh` questions, when given), and how many it reported."""
    cfg = load_config(base.eval.config)  # the eval's config (a later stage may rewrite the run's own)
    reported, rest = reported_and_rest(cfg)
    if n is None:
        return rest, len(reported)
    held = {s.id for d in base.root.glob("fresh-*") if d.name[6:].isdigit()
            for s in subsample(rest, int(d.name[6:]), cfg.task.seed)}  # method.py's fresh_eval draws them so
    return subsample([s for s in rest if s.id not in held], n, cfg.task.seed), len(reported)


def tune_eval(layout: RunLayout, samples: list, done: RunLayout | None) -> RunLayout:
    """Collaboration with the SFT and the aligned weak model on `samples`, in RUN/tune-N (resumable); the SFT
    system's traces come from `done`, an earlier variant that evaluated it."""
    cfg = load_config(layout.config)
    out = EvalDir(layout.root / f"tune-{len(samples)}")
    seed = cfg.eval.seeds[0]
    if done is not None and not out.trace(SFT, seed).exists():
        out.trace(SFT, seed).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EvalDir(done.root / out.path.name).trace(SFT, seed), out.trace(SFT, seed))
    with library_log(layout):
        run_eval(cfg, out.path, [loop_system(cfg, SystemId.collab()), loop_system(cfg, SystemId.collab("aligned", 1))],
                 samples=samples)
    return layout


def reuse_traces(base: RunLayout, done: RunLayout, root: Path, control: bool) -> None:
    """Copy into a variant's eval the traces of the systems it does not change, from a variant whose eval is done:
    weak SFT and strong alone, collaboration with the SFT weak model, and the control when both keep the base run's.
    These systems read none of the settings the variants change; the eval resumes them, so each is evaluated once
    (and every variant's differences are taken against the same SFT predictions)."""
    control_of = lambda run: fingerprint(run.aligned_adapter(1, "sft_positive"))  # noqa: E731
    same_control = control and control_of(done) == control_of(base)
    unchanged = [SystemId.weak_sft().name, SystemId.strong().name, SFT, *([CONTROL] if same_control else [])]
    dst = RunLayout(root)
    for seed in load_config(done.eval.config).eval.seeds:
        for system in unchanged:
            target = dst.eval.trace(system, seed)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(done.eval.trace(system, seed), target)


def run_variant(base: RunLayout, out: Path, name: str, overrides: list[str], done: RunLayout | None,
                tune: list | None = None) -> RunLayout:
    """Copy the base run once, without its eval, without its DPO adapter when the variant changes a setting, and
    without its control too when the setting is one the control reads (`align.lr`, the pair selection ...); then run
    the loop with the variant's overrides: what was left out is redone, the rest is reused (a new pair selection is
    made from the copied feedback's scored drafts, `Stage.derived`; the unchanged systems' traces come from `done`,
    an earlier variant's finished eval)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    other = sorted(k for k in keys if not k.startswith("align.") and k not in PAIR_SELECTION)
    if other:
        raise SystemExit(f"variant {name}: {', '.join(other)}: recipe.py varies align.* settings and how pairs are "
                         f"selected ({', '.join(PAIR_SELECTION)}) only (the SFT model and the scored drafts are the "
                         "base run's)")
    if load_config(base.config).rounds != 1:
        raise SystemExit(f"{base.root}: recipe.py compares one round of alignment (the base run has more)")
    root = out / name
    if not root.exists():
        tmp = out / f".{name}.copying"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(base.root, tmp, ignore=shutil.ignore_patterns("eval", "recall", "run.lock"))
        # New pairs, or a setting the control reads too (`align.lr` ...), redo the control; DPO-only ones do not.
        control_kept = not keys - {f"align.{k}" for k in DPO_ONLY}
        for method in ("dpo",) + (() if control_kept else ("sft_positive",)) if keys else ():
            shutil.rmtree(tmp / base.align_dir(1, method).relative_to(base.root), ignore_errors=True)
        if done is not None and tune is None:
            reuse_traces(base, done, tmp, control_kept)
        tmp.rename(root)
    cfg = load_config(base.config, [f"run_dir={root}", *EVAL_ALL, *overrides])
    if tune is None:
        return run_loop(cfg)
    return tune_eval(run_loop(cfg, evaluate=False), tune, done)


def trace_of(layout: RunLayout, system: str, samples: list, tuned: bool) -> Path:
    """A system's traces file: in the loop's eval, or in the variant's `tune-N` (`--tune`)."""
    evals = EvalDir(layout.root / f"tune-{len(samples)}") if tuned else layout.eval
    return evals.trace(system, load_config(layout.config).eval.seeds[0])


def layout_predictions(layout: RunLayout, system: str, samples: list, tuned: bool = False) -> list:
    return predictions(trace_of(layout, system, samples, tuned), samples)


def draft_answers(layout: RunLayout, samples: list, tuned: bool) -> str:
    """The answer the aligned weak model's drafts end in most often, and on how many questions: alignment that
    taught one label instead of better drafts shows as nearly all of them."""
    by_id = {s.id: s for s in samples}
    got = Counter(extract_answer(t.steps[0].output.text, by_id[t.sample_id])
                  for t in read_traces(trace_of(layout, ALIGNED, samples, tuned)) if t.sample_id in by_id)
    answer, n = got.most_common(1)[0]
    return f"`{answer}` {n} of {sum(got.values())}"


def dpo_trend(layout: RunLayout) -> str:
    """The DPO run's reward margin over its last tenth of logged steps (each step sees other pairs) and the chosen
    drafts' log-ratio change per token between the first and the last tenth (`report.chosen_logp_drop`)."""
    adapter = layout.aligned_adapter(1)
    log = dpo_log(adapter) if (adapter / "train_log.jsonl").exists() else []
    if not log:
        return "–"
    meta = json.loads((adapter / ADAPTER_META).read_text())
    drop = chosen_logp_drop(log, float(meta["beta"]), meta.get("chosen_tokens_mean"))
    tail = log[-max(1, len(log) // 10):]
    return f"{sum(r['rewards/margins'] for r in tail) / len(tail):+.2f} / {-drop:+.3f}"


def variant_row(name: str, overrides: list[str], layout: RunLayout, samples: list, tuned: bool) -> str:
    sft, aligned = (layout_predictions(layout, s, samples, tuned) for s in (SFT, ALIGNED))
    control = "–" if tuned else difference(
        paired_bootstrap(METRIC, samples, aligned, layout_predictions(layout, CONTROL, samples)))
    stats = json.loads((layout.feedback_dir(1) / PAIRS_STATS).read_text())
    return (f"| {name} | {' '.join(f'`{o}`' for o in overrides) or '(the method config)'} | {stats['pairs']} | "
            f"{value(bootstrap_ci(METRIC, samples, aligned))} | {difference(paired_bootstrap(METRIC, samples, aligned, sft))} | "
            f"{control} | {draft_answers(layout, samples, tuned)} | {dpo_trend(layout)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="a finished benchmarks/method.py run directory")
    ap.add_argument("--out", required=True, help="variants go in OUT/<name>")
    ap.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [KEY=VALUE ...]",
                    help="a name and its config overrides (repeatable)")
    ap.add_argument("--tune", type=int, metavar="N", help="score N seeded questions of the rest, SFT and aligned "
                    "collaboration only (a split too large to evaluate whole)")
    ap.add_argument("--record", action="store_true", help="put the table in BENCHMARKS.md")
    args = ap.parse_args()
    base, out = RunLayout(Path(args.base)), Path(args.out)
    samples, n_reported = tune_samples(base, args.tune)
    tuned = args.tune is not None
    before = load_average()
    layouts: dict[str, RunLayout] = {}
    for v in args.variant:  # in order: the first variant's eval serves the systems the later ones do not change
        layouts[v[0]] = run_variant(base, out, v[0], v[1:], next(iter(layouts.values()), None),
                                    samples if tuned else None)
    first = next(iter(layouts.values()))
    cfg = load_config(base.config)
    scored = (f"a seeded subsample of {len(samples)} of the {cfg.task.eval_split} questions outside the {n_reported} "
              "the method block reports and its held-out check" if tuned else
              f"the {len(samples)} {cfg.task.eval_split} questions outside the {n_reported} the method block reports")
    text = "\n".join([
        f"### Alignment recipe options on {cfg.task.name} (`benchmarks/recipe.py`, {datetime.date.today()}, "
        f"{machine()})", "",
        f"{cfg.task.name}: the SFT model and the feedback of `{base.root.name}`; scored on {scored}, greedy, "
        f"95% paired bootstrap CIs; the systems a variant does not change are evaluated once, by the first; "
        f"load average {before} before the last invocation, {load_average()} after. "
        f"Collaboration with the SFT weak model on these questions: "
        f"{value(bootstrap_ci(METRIC, samples, layout_predictions(first, SFT, samples, tuned)))}.", "",
        f"| variant | overrides | pairs | aligned {METRIC} | aligned − SFT | aligned − SFT-on-chosen | "
        "aligned drafts' commonest answer | DPO reward margin (last tenth of steps) / chosen log-ratio change per token |",
        "|---|---|---|---|---|---|---|---|",
        *[variant_row(v[0], v[1:], layouts[v[0]], samples, tuned) for v in args.variant], "",
    ])
    print(text)
    if args.record:
        record(f"recipe.py {cfg.task.name}", text)


if __name__ == "__main__":
    main()
