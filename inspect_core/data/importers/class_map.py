"""``--class-map`` (recipe ``dataset.class_map``): a plant's label ids and names -> the class names of the dataset.

A YOLO export after a class was deleted is often 1-based (ids 1 and 2 with ``names: [cut, hole]``), a
COCO or VOC export spells ``Hole`` where the line says ``hole``. The map says what each source label
is: ``1:cut,2:hole`` inline, or a YAML/JSON file of ``id: name`` (or ``Name: name``) pairs. It is the
whole class list: a label the map does not name is an error naming its file and line (``--skip-invalid``
skips that image; it never keeps the label under a guessed class). Several source labels may map to one
class (``Tear:cut,Cut:cut``).

Every importer asks :meth:`ImportCollector.class_name
<inspect_core.data.importers.import_result.ImportCollector.class_name>` (the one place the map is applied),
which looks a label up by its id first where the format has one (YOLO class id, COCO category id, indexed
mask pixel value), then by its name (the id's ``data.yaml`` name, the category name, ``<name>``, the
JSONL target's class).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inspect_core.config.safe_yaml import read_yaml_file
from inspect_core.data.annotations import AnnotationError, text_problem
from inspect_core.errors import UsageError

OPTION = "--class-map"


@dataclass(frozen=True)
class ClassMap:
    """Source label (id or name, as text) -> class name; ``origin`` names where it was given, for messages."""

    mapping: dict[str, str]
    origin: str = OPTION

    @property
    def classes(self) -> list[str]:
        """The dataset's classes: the map's names, each once, in the order given."""
        return list(dict.fromkeys(self.mapping.values()))

    def lookup(self, name: str | None, key: str | None, file: Path | str, location: str, field: str) -> str:
        """The class of a label given by ``key`` (an id) and/or ``name``: the key's entry first, then the name's."""
        for candidate in (key, name):
            if candidate is not None and candidate.strip() in self.mapping:
                return self.mapping[candidate.strip()]
        shown = " ".join(filter(None, [f"id {key}" if key is not None else None, repr(name) if name is not None else None]))
        known = ", ".join(self.mapping)
        raise AnnotationError(file, location, field, f"class {shown} is not in the class map ({self.origin}: {known}); add it to the map")


def _entry(key: object, value: object, origin: str, where: str) -> tuple[str, str]:
    if isinstance(key, bool) or not isinstance(key, (int, str)) or not str(key).strip():
        raise UsageError(f"{origin}: {where}key {key!r}: expected a class id (an integer) or a class name")
    if not isinstance(value, str):
        raise UsageError(f"{origin}: {where}{key}: expected a class name, got {value!r}")
    problem = text_problem(value.strip())
    if problem is not None:
        raise UsageError(f"{origin}: {where}{key}: class name {problem}")
    return str(key).strip(), value.strip()


def _inline(spec: str) -> ClassMap:
    mapping: dict[str, str] = {}
    for item in (part for part in spec.split(",") if part.strip()):
        key, sep, value = item.partition(":")
        if not sep:
            raise UsageError(f"{OPTION} {spec!r}: {item.strip()!r} is not id:name (e.g. {OPTION} '1:cut,2:hole'), and no such file exists")
        key, value = _entry(key, value, OPTION, "")
        if key in mapping:
            raise UsageError(f"{OPTION} {spec!r}: {key} is given twice")
        mapping[key] = value
    if not mapping:
        raise UsageError(f"{OPTION} {spec!r}: no id:name pairs (e.g. {OPTION} '1:cut,2:hole')")
    return ClassMap(mapping)


def _from_file(path: Path) -> ClassMap:
    """A YAML (or JSON, which YAML reads) mapping; errors name the file and the line of the bad entry."""
    data, lines = read_yaml_file(path, error=UsageError, max_aliases=0)
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{path}: a class map must be a mapping of id or name -> class name (lines such as '1: cut')")
    mapping: dict[str, str] = {}
    for key, value in data.items():
        line = lines.get((key,)) or lines.get((str(key),))  # the line table keys are the keys as written (1: is "1" there)
        where = f"line {line}: " if line else ""
        text_key, name = _entry(key, value, str(path), where)
        if text_key in mapping:
            raise UsageError(f"{path}: {where}{text_key} is given twice")
        mapping[text_key] = name
    return ClassMap(mapping, origin=str(path))


def parse_class_map(spec: ClassMap | Mapping | str | Path | None) -> ClassMap | None:
    """A class map from the recipe value or option: a mapping, ``'1:cut,2:hole'``, or the path of a YAML/JSON file."""
    if spec is None or isinstance(spec, ClassMap):
        return spec
    if isinstance(spec, Mapping):
        if not spec:
            return None
        pairs = [_entry(k, v, "dataset.class_map", "") for k, v in spec.items()]
        return ClassMap(dict(pairs), origin="dataset.class_map")
    path = Path(spec)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if is_file:
        return _from_file(path)
    if isinstance(spec, Path) or ":" not in str(spec):
        raise UsageError(f"{OPTION} {spec}: no such file, and not id:name pairs such as '1:cut,2:hole'")
    return _inline(str(spec))
