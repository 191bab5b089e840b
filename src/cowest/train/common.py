"""What the SFT and DPO recipes share: device flags, the LoRA config, the loss log, and saving an adapter folder.

Only plain functions and one logging callback: the recipes themselves stay straight lines in sft.py and dpo.py.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cowest.errors import require
from cowest.models.hf_loading import write_adapter_meta

TRAIN_LOG = "train_log.jsonl"


def device_kwargs() -> dict[str, Any]:
    """Trainer fields that depend on the hardware, set explicitly because TRL's defaults assume a bf16 GPU.

    CPU: fp32, no gradient checkpointing (it costs ~30 % per step here and memory is not the limit). GPU (also under
    `accelerate launch`): bf16 autocast where the card has it.
    """
    torch = require("torch", "train")
    gpu = torch.cuda.is_available()
    return {
        "use_cpu": not gpu,
        "bf16": gpu and torch.cuda.is_bf16_supported(),
        "fp16": False,
        "activation_checkpointing": False,  # TRL defaults to on; `gradient_checkpointing` is its deprecated alias
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "dataloader_num_workers": 0,
    }


def lora_config(r: int, alpha: int, dropout: float) -> Any:
    peft = require("peft", "train")
    return peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                           task_type="CAUSAL_LM")


def log_callback(path: Path) -> Any:
    """A callback appending every logged dict (loss, lr, rewards ...) to `path` as it arrives, so a crash keeps it."""
    transformers = require("transformers", "train")

    class JsonlLog(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001 - transformers' signature
            if logs and state.is_world_process_zero:
                with open(path, "a", encoding="utf-8") as f:
                    # Wall-clock time too, so s/step can be read off the log (benchmarks/training.py does).
                    row = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
                    f.write(json.dumps(row) + "\n")

    return JsonlLog()


def quiet_trainer(trainer: Any, desc: str) -> Any:
    """Replace the Trainer's own console output (a tqdm bar and every log dict printed) with one cowest progress
    line: `desc step/total | loss x | ETA`. The dicts still reach train_log.jsonl through `log_callback`."""
    transformers = require("transformers", "train")
    from cowest.progress import Progress

    for cb in (transformers.trainer_callback.ProgressCallback, transformers.trainer_callback.PrinterCallback):
        trainer.remove_callback(cb)

    class OneLine(transformers.TrainerCallback):
        bar: Progress | None = None

        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001 - transformers' signature
            if state.is_world_process_zero:
                self.bar = Progress(state.max_steps, desc)

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.done)

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if self.bar is not None and logs and "loss" in logs:
                self.bar.note = f"loss {logs['loss']:.3f}"

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            if self.bar is not None:
                self.bar.close()

    trainer.add_callback(OneLine())
    return trainer


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
    write_adapter_meta(tmp, base=base, parent=parent, method=method, **meta)
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
