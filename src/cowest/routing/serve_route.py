"""Routing in `cowest serve` (`route.serve: true`): each question's draft is scored by the deciding router
(`route.routers[0]`) and the question goes on to the strong model (`route.fallback`) only below its threshold
(`route.threshold`, or calibrated at start-up on the calibration split, reusing the run's saved calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cowest.records import Generation, Message, Sample, SamplingParams

if TYPE_CHECKING:
    from cowest.config import ExperimentConfig


@dataclass(frozen=True)
class RouteChoice:
    """Which way one question went: `weak` (the draft is the answer), `collaborate` or `strong`."""

    route: str
    router: str | None = None
    score: float | None = None

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

    def choose(self, sample: Sample, draft: Generation, prompt: list[Message], weak: Any,
               params: SamplingParams) -> RouteChoice:
        from cowest.routing import ROUTERS
        from cowest.routing.routers import RouterInputs

        score = ROUTERS.get(self.router)(RouterInputs([sample], [draft], [prompt], weak, params, self.cfg)).scores[0]
        route = self.cfg.route.fallback if score < self.threshold else "weak"
        return RouteChoice(route, self.router, score)
