"""Bootstrapped rationales for label-only training data (STaR-style), so SFT teaches the weak model to write a
reasoning draft rather than a bare `Answer: X` where the dataset has no rationale.

For each training sample without a rationale, a model (the weak base model or the strong model, `sft.rationales`)
is asked the weak model's own drafting prompt `sft.rationale_samples` times; the first reply whose answer reaches the
gold answer gives the rationale (its text before the answer line). With `sft.rationalize`, the samples left are
asked again with the gold answer as a hint (STaR's rationalization), so that the rows kept are not only those whose
label the model already favours. Samples with no such reply keep no rationale (SFT then trains `Answer: X` for them
under sft.target=auto, or leaves them out with sft.without_rationale=drop). Replies cut at the token limit are never
kept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cowest.core.config import ExperimentConfig
from cowest.models.base import Backend
from cowest.core.records import Generation, Sample, SamplingParams
from cowest.scoring.extract import before_answer
from cowest.scoring.judge import gold_text
from cowest.scoring.score import score
from cowest.tasks.prompts import draft_messages

RATIONALES_FILE = "rationales.jsonl"
RATIONALES_STATS = "rationales_stats.json"
HINT = "{question}\n\n(Hint: the correct answer is {gold}. Explain why in your own words; do not mention this hint.)"
"""The rationalization prompt's question: the draft prompt is otherwise the one the weak model learns."""


def reaches_gold(sample: Sample, text: str) -> bool:
    return score(sample, text).right


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)|[:;]$|\n")
"""Where a sentence of reasoning ends (a colon or semicolon only at the very end: "Because of this:")."""


def strip_answer(text: str) -> str:
    """The reasoning of a reply: everything before its last answer marker (without a marker, before its last line).

    A marker inside a sentence ("... Therefore, the answer is: X") takes that sentence with it: cut at the marker, the
    rationale would end in "Therefore, the", and SFT would teach drafts that stop mid-sentence (40 of 201 bootstrapped
    on ETHICS did).
    """
    head = before_answer(text)
    if head is None:
        lines = text.strip().split("\n")
        return "\n".join(lines[:-1]).strip()
    if re.search(r"\n[ \t]*$", head):  # the marker starts its own line: the reasoning before it is whole
        return head.strip()
    head = head.rstrip()
    ends = list(_SENTENCE_END.finditer(head))
    return head[: ends[-1].end()].strip() if ends else ""


def hinted(sample: Sample) -> Sample:
    """`sample` with the gold answer given in its question (`HINT`)."""
    return sample.model_copy(update={"question": HINT.format(question=sample.question, gold=gold_text(sample))})


def _first_rationale(sample: Sample, gens: list[Generation], *, was_hinted: bool) -> str | None:
    """The reasoning of the first reply that reached the gold answer whole (and, hinted, does not cite the hint)."""
    for g in gens:
        rationale = strip_answer(g.text)
        if (g.finish_reason != "length" and rationale and reaches_gold(sample, g.text)
                and not (was_hinted and "hint" in rationale.lower())):
            return rationale
    return None


def _ask(todo: list[Sample], backend: Backend, cfg: ExperimentConfig, params: SamplingParams, chunk: int, *,
         was_hinted: bool) -> dict[str, str]:
    """One pass over `todo`, `chunk` samples a call, with one progress line: {sample id: rationale} of those that got
    one."""
    from cowest.core.progress import Progress

    found: dict[str, str] = {}
    bar = Progress(len(todo), f"rationales ({cfg.sft.rationales} model{', hinted' if was_hinted else ''})")
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            asked = [hinted(x) if was_hinted else x for x in part]
            replies = backend.generate([draft_messages(x, "cot", cfg.collaboration.prompts) for x in asked], params)
            for sample, gens in zip(part, replies):
                if (rationale := _first_rationale(sample, gens, was_hinted=was_hinted)) is not None:
                    found[sample.id] = rationale
            bar.update(len(part), note=f"kept {len(found)}")
    finally:
        bar.close()
    return found


def bootstrap_rationales(samples: list[Sample], backend: Backend, cfg: ExperimentConfig, out_dir: Path, *,
                         chunk: int = 64) -> list[Sample]:
    """`samples` with a bootstrapped rationale where they had none and a sampled reply reached the gold answer
    (then, with sft.rationalize, a hinted one). Writes the kept rationales (`rationales.jsonl`) and their counts
    (`rationales_stats.json`) to `out_dir`.

    Hundreds of strong replies take the better part of an hour on a CPU, and the response cache stores each
    finished call, so a run stopped here resumes from its last chunk."""
    s = cfg.sft
    role_params = cfg.generation.strong if s.rationales == "strong" else cfg.generation.weak
    params = role_params.model_copy(update={"n": s.rationale_samples, "temperature": s.rationale_temperature,
                                            "seed": s.seed})
    todo = [x for x in samples if not (x.rationale or "").strip()]
    found = _ask(todo, backend, cfg, params, chunk, was_hinted=False)
    rest = [x for x in todo if x.id not in found]
    from_hint = _ask(rest, backend, cfg, params, chunk, was_hinted=True) if s.rationalize and rest else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / RATIONALES_FILE, "w", encoding="utf-8") as f:
        for sid, rationale in found.items():
            f.write(json.dumps({"id": sid, "rationale": rationale, "source": s.rationales}) + "\n")
        for sid, rationale in from_hint.items():
            f.write(json.dumps({"id": sid, "rationale": rationale, "source": s.rationales, "hinted": True}) + "\n")
    stats = {"samples": len(samples), "with_rationale_in_data": len(samples) - len(todo),
             "bootstrapped": len(found) + len(from_hint), "rationalized": len(from_hint),
             "without_rationale": len(rest) - len(from_hint),
             "source": s.rationales, "samples_per_question": s.rationale_samples}
    (out_dir / RATIONALES_STATS).write_text(json.dumps(stats, indent=2))
    found |= from_hint
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
