"""Weak-strong strategies: CoWeST collaborative inference and SuperICL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cowest.core.records import Sample, Trace
from cowest.strategies.common import (StrategyContext, confidence, draft_step, finish, need, new_traces, run_step,
                                      weak_answer_step)
from cowest.tasks import prompts as P

if TYPE_CHECKING:
    from cowest.models.base import Backend


def collaborate(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
                ctx: StrategyContext) -> list[Trace]:
    """CoWeST inference `y* = π_s(x, π_w(x))`: the weak model drafts (`ctx.draft_format`), the strong one refines."""
    weak, strong = need(weak, "weak", "collaborate"), need(strong, "strong", "collaborate")
    fmt = ctx.draft_format
    traces = new_traces(samples, "collaborate", ctx, draft_format=fmt)
    drafts = draft_step(weak, samples, ctx, traces)
    run_step(strong, "strong", "refine",
             [P.refine_messages(s, d.text, fmt, ctx.prompts) for s, d in zip(samples, drafts)],
             ctx.params("strong"), traces)
    return finish(traces, samples)


def super_icl(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
              ctx: StrategyContext) -> list[Trace]:
    """SuperICL (Xu et al. 2023): the weak model's prediction and confidence go into the strong model's prompt.

    Confidence = exp(mean token logprob) of the weak model's answer (see `common.confidence`; its whole draft with
    collaboration.weak_answer=draft); the strong model may override the prediction.
    """
    from cowest.scoring.extract import extract_answer

    weak, strong = need(weak, "weak", "super_icl"), need(strong, "strong", "super_icl")
    traces = new_traces(samples, "super_icl", ctx)
    answers = weak_answer_step(weak, samples, ctx, traces, logprobs=True)
    preds = [extract_answer(g.text, s) for s, g in zip(samples, answers)]
    confs = [confidence(g) for g in answers]
    for t, p, c in zip(traces, preds, confs):
        t.metadata.update(weak_prediction=p, weak_confidence=c)
    run_step(strong, "strong", "super_icl",
             [P.super_icl_messages(s, p, c, ctx.prompts) for s, p, c in zip(samples, preds, confs)],
             ctx.params("strong"), traces)
    return finish(traces, samples)
