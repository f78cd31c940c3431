"""The store is a boundary: nothing in the package outside ``inspect_core/store``, nor any flow, talks SQL.

Walks the syntax tree of every module (not a text grep: comments and docstrings may name these things)
and lists database access: imports of a database library, sessions, statements built, statements run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATABASE_MODULES = ("sqlalchemy", "sqlmodel", "psycopg", "psycopg2", "sqlite3", "alembic")
DATABASE_ALIASES = {"sa", "sqlalchemy", "sqlmodel", "sql"}
STATEMENT_BUILDERS = {"Session", "select", "text", "insert", "update", "delete"}
RUNS_SQL = {"execute", "exec", "exec_driver_sql", "executemany"}
OPENS_A_TRANSACTION = {"begin", "connect"}


def database_access(source: str, name: str) -> list[str]:
    """Every line of ``source`` that imports a database library, builds a statement, or runs one."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        found += [f"{name}:{node.lineno} imports {m}" for m in modules if m.split(".")[0] in DATABASE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in STATEMENT_BUILDERS:
            found.append(f"{name}:{node.lineno} calls {function.id}()")
        elif isinstance(function, ast.Attribute):
            receiver = ast.unparse(function.value)
            builds = function.attr in STATEMENT_BUILDERS and (receiver in DATABASE_ALIASES or function.attr in {"Session", "select"})
            if builds or function.attr in RUNS_SQL:
                found.append(f"{name}:{node.lineno} calls {receiver}.{function.attr}()")
            elif function.attr in OPENS_A_TRANSACTION and "engine" in receiver.lower():
                found.append(f"{name}:{node.lineno} calls {receiver}.{function.attr}()")
    return found


def outside_the_store() -> list[Path]:
    package = REPO / "inspect_core"
    modules = [p for p in package.rglob("*.py") if (package / "store") not in p.parents]
    return sorted(modules + list((REPO / "flows").rglob("*.py")))


def test_no_module_outside_the_store_opens_a_session_or_builds_sql() -> None:
    modules = outside_the_store()
    assert len(modules) > 30 and REPO / "flows" / "tasks.py" in modules and REPO / "inspect_core" / "ingest" / "folder.py" in modules
    found = [line for path in modules for line in database_access(path.read_text(), str(path.relative_to(REPO)))]
    assert found == []


def test_the_walk_finds_each_kind_of_database_access() -> None:
    """The check itself can fail: the store's own code, and snippets of each kind, are caught."""
    snippets = {
        "from sqlmodel import Session": "imports sqlmodel",
        "import sqlalchemy as sa": "imports sqlalchemy",
        "with Session(engine) as s:\n    s.exec(query)": "calls Session()",
        "rows = sa.select(table.c.id)": "calls sa.select()",
        "with engine.begin() as c:\n    pass": "calls engine.begin()",
        "connection.execute(statement)": "calls connection.execute()",
        "self.engine.connect()": "calls self.engine.connect()",
    }
    for snippet, what in snippets.items():
        assert any(what in line for line in database_access(snippet, "snippet")), snippet
    assert database_access("counts.update(x)\nax.text(0, 0, 'a')\nclient.connect()\nfiles.insert(0, f)", "clean") == []
    assert database_access("sa.update(table)", "snippet") == ["snippet:1 calls sa.update()"]
    writes = REPO / "inspect_core" / "store" / "writes.py"
    assert len(database_access(writes.read_text(), "writes.py")) > 10
