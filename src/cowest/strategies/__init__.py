"""Inference strategies: small named functions from samples to traces, registered by name.

Each is `fn(samples, *, weak, strong, ctx) -> list[Trace]`; `ROLES` says which models a strategy needs, so a
caller loads only those (and an unknown name fails before any model is loaded: `check_strategy`).
"""

from __future__ import annotations

from cowest.core.registry import Registry
from cowest.strategies.common import StrategyContext, StrategyFn

STRATEGIES: Registry[StrategyFn] = Registry("strategy")
STRATEGIES.register("weak_only", "cowest.strategies.single:weak_only")
STRATEGIES.register("weak_draft", "cowest.strategies.single:weak_draft")
STRATEGIES.register("strong_only", "cowest.strategies.single:strong_only")
STRATEGIES.register("self_refine", "cowest.strategies.single:self_refine")
STRATEGIES.register("collaborate", "cowest.strategies.collaborate:collaborate")
STRATEGIES.register("super_icl", "cowest.strategies.collaborate:super_icl")
STRATEGIES.register("route", "cowest.strategies.route:route")

ROLES: dict[str, tuple[str, ...]] = {
    "weak_only": ("weak",),
    "weak_draft": ("weak",),
    "strong_only": ("strong",),
    "self_refine": ("strong",),
    "collaborate": ("weak", "strong"),
    "super_icl": ("weak", "strong"),
    "route": ("weak", "strong"),
}
"""The models each strategy calls."""

USES_DRAFT_FORMAT = {"collaborate", "weak_draft"}


def check_strategy(name: str, draft_format: str | None = None) -> None:
    """Fail on an unknown strategy or draft format, naming the valid choices, without loading anything."""
    from cowest.tasks.prompts import check_draft_format

    STRATEGIES.check(name)
    if draft_format is not None:
        check_draft_format(draft_format)


def roles_of(name: str) -> tuple[str, ...]:
    STRATEGIES.check(name)
    return ROLES.get(name, ("weak", "strong"))


__all__ = ["STRATEGIES", "ROLES", "StrategyContext", "StrategyFn", "check_strategy", "roles_of"]
