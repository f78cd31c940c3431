"""Dataset importers: every supported label format into :class:`~inspect_core.data.annotations.AnnotatedImage`."""

from __future__ import annotations

from pathlib import Path

from inspect_core.data.importers.class_map import ClassMap, parse_class_map
from inspect_core.data.importers.coco import coco_files, import_coco, malformed_json_files
from inspect_core.data.importers.dataset_tree import linked_roots, walk_files
from inspect_core.data.importers.florence_jsonl import annotation_files, import_florence_jsonl
from inspect_core.data.importers.import_result import DatasetImportError, ImportCollector, ImportResult
from inspect_core.data.importers.masks import import_masks, mask_folder
from inspect_core.data.importers.pascal_voc import import_pascal_voc, voc_files
from inspect_core.data.importers.yolo import NAME_FILES, import_yolo
from inspect_core.data.importers.yolo_classes import find_names_file
from inspect_core.errors import UsageError

FORMATS = ("jsonl", "coco", "voc", "yolo", "masks")

__all__ = ["FORMATS", "ClassMap", "DatasetImportError", "ImportResult", "detect_format", "import_dataset", "parse_class_map"]


def detect_format(root: Path) -> str:
    """Guess the label format of a folder, most specific evidence first.

    When nothing matches but a JSON file does not parse (a truncated COCO export), that file and
    the place it breaks are the message: "cannot detect the label format" would hide the cause.
    """
    if annotation_files(root):
        return "jsonl"
    if any((root / name).is_file() for name in NAME_FILES):
        return "yolo"
    if mask_folder(root) is not None:
        return "masks"
    if coco_files(root):
        return "coco"
    if voc_files(root):
        return "voc"
    if find_names_file(root) is not None and any(p.suffix.lower() == ".txt" for p in walk_files(root, linked_roots(root))[0]):
        return "yolo"  # data.yaml kept in config/, ../config/ or the parent folder, beside txt labels
    broken = malformed_json_files(root)
    if broken:
        raise DatasetImportError(broken)
    raise DatasetImportError(
        f"{root}: cannot detect the label format: no annotations.jsonl (jsonl), data.yaml/classes.txt (yolo; also looked in "
        "config/, ../config/ and the parent folder), images/ + masks/ (masks), COCO JSON (coco) or <annotation> XML (voc); "
        "pass --label-format (and --data-yaml PATH for YOLO names kept elsewhere)"
    )


def import_dataset(
    root: Path, format_name: str = "auto", *, skip_invalid: bool = False, mask_class: str = "defect",
    class_map: ClassMap | dict | str | Path | None = None, data_yaml: Path | None = None,
) -> ImportResult:  # fmt: skip
    """Import a labelled folder. Strict by default: any bad item raises :class:`DatasetImportError`.

    ``class_map`` (``--class-map``) turns source ids or names into class names, for every format; ``data_yaml``
    names a YOLO source's class-names file kept outside the places searched. A folder that yields no image
    at all (an empty export, or every image skipped) is an error, never an empty dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    if data_yaml is not None and format_name not in ("auto", "yolo"):
        raise UsageError(f"--data-yaml names YOLO class names, but --label-format is {format_name}")
    name = ("yolo" if data_yaml is not None else detect_format(root)) if format_name == "auto" else format_name
    collector = ImportCollector(skip_invalid=skip_invalid, root=root, class_map=parse_class_map(class_map))
    result = _import(root, name, collector, mask_class, data_yaml)
    if not result.images:
        skipped = f"; all {len(result.skipped)} item(s) were skipped as invalid (first: {result.skipped[0]})" if result.skipped else ""
        raise DatasetImportError(f"{root}: no image imported ({name} labels){skipped}; check --images and the folder's layout")
    return result


def _import(root: Path, name: str, collector: ImportCollector, mask_class: str, data_yaml: Path | None) -> ImportResult:
    if name == "jsonl":
        return import_florence_jsonl(root, collector)
    if name == "coco":
        return import_coco(root, collector)
    if name == "voc":
        return import_pascal_voc(root, collector)
    if name == "yolo":
        return import_yolo(root, collector, data_yaml)
    if name == "masks":
        return import_masks(root, collector, mask_class=mask_class)
    raise UsageError(f"unknown format {name!r}; expected auto or one of {', '.join(FORMATS)}")
