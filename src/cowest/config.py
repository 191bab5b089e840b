"""Typed experiment config: YAML plus dotted command-line overrides, validated, saved into the run directory.

Unknown keys and wrong types fail at once, naming the dotted key. Every field is documented where it is declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cowest.errors import ConfigError
from cowest.records import SamplingParams


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Section):
    name: str = "demo"
    """Task name (see `cowest tasks`)."""
    data: str | None = None
    """Data folder holding `<task>/<split>.jsonl` (e.g. ../shared/data), a file, or None for a hub / generated task."""
    train_split: str = "train"
    eval_split: str = "dev"
    train_limit: int | None = None
    """Use at most this many training samples (seeded subsample); None = all."""
    eval_limit: int | None = None
    seed: int = 0
    """Seed of the subsampling."""
    subset: str | None = None
    """Subset of a multi-part task (ETHICS: commonsense, deontology, justice, virtue, utilitarianism)."""
    fields: dict[str, str] = Field(default_factory=dict)
    """`jsonl` task: maps cowest fields (id, question, answer, options, label, rationale) to the file's keys."""
    family: Literal["qa", "mc", "cls"] | None = None
    """`jsonl` task: qa (short answer), mc (options) or cls (labels)."""
    labels: list[str] | None = None
    """`jsonl` task with family cls: the valid labels."""
    cop_base: Literal[0, 1] | None = None
    """MedMCQA rows with `cop`: 0 = hub (0..3), 1 = original release (1..4); None = read off the values."""
    show_context: bool = False
    """IfQA / PubMedQA: show the evidence passages to the models."""


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
            parts = urlsplit(url)
            if parts.username or parts.password or parts.query:
                raise ValueError("base_url must not carry credentials or a query string (configs are saved into "
                                 "the run directory); put the key in the environment variable named by api_key_env")
        return url
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the name of the environment variable holding the key (the key itself never goes in a config)."""
    concurrency: int = 8
    """openai: requests in flight at once."""
    timeout_s: float = 120.0
    max_retries: int = 5
    batch_size: int = 8
    """hf / llamacpp: prompts per forward batch."""
    engine: Literal["auto", "llamacpp", "hf"] = "auto"
    """embedded: the local engine. auto = llama.cpp when installed (fastest one prompt at a time), else
    transformers; hf batches prompts, which with dtype=bfloat16 on a CPU with AMX is several times faster for
    batched work (BENCHMARKS.md, "Token budget and engine")."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """hf inference: bfloat16 halves memory and, on hardware with native bf16 matmuls (AMX or AVX512-BF16 CPUs,
    GPUs), runs batches several times faster; outputs differ slightly from float32, so it is part of the model's
    identity in the response cache. Training always runs in the recipes' own precision."""
    n_threads: int | None = None
    """llamacpp: CPU threads (None = all cores)."""
    n_ctx: int = 4096
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
    strategies: list[str] = Field(default_factory=lambda: ["weak_only", "strong_only", "collaborate"])
    draft_formats: list[str] = Field(default_factory=lambda: ["cot"])
    """Draft formats for `collaborate`: cot, knowledge, direct."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    bootstrap_samples: int = 1000
    prompts: dict[str, str] = Field(default_factory=dict)
    """Overrides of named prompt templates (see cowest.tasks.prompts)."""
    recall_split: str | None = None
    """`cowest run`: also score the SFT weak model alone on this split of training facts (the demo's `facts`), its
    recall of what SFT taught it, reported next to the results."""
    max_cut_share: float = 0.05
    """Warn when more than this share of a role's replies hit its token limit (generation.<role>.max_tokens)."""


class SFTConfig(Section):
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    """> 0 overrides epochs."""
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target: Literal["auto", "answer", "rationale"] = "auto"
    """auto: rationale + answer when the data has a rationale, else answer only."""
    merge: bool = False
    """Also save a merged full model."""
    seed: int = 0
    rationales: Literal["data", "weak", "strong"] = "data"
    """Where cot targets get their rationale: data (the dataset's own; label-only rows train `Answer: X`), or
    bootstrapped for rows without one from the weak base model or the strong model, keeping a sampled reasoning
    that reaches the gold answer (cowest.rationales)."""
    rationale_samples: int = Field(default=4, ge=1)
    """Replies sampled per row when bootstrapping rationales."""
    rationale_temperature: float = 0.7


class FeedbackConfig(Section):
    k: int = 4
    """Drafts sampled per training question."""
    questions: int | None = None
    """Use at most this many training questions (seeded subsample of the SFT data); None = all."""
    temperature: float = 1.0
    top_p: float = 0.95
    evaluator: Literal["metric", "judge", "hybrid"] = "metric"
    margin: float = 0.0
    """A draft is chosen when its influence is > margin."""
    pair_rule: Literal["all", "best_vs_worst"] = "all"
    """all: every (chosen, rejected) combination, largest gap Δ_chosen − Δ_rejected first; best_vs_worst: one pair,
    the largest gap."""
    min_gap: float = 0.0
    """Keep a pair only when Δ_chosen − Δ_rejected >= min_gap (0: every chosen/rejected combination qualifies)."""
    max_pairs_per_question: int | None = Field(default=4, ge=1)
    """At most this many pairs per question, the largest gaps; None = all of them."""
    draft_format: Literal["cot", "knowledge", "direct"] = "cot"


# TRL 1.16's DPO losses (`trl.DPOConfig.loss_type`; tests/test_train.py checks the list against the installed TRL).
DPOLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]
SMOOTHED_LOSSES = ("robust", "exo_pair", "aot", "aot_unpaired")


class AlignConfig(Section):
    method: Literal["dpo", "sft_positive"] = "dpo"
    beta: float = 0.1
    lr: float = 5e-5
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 2
    grad_accum: int = 1
    max_length: int = 512
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
    lora_r: int = 16
    lora_alpha: int = 32
    sft_positive_control: bool = False
    """Also train the control of the paper's reviewers (SFT on chosen drafts only) and evaluate it."""
    reference: Literal["sft", "previous"] = "sft"
    """Reference of rounds after the first: the SFT model or the previous round's aligned model."""
    seed: int = 0
    logp_drop_warn: float = 0.1
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
    port: int = 8000
    model_name: str = "cowest"
    """The model id clients ask for (`/v1/models` lists it)."""
    token_env: str = "COWEST_SERVE_TOKEN"
    """Environment variable holding the bearer token (the token itself never goes in a config)."""
    max_request_bytes: int = 1_000_000
    """Larger request bodies get 413."""
    max_prompt_chars: int = 16_000
    """Longer prompts (all message contents together) get 400 context_length_exceeded."""
    max_concurrent: int = 4
    """Requests in flight at once; one more gets 429 with Retry-After."""
    timeout_s: float = 300.0
    """Per request (draft + answer); past it the client gets 504."""
    log_prompts: bool = False
    """Put the question text in the JSON request log (off: logs carry no user text)."""


class ExperimentConfig(Section):
    run_dir: str = "runs/default"
    task: TaskConfig = Field(default_factory=TaskConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    rounds: int = 1
    """Feedback + align rounds."""
    cache_dir: str | None = None
    """Response cache folder; None = <run_dir>/cache."""


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
            raise ConfigError(f"override '{item}' is not KEY=VALUE (e.g. sft.lr=1e-4)")
        key, _, raw = item.partition("=")
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load YAML (or defaults when `path` is None), apply dotted overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for key, value in parse_overrides(overrides or []):
        _set_dotted(data, key, value)
    return validate_config(data, source=str(path) if path else "<overrides>")


def validate_config(data: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            kind = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            # The offending value is echoed, except a URL, which may hold the very secret being refused.
            echo = err["type"] != "extra_forbidden" and not key.endswith("base_url")
            msgs.append(f"{source}: '{key}': {kind}" + (f" (got {err.get('input')!r})" if echo else ""))
        raise ConfigError("\n".join(msgs)) from None


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


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
