"""Import COCO detection JSON (plain COCO or Roboflow's ``split/_annotations.coco.json``).

Ids are checked before use (an id given as a list or an object is an error naming its field, not a
crash), and a JSON file that does not parse is reported with its line and column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

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
from inspect_core.data.importers.image_files import resolve_image, try_resolve
from inspect_core.data.importers.import_result import ImportCollector, ImportResult
from inspect_core.data.importers.label_files import is_file, read_text

_SECTIONS = ("images", "annotations", "categories")


def load_json(path: Path) -> object:
    """A JSON file's content; unreadable, non-UTF-8 or malformed JSON is an error naming the file, line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, f"line {exc.lineno} column {exc.colno}", "json", f"malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise AnnotationError(path, "file", "json", "JSON nested too deeply") from None


def _is_coco(data: object) -> bool:
    return isinstance(data, dict) and all(isinstance(data.get(k), list) for k in _SECTIONS)


def is_coco_file(path: Path) -> bool:
    """A JSON object with ``images``, ``annotations`` and ``categories`` lists."""
    try:
        return _is_coco(load_json(path))
    except AnnotationError:
        return False


def _json_candidates(root: Path) -> list[Path]:
    candidates = sorted(root.glob("*.json")) + sorted(root.glob("*/*.json"))
    return [p for p in candidates if p.is_file()]


def coco_files(root: Path) -> list[Path]:
    return [p for p in _json_candidates(root) if is_coco_file(p)]


def malformed_json_files(root: Path) -> list[AnnotationError]:
    """Why each JSON file where COCO files are looked for cannot be read (a truncated export, not UTF-8)."""
    problems = []
    for path in _json_candidates(root):
        try:
            load_json(path)
        except AnnotationError as error:
            problems.append(error)
    return problems


def _key(value: object) -> int | str | None:
    """An id usable as a key (an integer or a string), else None."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _number(value: object) -> bool:
    """A finite JSON number (not a bool, not an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 2**1023 if isinstance(value, int) else math.isfinite(value)


def _image_folder(json_path: Path, file_name: str) -> Path:
    """Where ``file_name`` lives: beside the JSON (Roboflow), or in a sibling ``images/`` folder."""
    for folder in (json_path.parent, json_path.parent / "images", json_path.parent.parent / "images"):
        if is_file(folder / file_name):
            return folder
    return json_path.parent


def _classes(path: Path, data: dict) -> dict[int, str]:
    """Category id -> name; drops Roboflow's unused parent category (the supercategory of others)."""
    names: dict[int, str] = {}
    for index, category in enumerate(data["categories"]):
        where = f"categories[{index}]"
        if not isinstance(category, dict) or _key(category.get("id")) is None or not isinstance(category.get("name"), str):
            raise AnnotationError(path, where, "id/name", "category needs an integer id and a string name")
        if category["id"] in names:
            raise AnnotationError(path, where, "id", f"category id {category['id']!r} is used twice")
        names[category["id"]] = check_text(category["name"], path, f"{where} (id={category['id']})", "name")
    used = {_key(a.get("category_id")) for a in data["annotations"] if isinstance(a, dict)}
    parents = {
        c.get("supercategory").strip()
        for c in data["categories"]
        if isinstance(c, dict) and isinstance(c.get("supercategory"), str) and c.get("supercategory") != c.get("name")
    }
    return {cid: name for cid, name in names.items() if cid in used or name not in parents}


def _polygon(segmentation: object, width: int, height: int, path: Path, where: str) -> tuple[tuple[float, float], ...] | None:
    """The largest polygon of a COCO segmentation; RLE masks carry no polygon."""
    if not isinstance(segmentation, list) or not segmentation:
        return None
    rings = [r for r in segmentation if isinstance(r, list) and len(r) >= 6 and len(r) % 2 == 0]
    if not rings:
        return None
    ring = max(rings, key=len)
    if not all(_number(v) for v in ring):
        raise AnnotationError(path, where, "segmentation", "polygon coordinates must be finite numbers")
    return clip_polygon(tuple((float(ring[i]), float(ring[i + 1])) for i in range(0, len(ring), 2)), width, height)


def _group_annotations(path: Path, data: dict, collector: ImportCollector) -> dict[int | str, list[tuple[int, dict]]]:
    """Annotations per image id; annotations with a bad or unknown image id are rejected here."""
    per_image: dict[int | str, list[tuple[int, dict]]] = {}
    known_ids = {_key(img.get("id")) for img in data["images"] if isinstance(img, dict)}
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            collector.reject(AnnotationError(path, f"annotations[{index}]", "annotation", "expected an object"))
            continue
        image_id = _key(ann.get("image_id"))
        where = f"annotations[{index}] (id={ann.get('id')!r})"
        if image_id is None:
            collector.reject(AnnotationError(path, where, "image_id", f"expected an integer id, got {ann.get('image_id')!r}"))
        elif image_id not in known_ids:
            collector.reject(AnnotationError(path, where, "image_id", f"no image with id {image_id!r}"))
        else:
            per_image.setdefault(image_id, []).append((index, ann))
    return per_image


def _objects(
    path: Path, anns: list[tuple[int, dict]], classes: dict[int, str], width: int, height: int, collector: ImportCollector
) -> list[DefectObject]:
    objects = []
    for ann_index, ann in anns:
        ann_where = f"annotations[{ann_index}] (id={ann.get('id')!r})"
        category = _key(ann.get("category_id"))
        if category not in classes:
            raise AnnotationError(path, ann_where, "category_id", f"unknown category id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise AnnotationError(path, ann_where, "bbox", f"expected [x, y, width, height] of finite numbers, got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        box = check_box((x, y, x + w, y + h), width, height, path, ann_where, "bbox")
        polygon = _polygon(ann.get("segmentation"), width, height, path, ann_where)
        label = collector.class_name(classes[category], path, ann_where, "category_id", key=str(category))
        objects.append(DefectObject(label=label, box=box, polygon=polygon))
    return objects


def _import_file(path: Path, root: Path, collector: ImportCollector) -> list[str]:
    collector.inside(path, path, "file", "json")
    data = load_json(path)
    if not _is_coco(data):
        raise AnnotationError(path, "file", "json", "expected an object with images, annotations and categories lists")
    classes = _classes(path, data)
    split = normalise_split(path.parent.name) if path.parent != root else None
    per_image = _group_annotations(path, data, collector)
    references = [e["file_name"] for e in data["images"] if isinstance(e, dict) and isinstance(e.get("file_name"), str)]
    collector.prefetch(p for r in references if (p := try_resolve(_image_folder(path, r), r)) is not None)
    seen_ids: dict[int | str, int] = {}
    for index, entry in enumerate(data["images"]):
        where = f"images[{index}]"

        def build(entry: dict = entry, where: str = where, index: int = index) -> AnnotatedImage:
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                raise AnnotationError(path, where, "file_name", "missing or not a string")
            image_id = _key(entry.get("id"))
            if image_id is None:
                raise AnnotationError(path, where, "id", f"expected an integer id, got {entry.get('id')!r}")
            if seen_ids.setdefault(image_id, index) != index:
                raise AnnotationError(path, where, "id", f"image id {image_id!r} is also used by images[{seen_ids[image_id]}]")
            where_named = f"{where} (id={image_id!r})"
            reference = entry["file_name"]
            image_path = resolve_image(_image_folder(path, reference), reference, path, where_named, "file_name")
            info = collector.image_info(image_path, path, where_named, "file_name")
            return AnnotatedImage(
                image_path=image_path,
                width=info.width,
                height=info.height,
                objects=tuple(_objects(path, per_image.get(image_id, []), classes, info.width, info.height, collector)),
                split=split,
                source_key=source_key_for(image_path),
                sha256=info.sha256,
            )

        collector.attempt(build)
    return list(classes.values())


def import_coco(root: Path, collector: ImportCollector) -> ImportResult:
    if collector.root is None:
        collector.root = root
    files = coco_files(root)
    broken = malformed_json_files(root)
    if not files and not broken:
        raise AnnotationError(root, "dataset root", "json", "no COCO JSON (images/annotations/categories) found")
    for error in broken:
        collector.reject(error)
    classes: list[str] = []
    for path in files:
        try:
            names = _import_file(path, root, collector)
        except AnnotationError as error:
            collector.reject(error)
            continue
        classes.extend(n for n in names if n not in classes)
    return collector.finish("coco", root, classes)
