"""Markdown pieces shared by the report and its sections."""

from __future__ import annotations


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table as lines, with a blank line after it."""
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]
