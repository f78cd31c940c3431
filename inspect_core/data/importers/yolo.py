"""Import YOLO txt labels with their class names (``data.yaml`` or ``classes.txt``).

Layouts: Roboflow (``train|valid|test/images`` + ``.../labels``), Ultralytics
(``images/<split>`` + ``labels/<split>``) and flat image + txt pairs. Rows are
``class cx cy w h`` (normalised) or YOLO-seg polygons ``class x1 y1 x2 y2 ...``. An image without a
label file is a clean image, as in YOLO itself.

``data.yaml`` is read by the one safe YAML reader, without aliases (a Roboflow or Ultralytics file has none, and nested
aliases expand exponentially) and its ``names`` must be ids 0..n-1 with clean class names.
"""

from __future__ import annotations

from pathlib import Path

from inspect_core.config import safe_yaml_load
from inspect_core.data.annotations import (
    AnnotatedImage,
    AnnotationError,
    DefectObject,
    check_box,
    check_text,
    clip_polygon,
    normalise_split,
    source_key_for,
)
from inspect_core.data.importers.image_files import IMAGE_SUFFIXES
from inspect_core.data.importers.import_result import DatasetImportError, ImportCollector, ImportResult
from inspect_core.data.importers.label_files import ensure_inside, read_text

NAME_FILES = ("data.yaml", "data.yml", "classes.txt")
_NOT_LABELS = {"classes.txt", "readme.txt", "readme.dataset.txt", "readme.roboflow.txt"}


MAX_NAMES_FILE_BYTES = 1 << 20


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


def class_names(root: Path) -> tuple[list[str], Path]:
    """Class names by id, and the file they came from."""
    for name in NAME_FILES:
        path = root / name
        if not path.is_file():
            continue
        ensure_inside(root, path, path, "file", name)
        if path.suffix == ".txt":
            lines = read_text(path).splitlines()
            return [check_text(line, path, f"line {i}", "class name") for i, line in enumerate(lines, start=1) if line.strip()], path
        return _names_from_yaml(path, _load_yaml(path)), path
    raise AnnotationError(root, "dataset root", "data.yaml", "no data.yaml or classes.txt with the class names")


def label_file_for(image: Path) -> Path:
    """``.../images/x.jpg`` -> ``.../labels/x.txt``; a flat layout keeps the txt beside the image."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        index = len(parts) - 1 - parts[::-1].index("images", 1)
        parts[index] = "labels"
        return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _split_of(path: Path, root: Path) -> str | None:
    for part in path.relative_to(root).parts[:-1]:
        if normalise_split(part):
            return normalise_split(part)
    return None


def _row(fields: list[str], names: list[str], names_file: Path, label_path: Path, where: str, width: int, height: int) -> DefectObject:
    try:
        class_id = int(fields[0])
    except ValueError:
        raise AnnotationError(label_path, where, "class_id", f"not an integer: {fields[0]!r}") from None
    if not 0 <= class_id < len(names):
        raise AnnotationError(label_path, where, "class_id", f"class id {class_id} is not in {names_file.name} (0..{len(names) - 1})")
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError as exc:
        raise AnnotationError(label_path, where, "coordinates", f"not a number: {exc}") from None
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise AnnotationError(label_path, where, "width/height", f"box has zero or negative size ({w:g} x {h:g})")
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        return DefectObject(names[class_id], check_box(box, width, height, label_path, where, "cx/cy/w/h"))
    if len(values) >= 6 and len(values) % 2 == 0:
        points = tuple((values[i] * width, values[i + 1] * height) for i in range(0, len(values), 2))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = check_box((min(xs), min(ys), max(xs), max(ys)), width, height, label_path, where, "polygon")
        return DefectObject(names[class_id], box, polygon=clip_polygon(points, width, height))
    raise AnnotationError(label_path, where, "row", f"expected 'class cx cy w h' or a polygon, got {len(fields)} fields")


def import_yolo(root: Path, collector: ImportCollector) -> ImportResult:
    if collector.root is None:
        collector.root = root
    names, names_file = class_names(root)
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    expected_labels = {label_file_for(p) for p in images}
    for label in sorted(p for p in root.rglob("*.txt") if p.is_file()):
        if label.name.lower() not in _NOT_LABELS and label not in expected_labels:
            collector.reject(AnnotationError(label, "file", "image", "label file has no matching image"))
    collector.prefetch(images)
    for image_path in images:

        def build(image_path: Path = image_path) -> AnnotatedImage:
            label_path = label_file_for(image_path)
            info = collector.image_info(image_path, label_path if label_path.exists() else image_path, "image")
            objects = []
            if label_path.exists() and not label_path.is_file():
                raise AnnotationError(label_path, "file", "label", "is not a regular file (a directory?)")
            if label_path.is_file():
                ensure_inside(root, label_path, label_path, "file", "label")
                for number, line in enumerate(read_text(label_path).splitlines(), start=1):
                    if line.strip():
                        objects.append(_row(line.split(), names, names_file, label_path, f"line {number}", info.width, info.height))
            return AnnotatedImage(
                image_path=image_path,
                width=info.width,
                height=info.height,
                objects=tuple(objects),
                split=_split_of(image_path, root),
                source_key=source_key_for(image_path),
                sha256=info.sha256,
            )

        collector.attempt(build)
    return collector.finish("yolo", root, names)
