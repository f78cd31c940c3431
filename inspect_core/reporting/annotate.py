"""The most confident defects drawn on their images: what an inspector looks at first.

Boxes are stored normalised to the image, so they land right on the file whatever its size now;
image paths are absolute in the store, so this works from any working directory.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from inspect_core.store import Engine, ReportFilter, top_image_boxes


@dataclass
class AnnotationResult:
    written: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # image files that are gone or unreadable


_PALETTE = [(40, 40, 230), (40, 200, 40), (230, 120, 30), (200, 40, 200), (30, 200, 230), (0, 140, 255), (180, 180, 40), (120, 60, 200)]


def _safe(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "model"


def palette(labels: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """One BGR colour per label, assigned in sorted order: the same class gets the same colour on every image of a set."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(set(labels)))}


# Sizes follow the image's longer side, the one a screen shrinks to fit: a 4096x256 strip is shown about
# 1600 px wide (÷2.6), so a 1 px line came out at 40 % of its colour and a 0.5-point label. Per 512 px of
# the longer side one px of line (256-512 px frames: 1 px, a 4096 px strip: 8 px, about 3 screen px after
# the shrink); text about 1/80 of the longer side high, never under cv2's smallest legible size.
LINE_PER_PX = 512
TEXT_PER_PX = 1900  # FONT_HERSHEY_SIMPLEX is ~22 px high at scale 1: 4096 px -> scale 2.2, ~48 px, ~19 screen px
MIN_TEXT_SCALE = 0.4
# Crops: for strips (sides 3:1 or more, the Try page's LINE_SCAN_ASPECT) and large frames, where a defect
# is a few screen pixels of the whole image. Each crop holds its box with the box's own size (at least
# CROP_CONTEXT px) of cloth around it, enlarged by whole pixels (nearest neighbour: no invented detail)
# to at least CROP_MIN_SIDE px.
STRIP_ASPECT = 3.0
LARGE_SIDE = 2048
CROP_CONTEXT = 48
CROP_MIN_SIDE = 256
CROP_MAX_ZOOM = 8

DrawnBox = tuple[str, float, tuple[float, float, float, float]]


def line_width(width: int, height: int) -> int:
    """Box line width in pixels for an image of this size."""
    return max(1, round(max(width, height) / LINE_PER_PX))


def text_scale(width: int, height: int) -> float:
    """cv2 font scale for the labels: by the longer side, capped so a label is at most a quarter of a strip's height."""
    return max(MIN_TEXT_SCALE, min(max(width, height) / TEXT_PER_PX, height / 4 / 22))


def draw_boxes(
    pixels: np.ndarray, boxes: Iterable[DrawnBox], colours: dict[str, tuple[int, int, int]] | None = None,
) -> np.ndarray:  # fmt: skip
    """Draw ``(label, confidence, (x1, y1, x2, y2) in pixels)`` boxes on a BGR array in place, each labelled 'class 0.93'.

    Line width and text size follow the image's longer side (:func:`line_width`), so a box reads the
    same on a 256 px frame and a 4096 px strip shown on one screen. Lines are drawn just outside the
    box, so a thick line never hides the defect's edge, and labels are kept inside the image.
    """
    boxes = list(boxes)
    colours = colours if colours is not None else palette(label for label, _, _ in boxes)
    height, width = pixels.shape[:2]
    thickness, scale = line_width(width, height), text_scale(width, height)
    text_thickness = max(1, round(scale * 1.5))
    out = thickness // 2  # cv2 centres a thick line on the coordinate: moved out by half, its inner edge is the box edge
    for name, confidence, box in boxes:
        colour = colours.get(name, _PALETTE[0])
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, y1 = min(max(x1 - out, out), width - 1 - out), min(max(y1 - out, out), height - 1 - out)
        x2, y2 = max(min(x2 + out, width - 1 - out), x1), max(min(y2 + out, height - 1 - out), y1)
        cv2.rectangle(pixels, (x1, y1), (x2, y2), colour, thickness)
        label = f"{name} {confidence:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, text_thickness)
        label_w, label_h = text_w + 2 * text_thickness, text_h + baseline + 2 * text_thickness
        if y1 - out - label_h >= 0:  # above the box, else below it, else inside its top edge
            top = y1 - out - label_h
        elif y2 + out + 1 + label_h <= height:
            top = y2 + out + 1
        else:
            top = max(0, min(y1, height - label_h))
        left = max(0, min(x1 - out, width - label_w))
        cv2.rectangle(pixels, (left, top), (left + label_w, top + label_h), colour, cv2.FILLED)
        origin = (left + text_thickness, top + text_thickness + text_h)
        cv2.putText(pixels, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), text_thickness, cv2.LINE_AA)
    return pixels


def wants_crops(width: int, height: int) -> bool:
    """Whether an annotated image also gets one crop per detection: a line-scan strip or a large frame."""
    return max(width, height) >= STRIP_ASPECT * min(width, height) or max(width, height) > LARGE_SIDE


def crop_window(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """The part of the image a detection's crop shows: the box and, each side, its own size (at least ``CROP_CONTEXT`` px)."""
    x1, y1, x2, y2 = box
    mx, my = max(CROP_CONTEXT, x2 - x1), max(CROP_CONTEXT, y2 - y1)
    return (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my))))


def detection_crops(
    pixels: np.ndarray, boxes: Sequence[DrawnBox], colours: dict[str, tuple[int, int, int]] | None = None,
) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:  # fmt: skip
    """One crop per box, in the order given: ``(window in image pixels, the crop enlarged with its boxes drawn)``.

    ``pixels`` is the plain image, BGR as ``colours`` (the palette) is. Every box reaching into
    a crop is drawn on it, so a neighbouring defect is never shown unmarked.
    """
    colours = colours if colours is not None else palette(label for label, _, _ in boxes)
    height, width = pixels.shape[:2]
    crops = []
    for _, _, box in boxes:
        x0, y0, x1, y1 = window = crop_window(box, width, height)
        zoom = max(1, min(CROP_MAX_ZOOM, -(-CROP_MIN_SIDE // max(1, min(x1 - x0, y1 - y0)))))
        crop = np.ascontiguousarray(np.repeat(np.repeat(pixels[y0:y1, x0:x1], zoom, axis=0), zoom, axis=1))
        # One pixel out at the left and top (the right and bottom edges are exclusive already): no line on the defect.
        inside = [(name, score, ((b[0] - x0) * zoom - 1, (b[1] - y0) * zoom - 1, (b[2] - x0) * zoom, (b[3] - y0) * zoom))
                  for name, score, b in boxes if b[0] < x1 and b[2] > x0 and b[1] < y1 and b[3] > y0]  # fmt: skip
        crops.append((window, draw_boxes(crop, inside, colours)))
    return crops


def _draw(pixels: np.ndarray, boxes: pd.DataFrame, colours: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """Boxes from normalised coordinates (right for any resizing of the file), each labelled 'class 0.93'."""
    height, width = pixels.shape[:2]
    placed = [(row.class_name, row.confidence, (row.nx1 * width, row.ny1 * height, row.nx2 * width, row.ny2 * height))
              for row in boxes.itertuples()]  # fmt: skip
    return draw_boxes(pixels, placed, colours)


def annotate_top(engine: Engine, flt: ReportFilter, out_dir: Path, top_n: int) -> AnnotationResult:
    """Draw the matching detections on the ``top_n`` images whose best matching detection is most confident.

    One PNG per (image, model version), named by rank; images missing on disk are listed, not fatal.
    """
    boxes = top_image_boxes(engine, flt, top_n)
    result = AnnotationResult()
    if boxes.empty:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = palette(boxes["class_name"])
    for rank, (_key, group) in enumerate(boxes.groupby(["best", "image_id", "model_version_id"], sort=False), start=1):
        source = group["path"].iloc[0]
        pixels = cv2.imread(source, cv2.IMREAD_COLOR) if Path(source).is_file() else None
        if pixels is None:
            result.missing.append(source)
            continue
        target = out_dir / f"{rank:03d}_{_safe(Path(source).stem)}_{_safe(group['model'].iloc[0])}.png"
        ok, encoded = cv2.imencode(".png", _draw(pixels, group, colours), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise OSError(errno.EIO, "the image could not be encoded as PNG", str(target))
        target.write_bytes(encoded.tobytes())  # not cv2.imwrite: it hides a full disk or a read-only folder behind False
        result.written.append(target)
    return result
