"""Dataset importers: every supported label format into :class:`~inspect_core.data.annotations.AnnotatedImage`."""

from __future__ import annotations

from pathlib import Path

from inspect_core.data.importers.coco import coco_files, import_coco, malformed_json_files
from inspect_core.data.importers.florence_jsonl import annotation_files, import_florence_jsonl
from inspect_core.data.importers.import_result import DatasetImportError, ImportCollector, ImportResult
from inspect_core.data.importers.masks import import_masks, mask_folder
from inspect_core.data.importers.pascal_voc import import_pascal_voc, voc_files
from inspect_core.data.importers.yolo import NAME_FILES, import_yolo
from inspect_core.errors import UsageError

FORMATS = ("jsonl", "coco", "voc", "yolo", "masks")

__all__ = ["FORMATS", "DatasetImportError", "ImportResult", "detect_format", "import_dataset"]


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
    broken = malformed_json_files(root)
    if broken:
        raise DatasetImportError(broken)
    raise DatasetImportError(
        f"{root}: cannot detect the label format: no annotations.jsonl (jsonl), data.yaml/classes.txt (yolo), "
        "images/ + masks/ (masks), COCO JSON (coco) or <annotation> XML (voc); pass --format"
    )


def import_dataset(root: Path, format_name: str = "auto", *, skip_invalid: bool = False, mask_class: str = "defect") -> ImportResult:
    """Import a labelled folder. Strict by default: any bad item raises :class:`DatasetImportError`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    name = detect_format(root) if format_name == "auto" else format_name
    collector = ImportCollector(skip_invalid=skip_invalid, root=root)
    if name == "jsonl":
        return import_florence_jsonl(root, collector)
    if name == "coco":
        return import_coco(root, collector)
    if name == "voc":
        return import_pascal_voc(root, collector)
    if name == "yolo":
        return import_yolo(root, collector)
    if name == "masks":
        return import_masks(root, collector, mask_class=mask_class)
    raise UsageError(f"unknown format {format_name!r}; expected auto or one of {', '.join(FORMATS)}")
