"""The package's import graph (every import, lazy ones inside functions included) has no circle, and the library
below the command line never imports it (issue 15 item 4)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, package: str, known: dict[str, Path]) -> set[str]:
    """The package's modules `path` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in out if m in known}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    known = modules()
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imports(path, package, known) - {name}
    assert "cowest.core.layout" in graph and graph["cowest.pipeline.loop"] >= {"cowest.core.layout", "cowest.pipeline.stages"}  # the walk works
    found = [sorted(c) for c in circles(graph)]
    assert found == [], f"import circle(s): {found}"


def test_no_library_module_imports_the_cli() -> None:
    """Every command lives in cowest.cli; the library below it never reaches back up (nor registers commands)."""
    known = modules()
    up = {}
    for name, path in known.items():
        if name == "cowest.__main__" or name == "cowest.cli" or name.startswith("cowest.cli."):
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        cli = {m for m in imports(path, package, known) if m == "cowest.cli" or m.startswith("cowest.cli.")}
        if cli or "add_parser(" in path.read_text(encoding="utf-8"):
            up[name] = sorted(cli) or ["add_parser"]
    assert "cowest.cli.serve" in known and up == {}, f"library modules that reach the CLI: {up}"


def test_the_walk_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
