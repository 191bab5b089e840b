"""Preference pairs from collaborative feedback, their statistics and plot.

Drafts with Δ > margin are chosen, drafts with Δ <= 0 rejected, always within one question. Rows are TRL's
`prompt` / `chosen` / `rejected` (conversational when the weak model has a chat template) plus the question id and
both Δ values, so `datasets.load_dataset("json", data_files="pairs.jsonl")` reads them unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from cowest.config import FeedbackConfig
from cowest.feedback import FeedbackRecord
from cowest.models.hf import render_plain  # the layout the hf backend prompts a template-less weak model with
from cowest.records import PreferencePair, write_jsonl

PAIRS_FILE = "pairs.jsonl"
STATS_FILE = "pairs_stats.json"


def question_pairs(rec: FeedbackRecord, fb: FeedbackConfig, conversational: bool = True) -> list[PreferencePair]:
    scored = {}
    for d in rec.drafts:  # distinct texts only: a duplicate draft is the same preference
        if d.delta is not None and d.text.strip():
            scored.setdefault(d.text, d.delta)
    chosen = sorted(((t, v) for t, v in scored.items() if v > fb.margin), key=lambda x: -x[1])
    rejected = sorted(((t, v) for t, v in scored.items() if v <= 0), key=lambda x: x[1])
    if not chosen or not rejected:
        return []
    if fb.pair_rule == "best_vs_worst":
        combos = [(chosen[0], rejected[0])]
    else:
        combos = [(c, r) for c in chosen for r in rejected][: fb.max_pairs_per_question]
    prompt: list | str = rec.prompt if conversational else render_plain(rec.prompt)
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
    if all(v > fb.margin for v in deltas):
        return "all_helpful"
    if all(v <= 0 for v in deltas):
        return "none_helpful" if len(set(deltas)) > 1 or deltas[0] < 0 else "all_equal"
    return "only_within_margin"


def build_pairs(records: list[FeedbackRecord], fb: FeedbackConfig, conversational: bool = True) -> tuple[list[PreferencePair], dict]:
    """All pairs and the statistics of how they were obtained."""
    pairs: list[PreferencePair] = []
    per_question: list[int] = []
    reasons: Counter[str] = Counter()
    deltas: list[float] = []
    requests: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    unscored = 0
    for rec in records:
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
    k = fb.k
    # The naive method: K refinements + 1 solo answer, then a judge call for each of those K + 1 answers.
    naive = len(records) * (2 * k + 2)
    actual = calls.get("strong", 0) + calls.get("judge", 0)
    stats = {
        "questions": len(records),
        "drafts": sum(len(r.drafts) for r in records),
        "pairs": len(pairs),
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
        "naive_strong_and_judge_calls": naive,
        "strong_calls_per_pair": (actual / len(pairs)) if pairs else None,
        "naive_strong_calls_per_pair": (naive / len(pairs)) if pairs else None,
    }
    return pairs, stats


def write_pairs(records: list[FeedbackRecord], fb: FeedbackConfig, out_dir: Path, conversational: bool = True) -> dict:
    """pairs.jsonl, pairs_stats.json (with `faults`: the stage's `faults.json`, when there is one) and pairs.png."""
    from cowest.faults import FAULTS_FILE

    pairs, stats = build_pairs(records, fb, conversational)
    faults_path = out_dir / FAULTS_FILE
    if faults_path.exists():
        try:
            stats["faults"] = json.loads(faults_path.read_text(encoding="utf-8"))
        except ValueError:  # torn by a kill: the counts are lost, the pairs are not
            stats["faults"] = {}
    tmp = out_dir / (PAIRS_FILE + ".tmp")
    write_jsonl(tmp, pairs)
    tmp.replace(out_dir / PAIRS_FILE)
    (out_dir / STATS_FILE).write_text(json.dumps(stats, indent=2))
    plot_pairs(records, stats, out_dir / "pairs.png")
    return stats


def plot_pairs(records: list[FeedbackRecord], stats: dict, path: Path) -> None:
    """Δ histogram, pairs per question, and why questions gave no pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
