"""Strategy `route`: the weak model drafts, routers score the weak answer, and only a question whose score is below
the threshold goes on to the strong model (`route.fallback`: refining the draft, or answering alone); the others
keep the weak model's answer: the draft's `Answer:` line, or for a knowledge draft (no answer in it) the weak
model's direct answer (`answer` prompt, one more weak step).

Every router in `route.routers` scores every question; the first decides. Each trace's metadata `route` holds
what the report's quality versus strong-call-share curve needs: the decision, each router's score and threshold,
the weak answer's prediction and scores and, with `route.sweep`, the fallback's on every question (run for the
curve only: on a question kept weak it is neither the answer nor counted in the trace's usage). The deciding
router's own weak samples (`agreement`) are steps of the trace, so they count in its usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cowest.core.errors import CowestError
from cowest.core.records import Generation, Message, Sample, Step, Trace
from cowest.strategies.common import StrategyContext, failed_step, finish, need, new_traces, run_step
from cowest.tasks import prompts as P

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.models.base import Backend


def _outcome(sample: Sample, gen: Generation) -> dict[str, Any]:
    from cowest.scoring.score import score

    scored = score(sample, gen.text, gen.finish_reason == "length")
    return {"prediction": scored.prediction, "scores": scored.scores, "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens}


def fallback_messages(cfg: "ExperimentConfig", sample: Sample, draft: str, fmt: str,
                      overrides: dict[str, str]) -> tuple[str, list[Message]]:
    """The strong step a routed question gets: (step name, messages)."""
    if cfg.route.fallback == "strong":
        return "solo", P.solo_messages(sample, overrides)
    return "refine", P.refine_messages(sample, draft, fmt, overrides)


def route(samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
          ctx: StrategyContext) -> list[Trace]:
    """Draft, score, and send only the low-scoring questions to the strong model (module docstring)."""
    from cowest.routing.calibrate import thresholds
    from cowest.routing.routers import RouterInputs, answer_prompts, draft_params, score_all

    weak, strong = need(weak, "weak", "route"), need(strong, "strong", "route")
    cfg = ctx.config
    if cfg is None:
        raise CowestError("strategy 'route' needs its config (StrategyContext.from_config)")
    fmt, names = ctx.draft_format, cfg.route.routers
    traces = new_traces(samples, "route", ctx, draft_format=fmt, router=names[0], fallback=cfg.route.fallback)
    prompts = [P.draft_messages(s, fmt, ctx.prompts) for s in samples]
    params = ctx.params("weak")
    asks = answer_prompts(samples, fmt, ctx.prompts, prompts)
    drafts = run_step(weak, "weak", f"draft_{fmt}", prompts,
                      params if asks else draft_params(cfg, params, names), traces)
    answers = run_step(weak, "weak", "answer", asks, draft_params(cfg, params, names), traces) if asks else drafts
    asks = asks or prompts
    live = [i for i, t in enumerate(traces) if failed_step(t) is None]
    scored = score_all(names, RouterInputs([samples[i] for i in live], [answers[i] for i in live],
                                           [asks[i] for i in live], weak, params, cfg,
                                           draft_texts=[drafts[i].text for i in live]))
    limits = thresholds(cfg, weak, fmt) if live else {}
    routed = []
    for j, i in enumerate(live):
        trace = traces[i]
        _record_extra(trace, asks[i], scored, j, names[0])
        score = scored[names[0]].scores[j]
        decision = "strong" if score < limits[names[0]] else "weak"
        trace.metadata["route"] = {"decision": decision, "scores": {n: rs.scores[j] for n, rs in scored.items()},
                                   "thresholds": limits, "weak": _outcome(samples[i], answers[i]), "fallback": None}
        if failed_step(trace) is None and (decision == "strong" or cfg.route.sweep):
            routed.append(i)
    if routed:
        steps = [fallback_messages(cfg, samples[i], drafts[i].text, fmt, ctx.prompts) for i in routed]
        gens = run_step(strong, "strong", steps[0][0], [m for _, m in steps], ctx.params("strong"),
                        [traces[i] for i in routed])
        for i, gen in zip(routed, gens):
            meta = traces[i].metadata["route"]
            if gen.error is None:
                meta["fallback"] = _outcome(samples[i], gen)
                if meta["decision"] == "weak":
                    traces[i].steps.pop()  # the sweep's call: for the curve, not the answer
    return finish(traces, samples)


def _record_extra(trace: Trace, prompt: list[Message], scored: dict, j: int, decider: str) -> None:
    """The deciding router's weak samples become steps before the draft (so the answer stays the last weak step);
    the other routers' only count in metadata, and a failed one fails the trace so the next run retries it."""
    extra_tokens = {}
    for name, rs in scored.items():
        gens = rs.extra[j] if rs.extra else []
        if not gens:
            continue
        if name == decider:
            trace.steps[:0] = [Step(role="weak", name=f"route_{name}", messages=prompt, output=g) for g in gens]
            continue
        failed = next((g for g in gens if g.error is not None), None)
        if failed is not None:
            trace.steps.append(Step(role="weak", name=f"route_{name}", messages=prompt, output=failed))
        extra_tokens[name] = sum(g.prompt_tokens + g.completion_tokens for g in gens)
    if extra_tokens:
        trace.metadata["route_extra_tokens"] = extra_tokens
