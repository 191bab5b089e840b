"""Single-model strategies: the weak model alone, the strong model alone, and the strong model refining itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cowest.core.records import Sample, Trace
from cowest.strategies.common import (StrategyContext, draft_step, finish, need, new_traces, run_step,
                                      weak_answer_step)
from cowest.tasks import prompts as P

if TYPE_CHECKING:
    from cowest.models.base import Backend


def weak_only(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
              ctx: StrategyContext) -> list[Trace]:
    """The weak model answers alone (`answer` prompt, or its draft: `weak_answer_step`)."""
    weak = need(weak, "weak", "weak_only")
    traces = new_traces(samples, "weak_only", ctx)
    weak_answer_step(weak, samples, ctx, traces)
    return finish(traces, samples)


def weak_draft(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
               ctx: StrategyContext) -> list[Trace]:
    """The weak model's draft (`ctx.draft_format`) scored as its answer: what it recalls in the form it drafts for
    the strong model (the recall check asks plain fact questions this way next to `weak_only`'s direct answer)."""
    weak = need(weak, "weak", "weak_draft")
    traces = new_traces(samples, "weak_draft", ctx, draft_format=ctx.draft_format)
    draft_step(weak, samples, ctx, traces)
    return finish(traces, samples)


def strong_only(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
                ctx: StrategyContext) -> list[Trace]:
    """The strong model alone, zero-shot chain of thought (`solo` prompt)."""
    strong = need(strong, "strong", "strong_only")
    traces = new_traces(samples, "strong_only", ctx)
    run_step(strong, "strong", "solo", [P.solo_messages(s, ctx.prompts) for s in samples], ctx.params("strong"),
             traces)
    return finish(traces, samples)


def self_refine(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
                ctx: StrategyContext) -> list[Trace]:
    """The strong model answers (CoT), then reviews and corrects its own answer."""
    strong = need(strong, "strong", "self_refine")
    traces = new_traces(samples, "self_refine", ctx)
    params = ctx.params("strong")
    first = run_step(strong, "strong", "solo", [P.solo_messages(s, ctx.prompts) for s in samples], params, traces)
    run_step(strong, "strong", "self_refine",
             [P.self_refine_messages(s, g.text, ctx.prompts) for s, g in zip(samples, first)], params, traces)
    return finish(traces, samples)
