"""Stage bookkeeping in a run directory: which config keys a stage depends on, done markers, refusal to mix.

Each stage directory holds `inputs.json` (the config keys the stage's outputs depend on) written when it starts, and
`done.json` (wall time, summary) written when it finishes. A finished stage is skipped; a stage directory whose
inputs differ from the current config is refused, naming the differing keys, unless the stage is forced.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cowest.config import ExperimentConfig, flatten
from cowest.errors import ConfigError

# Config keys (dotted prefixes) each stage's outputs depend on.
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "sft": ("task.name", "task.data", "task.subset", "task.fields", "task.family", "task.labels", "task.train_split",
            "task.train_limit", "task.seed", "task.show_context", "models.weak", "sft", "feedback.draft_format",
            "eval.prompts"),
    "feedback": ("models.strong", "models.judge", "generation", "feedback"),
    "align": ("align",),
    "eval": ("task", "models", "generation", "eval", "rounds"),
}
STAGES = ("sft", "feedback", "align", "eval", "report")
# Settings that change how fast a stage runs, never what it writes: not part of its inputs.
NOT_INPUTS = (".concurrency", ".timeout_s", ".max_retries", ".n_threads", ".batch_size", ".cache")


def fingerprint(path: Path) -> str:
    """SHA-256 of an upstream output: a file, or an adapter folder's weights file."""
    target = path / "adapter_model.safetensors" if path.is_dir() else path
    if not target.exists():
        return "missing"
    h = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def stage_inputs(cfg: ExperimentConfig, stage: str) -> dict[str, Any]:
    """The flattened config keys a stage depends on (later stages also depend on the earlier stages' keys)."""
    order = ["sft", "feedback", "align"]
    prefixes: list[str] = []
    if stage == "eval":
        prefixes = list(STAGE_KEYS["eval"]) + list(STAGE_KEYS["sft"]) + list(STAGE_KEYS["feedback"]) + list(STAGE_KEYS["align"])
    else:
        for s in order[: order.index(stage) + 1]:
            prefixes.extend(STAGE_KEYS[s])
    flat = flatten(cfg.model_dump(mode="json"))
    out = {k: v for k, v in sorted(flat.items())
           if any(k == p or k.startswith(p + ".") for p in prefixes) and not k.endswith(NOT_INPUTS)}
    if stage != "eval":  # turning the control on adds a stage and eval systems; it changes no DPO output
        out.pop("align.sft_positive_control", None)
    return out


@dataclass
class Stage:
    """One stage directory. Use: `if not st.begin(force): return` ... work ... `st.finish(summary)`."""

    name: str
    path: Path
    inputs: dict[str, Any]

    @property
    def done(self) -> bool:
        return (self.path / "done.json").exists()

    def begin(self, force: bool = False) -> bool:
        """True when the stage must run; False when its outputs exist for the same inputs."""
        inputs_file = self.path / "inputs.json"
        if force and self.path.exists():
            shutil.rmtree(self.path)
        if inputs_file.exists():
            old = json.loads(inputs_file.read_text())
            differing = sorted(k for k in set(old) | set(self.inputs) if old.get(k) != self.inputs.get(k))
            if differing:
                raise ConfigError(
                    f"{self.path} holds outputs of a different config (differing keys: {', '.join(differing)}); "
                    f"refusing to mix them. Use another run_dir, or redo the stage with --force {self.name}"
                )
            if self.done:
                return False
        self.path.mkdir(parents=True, exist_ok=True)
        inputs_file.write_text(json.dumps(self.inputs, indent=1, sort_keys=True))
        # Count the attempts: after a crash, done.json's wall time covers only the last one, and says so.
        attempts = self.path / "attempts"
        self._attempt = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(self._attempt))
        self._t0 = time.time()
        return True

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        wall = time.time() - getattr(self, "_t0", time.time())
        body = {"stage": self.name, "wall_s": round(wall, 2), "attempts": getattr(self, "_attempt", 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (self.path / "done.json").write_text(json.dumps({**body, **(summary or {})}, indent=2))

    def summary(self) -> dict[str, Any]:
        return json.loads((self.path / "done.json").read_text()) if self.done else {}


def stage(cfg: ExperimentConfig, name: str, path: Path, *, keys: str | None = None,
          upstream: list[Path] | None = None) -> Stage:
    """A stage whose inputs are the config keys of `keys` (default: the stage kind its name starts with) plus the
    fingerprints of the upstream outputs it reads, so a retrained adapter or new pairs file is never mixed with
    outputs made from the old one."""
    kind = keys or next(k for k in ("sft", "feedback", "align", "eval", "report") if name.startswith(k))
    inputs = stage_inputs(cfg, kind) if kind != "report" else {}
    for p in upstream or []:
        inputs[f"upstream:{p.relative_to(cfg.run_dir) if p.is_relative_to(cfg.run_dir) else p}"] = fingerprint(p)
    return Stage(name=name, path=path, inputs=inputs)
