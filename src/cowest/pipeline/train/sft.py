"""SFT recipe: specialise the weak model on the task's training set with a LoRA adapter (TRL `SFTTrainer`).

Each row is the weak model's draft prompt (exactly what it is asked at drafting time) and the gold draft as the
completion; the loss covers the completion only.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from cowest.core.config import ExperimentConfig
from cowest.core.errors import ConfigError, CowestError, DataError, require
from cowest.core.records import Sample
from cowest.tasks.prompts import answer_messages, draft_messages, draft_target
from cowest.core.layout import TRAIN_LOG
from cowest.pipeline.train.common import (device_kwargs, log_callback, lora_config, publish, run_trainer,
                                 save_adapter, staging_dir)


def sft_target(sample: Sample, fmt: str, target: str) -> str:
    """The completion for one sample: `answer` (direct answer only), `rationale` (the draft format's gold draft,
    which needs a rationale) or `auto` (the gold draft when the sample has what it needs, else the direct answer)."""
    if target == "answer":
        return draft_target(sample, "direct")  # type: ignore[return-value] # direct always has a target
    text = draft_target(sample, fmt)
    if text is not None:
        return text
    if target == "rationale":
        raise DataError(f"sample '{sample.id}' has no rationale for a '{fmt}' draft; set sft.target=auto or answer, "
                        "or sft.without_rationale=drop", field="rationale")
    return draft_target(sample, "direct")  # type: ignore[return-value]


def prompt_names(cfg: ExperimentConfig) -> set[str]:
    """The templates SFT writes its rows with (its stage fingerprint records only their overrides, so a changed
    refine prompt does not redo SFT): the draft prompt, the answer prompt with `sft.answer_rows`, and the cot draft
    the bootstrapped rationales are sampled with."""
    from cowest.tasks.prompts import FRAME

    names = {*FRAME, f"draft_{cfg.collaboration.draft_format}"}
    if cfg.sft.answer_rows != "none":
        names.add("answer")
    if cfg.sft.rationales != "data":
        names.add("draft_cot")
    return names


def drafted_samples(samples: list[Sample], cfg: ExperimentConfig) -> list[Sample]:
    """The samples SFT trains a draft row for: all, or (sft.without_rationale=drop) those with a gold draft; then
    evened out by gold answer with sft.balance."""
    fmt = cfg.collaboration.draft_format
    kept = samples
    if cfg.sft.without_rationale == "drop":
        kept = [s for s in samples if draft_target(s, fmt) is not None]
        if not kept:
            raise DataError(f"no training row has a rationale for a '{fmt}' draft; set sft.without_rationale=answer, "
                            "or sft.rationales=strong to bootstrap them", field="rationale")
    return balanced(kept, cfg.sft.balance, cfg.sft.seed)


def balanced(samples: list[Sample], how: str, seed: int) -> list[Sample]:
    """`samples` with as many rows of each gold answer: the commoner ones subsampled (`down`, file order kept) or the
    rarer ones repeated whole and then a seeded draw for the rest (`up`, appended); `none` returns them as they are."""
    if how == "none" or not samples:
        return samples
    if samples[0].family == "qa":
        raise ConfigError(f"sft.balance={how} evens out class labels or option letters; task '{samples[0].task}' "
                          "has free answers (set sft.balance=none)")
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.gold, []).append(s)
    rng = random.Random(seed)
    if how == "down":
        size = min(len(g) for g in groups.values())
        keep = {s.id for g in groups.values() for s in rng.sample(g, size)}
        return [s for s in samples if s.id in keep]
    size = max(len(g) for g in groups.values())
    extra = [s for g in groups.values() for s in g * (size // len(g) - 1) + rng.sample(g, size % len(g))]
    return samples + extra


def target_formats(n: int, cfg: ExperimentConfig) -> list[str]:
    """The gold draft format of each of `n` draft rows: `collaboration.draft_format`, or (sft.draft_mix) the mix's
    formats dealt in turn and shuffled with the SFT seed, so each holds an even share whatever the rows' order."""
    mix = cfg.sft.draft_mix or [cfg.collaboration.draft_format]
    dealt: list[str] = [mix[i % len(mix)] for i in range(n)]
    random.Random(f"draft-mix-{cfg.sft.seed}").shuffle(dealt)
    return dealt


def sft_rows(samples: list[Sample], cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Conversational prompt-completion rows (TRL format) for the configured draft format (`drafted_samples`), then
    (sft.answer_rows) the weak model's own answer prompt for every sample."""
    fmt, prompts = cfg.collaboration.draft_format, cfg.collaboration.prompts
    drafted = drafted_samples(samples, cfg)
    pairs = [(draft_messages(s, fmt, prompts), sft_target(s, target_fmt, cfg.sft.target))
             for s, target_fmt in zip(drafted, target_formats(len(drafted), cfg))]
    if cfg.sft.answer_rows != "none":
        target = "answer" if cfg.sft.answer_rows == "direct" else "auto"
        answers = [(answer_messages(s, prompts), sft_target(s, "cot", target)) for s in samples]
        if answers and answers[0][0] == pairs[0][0]:  # one prompt, two targets: the model would learn neither
            raise ConfigError(f"sft.answer_rows: the weak model's answer prompt is its '{fmt}' draft prompt; make "
                              f"collaboration.prompts.answer or collaboration.prompts.draft_{fmt} differ, or set sft.answer_rows=none")
        pairs += answers
    return [{"prompt": p, "completion": [{"role": "assistant", "content": c}]} for p, c in pairs]


def knowledge_rows(cfg: ExperimentConfig) -> list[dict[str, str]]:
    """Plain-text rows of the task's documents for the knowledge phase; none when it is off or the task has none."""
    from cowest.tasks.base import get_task

    task = get_task(cfg.task.name)
    if cfg.sft.knowledge_epochs <= 0 or task.documents is None:
        return []
    return [{"text": d} for d in task.documents(cfg.task)]


def run_sft(cfg: ExperimentConfig, samples: list[Sample], out_dir: Path) -> Path:
    """Train a LoRA adapter on `samples` and save it to `out_dir` (adapter, tokenizer, `cowest_adapter.json`,
    `train_log.jsonl`, `trainer_state.json`; `merged/` when `cfg.sft.merge`). Returns `out_dir`."""
    datasets = require("datasets", "train")
    trl = require("trl", "train")
    from cowest.models.hf_loading import load_model_and_tokenizer, resolve_source

    if not samples:
        raise CowestError("SFT: no training samples (check task.train_split and task.train_limit)")
    s = cfg.sft
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    weak = cfg.models.weak
    model, tok = load_model_and_tokenizer(resolve_source(weak.spec), adapter=weak.adapter)
    peft_config = lora_config(s.lora_r, s.lora_alpha, s.lora_dropout)
    docs = knowledge_rows(cfg)
    if docs:
        # Knowledge phase: the facts as plain text, many passes over short rows (a constant, higher LR: memorising
        # is the goal). The LoRA adapter it creates is the one the draft SFT below goes on training.
        args = trl.SFTConfig(
            output_dir=str(tmp), learning_rate=s.knowledge_lr or s.lr, num_train_epochs=s.knowledge_epochs,
            per_device_train_batch_size=s.batch_size, max_length=s.max_length, packing=False, seed=s.seed,
            data_seed=s.seed, lr_scheduler_type="constant", **device_kwargs(report_to=s.report_to),
        )
        trainer = trl.SFTTrainer(
            model=model, args=args, train_dataset=datasets.Dataset.from_list(docs), processing_class=tok,
            peft_config=peft_config, callbacks=[log_callback(tmp / TRAIN_LOG, phase="knowledge")],
        )
        run_trainer(trainer, "sft (knowledge)")
        model, peft_config = trainer.model, None
    args = trl.SFTConfig(
        output_dir=str(tmp), learning_rate=s.lr, num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size, gradient_accumulation_steps=s.grad_accum, max_length=s.max_length,
        completion_only_loss=True, packing=False, seed=s.seed, data_seed=s.seed, lr_scheduler_type="linear",
        **device_kwargs(report_to=s.report_to),
    )
    rows = sft_rows(samples, cfg)
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok, peft_config=peft_config, callbacks=[log_callback(tmp / TRAIN_LOG, phase="draft")],
    )
    run_trainer(trainer, "sft (drafts)" if docs else "sft")
    save_adapter(trainer, tok, tmp, base=weak.spec, parent=weak.adapter, method="sft", merge=s.merge,
                 draft_format=cfg.collaboration.draft_format, target=s.target, samples=len(samples), rows=len(rows),
                 documents=len(docs), knowledge_epochs=s.knowledge_epochs if docs else 0)
    return publish(tmp, out_dir)
