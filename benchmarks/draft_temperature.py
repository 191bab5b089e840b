"""Feedback sampling temperature: how varied the weak model's K drafts of one question are, per temperature.

A preference pair needs two drafts of one question whose refinements score differently, which happens mostly where
the drafts differ in reaching the gold answer ("mixed" questions below). For each method run directory given, its
SFT weak model (round 1's drafter) samples K drafts at each temperature on the first N of that run's own feedback
questions, with the run's draft prompt, budget and top_p. Per temperature: distinct drafts per question, drafts that
reach the gold answer, mixed questions, drafts cut at the token budget, drafts that are only an answer line. From the
run's recorded feedback (at its config's temperature): how many mixed and how many uniform questions gave a pair,
which ties the measured share of mixed questions to pairs. Minutes per domain; alone, under the CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/draft_temperature.py RUN_DIR... [--n 100] [--temperatures 0.7 1.0 1.3] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from cowest.core.config import load_config
from cowest.core.layout import PAIRS_STATS, RunLayout
from cowest.core.records import Generation, PreferencePair, Sample, read_jsonl
from cowest.models.base import load_backend
from cowest.models.calibrate import engine_record
from cowest.pipeline.feedback import FeedbackRecord
from cowest.pipeline.loop import drafter, feedback_questions
from cowest.pipeline.rationales import reaches_gold
from cowest.scoring.extract import is_bare_answer
from cowest.tasks.prompts import draft_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import load_average, machine, record  # noqa: E402

HEAD = ("| temperature | distinct drafts / question | drafts reaching gold | mixed questions | drafts cut | "
        "answer line only | wall s |\n|---|---|---|---|---|---|---|")


def is_mixed(sample: Sample, drafts: list[str]) -> bool:
    """Some drafts reach the gold answer and some do not."""
    return len({reaches_gold(sample, d) for d in drafts}) == 2


def temperature_row(temperature: float, samples: list[Sample], gens: list[list[Generation]], wall_s: float) -> str:
    drafts = [g for row in gens for g in row]
    n_q, n_d = len(samples), len(drafts)
    distinct = sum(len({g.text for g in row}) for row in gens) / n_q
    gold = sum(reaches_gold(s, g.text) for s, row in zip(samples, gens) for g in row)
    mixed = sum(is_mixed(s, [g.text for g in row]) for s, row in zip(samples, gens))
    cut = sum(g.finish_reason == "length" for g in drafts)
    bare = sum(is_bare_answer(g.text) for g in drafts)
    return (f"| {temperature:g} | {distinct:.2f} | {gold}/{n_d} ({gold / n_d:.0%}) | {mixed}/{n_q} ({mixed / n_q:.0%}) "
            f"| {cut / n_d:.1%} | {bare / n_d:.1%} | {wall_s:.0f} |")


def pairs_by_kind(layout: RunLayout, samples: list[Sample], temperature: float) -> str:
    """The recorded feedback's pairs per question, and how many of its mixed and uniform questions gave a pair."""
    if not layout.feedback(1).exists():
        return "The run has no recorded feedback (its feedback stage has not run)."
    stats = json.loads((layout.feedback_dir(1) / PAIRS_STATS).read_text())
    by_id = {s.id: s for s in samples}
    paired = {p.question_id for p in read_jsonl(layout.pairs(1), PreferencePair)}
    counts = {True: [0, 0], False: [0, 0]}
    for r in read_jsonl(layout.feedback(1), FeedbackRecord):
        c = counts[is_mixed(by_id[r.question_id], [d.text for d in r.drafts])]
        c[0] += 1
        c[1] += r.question_id in paired
    (mq, mp), (uq, up) = counts[True], counts[False]
    return (f"The run's recorded feedback (temperature {temperature:g}, {mq + uq} questions): {stats['pairs']} pairs, "
            f"{stats['pairs_per_feedback_question']:.2f} per question; {mp} of {mq} mixed questions gave a pair "
            f"({mp / max(mq, 1):.0%}), {up} of {uq} uniform ones ({up / max(uq, 1):.0%}).")


def measure(run: Path, n: int, temperatures: list[float]) -> str:
    cfg = load_config(run / "config.yaml")
    layout = RunLayout.of(cfg)
    samples = feedback_questions(cfg)
    asked = samples[:n]
    fmt, fb = cfg.collaboration.draft_format, cfg.feedback
    messages = [draft_messages(s, fmt, cfg.collaboration.prompts) for s in asked]
    backend = load_backend(drafter(cfg, 1))
    rows = []
    try:
        for t in temperatures:
            params = cfg.generation.weak.model_copy(update={"n": fb.k, "temperature": t, "top_p": fb.top_p,
                                                            "seed": cfg.task.seed})
            t0 = time.perf_counter()
            gens = backend.generate(messages, params)
            rows.append(temperature_row(t, asked, gens, time.perf_counter() - t0))
            print(rows[-1], flush=True)
        engine = engine_record(backend)
    finally:
        backend.close()
    choice = engine.get("choice") or {}
    return "\n".join([
        f"#### {cfg.task.name} (`{run}`)", "",
        f"The SFT weak model ({cfg.models.weak.spec} with the run's SFT adapter; engine {choice.get('engine', '?')} "
        f"{choice.get('dtype', '')}), "
        f"K = {fb.k} `{fmt}` drafts of the first {len(asked)} feedback questions at top_p {fb.top_p}, at most "
        f"{cfg.generation.weak.max_tokens} tokens; the run's feedback used temperature {fb.temperature:g}.", "",
        HEAD, *rows, "", pairs_by_kind(layout, samples, fb.temperature), ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="method run directories (benchmarks/method.py --out)")
    ap.add_argument("--n", type=int, default=100, help="feedback questions per run (its first N)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0, 1.3])
    ap.add_argument("--record", action="store_true", help="write the block into BENCHMARKS.md")
    args = ap.parse_args()
    before = load_average()
    parts = [measure(run, args.n, args.temperatures) for run in args.runs]
    title = (f"### Feedback sampling temperature (`benchmarks/draft_temperature.py`, {datetime.date.today()}, "
             f"{machine()})")
    text = "\n".join([title, "", f"Load average {before} before, {load_average()} after.", "", *parts])
    print(text)
    if args.record:
        record("draft_temperature", text)


if __name__ == "__main__":
    main()
