"""The package map holds: stages as packages, no cycle between them, no orchestration framework in the library.

Imports are read from the source (AST), including those inside functions, so a lazy import cannot
hide a cycle. A package here is the first name under ``inspect_core`` (``data``, ``model``, ...;
top-level modules such as ``config`` and ``pipeline`` count as their own node).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "inspect_core"
STAGES = {"data", "model", "training", "inference", "store", "ingest", "cli"}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _node(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        source = _node(path)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "inspect_core" or len(parts) < 2 or parts[1] == source:
                continue
            if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").exists():
                graph[source].add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_library_is_grouped_by_stage() -> None:
    present = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert STAGES <= present, f"missing stage packages: {STAGES - present}"
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "config", "errors", "pipeline"})
    assert not loose, f"modules outside the stage packages: {loose}"


def test_no_import_cycle_between_packages() -> None:
    graph = _package_graph()
    assert "cli" in graph and "store" in graph["cli"], "the graph was not read"  # the walk sees real edges
    assert _cycle(graph) is None, f"import cycle between packages: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_nothing_below_the_pipeline_imports_it_or_the_cli() -> None:
    graph = _package_graph()
    for package, targets in graph.items():
        if package not in {"cli", "pipeline"}:
            assert not targets & {"cli", "pipeline"}, f"{package} imports {targets & {'cli', 'pipeline'}}"


@pytest.mark.parametrize("framework", ["prefect", "gradio", "dask"])
def test_the_library_never_imports_an_orchestration_or_ui_framework(framework: str) -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in _modules() if any(n.split(".")[0] == framework for n in _imports(p))]
    assert not offenders, f"{framework} imported by {offenders}"


def test_modules_stay_small() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
