"""Import segmentation masks: one PNG per image, each connected region becomes a defect.

Layout: ``images/`` beside ``masks/`` or ``annotations/`` (same file stem). A binary mask (0 and
255, or 0 and 1) labels every region with one class (``mask_class``); an indexed mask maps pixel
value *v* to line *v* of ``classes.txt``. Each region yields a box and a simplified polygon.

A mask must have its image's size, and that is checked from the file header before any pixel is
decoded: a 30000x30000 mask (a few kB of PNG) would otherwise take gigabytes to refuse.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inspect_core.data.annotations import AnnotatedImage, AnnotationError, DefectObject, check_text, source_key_for, text_problem
from inspect_core.data.importers.image_files import list_images
from inspect_core.data.importers.import_result import ImportCollector, ImportResult
from inspect_core.data.importers.label_files import read_text
from inspect_core.errors import UsageError

MASK_FOLDERS = ("masks", "annotations")
# Regions smaller than this many pixels are labelling specks, not defects.
MIN_REGION_PIXELS = 4
POLYGON_TOLERANCE_PX = 1.0


def mask_folder(root: Path) -> Path | None:
    for name in MASK_FOLDERS:
        folder = root / name
        if folder.is_dir() and (root / "images").is_dir() and any(folder.glob("*.png")):
            return folder
    return None


def _value_classes(root: Path, collector: ImportCollector) -> dict[int, str]:
    names_file = root / "classes.txt"
    if names_file.is_file():
        collector.inside(names_file, names_file, "file", "classes.txt")
        lines = read_text(names_file).splitlines()
        names = [check_text(line, names_file, f"line {i}", "class name") for i, line in enumerate(lines, start=1) if line.strip()]
        return {value: name for value, name in enumerate(names, start=1)}
    return {}


def regions(mask: np.ndarray, label: str) -> list[DefectObject]:
    """Connected regions of a boolean mask as objects with box and polygon."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    objects = []
    for index in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[index])
        if area < MIN_REGION_PIXELS:
            continue
        contours, _ = cv2.findContours((components == index).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = cv2.approxPolyDP(max(contours, key=cv2.contourArea), POLYGON_TOLERANCE_PX, True)
        polygon = tuple((float(px) + 0.5, float(py) + 0.5) for px, py in contour.reshape(-1, 2))
        objects.append(
            DefectObject(label=label, box=(float(x), float(y), float(x + w), float(y + h)), polygon=polygon if len(polygon) >= 3 else None)
        )
    return objects


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def _png_header_size(mask_path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, for a message about a mask too large to open."""
    try:
        with mask_path.open("rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if len(head) == 24 and head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _read_mask(
    mask_path: Path, width: int, height: int, value_classes: dict[int, str], mask_class: str, collector: ImportCollector
) -> list[DefectObject]:
    try:
        with Image.open(mask_path) as handle:
            if handle.size != (width, height):  # from the header: nothing decoded yet
                raise AnnotationError(mask_path, "file", "size", f"mask is {handle.size[0]}x{handle.size[1]}, image is {width}x{height}")
            mask = np.array(handle.convert("L") if handle.mode not in ("L", "P", "1") else handle)
    except AnnotationError:
        raise
    except Image.DecompressionBombError:
        size = _png_header_size(mask_path)
        shown = f"{size[0]}x{size[1]}" if size else "too large"
        raise AnnotationError(mask_path, "file", "size", f"mask is {shown}, over the pixel budget; image is {width}x{height}") from None
    except _DECODE_ERRORS as exc:
        raise AnnotationError(mask_path, "file", "mask", f"cannot decode mask: {exc}") from None
    if mask.shape != (height, width):
        raise AnnotationError(mask_path, "file", "size", f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
    values = [int(v) for v in np.unique(mask) if v]
    if set(values) <= {1} or set(values) <= {255}:
        return regions(mask > 0, collector.class_name(mask_class, mask_path, "file", "mask class") if values else mask_class)
    unknown = [v for v in values if v not in value_classes]
    if unknown:
        raise AnnotationError(mask_path, "file", "pixel value", f"value {unknown[0]} has no class in classes.txt (binary masks use 0/255)")
    objects = []
    for value in values:
        label = collector.class_name(value_classes[value], mask_path, "file", "pixel value", key=str(value))
        objects.extend(regions(mask == value, label))
    return objects


def import_masks(root: Path, collector: ImportCollector, mask_class: str = "defect") -> ImportResult:
    problem = text_problem(mask_class.strip())
    if problem is not None:
        raise UsageError(f"--mask-class {problem}")
    mask_class = mask_class.strip()
    if collector.root is None:
        collector.root = root
    folder = mask_folder(root)
    if folder is None:
        raise AnnotationError(root, "dataset root", "masks", "expected images/ beside masks/ or annotations/ with PNG masks")
    value_classes = _value_classes(root, collector)
    images = list_images(root / "images")
    stems = {p.stem for p in images}
    for orphan in sorted(p for p in folder.glob("*.png") if p.stem not in stems):
        collector.reject(AnnotationError(orphan, "file", "image", "mask has no matching image in images/"))
    collector.prefetch(images)
    for image_path in images:

        def build(image_path: Path = image_path) -> AnnotatedImage:
            mask_path = folder / f"{image_path.stem}.png"
            if not mask_path.is_file():
                raise AnnotationError(image_path, "file", "mask", f"no mask {mask_path.name} in {folder.name}/")
            info = collector.image_info(image_path, mask_path, "file")
            collector.inside(mask_path, mask_path, "file", "mask")
            objects = _read_mask(mask_path, info.width, info.height, value_classes, mask_class, collector)
            return AnnotatedImage(
                image_path=image_path,
                width=info.width,
                height=info.height,
                objects=tuple(objects),
                source_key=source_key_for(image_path),
                sha256=info.sha256,
            )

        collector.attempt(build)
    classes = [mask_class] if not value_classes else list(value_classes.values())
    return collector.finish("masks", root, classes)
