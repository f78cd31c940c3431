"""Every recipe field is read by the code it names: a field nothing reads is a setting silently ignored.

The walk is over the config model (so a new field is checked without touching this test) and the
oracle is the source's syntax tree: field ``section.key`` counts as read when some module outside
``config.py`` reads the attribute ``.key`` and also reaches the section (``.section`` or its class
name). Removing the only read of, say, ``.image_size`` from ``model/factory.py`` makes
``model.image_size`` fail here.
"""

import ast
from pathlib import Path

from pydantic import BaseModel

from inspect_core.config import InspectConfig
from inspect_core.config.recipe import _section_type

ROOT = Path(__file__).resolve().parents[1]
# Read by nothing on purpose, each with the reason; the last test keeps this list from going stale.
IMPLIED = {"dataset.splits.train": "the share left after valid and test (the validator makes the three sum to 1)"}


def field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type[BaseModel]]]:
    """(dotted path, the class that declares it) for every field, sections included, recursively."""
    paths = []
    for name, info in model.model_fields.items():
        paths.append((prefix + (name,), model))
        inner = _section_type(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths += field_paths(inner, prefix + (name,))
    return paths


def method_reads() -> tuple[set[str], set[str]]:
    """Fields config.py's own helper methods read (``ScoreSection.threshold`` reads the thresholds), and those methods' names.

    Validators do not count: checking a value is not using it.
    """
    tree = ast.parse((ROOT / "inspect_core" / "config" / "__init__.py").read_text(encoding="utf-8"))
    fields, methods = set(), set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef) and not n.decorator_list and not n.name.startswith("_")):
            methods.add(fn.name)
            fields |= {f"{cls.name}.{n.attr}" for n in ast.walk(fn) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                       and n.value.id == "self"}  # fmt: skip
    return fields, methods


def module_reads() -> list[tuple[Path, set[str], set[str]]]:
    """Per module outside config.py: the attribute names it reads, and every other identifier or string it mentions."""
    modules = []
    for path in sorted([*(ROOT / "inspect_core").rglob("*.py"), *(ROOT / "flows").rglob("*.py")]):
        if path.is_relative_to(ROOT / "inspect_core" / "config"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {a.name.split(".")[-1] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names}
        strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        modules.append((path, attributes, names | strings))
    return modules


def unread_fields() -> list[str]:
    modules = module_reads()
    by_methods, methods = method_reads()
    unread = []
    for path, owner in field_paths(InspectConfig):
        *parents, leaf = path
        found = False
        for _, attributes, mentions in modules:
            reaches_section = not parents or parents[-1] in attributes or owner.__name__ in mentions
            via_method = f"{owner.__name__}.{leaf}" in by_methods and bool(methods & attributes)
            if reaches_section and (leaf in attributes or via_method):
                found = True
                break
        if not found:
            unread.append(".".join(path))
    return unread


def test_every_config_field_is_read_somewhere() -> None:
    assert [f for f in unread_fields() if f not in IMPLIED] == []


def test_implied_fields_are_real_and_still_unread() -> None:
    assert sorted(IMPLIED) == sorted(f for f in unread_fields() if f in IMPLIED)


def test_the_walk_covers_nested_sections() -> None:
    dotted = {".".join(p) for p, _ in field_paths(InspectConfig)}
    assert {"dataset.splits.valid", "model.image_size", "model.revision", "store.url", "ingest.camera_source"} <= dotted
