"""Alignment recipes: DPO on the collaborative-feedback pairs, and its control, SFT on the chosen drafts only.

Both start from the same model, the SFT weak model (its adapter merged into the base), and train a new LoRA adapter
on top. With `peft_config`, TRL's frozen DPO reference is that same model with the new adapter disabled, i.e. the SFT
model, as in the paper. Both save `cowest_adapter.json` naming the SFT adapter as parent, so
`load_model_and_tokenizer(source, adapter=<out_dir>)` rebuilds base -> SFT -> aligned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cowest.core.config import ExperimentConfig
from cowest.core.errors import CowestError, DataError, require
from cowest.core.records import PreferencePair, read_jsonl
from cowest.core.layout import TRAIN_LOG
from cowest.pipeline.train.common import (device_kwargs, log_callback, lora_config, publish, run_trainer,
                                 save_adapter, staging_dir)

NO_PAIRS_FIX = ("sample more drafts (feedback.k), sample them more diversely (feedback.temperature), or score them "
                "more finely (feedback.evaluator=judge or hybrid)")


def _text(x: list[dict[str, str]] | str) -> str:
    return x if isinstance(x, str) else "\n".join(m.get("content", "") for m in x)


def load_pairs(path: Path) -> list[PreferencePair]:
    """Read `pairs.jsonl`, keeping the pairs that carry a preference; fail saying why when none does."""
    path = Path(path)
    if not path.exists():
        raise CowestError(f"{path}: no preference pairs file; run the feedback stage first")
    pairs = read_jsonl(path, PreferencePair)
    if not pairs:
        raise CowestError(
            f"{path}: no preference pairs. Every draft of every question had the same influence (all helped or all "
            f"failed to help the strong model), so none was preferred over another; {NO_PAIRS_FIX}"
        )
    for i, p in enumerate(pairs, 1):
        if isinstance(p.prompt, str) != isinstance(p.chosen, str) or isinstance(p.chosen, str) != isinstance(p.rejected, str):
            raise DataError("prompt, chosen and rejected must all be strings or all be message lists",
                            path=str(path), line=i)
        if not _text(p.chosen).strip() or not _text(p.rejected).strip():
            raise DataError("empty chosen or rejected draft", path=str(path), line=i,
                            field="chosen" if not _text(p.chosen).strip() else "rejected")
    if len({isinstance(p.prompt, str) for p in pairs}) > 1:
        raise DataError("mixes conversational (message list) and standard (string) rows; use one form",
                        path=str(path))
    useful = [p for p in pairs if _text(p.chosen) != _text(p.rejected)]
    if not useful:
        raise CowestError(
            f"{path}: all {len(pairs)} pairs are one-sided (chosen and rejected are the same text), so they carry "
            f"no preference; {NO_PAIRS_FIX}"
        )
    return useful


def dpo_rows(pairs: list[PreferencePair]) -> list[dict[str, Any]]:
    """TRL preference rows, without cowest's provenance columns (question_id, deltas)."""
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def positive_rows(pairs: list[PreferencePair]) -> list[dict[str, Any]]:
    """Prompt-completion rows of the chosen drafts, each (prompt, draft) once."""
    seen: set[str] = set()
    rows = []
    for p in pairs:
        key = repr((p.prompt, p.chosen))
        if key not in seen:
            seen.add(key)
            rows.append({"prompt": p.prompt, "completion": p.chosen})
    return rows


def loss_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """TRL DPOConfig fields of the loss: align.loss_type, plus TRL's `sft` loss (the mean NLL per token of the
    chosen drafts) weighted by align.rpo_alpha, which is RPO; label_smoothing for the losses that read it."""
    a = cfg.align
    losses, weights = [a.loss_type], [1.0]
    if a.rpo_alpha:
        losses.append("sft")
        weights.append(a.rpo_alpha)
    return {"loss_type": losses, "loss_weights": weights, "label_smoothing": a.label_smoothing}


def chosen_tokens_mean(pairs: list[PreferencePair], tok: Any) -> float:
    """Mean token count of the chosen drafts, so the report can put TRL's summed log-probabilities per token."""
    counts = [len(tok(_text(p.chosen), add_special_tokens=False).input_ids) for p in pairs]
    return sum(counts) / len(counts)


def run_dpo(cfg: ExperimentConfig, pairs_path: Path, out_dir: Path, *, weak_source: str,
            reference_adapter: str | Path | None) -> Path:
    """DPO a new LoRA adapter on top of `weak_source` + `reference_adapter` (merged), which is also the reference.

    `weak_source` is what `resolve_source(cfg.models.weak.spec)` returns; `reference_adapter` the SFT adapter folder
    (None: align the base model itself). Saves the adapter, logs and `cowest_adapter.json` to `out_dir`.
    """
    datasets = require("datasets", "train")
    trl = require("trl", "train")
    from cowest.models.hf_loading import load_model_and_tokenizer

    a = cfg.align
    pairs = load_pairs(pairs_path)
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    model, tok = load_model_and_tokenizer(weak_source, adapter=reference_adapter)
    args = trl.DPOConfig(
        output_dir=str(tmp), learning_rate=a.lr, num_train_epochs=a.epochs, max_steps=a.max_steps,
        per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=a.grad_accum, max_length=a.max_length,
        beta=a.beta, **loss_kwargs(cfg), precompute_ref_log_probs=a.precompute_ref_log_probs, seed=a.seed,
        data_seed=a.seed, lr_scheduler_type="linear", **device_kwargs("dpo", a.report_to),
    )
    trainer = trl.DPOTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(dpo_rows(pairs)), processing_class=tok,
        peft_config=lora_config(a.lora_r, a.lora_alpha, 0.0), callbacks=[log_callback(tmp / TRAIN_LOG)],
    )
    run_trainer(trainer, "align (dpo)")
    save_adapter(trainer, tok, tmp, base=cfg.models.weak.spec, parent=reference_adapter, method="dpo",
                 pairs=len(pairs), beta=a.beta, loss_type=a.loss_type, rpo_alpha=a.rpo_alpha,
                 label_smoothing=a.label_smoothing, chosen_tokens_mean=chosen_tokens_mean(pairs, tok))
    return publish(tmp, out_dir)


def run_sft_positive(cfg: ExperimentConfig, pairs_path: Path, out_dir: Path, *, weak_source: str,
                     reference_adapter: str | Path | None) -> Path:
    """The control for DPO: SFT on the chosen drafts only, same pairs file, same starting model, same `cfg.align`
    hyper-parameters, so a difference between the two isolates what the rejected drafts add."""
    datasets = require("datasets", "train")
    trl = require("trl", "train")
    from cowest.models.hf_loading import load_model_and_tokenizer

    a = cfg.align
    rows = positive_rows(load_pairs(pairs_path))
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    model, tok = load_model_and_tokenizer(weak_source, adapter=reference_adapter)
    args = trl.SFTConfig(
        output_dir=str(tmp), learning_rate=a.lr, num_train_epochs=a.epochs, max_steps=a.max_steps,
        per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=a.grad_accum, max_length=a.max_length,
        completion_only_loss=True, packing=False, seed=a.seed, data_seed=a.seed, lr_scheduler_type="linear",
        **device_kwargs(report_to=a.report_to),
    )
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
        peft_config=lora_config(a.lora_r, a.lora_alpha, 0.0), callbacks=[log_callback(tmp / TRAIN_LOG)],
    )
    run_trainer(trainer, "align (sft_positive)")
    save_adapter(trainer, tok, tmp, base=cfg.models.weak.spec, parent=reference_adapter, method="sft_positive",
                 examples=len(rows))
    return publish(tmp, out_dir)
