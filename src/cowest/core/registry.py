"""One small name -> factory registry. Entries may be lazy ("module:attr") so heavy modules load on first use."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar, overload

from cowest.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually functions). `kind` names the registry in error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T | str] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T | str) -> T | str: ...

    def register(self, name: str, obj: T | str | None = None) -> T | str | Callable[[T], T]:
        """`reg.register("x", fn)`, `reg.register("x", "pkg.mod:fn")` (lazy) or `@reg.register("x")`."""
        if obj is not None:
            self._items[name] = obj
            return obj

        def deco(fn: T) -> T:
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(self.kind, name, self.names())
        item = self._items[name]
        if isinstance(item, str):
            mod, _, attr = item.partition(":")
            item = getattr(importlib.import_module(mod), attr)
            self._items[name] = item
        return item

    def check(self, name: str) -> None:
        """Fail naming the valid choices without importing anything."""
        if name not in self._items:
            raise UnknownNameError(self.kind, name, self.names())

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
