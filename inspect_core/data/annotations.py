"""The one internal annotation model every importer produces and every exporter consumes.

Boxes are pixel coordinates ``(x1, y1, x2, y2)`` in continuous image space: ``0 <= x1 < x2 <= width``.
Polygons use the same space. Keeping one model means a new label format needs only an importer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from inspect_core.errors import BadInputError

Box = tuple[float, float, float, float]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 for empty ones."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


Polygon = tuple[tuple[float, float], ...]

SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}

# Pixels a box may stick out of the image before it is an error rather than rounding noise.
EDGE_TOLERANCE_PX = 1.0


class AnnotationError(BadInputError):
    """Bad input, located precisely enough to fix: file, line or element, and field."""

    def __init__(self, file: Path | str, location: str, field: str, message: str) -> None:
        self.file = str(file)
        self.location = location
        self.field = field
        self.message = message
        super().__init__(f"{self.file}: {location}: field '{field}': {message}")

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "location": self.location, "field": self.field, "reason": self.message}


@dataclass(frozen=True, slots=True)
class DefectObject:
    """One labelled defect: class, pixel box, optional polygon and free-text description."""

    label: str
    box: Box
    polygon: Polygon | None = None
    description: str | None = None

    @property
    def phrase(self) -> str:
        """Text used for dense captions and grounding: the description, else the class name."""
        return self.description or self.label


@dataclass(frozen=True, slots=True)
class AnnotatedImage:
    """An image with its size, defects and caption, plus where it came from.

    ``source_key`` groups an original with its augmented copies so they always share a split.
    """

    image_path: Path
    width: int
    height: int
    objects: tuple[DefectObject, ...] = ()
    caption: str | None = None
    split: str | None = None
    source_key: str = ""
    sha256: str = ""


def normalise_split(name: str | None) -> str | None:
    """Map ``val``/``validation`` and friends to the maestro split names."""
    if name is None:
        return None
    return _SPLIT_ALIASES.get(name.lower())


_ROBOFLOW_SUFFIX = re.compile(r"_(jpe?g|png|bmp|tiff?)\.rf\.[0-9a-f]{16,}$", re.IGNORECASE)
_FLIP_PREFIX = re.compile(r"^(?:flipped_[a-z]+_)+")


def source_key_for(path: Path) -> str:
    """Stem of the original image a file was derived from.

    Strips our own ``flipped_<kind>_`` prefixes and Roboflow's ``_jpg.rf.<hash>`` export suffix, so
    that augmented copies made by either tool are grouped with their source.
    """
    stem = _FLIP_PREFIX.sub("", path.stem)
    return _ROBOFLOW_SUFFIX.sub("", stem)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a class name, description or caption in a Florence target, or None.

    Targets are ``text<loc_N>x4...`` on one JSONL line: markup (``<``, ``>``: ``<loc_5>``, ``</s>``)
    would be read back as tokens, and control or line-break characters do not survive the round
    trip, so a dataset built from such a name would be rejected by this tool's own importer. Refused
    at import, where the message can name the label file.
    """
    if not text:
        return "is empty"
    bad = next((c for c in text if c in "<>" or unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")), None)
    if bad is None:
        return None
    if bad in "<>":
        return f"{text!r} contains {bad!r}: '<' and '>' are Florence token markup (like <loc_5>) and are not allowed in label text"
    return f"{text!r} contains the control or line-break character U+{ord(bad):04X}, which is not allowed in label text"


def check_text(text: str, file: Path | str, location: str, field: str) -> str:
    """``text`` without surrounding whitespace, if it can go into a training target; else an :class:`AnnotationError`."""
    stripped = text.strip()
    problem = text_problem(stripped)
    if problem is not None:
        raise AnnotationError(file, location, field, problem)
    return stripped


def check_box(box: Box, width: int, height: int, file: Path | str, location: str, field: str = "box") -> Box:
    """Validate a pixel box against the image; clip rounding noise, reject the rest."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if any(v != v for v in (x1, y1, x2, y2)):
        raise AnnotationError(file, location, field, f"box {box} contains NaN")
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise AnnotationError(
            file,
            location,
            field,
            f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} image",
        )
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(width), x2), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        raise AnnotationError(file, location, field, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has zero or negative area")
    return (x1, y1, x2, y2)


def clip_polygon(polygon: Polygon, width: int, height: int) -> Polygon:
    """Clamp polygon vertices into the image (transforms may push them a fraction outside)."""
    return tuple((min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))) for x, y in polygon)


def sort_objects(objects: tuple[DefectObject, ...] | list[DefectObject]) -> tuple[DefectObject, ...]:
    """Deterministic reading order: top to bottom, then left to right, then by text."""
    return tuple(sorted(objects, key=lambda o: (round(o.box[1], 3), round(o.box[0], 3), o.label, o.phrase, o.box)))
