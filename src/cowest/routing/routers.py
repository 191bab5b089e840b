"""The routers: each scores the weak answer (higher = keep it) from the answer, its question and, for `agreement`,
more weak samples. The weak answer is the draft's `Answer:` line (cot, direct) or, for a knowledge draft, which has
none, the weak model's direct answer to the `answer` prompt.

- `confidence`: the mean token log-probability of the draft's answer span (the text after its last `Answer:`
  marker, else its last line). Backends return one log-probability per completion token without the token strings
  (hf: log-softmax of the raw logits of each chosen token; llama.cpp: the same from its logits processor; openai:
  the endpoint's `logprobs`), so the span's tokens are the completion's last ones in proportion to the span's share
  of the characters, at least one.
- `agreement`: the share of `route.samples` sampled weak answers (temperature `route.temperature`) that give the
  draft's answer (self-consistency); a draft without a readable answer scores 0.
- `learned`: 1 − the probability, by the logistic regression `cowest router` trained on the feedback records
  (`cowest.routing.learned`), that the strong model's answer beats the weak one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cowest.core.errors import CowestError
from cowest.core.records import Generation, Message, Sample, SamplingParams

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.models.base import Backend


@dataclass
class RouterInputs:
    """What a router may read: the questions, the weak answers and their prompts, the weak model and the config."""

    samples: list[Sample]
    drafts: list[Generation]
    """The weak model's answers: the drafts themselves, or for a draft format without an answer (knowledge) the
    weak model's direct answers (`answer` prompt)."""
    prompts: list[list[Message]]
    """The prompts of those answers."""
    weak: "Backend"
    params: SamplingParams
    """The weak model's sampling settings (seed included) for any further weak samples."""
    cfg: "ExperimentConfig"
    draft_texts: list[str] | None = None
    """The collaboration drafts, when they are not the answers (knowledge): what the learned router reads."""


@dataclass
class RouterScores:
    scores: list[float]
    extra: list[list[Generation]] = field(default_factory=list)
    """Further weak generations per question (agreement's samples): they cost tokens and are recorded."""


def answer_span_logprob(gen: Generation) -> float:
    """Mean log-probability of the answer span's tokens (see the module docstring)."""
    from cowest.scoring.extract import answer_segment

    lps = gen.token_logprobs
    if not lps:
        raise CowestError("router 'confidence' needs token log-probabilities, and the weak model returned none "
                          "(an openai/ endpoint without logprobs support?); use route.routers=[agreement]")
    text = gen.text or ""
    segment, _ = answer_segment(text)
    if not segment or not text.strip():
        return sum(lps) / len(lps)
    start = text.rindex(segment)
    n = max(1, math.ceil(len(lps) * (len(text) - start) / len(text)))
    span = lps[-n:]
    return sum(span) / len(span)


def confidence(inputs: RouterInputs) -> RouterScores:
    return RouterScores([answer_span_logprob(d) if d.error is None else 0.0 for d in inputs.drafts])


def agreement(inputs: RouterInputs) -> RouterScores:
    from cowest.scoring.extract import extract_answer

    route = inputs.cfg.route
    params = inputs.params.model_copy(update={"n": route.samples, "temperature": route.temperature,
                                              "logprobs": False})
    extra = inputs.weak.generate(inputs.prompts, params) if inputs.prompts else []
    scores = []
    for sample, draft, gens in zip(inputs.samples, inputs.drafts, extra):
        mine = extract_answer(draft.text, sample, draft.finish_reason == "length")
        others = [extract_answer(g.text, sample, g.finish_reason == "length") for g in gens]
        scores.append(0.0 if mine is None else sum(o == mine for o in others) / len(others))
    return RouterScores(scores, [list(g) for g in extra])


def learned(inputs: RouterInputs) -> RouterScores:
    from cowest.routing.learned import load_router

    model = load_router(inputs.cfg)
    texts = inputs.draft_texts if inputs.draft_texts is not None else [d.text for d in inputs.drafts]
    return RouterScores(model.keep_scores([s.question for s in inputs.samples], texts))


def score_all(names: list[str], inputs: RouterInputs) -> dict[str, RouterScores]:
    """Each named router's scores of the same drafts."""
    from cowest.routing import ROUTERS

    return {name: ROUTERS.get(name)(inputs) for name in names}


def draft_params(cfg: "ExperimentConfig", params: SamplingParams, names: list[str]) -> SamplingParams:
    """The draft's sampling settings, with log-probabilities when a router reads them."""
    from cowest.routing import NEEDS_LOGPROBS

    return params.model_copy(update={"logprobs": True}) if NEEDS_LOGPROBS & set(names) else params



ANSWERLESS_FORMATS = ("knowledge",)
"""Draft formats that hold no answer: the weak answer is then a separate direct answer (`answer` prompt)."""


def answer_prompts(samples: list[Sample], fmt: str, overrides: dict[str, str],
                   draft_prompts: list[list[Message]]) -> list[list[Message]] | None:
    """The weak answers' prompts when they are not the drafts (None: the drafts are the answers)."""
    from cowest.tasks import prompts as P

    return [P.answer_messages(s, overrides) for s in samples] if fmt in ANSWERLESS_FORMATS else None
