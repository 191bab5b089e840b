"""Cost-aware collaboration: routers that score a weak draft, so only the questions that need it reach the strong
model (strategy `route`, `cowest.strategies.route`).

A router is `fn(inputs: RouterInputs) -> RouterScores`: one score per question, higher = the weak answer is more
likely good enough. A question goes on to the strong model when its score is below the threshold
(`cowest.routing.calibrate`). Registered lazily by name, so `import cowest` loads none of them.
"""

from __future__ import annotations

from cowest.core.registry import Registry

ROUTERS: Registry = Registry("router")
ROUTERS.register("confidence", "cowest.routing.routers:confidence")
ROUTERS.register("agreement", "cowest.routing.routers:agreement")
ROUTERS.register("learned", "cowest.routing.routers:learned")

NEEDS_LOGPROBS = {"confidence"}
"""Routers that read the draft's token log-probabilities (the draft is then asked with logprobs on)."""

__all__ = ["ROUTERS", "NEEDS_LOGPROBS"]
