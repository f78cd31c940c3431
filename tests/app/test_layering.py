"""The app is a layer outside the library: the library never imports it, and the one command that starts it does so lazily."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports_of_the_app(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of every import of ``inspect_app`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        if any(n.split(".")[0] == "inspect_app" for n in names):
            found.append((node.lineno, id(node) in top))
    return found


def test_only_the_app_command_imports_the_app_and_only_when_run() -> None:
    users = {str(p.relative_to(REPO)): found for p in sorted((REPO / "inspect_core").rglob("*.py")) if (found := _imports_of_the_app(p))}
    assert list(users) == ["inspect_core/cli/app.py"]
    assert all(not at_top for _line, at_top in users["inspect_core/cli/app.py"])  # inside the command function


def test_the_check_sees_module_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import inspect_app.server\n\ndef f():\n    from inspect_app import security\n")
    assert _imports_of_the_app(module) == [(1, True), (4, False)]


def test_the_app_keeps_gradio_out_of_its_pure_modules() -> None:
    """Pages' logic (tested without a browser) stays importable without building any UI: Gradio only in the page modules."""
    for name in ("context", "dashboard", "export", "frames", "review", "security", "try_page"):
        tree = ast.parse((REPO / "inspect_app" / f"{name}.py").read_text(encoding="utf-8"))
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names] + [
            n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)
        ]
        assert not [n for n in names if n.split(".")[0] in ("gradio", "gradio_image_annotation")], name
