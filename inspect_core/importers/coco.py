"""Import COCO detection JSON (plain COCO or Roboflow's ``split/_annotations.coco.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from inspect_core.annotations import (
    AnnotatedImage,
    AnnotationError,
    DefectObject,
    check_box,
    clip_polygon,
    normalise_split,
    source_key_for,
)
from inspect_core.importers.image_files import resolve_image, try_resolve
from inspect_core.importers.import_result import ImportCollector, ImportResult


def is_coco_file(path: Path) -> bool:
    """A JSON object with ``images``, ``annotations`` and ``categories`` lists."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories"))


def coco_files(root: Path) -> list[Path]:
    candidates = sorted(root.glob("*.json")) + sorted(root.glob("*/*.json"))
    return [p for p in candidates if is_coco_file(p)]


def _image_folder(json_path: Path, file_name: str) -> Path:
    """Where ``file_name`` lives: beside the JSON (Roboflow), or in a sibling ``images/`` folder."""
    for folder in (json_path.parent, json_path.parent / "images", json_path.parent.parent / "images"):
        if (folder / file_name).is_file():
            return folder
    return json_path.parent


def _classes(path: Path, data: dict) -> dict[int, str]:
    """Category id -> name; drops Roboflow's unused parent category (the supercategory of others)."""
    names: dict[int, str] = {}
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or not isinstance(category.get("name"), str):
            raise AnnotationError(path, f"categories[{index}]", "id/name", "category needs an integer id and a string name")
        names[category["id"]] = category["name"]
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    parents = {c.get("supercategory") for c in data["categories"] if isinstance(c, dict) and c.get("supercategory") != c.get("name")}
    return {cid: name for cid, name in names.items() if cid in used or name not in parents}


def _polygon(segmentation: object, width: int, height: int) -> tuple[tuple[float, float], ...] | None:
    """The largest polygon of a COCO segmentation; RLE masks carry no polygon."""
    if not isinstance(segmentation, list) or not segmentation:
        return None
    rings = [r for r in segmentation if isinstance(r, list) and len(r) >= 6 and len(r) % 2 == 0]
    if not rings:
        return None
    ring = max(rings, key=len)
    return clip_polygon(tuple((float(ring[i]), float(ring[i + 1])) for i in range(0, len(ring), 2)), width, height)


def _import_file(path: Path, root: Path, collector: ImportCollector) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AnnotationError(path, "file", "json", f"cannot parse COCO JSON: {exc}") from exc
    classes = _classes(path, data)
    split = normalise_split(path.parent.name) if path.parent != root else None
    per_image: dict[object, list[tuple[int, dict]]] = {}
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            collector.reject(AnnotationError(path, f"annotations[{index}]", "annotation", "expected an object"))
            continue
        per_image.setdefault(ann.get("image_id"), []).append((index, ann))
    known_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    for image_id, anns in per_image.items():
        if image_id not in known_ids:
            index = anns[0][0]
            collector.reject(
                AnnotationError(path, f"annotations[{index}] (id={anns[0][1].get('id')})", "image_id", f"no image with id {image_id!r}")
            )

    references = [e["file_name"] for e in data["images"] if isinstance(e, dict) and isinstance(e.get("file_name"), str)]
    collector.prefetch(p for r in references if (p := try_resolve(_image_folder(path, r), r)) is not None)
    for index, entry in enumerate(data["images"]):
        where = f"images[{index}]"

        def build(entry: dict = entry, where: str = where) -> AnnotatedImage:
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                raise AnnotationError(path, where, "file_name", "missing or not a string")
            where_named = f"{where} (id={entry.get('id')})"
            reference = entry["file_name"]
            image_path = resolve_image(_image_folder(path, reference), reference, path, where_named, "file_name")
            info = collector.image_info(image_path, path, where_named, "file_name")
            objects = []
            for ann_index, ann in per_image.get(entry.get("id"), []):
                ann_where = f"annotations[{ann_index}] (id={ann.get('id')})"
                if ann.get("category_id") not in classes:
                    raise AnnotationError(path, ann_where, "category_id", f"unknown category id {ann.get('category_id')!r}")
                bbox = ann.get("bbox")
                if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                    raise AnnotationError(path, ann_where, "bbox", f"expected [x, y, width, height], got {bbox!r}")
                x, y, w, h = bbox
                box = check_box((x, y, x + w, y + h), info.width, info.height, path, ann_where, "bbox")
                objects.append(
                    DefectObject(
                        label=classes[ann["category_id"]], box=box, polygon=_polygon(ann.get("segmentation"), info.width, info.height)
                    )
                )
            return AnnotatedImage(
                image_path=image_path,
                width=info.width,
                height=info.height,
                objects=tuple(objects),
                split=split,
                source_key=source_key_for(image_path),
                sha256=info.sha256,
            )

        collector.attempt(build)
    return list(classes.values())


def import_coco(root: Path, collector: ImportCollector) -> ImportResult:
    files = coco_files(root)
    if not files:
        raise AnnotationError(root, "dataset root", "json", "no COCO JSON (images/annotations/categories) found")
    classes: list[str] = []
    for path in files:
        try:
            names = _import_file(path, root, collector)
        except AnnotationError as error:
            collector.reject(error)
            continue
        classes.extend(n for n in names if n not in classes)
    return collector.finish("coco", root, classes)
