"""The `route` and `prices` sections of the experiment config (`cowest.core.config.ExperimentConfig` holds them).

Declared here rather than in cowest.core.config so routing keeps its settings next to its code; the base class repeats
config.Section's two settings (importing it would make the two modules import each other).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # as core.config.Section


DEFAULT_SHARE = 0.3


class RouteConfig(_Section):
    """Strategy `route`: the weak model drafts, a router scores the draft, and only questions scoring below the
    threshold go on to the strong model; the others keep the weak model's answer (the draft's `Answer:` line)."""

    routers: list[str] = Field(default_factory=lambda: ["confidence"], min_length=1)
    """Router names (confidence, agreement, learned; `cowest.routing.ROUTERS`). The first decides; every one is
    scored on every question and drawn in the report's quality versus strong-call-share curve."""
    strong_share: float | None = None
    """The share of questions that should reach the strong model: the threshold is set on the calibration split so
    that about this share of its questions score below it (as RouteLLM calibrates). None = 0.3 unless `threshold`
    is set. Only the router's scores are used, never the answers' labels."""
    threshold: float | None = None
    """The deciding router's threshold, set directly (instead of `strong_share`)."""
    fallback: Literal["collaborate", "strong"] = "collaborate"
    """What a routed question gets: collaborate (the strong model refines the draft) or strong (it answers alone)."""
    calibration_split: str = "dev"
    """The split whose questions calibrate the threshold (their labels are never read)."""
    calibration_limit: int | None = Field(100, ge=1)
    """Calibrate on at most this many questions of that split (seeded subsample); None = all."""
    samples: int = Field(5, ge=2)
    """`agreement`: weak answers sampled per question besides the draft."""
    temperature: float = Field(0.7, gt=0, le=2)
    """`agreement`: their sampling temperature."""
    sweep: bool = True
    """Eval: also run the fallback on the questions the router keeps weak (its output goes to the trace's metadata,
    not into the answer or its usage), so the report can draw the whole curve. Off: only routed questions reach the
    strong model. With the response cache on, the sweep's calls are those of the collaborate system, cached."""
    serve: bool = False
    """`cowest serve` routes each question as above instead of always collaborating."""

    @field_validator("strong_share")
    @classmethod
    def _a_share(cls, share: float | None) -> float | None:
        if share is not None and not 0 < share < 1:
            raise ValueError(f"must lie strictly between 0 and 1 (a share of the questions; e.g. "
                             f"route.strong_share=0.3), not {share}")
        return share

    @field_validator("routers")
    @classmethod
    def _known_routers(cls, names: list[str]) -> list[str]:
        from cowest.routing import ROUTERS

        for name in names:
            if name not in ROUTERS:
                raise ValueError(f"unknown router '{name}'; valid: {', '.join(ROUTERS.names())}")
        if len(set(names)) != len(names):
            raise ValueError("lists a router more than once")
        return names

    @model_validator(mode="after")
    def _share_or_threshold(self) -> "RouteConfig":
        if self.strong_share is not None and self.threshold is not None:
            raise ValueError("set route.strong_share or route.threshold, not both")
        return self

    @property
    def target_share(self) -> float:
        """The share the calibration aims at (strong_share, else 0.3)."""
        return self.strong_share if self.strong_share is not None else DEFAULT_SHARE


class Price(_Section):
    """A model's list price in US dollars per million tokens."""

    input: float = Field(0.0, ge=0, le=1e6)  # USD per million tokens: a bound keeps every cost finite
    output: float = Field(0.0, ge=0, le=1e6)


def model_specs(models: Any) -> list[str]:
    """The specs of a `cowest.core.config.ModelsConfig` (not imported: the config module imports this one)."""
    return [m.spec for m in (models.weak, models.strong, models.judge) if m is not None]


def check_prices(prices: dict[str, "Price"], models: Any) -> None:
    """Refuse a price for a model the config does not use, naming the key (a typo would otherwise price nothing)."""
    specs = model_specs(models)
    for key in prices:
        if key not in specs:
            raise ValueError(f"prices: '{key}' is not a model of this config (models: {', '.join(specs)}); key the "
                             "table by a models.<role>.spec")
