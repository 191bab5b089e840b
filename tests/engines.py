"""Skips for tests that need an optional local engine: the skip names the missing package and the command that
installs it (the default `bash scripts/setup.sh` does; `--no-llamacpp` leaves it out)."""

from __future__ import annotations

from typing import Any

import pytest

LLAMACPP_INSTALL = "pip install -e '.[llamacpp]' (or bash scripts/setup.sh without --no-llamacpp)"


def needs_llama_cpp(module: str = "llama_cpp") -> Any:
    """The module of the `llamacpp` extra (llama_cpp, or its server's sse_starlette), or skip saying how to add it."""
    return pytest.importorskip(module, reason=f"{module} is not installed; run: {LLAMACPP_INSTALL}")
