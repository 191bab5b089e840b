"""Bootstrapped rationales for label-only training data (STaR-style), so SFT teaches the weak model to write a
reasoning draft rather than a bare `Answer: X` where the dataset has no rationale.

For each training sample without a rationale, a model (the weak base model or the strong model, `sft.rationales`)
is asked the weak model's own drafting prompt `sft.rationale_samples` times; the first reply whose answer reaches the
gold answer gives the rationale (its text before the answer line). Samples with no such reply keep no rationale
(SFT then trains `Answer: X` for them under sft.target=auto, or leaves them out with sft.without_rationale=drop).
Replies cut at the token limit are never kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from cowest.core.config import ExperimentConfig
from cowest.models.base import Backend
from cowest.core.records import Sample
from cowest.scoring.extract import before_answer, extract_answer
from cowest.scoring.metrics import per_sample
from cowest.tasks.prompts import draft_messages

RATIONALES_FILE = "rationales.jsonl"
RATIONALES_STATS = "rationales_stats.json"


def reaches_gold(sample: Sample, text: str) -> bool:
    scores = per_sample(sample, extract_answer(text, sample))
    return scores.get("exact_match", scores.get("accuracy", 0.0)) == 1.0


def strip_answer(text: str) -> str:
    """The reasoning of a reply: everything before its last answer marker (without a marker, before its last line)."""
    head = before_answer(text)
    if head is not None:
        return head.strip()
    lines = text.strip().split("\n")
    return "\n".join(lines[:-1]).strip()


def bootstrap_rationales(samples: list[Sample], backend: Backend, cfg: ExperimentConfig, out_dir: Path, *,
                         chunk: int = 64) -> list[Sample]:
    """`samples` with a bootstrapped rationale where they had none and a sampled reply reached the gold answer.
    Writes the kept rationales (`rationales.jsonl`) and their counts (`rationales_stats.json`) to `out_dir`.

    Asked `chunk` samples a call, with one progress line: hundreds of strong replies take the better part of an hour
    on a CPU, and the response cache stores each finished call, so a run stopped here resumes from its last chunk."""
    from cowest.core.progress import Progress

    s = cfg.sft
    role_params = cfg.generation.strong if s.rationales == "strong" else cfg.generation.weak
    params = role_params.model_copy(update={"n": s.rationale_samples, "temperature": s.rationale_temperature,
                                            "seed": s.seed})
    todo = [x for x in samples if not (x.rationale or "").strip()]
    found: dict[str, str] = {}
    bar = Progress(len(todo), f"rationales ({s.rationales} model)")
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            replies = backend.generate([draft_messages(x, "cot", cfg.collaboration.prompts) for x in part], params)
            for sample, gens in zip(part, replies):
                for g in gens:
                    rationale = strip_answer(g.text)
                    if g.finish_reason != "length" and rationale and reaches_gold(sample, g.text):
                        found[sample.id] = rationale
                        break
            bar.update(len(part), note=f"kept {len(found)}")
    finally:
        bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / RATIONALES_FILE, "w", encoding="utf-8") as f:
        for sid, rationale in found.items():
            f.write(json.dumps({"id": sid, "rationale": rationale, "source": s.rationales}) + "\n")
    stats = {"samples": len(samples), "with_rationale_in_data": len(samples) - len(todo),
             "bootstrapped": len(found), "without_rationale": len(todo) - len(found),
             "source": s.rationales, "samples_per_question": s.rationale_samples}
    (out_dir / RATIONALES_STATS).write_text(json.dumps(stats, indent=2))
    return [x.model_copy(update={"rationale": found[x.id]}) if x.id in found else x for x in samples]


def with_rationales(cfg: ExperimentConfig, samples: list[Sample], out_dir: Path, cache_dir: Path | None) -> list[Sample]:
    """`bootstrap_rationales` with the model `sft.rationales` names (the weak base model, or the strong model
    through the response cache); `samples` unchanged for sft.rationales=data."""
    from cowest.models.base import load_backend
    from cowest.models.cache import open_backend

    if cfg.sft.rationales == "data":
        return samples
    backend = (open_backend(cfg.models.strong, "strong", cache_dir) if cfg.sft.rationales == "strong"
               else load_backend(cfg.models.weak))
    from cowest.pipeline.evaluate import chunk_size

    try:
        return bootstrap_rationales(samples, backend, cfg, out_dir, chunk=chunk_size(cfg))
    finally:
        backend.close()
