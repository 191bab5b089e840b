"""The method on real domains with the strong default: ETHICS (justice) and MedMCQA from ../shared/data.

For each domain, `cowest run configs/method_<domain>.yaml` (weak SFT on train rows with bootstrapped rationales, the
rows that got none trained as a bare answer or left out as the config says,
feedback on 200 train questions with K = 4, DPO and the SFT-on-chosen control, evaluation on 300 dev questions of:
weak SFT alone, strong alone, SuperICL, collaboration with the SFT, the aligned and the SFT-on-chosen weak model),
then one markdown block per domain: stage times, every system with its CI, the share of replies cut at the token
budget, the pairs the feedback found per question and the sampling that drew them, and the paired differences that
carry the method's claims (collaboration against the best single model, aligned against SFT collaboration, DPO
against its control). `--fresh N` then evaluates collaboration with the SFT and with the aligned weak model on N more
dev questions outside the reported ones (a seeded subsample of the rest, in RUN/fresh-N), a second look at the
aligned − SFT difference on questions that did not shape it, and adds it to the block with the difference on both
sets pooled. `--record` replaces only the blocks of the domains it ran (`method.py <domain>`), so one domain
can be measured again while the other's record stays.

Resumable after any interruption: rerun the same command; finished stages are skipped and feedback and eval go on
where they stopped. Hours on 2 cores (about 2-3 h a domain); alone, under the CPU lock, never in CI:

    flock /tmp/cowest-cpu.lock python benchmarks/method.py [--domains ethics medmcqa] [--out runs] [--force eval] \
        [--fresh 900] [--record]
"""

from __future__ import annotations

import argparse
from collections import Counter
import datetime
import json
import sys
from pathlib import Path

from cowest.core.config import ExperimentConfig, load_config
from cowest.core.layout import PAIRS_STATS, EvalDir, RunLayout
from cowest.models.hf_loading import read_adapter_meta
from cowest.pipeline.pairs import bare_answer_pairs
from cowest.pipeline.rationales import RATIONALES_FILE, RATIONALES_STATS
from cowest.pipeline.stages import STAGES
from cowest.core.system_id import SystemId
from cowest.core.records import PreferencePair, read_jsonl
from cowest.core.traces import read_traces
from cowest.pipeline.evaluate import run_eval
from cowest.pipeline.loop import loop_system
from cowest.scoring.extract import is_bare_answer
from cowest.scoring.metrics import bootstrap_ci, paired_bootstrap
from cowest.tasks.base import load_samples, subsample

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_io import (SHARED_DATA, difference, library_log, load_average, machine, paired_rows,  # noqa: E402
                      predictions, record, reported_and_rest, run_loop, stage_rows, system_rows, value)

WEAK, STRONG, SUPER_ICL = SystemId.weak_sft().name, SystemId.strong().name, SystemId("super_icl").name
SFT, ALIGNED, CONTROL = (SystemId.collab().name, SystemId.collab("aligned", 1).name,
                         SystemId.collab("sft_positive", 1).name)
NAMES = {WEAK: "weak SFT alone", STRONG: "strong alone", SUPER_ICL: "SuperICL (SFT weak)",
         SFT: "collaboration, SFT weak", ALIGNED: "collaboration, aligned weak",
         CONTROL: "collaboration, SFT-on-chosen weak"}
METRIC = "accuracy"


def best_single(metrics: dict) -> str:
    """The better of the two single models on the headline metric: the bar collaboration has to clear."""
    return max((WEAK, STRONG), key=lambda s: metrics["systems"][s]["metrics"][METRIC]["value"])


def cut_share(metrics: dict) -> str:
    """Replies that hit the token budget, per system and role (the eval stage's own count; goal: at most 5%)."""
    parts = []
    for name, s in metrics["systems"].items():
        for role, u in s["usage"].items():
            if u.get("calls"):
                parts.append(f"{NAMES.get(name, name)} ({role}) {u.get('cut', 0) / u['calls']:.1%}")
    return "; ".join(parts)


def sft_rows_line(cfg: ExperimentConfig, layout: RunLayout) -> str:
    """How many SFT rows got a bootstrapped rationale (and how many only from a hinted ask, `sft.rationalize`), the
    gold answers of those rows, and what the SFT stage did with the rest: its adapter records the rows it trained (an
    adapter older than that record trained every sample). Keeping only replies that reach gold can skew the labels
    toward the ones the rationale model favours; the mix shows it (sft.balance then evens out the rows trained)."""
    r = json.loads((layout.sft_dir / RATIONALES_STATS).read_text())
    meta = read_adapter_meta(layout.sft_adapter)
    trained = meta.get("rows", meta["samples"])
    rest = "left out" if cfg.sft.without_rationale == "drop" else "trained on the bare answer line"
    kept = {json.loads(ln)["id"] for ln in (layout.sft_dir / RATIONALES_FILE).read_text().splitlines() if ln.strip()}
    golds = Counter(s.gold for s in load_samples(cfg.task, cfg.task.train_split, cfg.task.train_limit) if s.id in kept)
    hinted = f", {r['rationalized']} of them only when given the gold answer as a hint" if r.get("rationalized") else ""
    even = f", the gold answers evened out by sft.balance={cfg.sft.balance}" if cfg.sft.balance != "none" else ""
    return (f"SFT rows: {r['bootstrapped']} of {r['samples']} train rows got a rationale from the {r['source']} "
            f"model ({r['samples_per_question']} samples each, kept when they reached the gold answer{hinted}); "
            f"their gold answers: {', '.join(f'{n} {g}' for g, n in golds.most_common())}; the "
            f"{r['without_rationale']} without one were {rest} ({trained} rows trained{even}).")


def bare_drafts_line(layout: RunLayout, stats: dict) -> str:
    """How often a draft is only an answer line: in the pairs (chosen and rejected) and in each weak model's dev
    drafts. The ETHICS run's alignment collapsed into such drafts; this line shows it, or its absence."""
    parts = []
    for name in (SFT, ALIGNED, CONTROL):
        drafts = [st.output.text for t in read_traces(layout.eval.trace(name, 0)) for st in t.steps
                  if st.role == "weak" and st.output is not None]
        if drafts:
            parts.append(f"{NAMES[name]} {sum(map(is_bare_answer, drafts))} of {len(drafts)}")
    bare = bare_answer_pairs(read_jsonl(layout.pairs(1), PreferencePair))  # pairs_stats.json older than the count lack it
    return (f"Drafts that are only an answer line: in the pairs, {bare['chosen']} chosen and {bare['rejected']} "
            f"rejected of {stats['pairs']}; on dev, {'; '.join(parts)}.")


def weak_answer_line(cfg: ExperimentConfig) -> str:
    """How the weak model answered alone (and for SuperICL): the row "weak SFT alone" means one or the other."""
    how = ("its draft, in the form SFT taught (`collaboration.weak_answer: draft`)"
           if cfg.collaboration.weak_answer == "draft" else "the answer prompt (`collaboration.weak_answer: answer`)")
    return f"The weak model answered alone, and gave SuperICL its prediction, with {how}."


def domain_block(domain: str, cfg: ExperimentConfig, layout: RunLayout, load_before: str) -> str:
    run = layout.root
    metrics = json.loads(layout.eval.metrics.read_text())
    stats = json.loads((layout.feedback_dir(1) / PAIRS_STATS).read_text())
    best = best_single(metrics)
    claims = [(best, SFT), (best, ALIGNED), (SFT, ALIGNED), (CONTROL, ALIGNED)]
    return "\n".join([
        f"### The method on {domain} (`benchmarks/method.py`, `configs/method_{domain}.yaml`, {datetime.date.today()}, "
        f"{machine()})", "",
        f"{metrics['n_samples']} dev questions, greedy, 95% bootstrap CIs; load average {load_before} before the "
        f"run's last invocation, {load_average()} after.", "",
        "| stage | wall s | what |", "|---|---|---|", *stage_rows(run), "",
        f"| system | {' | '.join(metrics['metrics'])} | extraction failures | strong tok/sample | wall s |",
        "|---|" + "---|" * (len(metrics["metrics"]) + 3), *system_rows(metrics, NAMES), "",
        "| paired difference | metric | value [95% CI] |", "|---|---|---|",
        *[r for r in paired_rows(metrics, claims, NAMES) if f"| {METRIC} |" in r], "",
        f"Replies cut at the token budget: {cut_share(metrics)}.", "", weak_answer_line(cfg), "",
        sft_rows_line(cfg, layout), "",
        f"Feedback: {stats['questions']} train questions × K = {stats['sampling']['k']} drafts (temperature "
        f"{stats['sampling']['temperature']:g}, top_p {stats['sampling']['top_p']:g}) → {stats['pairs']} pairs "
        f"({stats['pairs_per_feedback_question']:.2f} per question, goal ≥ 1); distinct drafts per question "
        f"{stats['distinct_drafts_mean']:.2f}; questions without a pair {stats['questions_without_pair']} "
        f"({', '.join(f'{k} {v}' for k, v in stats['no_pair_reasons'].items()) or 'none'}).", "",
        bare_drafts_line(layout, stats), "",
    ])


def fresh_eval(cfg: ExperimentConfig, layout: RunLayout, n: int) -> list[str]:
    """Collaboration with the SFT and the aligned weak model on `n` dev questions outside the reported subsample
    (seeded with the task's seed; resumable like any eval), and the block's lines for it: both systems, their paired
    difference, and the difference on the reported and the fresh questions pooled."""
    reported, rest = reported_and_rest(cfg)
    fresh, out = subsample(rest, n, cfg.task.seed), EvalDir(layout.root / f"fresh-{n}")
    with library_log(layout):
        run_eval(cfg, out.path, [loop_system(cfg, SystemId.collab()), loop_system(cfg, SystemId.collab("aligned", 1))],
                 samples=fresh)
    seed = cfg.eval.seeds[0]
    sft, aligned = (predictions(out.trace(s, seed), fresh) for s in (SFT, ALIGNED))
    sft_all, aligned_all = ([*predictions(layout.eval.trace(s, seed), reported), *p]
                            for s, p in ((SFT, sft), (ALIGNED, aligned)))
    return [
        f"Held out from the figures above (`--fresh {n}`): {len(fresh)} more {cfg.task.eval_split} questions, a "
        f"seeded subsample of the {len(rest)} outside the {len(reported)} reported; collaboration with the SFT weak "
        f"model {value(bootstrap_ci(METRIC, fresh, sft))}, with the aligned weak model "
        f"{value(bootstrap_ci(METRIC, fresh, aligned))}; **aligned − SFT "
        f"{difference(paired_bootstrap(METRIC, fresh, aligned, sft))}** ({METRIC}); on all "
        f"{len(reported) + len(fresh)} questions pooled "
        f"{difference(paired_bootstrap(METRIC, reported + fresh, aligned_all, sft_all))}.", "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", nargs="+", default=["ethics", "medmcqa"], choices=["ethics", "medmcqa"])
    ap.add_argument("--out", default=str(ROOT / "runs"), help="run directories go in OUT/method-<domain>")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (every domain)")
    ap.add_argument("--force", nargs="+", default=[], choices=STAGES, metavar="STAGE",
                    help="redo these stages (every domain), as `cowest run --force`: after a config change they refuse")
    ap.add_argument("--fresh", type=int, metavar="N",
                    help="also evaluate SFT and aligned collaboration on N dev questions outside the reported ones")
    ap.add_argument("--record", action="store_true", help="put the report in BENCHMARKS.md")
    args = ap.parse_args()
    for domain in args.domains:
        overrides = [f"run_dir={Path(args.out) / f'method-{domain}'}", f"task.data={SHARED_DATA}", *args.set]
        cfg = load_config(ROOT / "configs" / f"method_{domain}.yaml", overrides)
        before = load_average()
        layout = run_loop(cfg, set(args.force))
        text = domain_block(domain, cfg, layout, before)
        if args.fresh:
            text += "\n" + "\n".join(fresh_eval(cfg, layout, args.fresh))
        print(text)
        if args.record:
            record(f"method.py {domain}", text)


if __name__ == "__main__":
    main()
