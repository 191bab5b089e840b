"""Typed experiment config: YAML plus dotted command-line overrides, validated, saved into the run directory.

Unknown keys and wrong types fail at once, naming the dotted key. Every field is documented where it is declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_serializer,
                      field_validator, model_validator)

from cowest.core.errors import ConfigError
from cowest.core.records import SamplingParams
from cowest.core.safe_yaml import load_yaml, short_repr
from cowest.core.redact import redact_url
from cowest.routing.config import Price, RouteConfig, check_prices


class Section(BaseModel):
    # Every float of a config is finite: `.nan` or `.inf` (YAML) is refused naming the key, where it would pass every
    # range check and surface later as a run that routes nothing or a costs.json that is not JSON.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _no_repeats(values: list[Any] | None) -> list[Any] | None:
    repeated = sorted({str(v) for v in values if values.count(v) > 1}) if values else []
    if repeated:
        raise ValueError(f"lists {', '.join(repeated)} more than once")
    return values


class TaskConfig(Section):
    name: str = "demo"
    """Task name (see `cowest tasks`)."""
    data: str | None = None
    """Data folder holding `<task>/<split>.jsonl` (e.g. ../shared/data), a file, or None for a hub / generated task."""
    train_split: str = "train"
    eval_split: str = "dev"
    train_limit: int | None = Field(None, ge=1)
    """Use at most this many training samples (seeded subsample); None = all."""
    eval_limit: int | None = Field(None, ge=1)
    seed: int = Field(0, strict=True)
    """Seed of the subsampling (and of the demo's generated catalogue). Strict: `true` or `'3'` is refused, not read
    as 1 or 3."""
    subset: str | None = None
    """Subset of a multi-part task (ETHICS: commonsense, deontology, justice, virtue, utilitarianism)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """The task's own settings, validated by the task (`cowest tasks` lists them): medmcqa `cop_base`, ifqa
    `show_context`, jsonl `family`, `fields`, `labels` (e.g. `task: {name: medmcqa, options: {cop_base: 1}}`)."""


def is_remote_spec(spec: str) -> bool:
    """Whether a model spec names an OpenAI-compatible endpoint (the one test of it: `ModelConfig.is_remote`)."""
    return spec.startswith("openai/")


class ModelConfig(Section):
    spec: str
    """`provider/model`: hf/<dir|hub id|file.gguf>, llamacpp/<file.gguf>, openai/<model>, mock/<name>, or an
    embedded alias (embedded/smollm2-135m, embedded/qwen2.5-coder-0.5b, embedded/qwen2.5-coder-1.5b)."""
    adapter: str | None = None
    """PEFT LoRA adapter folder applied on top (hf; llamacpp takes a GGUF LoRA)."""
    base_url: str | None = None
    """openai: the endpoint (vLLM, Ollama, llama.cpp server, TGI, Azure ...); None = api.openai.com. Never with
    credentials in it: configs are written into run directories."""

    @field_validator("base_url")
    @classmethod
    def _no_secret_in_url(cls, url: str | None) -> str | None:
        from urllib.parse import urlsplit

        if url is not None:
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError("base_url is not a URL (e.g. http://127.0.0.1:8000/v1)") from None
            if parts.username or parts.password or parts.query or parts.fragment or "#" in url:
                raise ValueError("base_url must not carry credentials, a query string or a #fragment (configs are "
                                 "saved into the run directory); put the key in the environment variable named by "
                                 "api_key_env")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("base_url must be an http:// or https:// URL with a host (e.g. "
                                 "http://127.0.0.1:8000/v1)")
        return url

    @property
    def is_remote(self) -> bool:
        """An OpenAI-compatible endpoint (`openai/...`): it batches by concurrency, is priced per token, and a
        weak server applies its own adapter."""
        return is_remote_spec(self.spec)

    @field_serializer("base_url")
    def _redacted_url(self, url: str | None) -> str | None:
        # Whatever is written (config.yaml, inputs.json) never holds a path segment that looks like a key.
        return None if url is None else redact_url(url)
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the name of the environment variable holding the key (the key itself never goes in a config)."""
    concurrency: int = Field(8, ge=1)
    """openai: requests in flight at once."""
    timeout_s: float = Field(120.0, gt=0)
    """openai: the whole of one HTTP attempt (connect, headers and body), not only the wait for each read."""
    max_retries: int = Field(5, ge=0)
    """openai: retries of one request after its first attempt (the openai SDK's own retries: 429, 5xx, timeouts,
    dropped connections; a malformed 2xx body gets as many)."""
    batch_size: int = Field(8, ge=1)
    """hf / llamacpp: prompts per forward batch."""
    engine: Literal["auto", "llamacpp", "hf", "vllm"] = "auto"
    """embedded: the local engine. auto = the fastest on this CPU for batches of `batch_size`, measured once per
    model and CPU in a few seconds and cached (cowest.models.calibrate); the run prints which engine it chose and
    why. An engine named here that is not installed is an error. vllm (embedded or hf specs): a local vLLM server
    from `.venv-vllm` (`bash scripts/setup.sh --vllm`), adapters loaded into it at runtime
    (cowest.models.vllm_server)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    """hf inference: bfloat16 halves memory and, on hardware with native bf16 matmuls (AMX or AVX512-BF16 CPUs,
    GPUs), runs batches several times faster; outputs differ slightly from float32 (and with the batch), so it is
    part of the model's identity in the response cache. auto = the faster of the two by measurement where the CPU
    has native bf16, else float32. bfloat16 on a CPU without it runs emulated, usually slower (a warning says so).
    Training precision is chosen by the recipes (cowest.pipeline.train.common.device_kwargs)."""
    batching: Literal["continuous", "static"] = "continuous"
    """hf: continuous = a finished reply leaves the batch and the next waiting prompt joins it, and the n samples
    of a prompt share one prefill (cowest.models.hf_refill); static = one `generate` per batch of `batch_size`
    prompts, every row running until the batch's longest reply ends. Greedy float32 replies are the same
    either way; sampled replies differ (continuous seeds each request on its own, so a reply does not depend
    on its batch)."""
    n_threads: int | None = None
    """llamacpp: CPU threads (None = all cores)."""
    n_ctx: int = Field(4096, ge=1)
    cache: bool | None = None
    """Cache responses in SQLite; None = on for strong and judge, off for weak."""


class ModelsConfig(Section):
    weak: ModelConfig = Field(default_factory=lambda: ModelConfig(spec="embedded/smollm2-135m"))
    strong: ModelConfig = Field(default_factory=lambda: ModelConfig(spec="embedded/qwen2.5-coder-1.5b"))
    """The 1.5B, chosen by measurement: the only embedded model clearly stronger than the weak default zero-shot
    on all three dev domains (BENCHMARKS.md, zero_shot.py)."""
    judge: ModelConfig | None = None
    """The LLM judge; None = the strong model."""


class GenerationConfig(Section):
    weak: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=128))
    strong: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=192))
    judge: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=64))


class EvalConfig(Section):
    strategies: list[str] = Field(default_factory=lambda: ["weak_only", "strong_only", "collaborate"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    bootstrap_samples: int = Field(1000, ge=1)
    recall_split: str | None = None
    """`cowest run`: also score the SFT weak model alone on this split of training facts (the demo's `facts`), its
    recall of what SFT taught it, reported next to the results."""
    max_cut_share: float = Field(0.05, ge=0, le=1)
    """Warn when more than this share of a role's replies hit its token limit (generation.<role>.max_tokens)."""

    @field_validator("strategies", "seeds")
    @classmethod
    def _no_repeats(cls, values: list[Any]) -> list[Any]:
        return _no_repeats(values) or values


DraftFormat = Literal["cot", "knowledge", "direct"]


ReportTo = Literal["none", "tensorboard", "trackio", "wandb", "mlflow"]


class SFTConfig(Section):
    report_to: ReportTo = "none"
    """Where TRL also logs the training metrics (`TrainingArguments.report_to`): tensorboard (event files in the
    adapter folder's `runs/`), trackio, wandb, mlflow, or none; the tracker's package must be installed."""
    lr: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    """> 0 overrides epochs."""
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target: Literal["auto", "answer", "rationale"] = "auto"
    """auto: rationale + answer when the data has a rationale, else answer only."""
    without_rationale: Literal["answer", "drop"] = "answer"
    """Samples left with no rationale (none in the data, none bootstrapped): their draft row trains the bare answer
    (`answer`; target rationale refuses them), or is left out (`drop`) so that every draft the weak model learns
    carries reasoning (answer rows, sft.answer_rows, are kept). On ETHICS-justice half the rows had none; the SFT
    model then wrote bare labels often enough that 135 of 190 feedback pairs chose a bare label, and DPO taught it
    to drop the reasoning on every dev question."""
    answer_rows: Literal["none", "direct", "auto"] = "none"
    """Also train the prompt the weak model answers alone with (`answer`), beside the draft rows: none, direct
    (`Answer: X`) or auto (rationale + answer where the data has one). For a draft format that is not an answer
    (`knowledge`), so that the weak-alone baseline is the SFT model at its best, not one never taught to answer."""
    knowledge_epochs: int = Field(0, ge=0)
    """> 0: first train this many epochs of plain language modelling on the task's documents (the demo's catalogue,
    one fact a sentence), then the prompt -> draft SFT. Short rows seen many times are the cheap way for a small
    model to learn facts; the draft SFT then teaches it to use them. Tasks without documents skip it."""
    knowledge_lr: float | None = Field(None, gt=0)
    """Learning rate of the knowledge phase; None = `lr`."""
    merge: bool = False
    """Also save a merged full model."""
    seed: int = 0
    rationales: Literal["data", "weak", "strong"] = "data"
    """Where cot targets get their rationale: data (the dataset's own; label-only rows train `Answer: X`), or
    bootstrapped for rows without one from the weak base model or the strong model, keeping a sampled reasoning
    that reaches the gold answer (cowest.pipeline.rationales)."""
    rationale_samples: int = Field(default=4, ge=1)
    """Replies sampled per row when bootstrapping rationales."""
    rationale_temperature: float = Field(0.7, ge=0, le=2)
    rationalize: bool = False
    """Rows whose sampled replies all missed the gold answer are asked once more with the gold answer as a hint
    (STaR's rationalization); a hinted reply that reaches it and does not mention the hint gives the rationale.
    Keeping only the replies that reach gold keeps the rows whose label the model already favours: on ETHICS-justice
    178 of the 201 rows kept were `unreasonable` (194 of the 400 train rows), and the SFT model's drafts ended in
    `unreasonable` on 297 of 300 dev questions. Measured there with the 1.5B: the hinted ask kept 54 more rows (40
    `reasonable`), so 63 of 255 rows were `reasonable`, and the SFT model still drafted `unreasonable` on 299 of 300:
    not enough alone; with `balance: up` it drafted `reasonable` on 60 of 300 (off by default; method_ethics.yaml sets
    both)."""

    draft_mix: list[DraftFormat] | None = Field(None, min_length=1)
    """Gold draft formats spread over the draft rows, all under the one draft prompt of `collaboration.draft_format`:
    each draft row's target is the sample's gold draft in one of these formats, dealt evenly in a seeded order. None =
    `draft_format` alone. An SFT model trained this way writes several kinds of draft, as one fine-tuned on mixed
    domain text would, and the feedback's Δ then chooses the kind that helps the strong model (on the demo: drafts of
    the facts alone against drafts that also state the weak model's own step and answer, which the strong model
    copies)."""
    balance: Literal["none", "down", "up"] = "none"
    """Even out the gold answers of the draft rows (classification and multiple choice): `down` keeps as many rows of
    each answer as the rarest one has, `up` repeats the rarer answers' rows (seeded) until each has as many as the
    commonest. Bootstrapped rationales keep the rows whose label the model already favours (ETHICS-justice: 178 of
    201 `unreasonable`), and an SFT model trained on them drafts that label on nearly every question, which leaves the
    strong model one label to follow and the feedback drafts that differ too little to pair."""

    @field_validator("draft_mix")
    @classmethod
    def _no_repeated_formats(cls, values: list[DraftFormat] | None) -> list[DraftFormat] | None:
        return _no_repeats(values)

    @model_validator(mode="after")
    def _drop_needs_a_rationale_target(self) -> "SFTConfig":
        if self.without_rationale == "drop" and self.target == "answer":
            raise ValueError("sft.without_rationale=drop has no effect with sft.target=answer (every row trains the "
                             "bare answer); use sft.target=auto or rationale")
        return self


class FeedbackConfig(Section):
    k: int = Field(4, ge=1)
    """Drafts sampled per training question."""
    split: str | None = None
    """The split the feedback's questions come from; None = `task.train_split`, the questions SFT trained on (the
    paper's setting). A split of questions SFT never saw shows the drafts as the weak model writes them at
    inference: on the demo's train questions the SFT model recites the gold step and answer it memorised, so
    drafts that state a wrong step never appear there; the demo's `feedback` split holds other questions over the
    same catalogue."""
    questions: int | None = Field(None, ge=0)
    """Use at most this many training questions (seeded subsample of the SFT data); None = all."""
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    evaluator: Literal["metric", "judge", "hybrid"] = "metric"
    margin: float = Field(0.0, ge=0)
    """A draft is chosen when its influence is > margin (preference `helpful`)."""
    preference: Literal["helpful", "better"] = "helpful"
    """Which drafts of a question are paired. helpful (the paper's): a draft with Δ > margin over one with Δ <= 0.
    better: any draft over one with a lower Δ, which adds a draft that leaves the strong model right over one that
    misleads it. Under `helpful` a pair exists only where the strong model alone fails (no draft can have Δ > 0
    where it is right), so when its failures lean to one label the chosen drafts do too: on ETHICS-justice 239 of
    311 chosen drafts ended in `reasonable`, and DPO taught the weak model to draft `reasonable` on every dev
    question."""
    pair_rule: Literal["all", "best_vs_worst"] = "all"
    """all: every (chosen, rejected) combination, largest gap Δ_chosen − Δ_rejected first; best_vs_worst: one pair,
    the largest gap."""
    min_gap: float = 0.0
    """Keep a pair only when Δ_chosen − Δ_rejected >= min_gap (0: every chosen/rejected combination qualifies)."""
    max_pairs_per_question: int | None = Field(default=4, ge=1)
    """At most this many pairs per question, the largest gaps; None = all of them."""
    warn_pair_share: float = Field(default=0.25, ge=0, le=1)
    """The stage warns, naming why the others gave none and what to change, when fewer than this share of its
    questions gave a pair (the demo's knowledge-only drafts: 1 of 24, most with four identical drafts)."""



class CollaborationConfig(Section):
    """How the weak and the strong model talk, for every stage alike: the draft the weak model writes and the
    prompts of both. SFT trains the weak model to write `draft_format`, feedback samples and aligns drafts of it,
    `cowest serve` drafts in it, and evaluation scores `collaborate` with it (and with `eval_draft_formats`)."""

    draft_format: DraftFormat = "cot"
    """cot (reasoning, then `Answer: X`), knowledge (the facts the question needs, no answer) or direct (`Answer: X`
    alone)."""
    eval_draft_formats: list[DraftFormat] | None = Field(None, min_length=1)
    """The formats `collaborate` is evaluated with; None = `draft_format` alone. `cowest run` evaluates the others
    with the SFT and the last aligned weak model beside the main systems."""
    prompts: dict[str, str] = Field(default_factory=dict)
    """Overrides of named prompt templates (see cowest.tasks.prompts), for training, feedback, eval and serve."""
    weak_answer: Literal["answer", "draft"] = "answer"
    """How the weak model gives an answer of its own (`weak_only`, and the prediction `super_icl` hands the strong
    model): with the `answer` prompt, or as its draft, which for cot and direct drafts ends in the answer line. A
    weak model trained on drafts alone (`sft.answer_rows: none`) has never seen the answer prompt: on MedMCQA the
    135M SFT model asked it wrote sentences instead of an answer line and was cut at its budget on 21% of dev
    questions, against 3% of its drafts. `draft` scores the model in the form its SFT taught."""

    @field_validator("eval_draft_formats")
    @classmethod
    def _no_repeats(cls, values: list[DraftFormat] | None) -> list[DraftFormat] | None:
        return _no_repeats(values)

    @model_validator(mode="after")
    def _draft_answers_need_an_answer_line(self) -> "CollaborationConfig":
        if self.weak_answer == "draft" and self.draft_format == "knowledge":
            raise ValueError("weak_answer=draft needs a draft that ends in an answer line (draft_format cot or "
                             "direct); a knowledge draft gives none: use collaboration.weak_answer=answer")
        return self

    @property
    def formats_evaluated(self) -> list[str]:
        """The draft formats `collaborate` is evaluated with, the first being the default."""
        return list(self.eval_draft_formats or [self.draft_format])


# TRL 1.16's DPO losses (`trl.DPOConfig.loss_type`; tests/test_train.py checks the list against the installed TRL).
DPOLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]
SMOOTHED_LOSSES = ("robust", "exo_pair", "aot", "aot_unpaired")


class AlignConfig(Section):
    report_to: ReportTo = "none"
    """Where TRL also logs the training metrics (`TrainingArguments.report_to`): tensorboard (event files in the
    adapter folder's `runs/`), trackio, wandb, mlflow, or none; the tracker's package must be installed."""
    method: Literal["dpo", "sft_positive"] = "dpo"
    beta: float = Field(0.1, gt=0)
    lr: float = Field(5e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8)
    loss_type: DPOLoss = "sigmoid"
    """TRL's DPO loss (`trl.DPOConfig.loss_type`): sigmoid (the paper's), robust (label-noise robust, with
    label_smoothing), ipo, hinge ..."""
    rpo_alpha: float | None = Field(default=None, ge=0)
    """Weight α of an NLL term on the chosen drafts added to the DPO loss (RPO), which keeps their likelihood from
    falling; None = plain DPO. TRL 1.16 has no `rpo_alpha` field: it is its `sft` loss with weight α next to
    loss_type (`loss_type=[loss_type, "sft"]`, `loss_weights=[1, α]`)."""
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    """The probability that a preference is flipped, for loss_type robust (Robust DPO, e.g. 0.1), exo_pair, aot and
    aot_unpaired; TRL's other losses ignore it, so it is refused with them."""
    precompute_ref_log_probs: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    sft_positive_control: bool = False
    """Also train the control of the paper's reviewers (SFT on chosen drafts only) and evaluate it."""
    reference: Literal["sft", "previous"] = "sft"
    """Reference of rounds after the first: the SFT model or the previous round's aligned model."""
    seed: int = 0
    select_split: str | None = None
    """A split of the task on which each round's aligned weak model is checked against the model it started from
    (collaboration, greedy, the task metric, paired): where it is resolved below (its 95% CI under 0), the run
    says so and keeps the earlier adapter as its best, which `cowest serve` serves. Use questions that neither SFT,
    feedback nor the report sees (the demo: `tune`); None = no check."""
    logp_drop_warn: float = Field(0.1, ge=0)
    """The report warns when the chosen drafts' log-probability, relative to the reference, fell by more than this
    many nats per token between the first and the last logged DPO step (TRL's rewards/chosen ÷ β, the summed
    log-ratio of a chosen draft, divided by the chosen drafts' mean token count). Read by the report only."""

    @model_validator(mode="after")
    def _smoothing_needs_a_loss_that_uses_it(self) -> "AlignConfig":
        if self.label_smoothing > 0 and self.loss_type not in SMOOTHED_LOSSES:
            raise ValueError(f"label_smoothing={self.label_smoothing} has no effect with loss_type={self.loss_type}; "
                             f"use it with loss_type one of {', '.join(SMOOTHED_LOSSES)} (e.g. align.loss_type=robust)")
        if self.loss_type == "exo_pair" and self.label_smoothing == 0:
            raise ValueError("loss_type=exo_pair needs label_smoothing > 0 (the EXO paper uses align.label_smoothing=1e-3)")
        return self


class ServeConfig(Section):
    """`cowest serve`: the collaboration as an OpenAI-compatible HTTP endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_name: str = "cowest"
    """The model id clients ask for (`/v1/models` lists it)."""
    token_env: str = "COWEST_SERVE_TOKEN"
    """Environment variable holding the bearer token (the token itself never goes in a config)."""
    max_request_bytes: int = Field(1_000_000, ge=1)
    """Larger request bodies get 413 (checked while the body streams in, Content-Length or not)."""
    max_prompt_chars: int = Field(16_000, ge=1)
    """Longer prompts (all message contents together) get 400 context_length_exceeded."""
    max_concurrent: int = Field(4, ge=1)
    """Requests in flight at once; one more gets 429 with Retry-After."""
    max_tokens: int = Field(4096, ge=1)
    """The most answer tokens a client may ask for: a larger `max_tokens` / `max_completion_tokens` is clamped."""
    timeout_s: float = Field(300.0, gt=0)
    """Per request (draft + answer); past it the client gets 504 (or, mid-stream, an error event)."""
    log_prompts: bool = False
    """Put the question text in the JSON request log (off: logs carry no user text)."""
    receive_timeout_s: float = Field(30.0, gt=0)
    """A connection must deliver each whole request (headers and body) within this time from its first byte (or
    from connecting), else it is closed: a client trickling its headers or body cannot hold a connection open."""
    max_connections: int = Field(256, ge=1)
    """Open connections at once; past it a new request gets 503 (uvicorn's limit_concurrency)."""


class ExperimentConfig(Section):
    run_dir: str = "runs/default"
    task: TaskConfig = Field(default_factory=TaskConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    collaboration: CollaborationConfig = Field(default_factory=CollaborationConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    route: RouteConfig = Field(default_factory=RouteConfig)
    """Strategy `route` and `cowest serve` with `route.serve`: the strong model only where a router says so."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """US dollars per million input and output tokens by model spec (e.g. `openai/gpt-4o: {input: 2.5, output:
    10}`), for the cost reports (cowest.pipeline.costs). A local model not listed costs 0; an openai/ model not listed is
    reported unpriced."""
    rounds: int = Field(1, ge=1)
    """Feedback + align rounds."""
    max_failed_share: float = Field(0.05, ge=0, le=1)
    """Failure budget of the feedback and eval stages: a request that fails for good (after its retries) marks its
    sample failed (written nowhere, counted, retried on the next run) and the stage goes on while at most this
    share of its samples failed; past it the stage stops, keeping what it finished. The stage is marked done only
    when nothing failed."""
    cache_dir: str | None = None
    """Response cache folder; None = <run_dir>/cache."""

    @model_validator(mode="after")
    def _answer_rows_need_the_answer_prompt(self) -> "ExperimentConfig":
        if self.collaboration.weak_answer == "draft" and self.sft.answer_rows != "none":
            raise ValueError(f"sft.answer_rows={self.sft.answer_rows} trains the answer prompt, which "
                             "collaboration.weak_answer=draft never asks; set one of them back (sft.answer_rows=none "
                             "or collaboration.weak_answer=answer)")
        return self

    @property
    def feedback_split(self) -> tuple[str, int | None]:
        """The split the feedback's questions come from and its row limit (`task.train_limit` for the train split)."""
        split = self.feedback.split or self.task.train_split
        return split, self.task.train_limit if split == self.task.train_split else None

    @field_validator("prices")
    @classmethod
    def _prices_name_models(cls, prices: dict[str, Price], info: ValidationInfo) -> dict[str, Price]:
        if "models" in info.data:  # else the models section failed and is reported already
            check_prices(prices, info.data["models"])
        return prices


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"override '{key}': '{p}' is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`train.lr=1e-4` -> ("train.lr", 1e-4); values are parsed as YAML scalars/lists."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {short_repr(item)} is not KEY=VALUE (e.g. sft.lr=1e-4)")
        key, _, raw = item.partition("=")
        value = load_yaml(raw, f"override '{short_repr(key.strip())[1:-1]}'") if raw.strip() else None
        out.append((key.strip(), value))
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; a missing, unreadable or malformed file is a one-line error."""
    from cowest.core.files import CONFIG_LIMIT, read_bounded

    if not Path(path).exists() and not Path(path).is_symlink():
        raise ConfigError(f"config file not found: {path}")
    if Path(path).is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file (e.g. configs/demo.yaml)")
    raw = read_bounded(path, CONFIG_LIMIT, "config file (e.g. configs/demo.yaml)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load YAML (or defaults when `path` is None), apply dotted overrides, validate."""
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
    if path is not None:
        check_moved_keys(data, str(path))
    for key, value in parse_overrides(overrides or []):
        old = next((k for k in MOVED_KEYS if key == k or key.startswith(k + ".")), None)
        if old is not None:
            raise ConfigError(f"override '{key}': '{old}' has moved: write it as '{MOVED_KEYS[old]}{key[len(old):]}'")
        _set_dotted(data, key, value)
    return validate_config(data, source=str(path) if path else "<overrides>")


MOVED_KEYS = {
    "feedback.draft_format": "collaboration.draft_format",
    "eval.draft_formats": "collaboration.eval_draft_formats",
    "eval.prompts": "collaboration.prompts",
    "task.cop_base": "task.options.cop_base",
    "task.show_context": "task.options.show_context",
    "task.fields": "task.options.fields",
    "task.family": "task.options.family",
    "task.labels": "task.options.labels",
}
"""Keys of earlier versions -> their place now: a config that still uses one fails, naming both."""


def check_moved_keys(data: dict[str, Any], source: str) -> None:
    """A one-line error for every key of `data` that has moved (see MOVED_KEYS)."""
    moved = []
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if isinstance(data.get(section), dict) and key in data[section]:
            moved.append((old, new))
    if moved:
        raise ConfigError("; ".join(f"{source}: '{old}' has moved: write it as '{new}'" for old, new in moved))


def validate_config(data: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    check_moved_keys(data, source)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            kind = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            # The offending value is echoed (briefly), except a URL, which may hold the very secret being refused.
            echo = err["type"] != "extra_forbidden" and not key.endswith("base_url")
            msgs.append(f"{source}: '{short_repr(key)[1:-1]}': {kind}"
                        + (f" (got {short_repr(err.get('input'))})" if echo else ""))
        raise ConfigError("; ".join(msgs)) from None


def dump_config(cfg: ExperimentConfig) -> str:
    text: str = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    return text


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
