"""The routers: each scores weak drafts (higher = keep the weak answer) from the draft, its question and, for
`agreement`, more weak samples.

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

from cowest.errors import CowestError
from cowest.records import Generation, Message, Sample, SamplingParams

if TYPE_CHECKING:
    from cowest.config import ExperimentConfig
    from cowest.models.base import Backend


@dataclass
class RouterInputs:
    """What a router may read: the questions, their drafts and draft prompts, the weak model and the config."""

    samples: list[Sample]
    drafts: list[Generation]
    prompts: list[list[Message]]
    weak: "Backend"
    params: SamplingParams
    """The weak model's sampling settings (seed included) for any further weak samples."""
    cfg: "ExperimentConfig"


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
    return RouterScores(model.keep_scores([s.question for s in inputs.samples], [d.text for d in inputs.drafts]))


def score_all(names: list[str], inputs: RouterInputs) -> dict[str, RouterScores]:
    """Each named router's scores of the same drafts."""
    from cowest.routing import ROUTERS

    return {name: ROUTERS.get(name)(inputs) for name in names}


def draft_params(cfg: "ExperimentConfig", params: SamplingParams, names: list[str]) -> SamplingParams:
    """The draft's sampling settings, with log-probabilities when a router reads them."""
    from cowest.routing import NEEDS_LOGPROBS

    return params.model_copy(update={"logprobs": True}) if NEEDS_LOGPROBS & set(names) else params

