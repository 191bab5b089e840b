"""YAML for configs: safe types only, duplicate keys refused, aliases capped, invalid values echoed briefly.

PyYAML's `safe_load` lets a later duplicate key silently win and expands aliases without a limit: a few hundred
bytes of nested aliases (a "billion laughs") become billions of nodes once validated or printed. Here a document
whose aliases would expand past `MAX_NODES` nodes is refused before it is built.
"""

from __future__ import annotations

from typing import Any

import yaml

from cowest.core.errors import ConfigError

MAX_NODES = 100_000
"""Nodes a document may have once its aliases are expanded (a real config has a few hundred)."""
ECHO_CHARS = 80


def short_repr(value: Any, limit: int = ECHO_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, so an invalid value never floods an error message."""
    try:
        text = repr(value) if not isinstance(value, (dict, list)) or _small(value) else _bounded_repr(value, limit)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _small(value: Any, budget: int = 200) -> bool:
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _bounded_repr(value: Any, limit: int) -> str:
    # A big (possibly alias-shared) structure: show its type and the start of its shallow repr only.
    head = ", ".join(repr(v)[:20] for v in (list(value.items()) if isinstance(value, dict) else value)[:3])
    return f"{type(value).__name__} of {len(value)}: {head}"[: limit + 1]


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no stubs
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: PyYAML's own check names it
                break
            if duplicate:
                mark = key_node.start_mark
                raise ConfigError(f"{mark.name}:{mark.line + 1}: key {short_repr(key)} appears twice in one mapping "
                                  "(keep one)")
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded, computed without expanding (memoised per node); a
    recursive alias counts as unbounded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order, iterative: a deeply nested document must not blow the Python stack
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(k)] for k in _children(node))
            if sizes[id(node)] > MAX_NODES:
                return sizes[id(node)]
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:  # an alias to one of its own ancestors
            return MAX_NODES + 1
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; every problem is a one-line `ConfigError` naming `source` (and the line)."""
    loader = None
    try:
        loader = _StrictLoader(text)  # its reader refuses a NUL byte or another control character at once
        loader.name = source  # marks in messages name the file
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise ConfigError(f"{source}: YAML aliases expand to more than {MAX_NODES:,} values; write the values "
                              "out instead of nesting aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = str(getattr(e, "problem", None) or e).splitlines()[0][:120]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deep") from None
    except ValueError as e:  # int("9" * 5000): Python's 4,300-digit limit on reading integers
        raise ConfigError(f"{source}: {str(e).split(';')[0]}; write a smaller number") from None
    finally:
        if loader is not None:
            loader.dispose()
