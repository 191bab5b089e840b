"""Feedback sampling temperature: how varied the weak model's K drafts of one question are, per temperature.

A preference pair needs two drafts of one question whose refinements score differently, which happens mostly where
the drafts differ in being useful ("mixed" questions below). For each run directory given, its SFT weak model
(round 1's drafter) samples K drafts at each temperature on the first N of that run's own feedback questions, with
the run's draft prompt, budget and top_p. Per temperature: distinct drafts per question, drafts that are useful
(below), mixed questions, drafts cut at the token budget, drafts that are only an answer line. From the run's
recorded feedback (at its config's temperature), and of `--feedback` runs (copies of the run directory without its
round1/, given feedback at another temperature: `cowest feedback CONFIG run_dir=COPY feedback.temperature=T`): pairs
per question, and how many mixed and how many uniform questions gave a pair, which ties the share of mixed questions
to pairs. A draft is useful when its answer reaches the gold one; a `knowledge` draft (the demo's: facts, no answer)
when it states every fact the question needs. Minutes per domain; each temperature's row is kept in
RUN/draft_temperature.json as it is measured, and a rerun measures only the rows it lacks. Alone, under the CPU lock:

    flock /tmp/cowest-cpu.lock python benchmarks/draft_temperature.py RUN_DIR... [--n 100] [--temperatures 0.7 1.0 1.3] \\
        [--feedback RUN...] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from cowest.core.config import ExperimentConfig, load_config
from cowest.core.layout import PAIRS_STATS, RunLayout
from cowest.core.records import Generation, PreferencePair, Sample, read_jsonl
from cowest.models.base import load_backend
from cowest.models.calibrate import engine_record
from cowest.pipeline.feedback import FeedbackRecord
from cowest.pipeline.loop import drafter, feedback_questions
from cowest.pipeline.pairs import completion_text
from cowest.pipeline.rationales import reaches_gold
from cowest.pipeline.stages import fingerprint
from cowest.scoring.extract import extract_answer, is_bare_answer
from cowest.tasks.demo import states_every_fact
from cowest.tasks.prompts import draft_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import load_average, machine, record  # noqa: E402

HEAD = ("| temperature | distinct drafts / question | useful drafts | mixed questions | drafts cut | "
        "answer line only | wall s |\n|---|---|---|---|---|---|---|")


def is_useful(sample: Sample, draft: str, fmt: str) -> bool:
    """A draft that can lead the strong model to the answer: a `knowledge` draft (no answer of its own) of a question
    that lists its needed facts (the demo) states every one of them; any other draft's own answer reaches gold."""
    if fmt == "knowledge" and sample.knowledge:
        return states_every_fact(sample.knowledge, draft)
    return reaches_gold(sample, draft)


def is_mixed(sample: Sample, drafts: list[str], fmt: str) -> bool:
    """Some drafts are useful and some are not."""
    return len({is_useful(sample, d, fmt) for d in drafts}) == 2


def temperature_row(temperature: float, samples: list[Sample], gens: list[list[Generation]], fmt: str,
                    wall_s: float) -> str:
    drafts = [g for row in gens for g in row]
    n_q, n_d = len(samples), len(drafts)
    distinct = sum(len({g.text for g in row}) for row in gens) / n_q
    useful = sum(is_useful(s, g.text, fmt) for s, row in zip(samples, gens) for g in row)
    mixed = sum(is_mixed(s, [g.text for g in row], fmt) for s, row in zip(samples, gens))
    cut = sum(g.finish_reason == "length" for g in drafts)
    bare = sum(is_bare_answer(g.text) for g in drafts)
    return (f"| {temperature:g} | {distinct:.2f} | {useful}/{n_d} ({useful / n_d:.0%}) | {mixed}/{n_q} ({mixed / n_q:.0%}) "
            f"| {cut / n_d:.1%} | {bare / n_d:.1%} | {wall_s:.0f} |")


def pairs_by_kind(cfg: ExperimentConfig) -> str:
    """The recorded feedback's pairs per question, and how many of its mixed and uniform questions gave a pair."""
    layout, fmt = RunLayout.of(cfg), cfg.collaboration.draft_format
    if not layout.feedback(1).exists():
        return "The run has no recorded feedback (its feedback stage has not run)."
    stats = json.loads((layout.feedback_dir(1) / PAIRS_STATS).read_text())
    by_id = {s.id: s for s in feedback_questions(cfg)}
    pairs = read_jsonl(layout.pairs(1), PreferencePair)
    paired = {p.question_id for p in pairs}
    counts = {True: [0, 0], False: [0, 0]}
    for r in read_jsonl(layout.feedback(1), FeedbackRecord):
        c = counts[is_mixed(by_id[r.question_id], [d.text for d in r.drafts], fmt)]
        c[0] += 1
        c[1] += r.question_id in paired
    (mq, mp), (uq, up) = counts[True], counts[False]
    line = (f"The run's recorded feedback (temperature {cfg.feedback.temperature:g}, {mq + uq} questions): "
            f"{stats['pairs']} pairs, {stats['pairs_per_feedback_question']:.2f} per question, "
            f"{stats['distinct_drafts_mean']:.2f} distinct drafts per question; {mp} of {mq} mixed questions gave a "
            f"pair ({mp / max(mq, 1):.0%}), {up} of {uq} uniform ones ({up / max(uq, 1):.0%}).")
    return line if fmt == "knowledge" else f"{line} {unanswered(pairs, by_id)}"


def unanswered(pairs: list[PreferencePair], by_id: dict[str, Sample]) -> str:
    """How many pairs prefer a draft with an answer line over one without (cut at the budget before it): pairs that
    teach the weak model to finish, not what to say."""
    no_answer = lambda p, m: extract_answer(completion_text(m), by_id[p.question_id]) is None  # noqa: E731
    rej = sum(no_answer(p, p.rejected) and not no_answer(p, p.chosen) for p in pairs)
    cho = sum(no_answer(p, p.chosen) for p in pairs)
    return (f"Pairs whose rejected draft has no answer line and whose chosen one has: {rej} of {len(pairs)}; "
            f"pairs whose chosen draft has none: {cho}.")


def recorded_feedback(run: Path) -> str:
    """A run's recorded feedback, at the temperature its config gave it (`--feedback`: the same SFT model's
    feedback at other temperatures)."""
    return f"- `{run}`: " + pairs_by_kind(load_config(run / "config.yaml"))


class SavedRows:
    """Each temperature's row as it is measured, in RUN/draft_temperature.json, so that a rerun (after a crash, or
    to record) measures only the temperatures it lacks; rows of another SFT adapter or other settings are dropped."""

    def __init__(self, path: Path, key: dict) -> None:
        self.path, self.key = path, key
        old = json.loads(path.read_text()) if path.exists() else {}
        self.rows: dict[str, str] = old.get("rows", {}) if old.get("key") == key else {}
        self.engine: dict = old.get("engine", {}) if self.rows else {}

    def row(self, temperature: float) -> str | None:
        return self.rows.get(f"{temperature:g}")

    def add(self, temperature: float, row: str, engine: dict) -> None:
        self.rows[f"{temperature:g}"], self.engine = row, engine
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": self.key, "rows": self.rows, "engine": engine}, indent=1))
        tmp.replace(self.path)


def measure(run: Path, n: int, temperatures: list[float]) -> str:
    cfg = load_config(run / "config.yaml")
    asked = feedback_questions(cfg)[:n]
    fmt, fb = cfg.collaboration.draft_format, cfg.feedback
    messages = [draft_messages(s, fmt, cfg.collaboration.prompts) for s in asked]
    weak = drafter(cfg, 1)
    key = {"adapter": fingerprint(Path(weak.adapter)) if weak.adapter else None, "n": len(asked), "k": fb.k,
           "top_p": fb.top_p, "format": fmt, "max_tokens": cfg.generation.weak.max_tokens}
    saved = SavedRows(run / "draft_temperature.json", key)
    backend = None
    try:
        for t in temperatures:
            if saved.row(t) is not None:
                continue
            backend = backend or load_backend(weak)
            params = cfg.generation.weak.model_copy(update={"n": fb.k, "temperature": t, "top_p": fb.top_p,
                                                            "seed": cfg.task.seed})
            t0 = time.perf_counter()
            gens = backend.generate(messages, params)
            saved.add(t, temperature_row(t, asked, gens, fmt, time.perf_counter() - t0), engine_record(backend))
            print(saved.row(t), flush=True)
    finally:
        if backend is not None:
            backend.close()
    rows, choice = [saved.rows[f"{t:g}"] for t in temperatures], saved.engine.get("choice") or {}
    return "\n".join([
        f"#### {cfg.task.name} (`{run}`)", "",
        f"The SFT weak model ({cfg.models.weak.spec} with the run's SFT adapter; engine {choice.get('engine', '?')} "
        f"{choice.get('dtype', '')}), "
        f"K = {fb.k} `{fmt}` drafts of the first {len(asked)} feedback questions at top_p {fb.top_p}, at most "
        f"{cfg.generation.weak.max_tokens} tokens; the run's feedback used temperature {fb.temperature:g}.", "",
        HEAD, *rows, "", pairs_by_kind(cfg), ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path,
                    help="run directories whose SFT stage is done (benchmarks/method.py --out, `cowest sft`)")
    ap.add_argument("--n", type=int, default=100, help="feedback questions per run (its first N)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0, 1.3])
    ap.add_argument("--feedback", nargs="*", type=Path, default=[], metavar="RUN",
                    help="also report these runs' recorded feedback (pairs per question at their temperature)")
    ap.add_argument("--record", action="store_true", help="write the block into BENCHMARKS.md")
    args = ap.parse_args()
    before = load_average()
    parts = [measure(run, args.n, args.temperatures) for run in args.runs]
    if args.feedback:
        parts += ["Recorded feedback of runs with the same SFT model at other temperatures:", "",
                  *map(recorded_feedback, args.feedback), ""]
    title = (f"### Feedback sampling temperature (`benchmarks/draft_temperature.py`, {datetime.date.today()}, "
             f"{machine()})")
    text = "\n".join([title, "", f"Load average {before} before, {load_average()} after.", "", *parts])
    print(text)
    if args.record:
        record("draft_temperature", text)


if __name__ == "__main__":
    main()
