"""What each stage's outputs depend on: a typed bundle of the parts of the config the stage reads.

A stage records its bundle (flattened to dotted config keys, so a refusal names the key that changed) with the
SHA-256 of the upstream files it reads in its `inputs.json`: that record is the stage's fingerprint
(`cowest.pipeline.stages`). A later stage's bundle holds the earlier stages' bundles, as its outputs follow from theirs.

What is not an input: settings that change how fast a stage runs, never what it writes (`RUN_SETTINGS` of every
model; `align.logp_drop_warn`, which only the report reads), and how a model is run (`engine`, `dtype`) for a stage
that only trains from it. The training batch sizes (`sft.batch_size`, `align.batch_size`) are inputs: they change
the optimiser's steps.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cowest.core.config import (AlignConfig, CollaborationConfig, EvalConfig, ExperimentConfig, FeedbackConfig, GenerationConfig, ModelConfig,
                           TaskConfig, flatten)
from cowest.core.records import SamplingParams
from cowest.routing.config import RouteConfig

StageKind = Literal["sft", "feedback", "align", "eval"]

RUN_SETTINGS = ("concurrency", "timeout_s", "max_retries", "n_threads", "batch_size", "batching", "cache")
"""ModelConfig fields that change how fast a model answers (or whether a reply is reused), never the reply."""
HOW_RUN = ("engine", "dtype")
"""ModelConfig fields that choose how a local model runs: inputs of stages that generate with it, not of training."""
EVAL_ONLY_TASK_KEYS = ("eval_split", "eval_limit")


def _task(t: TaskConfig, *, for_eval: bool = True) -> dict[str, Any]:
    """The task's keys, its options validated with the defaults filled in (so that an option set later to its
    default, or left out, records the same as before: `task.options.cop_base: null`)."""
    from cowest.tasks.base import task_options

    out = t.model_dump(mode="json", exclude=set() if for_eval else set(EVAL_ONLY_TASK_KEYS))
    out["options"] = task_options(t).model_dump(mode="json")
    return out


def _model(m: ModelConfig | None, *, generates: bool = True) -> dict[str, Any] | None:
    if m is None:
        return None
    drop = RUN_SETTINGS + (() if generates else HOW_RUN)
    return m.model_dump(mode="json", exclude=set(drop))


class Inputs(BaseModel):
    """A stage's input bundle. Each field's alias is its dotted key in the config; `record()` is the flat
    {dotted key: value} written into inputs.json."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, arbitrary_types_allowed=True)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, Inputs):
                out.update(value.record())
            elif value is not None or not (field.json_schema_extra or {}).get("exclude_if_none"):  # type: ignore[union-attr]
                key = field.alias or name
                dumped = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
                whole = (field.json_schema_extra or {}).get("whole")  # type: ignore[union-attr]
                out.update(flatten({key: dumped}) if isinstance(dumped, dict) and dumped and not whole else {key: dumped})
        return dict(sorted(out.items()))


def _whole(alias: str) -> Any:
    """A mapping of optional entries (prompt overrides) recorded as one value: flattened, an entry added where none
    was would be a key only the new record holds, which `stages.differing_keys` does not compare."""
    return Field(alias=alias, json_schema_extra={"whole": True})


def _optional(alias: str) -> Any:
    """A field recorded only when set (rationale sources, later rounds' alignment)."""
    return Field(None, alias=alias, json_schema_extra={"exclude_if_none": True})


class SFTInputs(Inputs):
    """SFT reads the training rows, the weak base model's weights, the recipe, and the draft format and prompts its
    targets are written in; bootstrapped rationales add the model that samples them."""

    task: dict[str, Any] = Field(alias="task")
    """The task's fields that select and label the training rows (all but the eval split and limit)."""
    weak: dict[str, Any] = Field(alias="models.weak")
    sft: dict[str, Any] = Field(alias="sft")
    """The recipe, less where its metrics are also sent (`report_to` changes no weight)."""
    draft_format: str = Field(alias="collaboration.draft_format")
    prompts: dict[str, str] = _whole("collaboration.prompts")
    weak_sampling: SamplingParams | None = _optional("generation.weak")
    strong: dict[str, Any] | None = _optional("models.strong")
    strong_sampling: SamplingParams | None = _optional("generation.strong")

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> "SFTInputs":
        source = cfg.sft.rationales
        return cls(task=_task(cfg.task, for_eval=False),
                   weak=_model(cfg.models.weak, generates=source == "weak"),
                   sft=cfg.sft.model_dump(mode="json", exclude={"report_to"}),
                   draft_format=cfg.collaboration.draft_format, prompts=_sft_prompts(cfg),
                   weak_sampling=cfg.generation.weak if source == "weak" else None,
                   strong=_model(cfg.models.strong) if source == "strong" else None,
                   strong_sampling=cfg.generation.strong if source == "strong" else None)


def _sft_prompts(cfg: ExperimentConfig) -> dict[str, str]:
    from cowest.tasks.prompts import overrides_of
    from cowest.pipeline.train.sft import prompt_names

    return overrides_of(cfg.collaboration.prompts, prompt_names(cfg))


class FeedbackInputs(Inputs):
    """Feedback drafts with the weak model (how it runs included), has the strong model answer and refine, and the
    evaluator score; rounds after the first draft with the previous round's aligned model, so they also hold the
    alignment settings."""

    upstream: SFTInputs
    weak: dict[str, Any] = Field(alias="models.weak")
    strong: dict[str, Any] = Field(alias="models.strong")
    judge: dict[str, Any] | None = Field(alias="models.judge")
    generation: GenerationConfig = Field(alias="generation")
    feedback: FeedbackConfig = Field(alias="feedback")
    prompts: dict[str, str] = _whole("collaboration.prompts")
    """Every prompt: the strong model's solo and refine prompts are feedback's own, the rest its drafter's."""
    align: dict[str, Any] | None = _optional("align")

    @classmethod
    def of(cls, cfg: ExperimentConfig, rnd: int = 1) -> "FeedbackInputs":
        return cls(upstream=SFTInputs.of(cfg), weak=_model(cfg.models.weak), strong=_model(cfg.models.strong),
                   judge=_model(cfg.models.judge), generation=cfg.generation, feedback=cfg.feedback,
                   prompts=cfg.collaboration.prompts, align=_align(cfg.align) if rnd > 1 else None)


ADDED_KEYS: dict[str, Any] = {"collaboration.weak_answer": "answer", "sft.rationalize": False, "sft.balance": "none",
                             "feedback.preference": "helpful", "sft.draft_mix": None,
                             "feedback.split": None}
"""Inputs added after run directories were written, each with the value that reproduces what earlier versions did:
a record without one counts as holding that value (`stages.differing_keys`), so setting the new option on a finished
run redoes the stage. Other keys a record lacks are not compared: some were renamed or not recorded before, and an
old record cannot say what they were."""

PAIR_SELECTION = tuple(f"feedback.{k}" for k in ("margin", "preference", "pair_rule", "min_gap",
                                                   "max_pairs_per_question", "warn_pair_share"))
"""Feedback settings read only when pairs are selected from the scored drafts (`cowest.pipeline.pairs`): a finished
feedback stage whose config differs in these alone selects its pairs again, without generating anything."""

DPO_ONLY = ("beta", "loss_type", "rpo_alpha", "label_smoothing", "precompute_ref_log_probs")
"""Alignment settings that only the DPO loss reads: SFT on the chosen drafts (the control) trains the same without
them, so a DPO variant reuses its control."""


def _align(a: AlignConfig, *, with_control: bool = False, dpo: bool = True) -> dict[str, Any]:
    # The control adds a stage and eval systems; it changes no DPO output. The log-probability warning is the report's,
    # the alignment check (select_split) reads the trained adapters without changing them, and report_to only
    # sends the metrics elsewhere too.
    drop = {"logp_drop_warn", "select_split", "report_to"} | (set() if with_control else {"sft_positive_control"}) | (set() if dpo else set(DPO_ONLY))
    return a.model_dump(mode="json", exclude=drop)


class AlignInputs(Inputs):
    """Alignment trains on the feedback's pairs from its reference adapter, with `method` (dpo or sft_positive)."""

    upstream: FeedbackInputs
    align: dict[str, Any] = Field(alias="align")

    @classmethod
    def of(cls, cfg: ExperimentConfig, method: str = "dpo") -> "AlignInputs":
        return cls(upstream=FeedbackInputs.of(cfg), align=_align(cfg.align, dpo=method == "dpo"))


class EvalInputs(Inputs):
    """Evaluation runs every system on the eval split: the whole task, every model as run, the eval settings, and
    which adapters exist (rounds, the control)."""

    upstream: AlignInputs
    task: dict[str, Any] = Field(alias="task")
    weak: dict[str, Any] = Field(alias="models.weak")
    strong: dict[str, Any] = Field(alias="models.strong")
    judge: dict[str, Any] | None = Field(alias="models.judge")
    eval: EvalConfig = Field(alias="eval")
    collaboration: CollaborationConfig = Field(alias="collaboration")
    align: dict[str, Any] = Field(alias="align")
    rounds: int = Field(alias="rounds")
    route: RouteConfig = Field(alias="route")
    """Strategy `route`'s routers, threshold and fallback decide its traces."""

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> "EvalInputs":
        return cls(upstream=AlignInputs.of(cfg), task=_task(cfg.task), weak=_model(cfg.models.weak),
                   strong=_model(cfg.models.strong), judge=_model(cfg.models.judge), eval=cfg.eval,
                   collaboration=cfg.collaboration,
                   align=_align(cfg.align, with_control=True), rounds=cfg.rounds, route=cfg.route)


def bundle(cfg: ExperimentConfig, kind: StageKind, rnd: int = 1) -> Inputs:
    """The input bundle of a stage of `kind` (feedback: of round `rnd`)."""
    if kind == "sft":
        return SFTInputs.of(cfg)
    if kind == "feedback":
        return FeedbackInputs.of(cfg, rnd)
    if kind == "align":
        return AlignInputs.of(cfg)
    return EvalInputs.of(cfg)


def stage_inputs(cfg: ExperimentConfig, kind: StageKind, rnd: int = 1) -> dict[str, Any]:
    """The flat record of a stage's bundle, as its inputs.json holds it (without the upstream files)."""
    return bundle(cfg, kind, rnd).record()
