"""What every strategy shares: its context, one batched model step, and scoring a finished trace."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cowest.core.errors import CowestError
from cowest.core.records import Generation, Message, Sample, SamplingParams, Step, Trace
from cowest.tasks import prompts as P

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig
    from cowest.models.base import Backend


@dataclass
class StrategyContext:
    """Settings a strategy needs besides its models: sampling per role, draft format, prompt overrides, seed."""

    weak_params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=128))
    strong_params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=192))
    draft_format: str = "cot"
    prompts: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    system: str | None = None
    """The evaluated system's name, recorded in each trace's metadata."""
    config: "ExperimentConfig | None" = None
    """The whole config, for strategies with settings of their own (`route`: cfg.route, its run directory)."""
    weak_answer_format: str | None = None
    """None: the weak model answers with the `answer` prompt; a draft format: its draft of that format is its
    answer (collaboration.weak_answer=draft, the format SFT trained)."""

    @classmethod
    def from_config(cls, cfg: "ExperimentConfig", *, draft_format: str | None = None, seed: int = 0,
                    system: str | None = None) -> "StrategyContext":
        return cls(weak_params=cfg.generation.weak, strong_params=cfg.generation.strong,
                   draft_format=draft_format or cfg.collaboration.formats_evaluated[0],
                   prompts=dict(cfg.collaboration.prompts),
                   seed=seed, system=system, config=cfg,
                   weak_answer_format=cfg.collaboration.draft_format
                   if cfg.collaboration.weak_answer == "draft" else None)

    def params(self, role: str, **update: Any) -> SamplingParams:
        """The role's sampling params with this context's seed (and any `update`)."""
        base = self.weak_params if role == "weak" else self.strong_params
        return base.model_copy(update={"seed": self.seed, **update})


class StrategyFn(Protocol):
    def __call__(self, samples: list[Sample], *, weak: "Backend | None", strong: "Backend | None",
                 ctx: StrategyContext) -> list[Trace]: ...


def need(backend: "Backend | None", role: str, strategy: str) -> "Backend":
    if backend is None:
        raise CowestError(f"strategy '{strategy}' needs a {role} model")
    return backend


def run_step(backend: "Backend", role: str, name: str, prompts: list[list[Message]],
             params: SamplingParams, traces: list[Trace]) -> list[Generation]:
    """One `generate` call for all samples of a step; append a `Step` to each trace; return the first outputs.

    Under greedy decoding identical prompts are sent once (they would give the same text anyway). A trace whose
    earlier step failed (its output has `error` set, see `cowest.core.faults`) sends nothing and gets that failure again.
    """
    failed = [bool(t.steps) and t.steps[-1].output.error is not None for t in traces]
    if any(failed):
        live = [i for i, f in enumerate(failed) if not f]
        outs = run_step(backend, role, name, [prompts[i] for i in live], params, [traces[i] for i in live])
        by_index = dict(zip(live, outs))
        gens = [by_index.get(i) or traces[i].steps[-1].output for i in range(len(traces))]
        for i, trace in enumerate(traces):
            if failed[i]:
                trace.steps.append(Step(role=role, name=name, messages=prompts[i], output=gens[i]))  # type: ignore[arg-type]
        return gens
    if params.temperature == 0:
        keys = [repr(p) for p in prompts]
        unique: dict[str, int] = {}
        for i, k in enumerate(keys):
            unique.setdefault(k, i)
        order = list(unique.values())
        answers: list[list[Generation]] = backend.generate([prompts[i] for i in order], params) if order else []
        by_key = {keys[i]: o[0] for i, o in zip(order, answers)}
        gens = [by_key[k] for k in keys]
    else:
        gens = [o[0] for o in backend.generate(prompts, params)] if prompts else []
    for trace, msgs, gen in zip(traces, prompts, gens):
        trace.steps.append(Step(role=role, name=name, messages=msgs, output=gen))  # type: ignore[arg-type]
    return gens


def draft_step(weak: "Backend", samples: list[Sample], ctx: StrategyContext, traces: list[Trace],
               fmt: str | None = None, **update: Any) -> list[Generation]:
    """The weak model's draft of every sample in `fmt` (default `ctx.draft_format`), a `draft_<format>` step of each
    trace (`update`: sampling changes, such as logprobs)."""
    fmt = fmt or ctx.draft_format
    P.check_draft_format(fmt)
    return run_step(weak, "weak", f"draft_{fmt}", [P.draft_messages(s, fmt, ctx.prompts) for s in samples],
                    ctx.params("weak", **update), traces)


def weak_answer_step(weak: "Backend", samples: list[Sample], ctx: StrategyContext, traces: list[Trace],
                     **update: Any) -> list[Generation]:
    """The weak model's own answer to every sample: the `answer` prompt, or its draft where
    `ctx.weak_answer_format` says so (`update`: sampling changes, such as logprobs)."""
    if ctx.weak_answer_format is not None:
        return draft_step(weak, samples, ctx, traces, ctx.weak_answer_format, **update)
    return run_step(weak, "weak", "answer", [P.answer_messages(s, ctx.prompts) for s in samples],
                    ctx.params("weak", **update), traces)


def failed_step(trace: Trace) -> str | None:
    """The error of a trace's failed request, or None when every step succeeded."""
    return next((st.output.error for st in trace.steps if st.output.error is not None), None)


def new_traces(samples: list[Sample], strategy: str, ctx: StrategyContext, **meta: Any) -> list[Trace]:
    base = {"system": ctx.system or strategy, **meta}
    return [Trace(sample_id=s.id, strategy=strategy, seed=ctx.seed, metadata=dict(base)) for s in samples]


def finish(traces: list[Trace], samples: list[Sample]) -> list[Trace]:
    """Extract each final answer and score it; a failed extraction is kept, flagged and scored as a miss."""
    from cowest.scoring.score import score

    for trace, sample in zip(traces, samples):
        truncated = bool(trace.steps) and trace.steps[-1].output.finish_reason == "length"
        scored = score(sample, trace.final, truncated)
        trace.prediction, trace.extraction_failed, trace.scores = scored.prediction, scored.unreadable, scored.scores
    return traces


def confidence(gen: Generation) -> float | None:
    """exp(mean token logprob) of a completion: its geometric-mean token probability, in (0, 1].

    We average over the whole completion rather than picking out the answer tokens: backends return logprobs
    without token strings, and a direct answer is a few tokens long anyway. None when no logprobs came back.
    """
    lps = gen.token_logprobs
    if not lps:
        return None
    return math.exp(sum(lps) / len(lps))
