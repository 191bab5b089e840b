"""An evaluated system (`System`), and what a system of the loop's evaluation is (strategy, which weak model, round, draft format) and the one place its
name is built and read back.

Names are those of every metrics.json and trace file written so far: `weak_sft`, `strong`, `collab_sft`,
`collab_aligned_r<r>`, `collab_sft_positive_r<r>`, `collab_sft_<format>` / `collab_aligned_r<r>_<format>` for a
draft format other than the run's, and `<strategy>_sft` for the other strategies (super_icl, self_refine ...).
Systems named otherwise (`cowest eval`'s `collaborate-cot`, a benchmark's model names) have no SystemId.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cowest.core.config import ModelConfig

@dataclass(frozen=True)
class System:
    """One evaluated system: a strategy, its draft format (collaborate) and optionally its own weak model. `name`
    names its trace files and its entry in metrics.json (the loop's names are built by `SystemId`)."""

    name: str
    strategy: str
    draft_format: str | None = None
    weak: ModelConfig | None = None
    """None = cfg.models.weak (e.g. the loop passes the SFT and the aligned weak model as two systems)."""
    strong: ModelConfig | None = None
    """None = cfg.models.strong."""


WeakKind = Literal["sft", "aligned", "sft_positive"]
"""The weak model a system drafts with: the SFT adapter, round r's aligned adapter (align.method), or round r's
sft_positive control."""

_COLLAB = re.compile(r"collab_(?P<weak>sft_positive|aligned|sft)(?:_r(?P<round>\d+))?(?:_(?P<fmt>[a-z]+))?")
_OTHER = re.compile(r"(?P<strategy>[a-z][a-z0-9_]*)_sft")


@dataclass(frozen=True)
class SystemId:
    strategy: str
    """weak_only, strong_only, collaborate, or another registered strategy (with the SFT weak model)."""
    weak: WeakKind | None = "sft"
    """None: the strategy uses no weak model (strong_only)."""
    round: int | None = None
    """The round of an aligned or sft_positive weak model."""
    draft_format: str | None = None
    """Set only when it is not the run's collaboration.draft_format."""

    @classmethod
    def weak_sft(cls) -> "SystemId":
        return cls("weak_only")

    @classmethod
    def weak_draft(cls) -> "SystemId":
        return cls("weak_draft")

    @classmethod
    def strong(cls) -> "SystemId":
        return cls("strong_only", weak=None)

    @classmethod
    def collab(cls, weak: WeakKind = "sft", round: int | None = None, draft_format: str | None = None) -> "SystemId":
        return cls("collaborate", weak, round, draft_format)

    @property
    def name(self) -> str:
        if self.strategy == "weak_only":
            return "weak_sft"
        if self.strategy == "strong_only":
            return "strong"
        if self.strategy != "collaborate":
            return f"{self.strategy}_sft"
        rnd = "" if self.round is None else f"_r{self.round}"
        fmt = "" if self.draft_format is None else f"_{self.draft_format}"
        return f"collab_{self.weak}{rnd}{fmt}"

    @classmethod
    def parse(cls, name: str) -> "SystemId | None":
        """The SystemId whose `name` this is; None for a name the loop does not build."""
        if name == "weak_sft":
            return cls.weak_sft()
        if name == "strong":
            return cls.strong()
        if m := _COLLAB.fullmatch(name):
            rnd = int(m["round"]) if m["round"] else None
            if (rnd is None) != (m["weak"] == "sft"):  # aligned and control models belong to a round, SFT to none
                return None
            return cls.collab(m["weak"], rnd, m["fmt"])  # type: ignore[arg-type]
        if m := _OTHER.fullmatch(name):
            return cls(m["strategy"])
        return None

    @property
    def is_aligned_collab(self) -> bool:
        """Collaboration with an aligned weak model in the run's draft format: the rows of the round trend."""
        return self.strategy == "collaborate" and self.weak == "aligned" and self.draft_format is None
