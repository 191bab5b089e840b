"""Routing in `cowest serve` (`route.serve: true`): each question's draft is scored by the deciding router
(`route.routers[0]`) and the question goes on to the strong model (`route.fallback`) only below its threshold
(`route.threshold`, or calibrated at start-up on the calibration split, reusing the run's saved calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cowest.core.records import Generation, Sample, SamplingParams

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig


@dataclass(frozen=True)
class RouteChoice:
    """Which way one question went: `weak` (the draft is the answer), `collaborate` or `strong`."""

    route: str
    router: str | None = None
    score: float | None = None
    weak_answer: Generation | None = None
    """The weak model's answer when it is not the draft (a knowledge draft): the reply on the weak route."""

    def metadata(self) -> dict[str, Any]:
        return {"route": self.route, "router": self.router, "route_score": self.score}


COLLABORATE = RouteChoice("collaborate")
"""The route of every question when routing is off."""


@dataclass
class ServeRoute:
    cfg: "ExperimentConfig"
    router: str
    threshold: float

    @classmethod
    def build(cls, cfg: "ExperimentConfig", weak: Any, draft_format: str) -> "ServeRoute":
        from cowest.routing.calibrate import thresholds

        router = cfg.route.routers[0]
        return cls(cfg, router, thresholds(cfg, weak, draft_format)[router])

    def draft_params(self, params: SamplingParams) -> SamplingParams:
        from cowest.routing.routers import draft_params

        return draft_params(self.cfg, params, [self.router])

    def choose(self, sample: Sample, draft: Generation, weak: Any, params: SamplingParams,
               draft_format: str) -> RouteChoice:
        """Score the weak answer (the draft, or a direct answer asked now when the draft has none) and route."""
        from cowest.routing import ROUTERS
        from cowest.routing.routers import RouterInputs, answer_prompts
        from cowest.tasks.prompts import draft_messages

        overrides = self.cfg.collaboration.prompts
        prompt = draft_messages(sample, draft_format, overrides)
        asks = answer_prompts([sample], draft_format, overrides, [prompt])
        answer = weak.generate(asks, self.draft_params(params))[0][0] if asks else draft
        inputs = RouterInputs([sample], [answer], asks or [prompt], weak, params, self.cfg, draft_texts=[draft.text])
        score = ROUTERS.get(self.router)(inputs).scores[0]
        route = self.cfg.route.fallback if score < self.threshold else "weak"
        return RouteChoice(route, self.router, score, answer if asks else None)
