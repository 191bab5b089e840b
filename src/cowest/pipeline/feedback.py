"""Collaborative feedback: which weak drafts help the strong model.

For each training question x: K drafts y_k ~ weak(x); the strong model's solo chain-of-thought answer z (once); the
strong refinement y*_k = strong(x, y_k) of each distinct draft; evaluator scores E(y*_k), E(z); influence
Δ_k = E(y*_k) − E(z). One `FeedbackRecord` per question is appended to `feedback.jsonl` as soon as the question is
done, so a killed run resumes with every question done exactly once. Pairs are built from that file afterwards
(`cowest.pipeline.pairs`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from pydantic import Field

from cowest.core.config import ExperimentConfig
from cowest.core.faults import FailureBudget, FaultLog
from cowest.core.layout import FEEDBACK_FILE
from cowest.models.base import Backend
from cowest.core.records import (
    Generation,
    Message,
    Record,
    Sample,
    SamplingParams,
    UnwritableRow,
    append_jsonl,
    iter_jsonl,
    jsonl_line,
    repair_torn_tail,
)
from cowest.core.registry import Registry
from cowest.scoring.extract import extract_answer
from cowest.scoring.judge import judge_messages, parse_judge_score
from cowest.scoring.score import score
from cowest.tasks import prompts

if TYPE_CHECKING:
    from cowest.core.progress import Progress

class DraftFeedback(Record):
    text: str
    refinement: str
    prediction: str | None
    score: float | None
    """E(y*_k); None when the evaluator could not score it (left out of pairs)."""
    delta: float | None


class FeedbackRecord(Record):
    question_id: str
    prompt: list[Message]
    """The weak model's draft prompt: the `prompt` of every pair built from this question."""
    solo: str
    solo_prediction: str | None
    solo_score: float | None
    drafts: list[DraftFeedback]
    requests: dict[str, int] = Field(default_factory=dict)
    """Model requests per role (cache hits included)."""
    calls: dict[str, int] = Field(default_factory=dict)
    """Requests per role that reached the model (cache misses)."""
    tokens: dict[str, int] = Field(default_factory=dict)
    """Prompt + completion tokens per role."""
    completion_tokens: dict[str, int] = Field(default_factory=dict)
    """The completion part of `tokens` (priced apart: cowest.pipeline.costs)."""
    unscored: int = 0
    wall_s: float = 0.0
    """This question's share of its chunk's wall time: summed over records, the stage's time across resumes."""


@dataclass
class Usage:
    """Requests, real calls and tokens per role for one question."""

    requests: dict[str, int]
    calls: dict[str, int]
    tokens: dict[str, int]
    completion: dict[str, int]

    @classmethod
    def empty(cls) -> "Usage":
        return cls({}, {}, {}, {})

    def add(self, role: str, gens: list[Generation]) -> None:
        self.requests[role] = self.requests.get(role, 0) + len(gens)
        self.calls[role] = self.calls.get(role, 0) + sum(not g.cached for g in gens)
        self.tokens[role] = self.tokens.get(role, 0) + sum(g.prompt_tokens + g.completion_tokens for g in gens)
        self.completion[role] = self.completion.get(role, 0) + sum(g.completion_tokens for g in gens)


@dataclass
class EvalContext:
    """What an evaluator may use: the judge backend (None for `metric`) and its sampling parameters."""

    judge: Backend | None
    judge_params: SamplingParams
    cut: frozenset[str] = frozenset()
    """This question's replies that hit the token limit: the metric reads no answer from their last line."""


# An evaluator scores the solo answer and the refinements of one question:
# (sample, solo_text, refinement_texts, ctx, usage) -> (solo_score, refinement_scores)
Evaluator = Callable[[Sample, str, list[str], EvalContext, Usage], tuple[float | None, list[float | None]]]
EVALUATORS: Registry[Evaluator] = Registry("evaluator")


def metric_score(sample: Sample, text: str, truncated: bool = False) -> float:
    """The task metric against gold: token F1 for short answers (finer than EM), accuracy otherwise.
    An answer that cannot be extracted scores 0: it did not give the gold answer."""
    return score(sample, text, truncated).graded


@EVALUATORS.register("metric")
def metric_evaluator(sample: Sample, solo: str, refinements: list[str], ctx: EvalContext,
                     usage: Usage) -> tuple[float | None, list[float | None]]:
    return metric_score(sample, solo, solo in ctx.cut), [metric_score(sample, r, r in ctx.cut) for r in refinements]


class QuestionFailed(Exception):
    """A request of this question failed for good: nothing is written for it; the next run retries it."""


def _no_error(gens: list[Generation]) -> list[Generation]:
    for g in gens:
        if g.error is not None:
            raise QuestionFailed(g.error)
    return gens


def judge_scores(sample: Sample, texts: list[str], ctx: EvalContext, usage: Usage) -> list[float | None]:
    """Judge each text; a reply with no parseable score is retried once (next seed), then left unscored."""
    if ctx.judge is None:
        raise ValueError("the judge evaluator needs a judge model")
    gens = _no_error([g[0] for g in ctx.judge.generate([judge_messages(sample, t) for t in texts], ctx.judge_params)])
    usage.add("judge", gens)
    scores = [parse_judge_score(g.text) for g in gens]
    retry = [i for i, s in enumerate(scores) if s is None]
    if retry:
        seed = (ctx.judge_params.seed or 0) + 1
        params = ctx.judge_params.model_copy(update={"seed": seed})
        again = _no_error([g[0] for g in ctx.judge.generate([judge_messages(sample, texts[i]) for i in retry], params)])
        usage.add("judge", again)
        for i, g in zip(retry, again):
            scores[i] = parse_judge_score(g.text)
    return scores


@EVALUATORS.register("judge")
def judge_evaluator(sample: Sample, solo: str, refinements: list[str], ctx: EvalContext,
                    usage: Usage) -> tuple[float | None, list[float | None]]:
    scores = judge_scores(sample, [solo, *refinements], ctx, usage)
    return scores[0], scores[1:]


@EVALUATORS.register("hybrid")
def hybrid_evaluator(sample: Sample, solo: str, refinements: list[str], ctx: EvalContext,
                     usage: Usage) -> tuple[float | None, list[float | None]]:
    """The metric first; the judge only when the metric cannot tell anything apart (every refinement scores the
    same as the solo answer, so every metric Δ is 0). Then the judge's scores give Δ. When the metric separates
    anything, its scores stand: the judge never overrides a metric difference (it could flip Δ's sign)."""
    solo_m, ref_m = metric_evaluator(sample, solo, refinements, ctx, usage)
    if not refinements or any(m != solo_m for m in ref_m):
        return solo_m, ref_m
    judged = judge_scores(sample, [solo, *refinements], ctx, usage)
    if judged[0] is None:
        return None, [None] * len(refinements)
    return judged[0], judged[1:]


class _Clock:
    """`with clock("step"):` adds the block's wall time to `totals["step"]`."""

    def __init__(self, totals: dict[str, float]):
        self.totals = totals

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[step] = self.totals.get(step, 0.0) + time.perf_counter() - t0


def load_done(path: Path) -> dict[str, FeedbackRecord]:
    """Records already written (the torn tail of a killed run is cut first)."""
    if not path.exists():
        return {}
    repair_torn_tail(path)
    return {r.question_id: r for r in iter_jsonl(path, FeedbackRecord)}


@dataclass
class _Settings:
    """What every chunk of one feedback run shares."""

    draft_format: str
    overrides: dict[str, str]
    draft_params: SamplingParams
    strong_params: SamplingParams
    evaluator: Evaluator
    ctx: EvalContext
    clock: _Clock


@dataclass
class _ChunkAnswers:
    """One chunk's generations. `failed` maps a question's index to the error of a request that failed for good;
    `cut` holds each question's replies that hit the token limit."""

    samples: list[Sample]
    draft_prompts: list[list[Message]]
    drafts: list[list[Generation]]
    solos: list[list[Generation]]
    refinement: dict[tuple[int, str], str]
    """(question index, draft text) -> the strong model's refinement of it."""
    cut: dict[int, set[str]]
    failed: dict[int, str]
    usage: dict[str, Usage]
    shared_s: float
    """Each question's share of the chunk's batched generation time."""


def _first_error(gens: list[Generation]) -> str | None:
    return next((g.error for g in gens if g.error is not None), None)


def _generate_chunk(chunk: list[Sample], weak: Backend, strong: Backend, st: _Settings) -> _ChunkAnswers:
    """K drafts and one solo answer per question, then the strong refinement of each distinct draft, each step
    batched over the whole chunk so local engines and HTTP concurrency are filled."""
    t0 = time.perf_counter()
    draft_prompts = [prompts.draft_messages(s, st.draft_format, st.overrides) for s in chunk]
    drafts = _sample_drafts(draft_prompts, weak, st)
    solos = _solo_answers(chunk, strong, st)
    failed = {qi: e for qi in range(len(chunk)) if (e := _first_error([*drafts[qi], *solos[qi]])) is not None}
    usage = {s.id: Usage.empty() for s in chunk}
    for qi in range(len(chunk)):
        if qi not in failed:
            usage[chunk[qi].id].add("weak", drafts[qi])
            usage[chunk[qi].id].add("strong", solos[qi])
    cut = {qi: {g.text for g in solos[qi] if g.finish_reason == "length"} for qi in range(len(chunk))}
    refinement = _refine_distinct_drafts(chunk, drafts, strong, st, failed, usage, cut)
    return _ChunkAnswers(chunk, draft_prompts, drafts, solos, refinement, cut, failed, usage,
                         (time.perf_counter() - t0) / len(chunk))


def _sample_drafts(draft_prompts: list[list[Message]], weak: Backend, st: _Settings) -> list[list[Generation]]:
    """K drafts y_k ~ weak(x) per question."""
    with st.clock("drafts"):
        return weak.generate(draft_prompts, st.draft_params)


def _solo_answers(chunk: list[Sample], strong: Backend, st: _Settings) -> list[list[Generation]]:
    """The strong model's own answer z per question: the baseline every refinement is measured against."""
    with st.clock("solo"):
        return strong.generate([prompts.solo_messages(s, st.overrides) for s in chunk], st.strong_params)


def _refine_distinct_drafts(chunk: list[Sample], drafts: list[list[Generation]], strong: Backend, st: _Settings,
                            failed: dict[int, str], usage: dict[str, Usage],
                            cut: dict[int, set[str]]) -> dict[tuple[int, str], str]:
    """The strong refinement y*_k of each distinct draft of the questions not yet failed, keyed by (question index,
    draft text). A failed refinement fails its question in `failed`; usage and cut replies are added in place."""
    # Identical drafts are refined once (K samples of a sharp policy often repeat), hence the key by draft text.
    unique = [(qi, text) for qi, gens in enumerate(drafts) if qi not in failed
              for text in dict.fromkeys(g.text for g in gens)]
    with st.clock("refine"):
        refined = strong.generate(
            [prompts.refine_messages(chunk[qi], text, st.draft_format, st.overrides) for qi, text in unique],
            st.strong_params)
    refinement: dict[tuple[int, str], str] = {}
    for (qi, text), gens in zip(unique, refined):
        if gens[0].error is not None:
            failed.setdefault(qi, gens[0].error)
            continue
        usage[chunk[qi].id].add("strong", gens)
        refinement[(qi, text)] = gens[0].text
        if gens[0].finish_reason == "length":
            cut[qi].add(gens[0].text)
    return refinement


def _score_question(ans: _ChunkAnswers, qi: int, st: _Settings) -> FeedbackRecord:
    """Score the solo answer and every refinement of question `qi`; its record, with each of the K drafts (duplicates
    included: they are K samples of the policy) and its influence Δ = E(refinement) − E(solo).
    Raises QuestionFailed when a judge request fails for good."""
    t0 = time.perf_counter()
    sample, u = ans.samples[qi], ans.usage[ans.samples[qi].id]
    texts = list(dict.fromkeys(g.text for g in ans.drafts[qi]))
    refinements = [ans.refinement.get((qi, t), "") for t in texts]
    solo_text = ans.solos[qi][0].text
    qctx = replace(st.ctx, cut=frozenset(ans.cut[qi]))
    with st.clock("evaluate"):
        solo_score, ref_scores = st.evaluator(sample, solo_text, refinements, qctx, u)
    score_of, ref_of = dict(zip(texts, ref_scores)), dict(zip(texts, refinements))
    draft_rows = []
    for g in ans.drafts[qi]:
        sc = score_of[g.text]
        draft_rows.append(DraftFeedback(
            text=g.text, refinement=ref_of[g.text],
            prediction=extract_answer(ref_of[g.text], sample, ref_of[g.text] in qctx.cut), score=sc,
            delta=None if sc is None or solo_score is None else sc - solo_score))
    return FeedbackRecord(
        question_id=sample.id, prompt=ans.draft_prompts[qi], solo=solo_text,
        solo_prediction=extract_answer(solo_text, sample, solo_text in qctx.cut), solo_score=solo_score,
        drafts=draft_rows, requests=u.requests, calls=u.calls, tokens=u.tokens, completion_tokens=u.completion,
        unscored=sum(d.score is None for d in draft_rows) + (solo_score is None),
        wall_s=ans.shared_s + time.perf_counter() - t0)


def run_feedback(
    cfg: ExperimentConfig,
    samples: list[Sample],
    out_dir: Path,
    *,
    weak: Backend,
    strong: Backend,
    judge: Backend | None,
    chunk_size: int = 8,
    progress: "Progress | None" = None,
    timings: dict[str, float] | None = None,
    budget: FailureBudget | None = None,
) -> Path:
    """Run (or resume) collaborative feedback over `samples`; returns the path of feedback.jsonl.

    Backends should be `cowest.core.faults.TolerantBackend`s: a question with a request that failed for good is not
    written (the next run retries it) but charged to `budget` (default: `cfg.max_failed_share` of the samples),
    which stops the run past its share; `faults.json` beside feedback.jsonl counts faults per kind.
    `timings`, when given, accumulates wall seconds per step: drafts, solo, refine, evaluate."""
    st = _settings(cfg, judge, timings)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FEEDBACK_FILE
    done = load_done(path)
    todo = [s for s in samples if s.id not in done]
    out = _Writer(path, budget or FailureBudget("feedback", len(samples), cfg.max_failed_share),
                  FaultLog(out_dir, [weak, strong, judge]), progress)
    out.skipped(len(samples) - len(todo))
    for start in range(0, len(todo), chunk_size):
        ans = _generate_chunk(todo[start : start + chunk_size], weak, strong, st)
        for qi, sample in enumerate(ans.samples):
            record = _record_of(ans, qi, st)
            if record is None:
                out.failed(sample.id, ans.failed[qi])
            else:
                out.write(record)
        out.end_chunk()
    return path


def _settings(cfg: ExperimentConfig, judge: Backend | None, timings: dict[str, float] | None) -> _Settings:
    fb = cfg.feedback
    return _Settings(
        draft_format=cfg.collaboration.draft_format, overrides=cfg.collaboration.prompts,
        draft_params=cfg.generation.weak.model_copy(update={"n": fb.k, "temperature": fb.temperature,
                                                            "top_p": fb.top_p}),
        strong_params=cfg.generation.strong.model_copy(update={"n": 1}), evaluator=EVALUATORS.get(fb.evaluator),
        ctx=EvalContext(judge=judge, judge_params=cfg.generation.judge.model_copy(update={"n": 1})),
        clock=_Clock(timings if timings is not None else {}))


def _record_of(ans: _ChunkAnswers, qi: int, st: _Settings) -> FeedbackRecord | None:
    """Question `qi`'s record, or None when one of its requests failed for good (the error is then in `ans.failed`)."""
    if qi in ans.failed:
        return None
    try:
        return _score_question(ans, qi, st)
    except QuestionFailed as e:
        ans.failed[qi] = str(e)
        return None


@dataclass
class _Writer:
    """Where each question's outcome goes: its record to feedback.jsonl, a failure to the budget and faults.json,
    both to the progress line."""

    path: Path
    budget: FailureBudget
    faults: FaultLog
    progress: "Progress | None"

    def skipped(self, n: int) -> None:
        """Questions done by an earlier run."""
        if self.progress:
            self.progress.update(n)

    def write(self, record: FeedbackRecord) -> None:
        try:
            line = jsonl_line(record)
        except UnwritableRow as e:  # this question fails alone, as a failed request does
            return self.failed(record.question_id, f"record not written: {e}")
        append_jsonl(self.path, line)  # at once, so a killed run resumes with this question done
        self.budget.ok(record.question_id)
        if self.progress:
            hits = sum(record.requests.values()) - sum(record.calls.values())
            self.progress.update(1, tokens=sum(record.tokens.values()), cache_hits=hits)

    def failed(self, question_id: str, error: str) -> None:
        """Written nowhere, so the next run retries it; charged to the budget, which may stop the run (raising),
        and faults.json is written either way."""
        if self.progress:
            self.progress.update(1, failed=1, faults=self.faults.current(self.budget.failed)["faults_total"])
        try:
            self.budget.fail(question_id, error)
        finally:
            self.faults.write(self.budget.failed)

    def end_chunk(self) -> None:
        counts = self.faults.write(self.budget.failed)
        if self.progress:
            self.progress.update(0, faults=counts["faults_total"])
