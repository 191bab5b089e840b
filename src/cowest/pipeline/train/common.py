"""What the SFT and DPO recipes share: device flags, the LoRA config, the loss log, and saving an adapter folder.

Only plain functions and one logging callback: the recipes themselves stay straight lines in sft.py and dpo.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cowest.core.errors import require
from cowest.models.hf_loading import write_adapter_meta




PRECISION_ENV = "COWEST_TRAIN_PRECISION"
"""auto (default), bfloat16 or float32: overrides the automatic choice of `train_precision`."""


def train_precision(recipe: str = "sft") -> str:
    """The precision a recipe trains in; `COWEST_TRAIN_PRECISION` overrides it.

    SFT (and the SFT-positive control): bfloat16 autocast (the weights stay float32) on a GPU with bf16 and on a
    CPU with native bf16 matmuls (AMX or AVX512_BF16), float32 elsewhere. DPO on a CPU: float32, because in the
    check of 2026-12-01 (BENCHMARKS.md "Training steps", SmolLM2, 6 steps) its loss fell in float32
    (0.693 -> 0.666) and stayed flat in bf16 (0.688-0.696): the policy/reference log-ratios it learns from are
    sums of per-token log-probabilities that bf16 rounds, and at DPO's learning rates the signal is that small.
    """
    from cowest.core.errors import ConfigError

    torch = require("torch", "train")
    want = os.environ.get(PRECISION_ENV, "auto")
    if want not in ("auto", "bfloat16", "float32"):
        raise ConfigError(f"{PRECISION_ENV}={want!r}: valid values are auto, bfloat16, float32")
    if want != "auto":
        return want
    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if recipe == "dpo":
        return "float32"
    from cowest.models.calibrate import cpu_identity, native_bf16

    return "bfloat16" if native_bf16(cpu_identity()) else "float32"


def device_kwargs(recipe: str = "sft", report_to: str = "none") -> dict[str, Any]:
    """Trainer fields that depend on the hardware, set explicitly because TRL's defaults assume a bf16 GPU.

    Precision: `train_precision(recipe)` (SFT: bf16 autocast where the hardware has native bf16, 1.36x faster steps
    on this project's AVX512_BF16 CPU with losses within noise of float32). CPU: no gradient checkpointing (it costs
    ~30 % per step here and memory is not the limit). GPU (also under `accelerate launch`): the card's bf16.
    `report_to` (sft.report_to, align.report_to): the tracker TRL also logs to, its package checked first.
    """
    torch = require("torch", "train")
    gpu = torch.cuda.is_available()
    if report_to != "none":
        import importlib.util

        from cowest.core.errors import ConfigError

        if importlib.util.find_spec(report_to) is None:
            raise ConfigError(f"report_to={report_to}: its package is not installed; pip install {report_to} (or "
                              "report_to=none)")
    return {
        "use_cpu": not gpu,
        "bf16": train_precision(recipe) == "bfloat16",
        "fp16": False,
        "activation_checkpointing": False,  # TRL defaults to on; `gradient_checkpointing` is its deprecated alias
        "report_to": report_to,
        "save_strategy": "no",
        "logging_steps": 1,
        "dataloader_num_workers": 0,
    }


def lora_config(r: int, alpha: int, dropout: float) -> Any:
    peft = require("peft", "train")
    return peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                           task_type="CAUSAL_LM")


def log_callback(path: Path, **tags: Any) -> Any:
    """A callback appending every logged dict (loss, lr, rewards ...) to `path` as it arrives, so a crash keeps it;
    `tags` go into every row (e.g. phase="knowledge")."""
    transformers = require("transformers", "train")

    callback: Any = transformers.TrainerCallback

    class JsonlLog(callback):  # type: ignore[misc]  # transformers ships no stubs
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and state.is_world_process_zero:
                with open(path, "a", encoding="utf-8") as f:
                    # Wall-clock time too, so s/step can be read off the log (benchmarks/training.py does).
                    row = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **tags,
                           **logs}
                    f.write(json.dumps(row) + "\n")

    return JsonlLog()


def quiet_trainer(trainer: Any, desc: str) -> Any:
    """Replace the Trainer's own console output (a tqdm bar and every log dict printed) with one cowest progress
    line: `desc step/total | loss x | ETA`. The dicts still reach train_log.jsonl through `log_callback`."""
    transformers = require("transformers", "train")
    from cowest.core.progress import Progress

    for cb in (transformers.trainer_callback.ProgressCallback, transformers.trainer_callback.PrinterCallback):
        trainer.remove_callback(cb)

    callback: Any = transformers.TrainerCallback

    class OneLine(callback):  # type: ignore[misc]
        bar: Progress | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.bar = Progress(state.max_steps, desc)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.done)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if self.bar is not None and logs and "loss" in logs:
                self.bar.note = f"loss {logs['loss']:.3f}"

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    trainer.add_callback(OneLine())
    return trainer


@contextlib.contextmanager
def labelled_positions_only() -> Iterator[None]:
    """While open, TRL's fused LM head projects only the positions that carry a label, on every device.

    TRL 1.16 (`trl.trainer.utils.add_fused_lm_head`) compacts to the labelled positions on Triton devices only; elsewhere
    it projects every position through the vocabulary, prompt and padding included, to keep tile shapes fixed for
    compilers (Neuron). On a CPU nothing is compiled, and with completion-only SFT on the demo's rows that made the LM
    head 37% of the SFT stage (py-spy, 2026-12-02): most of its rows were prompt or padding. Loss, log-probabilities
    and gradients are identical either way (`tests/test_train.py` checks it on SmolLM2). The switch TRL reads is its
    module's `_use_triton` name, which decides nothing else there (the kernels keep their own); it is put back on
    exit."""
    from trl.trainer import utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


def run_trainer(trainer: Any, desc: str) -> None:
    """Run `trainer` with one progress line (`quiet_trainer`) and the LM head on labelled positions only."""
    with labelled_positions_only():
        quiet_trainer(trainer, desc).train()


def is_main_process() -> bool:
    """Rank 0 of an `accelerate launch`/torchrun job, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def staging_dir(out_dir: Path) -> Path:
    """A fresh `<out_dir>.partial` folder: recipes write there and `publish` moves it into place when done."""
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def save_adapter(trainer: Any, tok: Any, tmp: Path, *, base: str, parent: str | Path | None, method: str,
                 merge: bool = False, **meta: Any) -> None:
    """Write the PEFT adapter, tokenizer, trainer state and `cowest_adapter.json` (and a merged model on request)."""
    trainer.save_model(str(tmp))  # PEFT adapter + tokenizer, written by the main process only
    if not trainer.is_world_process_zero():
        return
    tok.save_pretrained(str(tmp))
    trainer.state.save_to_json(str(tmp / "trainer_state.json"))
    precision = "bfloat16" if trainer.args.bf16 else "float32"  # what the weights were trained under, for the record
    write_adapter_meta(tmp, base=base, parent=parent, method=method, precision=precision, **meta)
    if merge:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(tmp / "merged"))
        tok.save_pretrained(str(tmp / "merged"))


def publish(tmp: Path, out_dir: Path) -> Path:
    """Move a finished staging folder to `out_dir`, replacing an older one, so `out_dir` is never half written."""
    if not is_main_process():
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
