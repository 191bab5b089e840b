"""Checks of a route setup that need no model: run before any model loads (eval's check_systems, serve's load)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cowest.core.config import ExperimentConfig


def check_route(cfg: "ExperimentConfig", draft_format: str, learned_later: bool = False) -> None:
    """A trained learned router for this task and weak model when one is named (`learned_later`: `cowest run` trains
    it after its feedback, so it need not exist yet)."""
    if "learned" in cfg.route.routers and not learned_later:
        from cowest.routing.learned import check_learned

        check_learned(cfg)
