"""YOLO class names: where ``data.yaml`` is found, how it is read, and whether the label ids fit it.

**Where.** ``--data-yaml PATH`` (recipe ``dataset.data_yaml``) when given; else the first of, in this
order: ``data.yaml``/``data.yml``/``classes.txt`` in the source root; ``data.yaml``/``data.yml`` in the
root's ``config/`` folder, in a ``config/`` folder beside the root (``../config/``), and in the parent
folder. Plants keep the export's YAML with their other configs; ``classes.txt`` is only looked for in
the root, since a parent folder's ``classes.txt`` may belong to anything. A names file in the root is
never read through a link that leads out of it (the escape rule of every label file).

**How.** ``data.yaml`` is read by the one safe YAML reader, without aliases (a Roboflow or Ultralytics
file has none, and nested aliases expand exponentially) and its ``names`` must be ids 0..n-1 with
clean class names.

**Fit.** A 1-based export (ids 1..nc for ``nc`` names, common after a class was deleted in the labelling
tool) rejected only its last id; every other row imported under its neighbour's name, and
``--skip-invalid`` then wrote a mislabelled dataset. :func:`off_by_one` spots it from the id counts and
the import stops with the ``--class-map`` that fixes it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from inspect_core.config.safe_yaml import safe_yaml_load
from inspect_core.data.annotations import AnnotationError, check_text
from inspect_core.data.importers.import_result import DatasetImportError
from inspect_core.data.importers.label_files import ensure_inside, is_file, read_text

NAME_FILES = ("data.yaml", "data.yml", "classes.txt")
YAML_NAMES = ("data.yaml", "data.yml")
MAX_NAMES_FILE_BYTES = 1 << 20
# Id 0 counts as "rare" (a few stray rows, not a class) when it has at most this share of an average class's rows.
RARE_SHARE = 0.25


def names_places(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """(folder, file names) searched for the class names, in order (see the module doc)."""
    root = Path(root)
    return [(root, NAME_FILES), (root / "config", YAML_NAMES), (root.parent / "config", YAML_NAMES), (root.parent, YAML_NAMES)]


def find_names_file(root: Path, data_yaml: Path | None = None) -> Path | None:
    """The class-names file of a YOLO source: ``data_yaml`` when given, else the first found in :func:`names_places`."""
    if data_yaml is not None:
        if not is_file(data_yaml):
            raise FileNotFoundError(f"--data-yaml {data_yaml}: no such file")
        return Path(data_yaml)
    for folder, names in names_places(root):
        for name in names:
            if is_file(folder / name) or (folder == Path(root) and (folder / name).is_symlink()):
                return folder / name
    return None


def _load_yaml(path: Path) -> object:
    """``data.yaml`` as data, through the tool's one safe YAML reader (``inspect_core.config.safe_yaml``).

    Stricter than for recipes: no aliases at all (a Roboflow or Ultralytics export has none) and at most
    1 MiB; malformed YAML, duplicate keys and every refusal name the file and line.
    """
    return safe_yaml_load(read_text(path), path, error=DatasetImportError, max_aliases=0, max_bytes=MAX_NAMES_FILE_BYTES)


def _names_from_yaml(path: Path, data: object) -> list[str]:
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        keys = list(names)
        bad = next((k for k in keys if isinstance(k, bool) or not isinstance(k, int)), None)
        if bad is not None:
            raise AnnotationError(path, "names", "names", f"class ids must be integers 0..n-1, got the key {bad!r}")
        if sorted(keys) != list(range(len(keys))):
            raise AnnotationError(path, "names", "names", "class ids must be 0..n-1")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise AnnotationError(path, "names", "names", "expected a list of class names")
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise AnnotationError(path, "nc", "nc", f"nc is {nc!r} but {len(names)} names are listed")
    return [check_text(n, path, f"names[{i}]", "names") for i, n in enumerate(names)]


def read_names(path: Path, root: Path, *, found: bool = True) -> list[str]:
    """Class names by id from a ``data.yaml`` or ``classes.txt``; one ``found`` (not named by --data-yaml) must not link out of
    the folder it was found in."""
    if found:
        ensure_inside(root if Path(path).parent == Path(root) else Path(path).parent, path, path, "file", Path(path).name)
    if Path(path).suffix == ".txt":
        lines = read_text(path).splitlines()
        return [check_text(line, path, f"line {i}", "class name") for i, line in enumerate(lines, start=1) if line.strip()]
    return _names_from_yaml(path, _load_yaml(path))


def class_names(root: Path, data_yaml: Path | None = None, *, required: bool = True) -> tuple[list[str], Path | None]:
    """Class names by id, and the file they came from; without one, an error (or ``[]`` when not ``required``)."""
    path = find_names_file(root, data_yaml)
    if path is None:
        if not required:
            return [], None
        places = ", ".join(str(folder / names[0]) for folder, names in names_places(root)[1:])
        raise AnnotationError(root, "dataset root", "data.yaml", f"no data.yaml or classes.txt with the class names (also looked "
                              f"for {places}); pass --data-yaml PATH, or --class-map")  # fmt: skip
    return read_names(path, root, found=data_yaml is None), path


def row_id(line: str) -> int | None:
    """The class id at the start of a label row, or None (blank, not an integer: the row's own error says so later)."""
    first = line.split(maxsplit=1)
    try:
        return int(first[0]) if first else None
    except ValueError:
        return None


def off_by_one(ids: Counter[int], nc: int) -> bool:
    """Whether label ids look 1-based for ``nc`` names: id ``nc`` (one past the last name) is the largest used, it is
    used more than id 0, and id 0 is absent or rare (at most a quarter of an average class among 1..nc).

    A 0-based set with one typo row ``nc`` is not caught (id 0 is then a full class); it fails on that row as before.
    """
    if nc < 1 or not ids or max(ids) != nc or ids[nc] <= ids[0]:
        return False
    mean_others = sum(ids[i] for i in range(1, nc + 1)) / nc
    return ids[0] <= RARE_SHARE * mean_others


def off_by_one_error(ids: Counter[int], names: list[str], names_file: Path, first_use: str) -> DatasetImportError:
    """The error that names the remedy: the exact ``--class-map`` that reads ids 1..nc as the names in order."""
    nc = len(names)
    remedy = ",".join(f"{i + 1}:{name}" for i, name in enumerate(names))
    quoted = "'" + remedy.replace("'", "'\\''") + "'"  # for a POSIX shell, quoted even where it need not be
    zeros = f"id 0 on {ids[0]} row(s): those become errors under the map" if ids[0] else "id 0 on no row"
    return DatasetImportError(
        f"{names_file}: the labels look 1-based: they use ids 1..{nc} ({zeros}; id {nc} on {ids[nc]} row(s), first {first_use}), "
        f"but {names_file.name} names ids 0..{nc - 1} ({', '.join(names)}), so every label would import under the wrong name. "
        f"If id 1 means {names[0]}, rerun with --class-map {quoted}; if the ids are right, fix the rows that use id {nc}"
    )
