"""The package's import graph (every import, lazy ones inside functions included) has no circle, the library below
the command line never imports it, and the layers keep their order: core <- plumbing (models, strategies, scoring,
tasks, routing, serve) <- pipeline <- view (`cowest view`'s page of run directories) <- cli (issue 15 item 4;
docs/architecture.md)."""

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


def graph_of(known: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imports(path, package, known) - {name}
    return graph


def layer(module: str) -> str:
    """core, pipeline, view, cli, or plumbing (every other package and module below the pipeline); "" for the
    root."""
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    return parts[1] if parts[1] in ("core", "pipeline", "view", "cli", "__main__") else "plumbing"


CORE_REACHES_OUT = {("cowest.core.config", "cowest.routing.config"):
                    "the experiment config holds the route and prices sections that routing declares (and the "
                    "route section checks router names against cowest.routing.ROUTERS)"}
"""The imports from core into another layer that the design accepts, each with its reason."""

PLUMBING_REACHES_UP = {("cowest.routing.learned", "cowest.pipeline.feedback"):
                       "the learned router trains on feedback records and their metric scores",
                       ("cowest.serve", "cowest.pipeline.loop"):
                       "serve finds a run's latest weak adapter with loop.weak_model"}
"""The imports from the plumbing into the pipeline that are known, each with its reason; no new one may appear."""


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
    graph = graph_of(modules())
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


def test_core_imports_only_core() -> None:
    """Config, records, registry, errors, the run directory and the shared helpers import nothing from the
    pipeline, models, strategies, scoring, tasks, routing, serve or the CLI (but the accepted CORE_REACHES_OUT)."""
    graph = graph_of(modules())
    assert {"cowest.core.config", "cowest.core.records", "cowest.core.layout"} <= set(graph)
    out = {(name, m) for name, deps in graph.items() if layer(name) == "core" for m in deps if layer(m) != "core"}
    assert out == set(CORE_REACHES_OUT), f"core modules that import another layer: {sorted(out - set(CORE_REACHES_OUT))}"


def test_only_the_cli_imports_the_pipeline() -> None:
    """The plumbing below the pipeline does not reach up into it, but for the known PLUMBING_REACHES_UP."""
    graph = graph_of(modules())
    up = {(name, m) for name, deps in graph.items() if layer(name) in ("core", "plumbing")
          for m in deps if layer(m) == "pipeline"}
    assert up == set(PLUMBING_REACHES_UP), f"modules below the pipeline that import it: {sorted(up)}"


def test_only_the_cli_imports_the_view() -> None:
    """`cowest view` reads what the pipeline wrote; nothing below it reaches up into it."""
    graph = graph_of(modules())
    assert "cowest.view.data" in graph
    up = {(name, m) for name, deps in graph.items() if layer(name) in ("core", "plumbing", "pipeline")
          for m in deps if layer(m) == "view"}
    assert up == set(), f"modules below the view that import it: {sorted(up)}"


def test_the_layer_rule_sees_a_breach() -> None:
    assert layer("cowest.core.records") == "core" and layer("cowest.pipeline.train.sft") == "pipeline"
    assert layer("cowest.serve_app") == "plumbing" and layer("cowest.routing.config") == "plumbing"
    assert layer("cowest.cli.serve") == "cli" and layer("cowest") == "" and layer("cowest.view.data") == "view"
