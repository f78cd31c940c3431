"""Import YOLO txt labels with their class names (``data.yaml`` or ``classes.txt``, found as :mod:`.yolo_classes` says).

Layouts: Roboflow (``train|valid|test/images`` + ``.../labels``), Ultralytics
(``images/<split>`` + ``labels/<split>``) and flat image + txt pairs, split folders linked in from
elsewhere included (:mod:`.dataset_tree`). Rows are ``class cx cy w h`` (normalised) or YOLO-seg
polygons ``class x1 y1 x2 y2 ...``. An image without a label file is a clean image, as in YOLO itself.

A row's class is its id's name in ``data.yaml``, or with ``--class-map`` the map's entry for the id
(then for the id's name). Without a map by id, ids that look 1-based stop the import before any image is
read (:func:`~inspect_core.data.importers.yolo_classes.off_by_one`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from inspect_core.data.annotations import (
    AnnotatedImage,
    AnnotationError,
    DefectObject,
    check_box,
    clip_polygon,
    normalise_split,
    source_key_for,
)
from inspect_core.data.importers.image_files import IMAGE_SUFFIXES
from inspect_core.data.importers.import_result import ImportCollector, ImportResult
from inspect_core.data.importers.label_files import is_inside, read_text
from inspect_core.data.importers.yolo_classes import NAME_FILES, class_names, off_by_one, off_by_one_error, row_id

__all__ = ["NAME_FILES", "import_yolo", "label_file_for"]

_NOT_LABELS = {"classes.txt", "readme.txt", "readme.dataset.txt", "readme.roboflow.txt"}


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


def _row(
    fields: list[str], names: list[str], names_file: Path | None, collector: ImportCollector, label_path: Path, where: str,
    width: int, height: int,
) -> DefectObject:  # fmt: skip
    try:
        class_id = int(fields[0])
    except ValueError:
        raise AnnotationError(label_path, where, "class_id", f"not an integer: {fields[0]!r}") from None
    known = 0 <= class_id < len(names)
    if not known and collector.class_map is None:
        shown = names_file.name if names_file is not None else "the class names"
        raise AnnotationError(label_path, where, "class_id", f"class id {class_id} is not in {shown} (0..{len(names) - 1})")
    label = collector.class_name(names[class_id] if known else None, label_path, where, "class_id", key=str(class_id))
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError as exc:
        raise AnnotationError(label_path, where, "coordinates", f"not a number: {exc}") from None
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise AnnotationError(label_path, where, "width/height", f"box has zero or negative size ({w:g} x {h:g})")
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        return DefectObject(label, check_box(box, width, height, label_path, where, "cx/cy/w/h"))
    if len(values) >= 6 and len(values) % 2 == 0:
        points = tuple((values[i] * width, values[i + 1] * height) for i in range(0, len(values), 2))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = check_box((min(xs), min(ys), max(xs), max(ys)), width, height, label_path, where, "polygon")
        return DefectObject(label, box, polygon=clip_polygon(points, width, height))
    raise AnnotationError(label_path, where, "row", f"expected 'class cx cy w h' or a polygon, got {len(fields)} fields")


def _label_texts(labels: list[Path], collector: ImportCollector) -> tuple[dict[Path, str], Counter[int], dict[int, str]]:
    """Every readable label file's text (read once), the rows per class id, and where each id is first used.

    Files that escape the root or cannot be read are left out here; the image's own build reports them.
    """
    texts: dict[Path, str] = {}
    ids: Counter[int] = Counter()
    first: dict[int, str] = {}
    for label in labels:
        if not is_inside(collector.roots(), label):
            continue
        try:
            texts[label] = read_text(label)
        except AnnotationError:
            continue
        for number, line in enumerate(texts[label].splitlines(), start=1):
            if (class_id := row_id(line)) is not None:
                ids[class_id] += 1
                first.setdefault(class_id, f"{label} line {number}")
    return texts, ids, first


def import_yolo(root: Path, collector: ImportCollector, data_yaml: Path | None = None) -> ImportResult:
    if collector.root is None:
        collector.root = root
    names, names_file = class_names(root, data_yaml, required=collector.class_map is None)
    files = collector.files()
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    expected_labels = {label_file_for(p) for p in images}
    for label in (p for p in files if p.suffix.lower() == ".txt" and p.is_file()):
        if label.name.lower() not in _NOT_LABELS and label not in expected_labels:
            collector.reject(AnnotationError(label, "file", "image", "label file has no matching image"))
    texts, ids, first = _label_texts(sorted(p for p in expected_labels if p.is_file()), collector)
    by_id = collector.class_map is not None and any(key.isdigit() for key in collector.class_map.mapping)
    if not by_id and off_by_one(ids, len(names)):  # a map of names only ('Hole:hole') would still shift every label
        raise off_by_one_error(ids, names, names_file, first[len(names)])  # whatever --skip-invalid says: it is every label
    collector.prefetch(images)
    for image_path in images:

        def build(image_path: Path = image_path) -> AnnotatedImage:
            label_path = label_file_for(image_path)
            info = collector.image_info(image_path, label_path if label_path.exists() else image_path, "image")
            objects = []
            if label_path.exists() and not label_path.is_file():
                raise AnnotationError(label_path, "file", "label", "is not a regular file (a directory?)")
            if label_path.is_file():
                collector.inside(label_path, label_path, "file", "label")
                text = texts[label_path] if label_path in texts else read_text(label_path)
                for number, line in enumerate(text.splitlines(), start=1):
                    if line.strip():
                        where = f"line {number}"
                        objects.append(_row(line.split(), names, names_file, collector, label_path, where, info.width, info.height))
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
