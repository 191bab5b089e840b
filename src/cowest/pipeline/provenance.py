"""What produced a run directory: the project's version and git commit, Python, and the versions of the libraries
whose behaviour decides the outputs, written as `versions.json` (`RunLayout.versions`) whenever a stage starts.

Versions are read from the installed distributions' metadata, so nothing heavy is imported; a library that is not
installed is recorded as null.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "llama-cpp-python", "openai", "httpx",
             "pydantic", "numpy", "fastapi")


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(where: Path = Path(__file__).resolve().parent) -> dict[str, Any] | None:
    """The commit of the checkout this package runs from and whether it had uncommitted changes; None outside a git
    checkout (an installed wheel) or without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def provenance() -> dict[str, Any]:
    from cowest import __version__

    return {"cowest": __version__, "git": git_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "libraries": {name: library_version(name) for name in LIBRARIES}}


def provenance_json() -> str:
    return json.dumps(provenance(), indent=2) + "\n"
