"""Errors a user can act on: each names where the problem is and, where there is one, the fix."""

from __future__ import annotations

from typing import Any


class CowestError(Exception):
    """Base class; the CLI prints these without a traceback."""


class DataError(CowestError):
    """A bad row or file: names the file, the line (1-based) and the field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = path, line, field
        where = ":".join(str(x) for x in (path, line) if x is not None)
        parts = [where] if where else []
        if field is not None:
            parts.append(f"field '{field}'")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(CowestError):
    """A bad config key or value: names the dotted key."""


class UnknownNameError(CowestError, KeyError):
    """A name (task, strategy, metric, backend ...) that does not exist: lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        shown = str(name) if len(str(name)) <= 80 else str(name)[:77] + "..."  # never echo a huge value back
        super().__init__(f"unknown {kind} '{shown}'; valid: {', '.join(sorted(valid))}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingDependencyError(CowestError, ImportError):
    """An optional dependency is missing: names the extra or package to install."""

    def __init__(self, module: str, install: str):
        super().__init__(f"'{module}' is not installed; run: {install}")


def require(module: str, extra: str) -> Any:
    """Import an optional module or fail naming the pip command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name and e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependencyError(module, f"pip install -e '.[{extra}]'") from e
