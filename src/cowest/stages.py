"""Stage bookkeeping in a run directory: which config keys a stage depends on, done markers, refusal to mix.

Each stage directory holds `inputs.json` (the config keys the stage's outputs depend on) written when it starts, and
`done.json` (wall time, summary) written when it finishes. A finished stage is skipped; a stage directory whose
inputs differ from the current config is refused, naming the differing keys, unless the stage is forced.
"""

from __future__ import annotations

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
    return {k: v for k, v in sorted(flat.items()) if any(k == p or k.startswith(p + ".") for p in prefixes)}


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
        self._t0 = time.time()
        return True

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        wall = time.time() - getattr(self, "_t0", time.time())
        body = {"stage": self.name, "wall_s": round(wall, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (self.path / "done.json").write_text(json.dumps({**body, **(summary or {})}, indent=2))

    def summary(self) -> dict[str, Any]:
        return json.loads((self.path / "done.json").read_text()) if self.done else {}


def stage(cfg: ExperimentConfig, name: str, path: Path) -> Stage:
    kind = "feedback" if name.startswith("feedback") else "align" if name.startswith("align") else name
    return Stage(name=name, path=path, inputs=stage_inputs(cfg, kind))
