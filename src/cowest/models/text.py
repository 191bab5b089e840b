"""Prompt and reply text shared by the local backends (transformers, llama.cpp) and the DPO pairs."""

from __future__ import annotations

from cowest.core.records import Message


def render_plain(messages: list[Message]) -> str:
    """A prompt for a model without a chat template: the turns as plain text, ending where the answer goes."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text up to the first stop string (excluded), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
