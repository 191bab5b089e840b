"""Preference pairs from collaborative feedback, their statistics and plot.

Drafts with Δ > margin are chosen, drafts with Δ <= 0 rejected (`feedback.preference: better`: any draft over one
with a lower Δ), always within one question; of these combinations the largest gaps Δ_chosen − Δ_rejected are kept
(feedback.min_gap, feedback.max_pairs_per_question). Rows are TRL's `prompt` / `chosen` / `rejected`
(conversational when the weak model has a chat template) plus the question id and both Δ values, so
`datasets.load_dataset("json", data_files="pairs.jsonl")` reads them unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cowest.core.config import FeedbackConfig
from cowest.pipeline.feedback import FeedbackRecord
from cowest.core.layout import FAULTS_FILE, PAIRS_FILE, PAIRS_PLOT, PAIRS_STATS
from cowest.models.text import render_plain  # the layout the hf backend prompts a template-less weak model with
from cowest.core.records import Message, PreferencePair, write_jsonl
from cowest.scoring.extract import is_bare_answer

Scored = tuple[str, float]  # a distinct draft text and its Δ


def candidate_pairs(rec: FeedbackRecord, fb: FeedbackConfig) -> list[tuple[Scored, Scored]]:
    """Every (chosen, rejected) combination of this question's distinct drafts, largest gap Δ_chosen − Δ_rejected
    first (equal gaps keep the drafts' order)."""
    scored: dict[str, float] = {}
    for d in rec.drafts:  # distinct texts only: a duplicate draft is the same preference
        if d.delta is not None and d.text.strip():
            scored.setdefault(d.text, d.delta)
    if fb.preference == "better":
        combos = [(c, r) for c in scored.items() for r in scored.items() if c[1] > r[1]]
    else:
        chosen = [(t, v) for t, v in scored.items() if v > fb.margin]
        rejected = [(t, v) for t, v in scored.items() if v <= 0]
        combos = [(c, r) for c in chosen for r in rejected]
    return sorted(combos, key=lambda cr: cr[1][1] - cr[0][1])


def select_pairs(combos: list[tuple[Scored, Scored]], fb: FeedbackConfig) -> list[tuple[Scored, Scored]]:
    """Drop gaps below `fb.min_gap`; keep the largest `fb.max_pairs_per_question` (one for best_vs_worst)."""
    kept = [(c, r) for c, r in combos if c[1] - r[1] >= fb.min_gap]
    return kept[: 1 if fb.pair_rule == "best_vs_worst" else fb.max_pairs_per_question]


def question_pairs(rec: FeedbackRecord, fb: FeedbackConfig, conversational: bool = True) -> list[PreferencePair]:
    combos = select_pairs(candidate_pairs(rec, fb), fb)
    prompt: list[Message] | str = rec.prompt if conversational else render_plain(rec.prompt)
    out = []
    for (ct, cv), (rt, rv) in combos:
        out.append(
            PreferencePair(
                prompt=prompt,
                chosen=[{"role": "assistant", "content": ct}] if conversational else ct,
                rejected=[{"role": "assistant", "content": rt}] if conversational else rt,
                question_id=rec.question_id,
                delta_chosen=cv,
                delta_rejected=rv,
            )
        )
    return out


def no_pair_reason(rec: FeedbackRecord, fb: FeedbackConfig) -> str:
    deltas = [d.delta for d in rec.drafts if d.delta is not None]
    if not deltas:
        return "unscored"
    if len({d.text for d in rec.drafts}) == 1:
        return "identical_drafts"
    if fb.preference == "better":
        return "all_equal" if len(set(deltas)) == 1 else "gap_below_min_gap"
    if all(v > fb.margin for v in deltas):
        return "all_helpful"
    if all(v <= 0 for v in deltas):
        return "none_helpful" if len(set(deltas)) > 1 or deltas[0] < 0 else "all_equal"
    if any(v <= 0 for v in deltas) and any(v > fb.margin for v in deltas):
        return "gap_below_min_gap"
    return "only_within_margin"


def distinct_drafts(rec: FeedbackRecord) -> int:
    """How many different non-empty drafts the weak model wrote for this question."""
    return len({d.text for d in rec.drafts if d.text.strip()})


def naive_calls(records: list[FeedbackRecord], fb: FeedbackConfig) -> dict[str, int]:
    """The calls a plain script with the same evaluator would make: K refinements + 1 solo answer per question
    (no deduplication, no cache), and a judge call for each of those K + 1 answers where the evaluator judges:
    every question for `judge`, the questions where it did judge for `hybrid` (metric ties), none for `metric`."""
    judged = {"metric": 0, "judge": len(records),
              "hybrid": sum(r.requests.get("judge", 0) > 0 for r in records)}[fb.evaluator]
    return {"strong": len(records) * (fb.k + 1), "judge": judged * (fb.k + 1)}


def completion_text(d: list[Message] | str) -> str:
    """The draft text of a pair's `chosen` or `rejected` side, in either TRL form."""
    return d if isinstance(d, str) else d[-1]["content"]


def bare_answer_pairs(pairs: list[PreferencePair]) -> dict[str, int]:
    """How many pairs choose, and how many reject, a draft that is only an answer line."""
    def bare(d: list[Message] | str) -> bool:
        return is_bare_answer(completion_text(d))

    return {"chosen": sum(bare(p.chosen) for p in pairs), "rejected": sum(bare(p.rejected) for p in pairs)}


def build_pairs(records: list[FeedbackRecord], fb: FeedbackConfig, conversational: bool = True) -> tuple[list[PreferencePair], dict[str, Any]]:
    """The selected pairs and the statistics of how they were obtained."""
    pairs: list[PreferencePair] = []
    per_question: list[int] = []
    reasons: Counter[str] = Counter()
    deltas: list[float] = []
    requests: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    unscored = candidates = 0
    for rec in records:
        candidates += len(candidate_pairs(rec, fb))
        qp = question_pairs(rec, fb, conversational)
        pairs.extend(qp)
        per_question.append(len(qp))
        if not qp:
            reasons[no_pair_reason(rec, fb)] += 1
        deltas.extend(d.delta for d in rec.drafts if d.delta is not None)
        requests.update(rec.requests)
        calls.update(rec.calls)
        tokens.update(rec.tokens)
        unscored += rec.unscored
    distinct = [distinct_drafts(r) for r in records]
    naive = naive_calls(records, fb)
    naive_total = naive["strong"] + naive["judge"]
    actual = calls.get("strong", 0) + calls.get("judge", 0)
    gaps = [p.delta_chosen - p.delta_rejected for p in pairs]
    stats = {
        "questions": len(records),
        "conversational": conversational,
        "drafts": sum(len(r.drafts) for r in records),
        "sampling": {"k": fb.k, "temperature": fb.temperature, "top_p": fb.top_p},
        "distinct_drafts_mean": (sum(distinct) / len(distinct)) if distinct else 0.0,
        "distinct_drafts_histogram": dict(sorted(Counter(distinct).items())),
        "candidate_pairs": candidates,
        "pairs": len(pairs),
        "pairs_per_feedback_question": (len(pairs) / len(records)) if records else 0.0,
        "mean_gap": (sum(gaps) / len(gaps)) if gaps else None,
        "bare_answer_pairs": bare_answer_pairs(pairs),
        "positive_share": (sum(v > fb.margin for v in deltas) / len(deltas)) if deltas else 0.0,
        "delta_histogram": dict(sorted(Counter(round(v, 2) for v in deltas).items())),
        "pairs_per_question": dict(sorted(Counter(per_question).items())),
        "questions_without_pair": sum(n == 0 for n in per_question),
        "no_pair_reasons": dict(reasons),
        "unscored": unscored,
        "requests": dict(requests),
        "calls": dict(calls),
        "tokens": dict(tokens),
        "strong_and_judge_calls": actual,
        "naive_calls": naive,
        "naive_strong_and_judge_calls": naive_total,
        "strong_calls_per_pair": (actual / len(pairs)) if pairs else None,
        "naive_strong_calls_per_pair": (naive_total / len(pairs)) if pairs else None,
    }
    return pairs, stats


def write_pairs(records: list[FeedbackRecord], fb: FeedbackConfig, out_dir: Path, conversational: bool = True) -> dict[str, Any]:
    """pairs.jsonl, pairs_stats.json (with `faults`: the stage's `faults.json`, when there is one) and pairs.png."""
    pairs, stats = build_pairs(records, fb, conversational)
    faults_path = out_dir / FAULTS_FILE
    if faults_path.exists():
        try:
            stats["faults"] = json.loads(faults_path.read_text(encoding="utf-8"))
        except ValueError:  # torn by a kill: the counts are lost, the pairs are not
            stats["faults"] = {}
    tmp = out_dir / (PAIRS_FILE + ".tmp")
    rows: list[BaseModel] = list(pairs)
    write_jsonl(tmp, rows)
    tmp.replace(out_dir / PAIRS_FILE)
    (out_dir / PAIRS_STATS).write_text(json.dumps(stats, indent=2))
    plot_pairs(records, stats, out_dir / PAIRS_PLOT)
    return stats


def plot_pairs(records: list[FeedbackRecord], stats: dict[str, Any], path: Path) -> None:
    """Δ histogram, pairs per question, why questions gave no pair, and how many drafts were distinct."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    deltas = [d.delta for r in records for d in r.drafts if d.delta is not None]
    axes[0].hist(deltas or [0], bins=21, color="#4472c4")
    axes[0].axvline(0, color="k", lw=0.8)
    axes[0].set(title=f"influence Δ (positive share {stats['positive_share']:.0%})", xlabel="Δ = E(y*) − E(z)",
                ylabel="drafts")
    ppq = stats["pairs_per_question"]
    axes[1].bar([str(k) for k in ppq], list(ppq.values()), color="#70ad47")
    axes[1].set(title=f"pairs per question ({stats['pairs']} pairs)", xlabel="pairs", ylabel="questions")
    reasons = stats["no_pair_reasons"] or {"(none)": 0}
    axes[2].barh(list(reasons), list(reasons.values()), color="#ed7d31")
    axes[2].set(title=f"questions without a pair: {stats['questions_without_pair']}", xlabel="questions")
    hist = stats["distinct_drafts_histogram"]
    axes[3].bar([str(k) for k in hist], list(hist.values()), color="#a5a5a5")
    axes[3].set(title=f"distinct drafts per question (mean {stats['distinct_drafts_mean']:.2f}, "
                      f"T={stats['sampling']['temperature']})", xlabel="distinct drafts", ylabel="questions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def few_pairs_warning(stats: dict[str, Any], fb: FeedbackConfig) -> str | None:
    """One line when fewer than `fb.warn_pair_share` of the questions gave a pair: the share, why the others gave
    none (with counts) and the settings that change it; None otherwise."""
    n = stats["questions"]
    with_pair = n - stats["questions_without_pair"]
    if n == 0 or with_pair >= fb.warn_pair_share * n:
        return None
    why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(stats["no_pair_reasons"].items(), key=lambda kv: -kv[1]))
    return (f"only {with_pair} of {n} feedback questions gave a preference pair ({with_pair / n:.0%}, below "
            f"feedback.warn_pair_share={fb.warn_pair_share:g}); without one: {why or 'none'}. More distinct drafts: "
            f"raise feedback.temperature (now {fb.temperature:g}) or feedback.k (now {fb.k}); more questions: "
            f"feedback.questions (now {fb.questions if fb.questions is not None else 'all'})")
