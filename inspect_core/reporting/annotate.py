"""The most confident defects drawn on their images: what an inspector looks at first.

Boxes are stored normalised to the image, so they land right on the file whatever its size now;
image paths are absolute in the store, so this works from any working directory.
"""

from __future__ import annotations

import errno
import re
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


def _draw(pixels: np.ndarray, boxes: pd.DataFrame, colours: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """Boxes from normalised coordinates (right for any resizing of the file), each labelled 'class 0.93'."""
    height, width = pixels.shape[:2]
    thickness = max(1, round(min(width, height) / 300))
    scale = max(0.4, min(width, height) / 900)
    for row in boxes.itertuples():
        colour = colours[row.class_name]
        x1, y1 = int(round(row.nx1 * width)), int(round(row.ny1 * height))
        x2, y2 = int(round(row.nx2 * width)), int(round(row.ny2 * height))
        cv2.rectangle(pixels, (x1, y1), (x2, y2), colour, thickness)
        label = f"{row.class_name} {row.confidence:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y1 - text_h - baseline - 2 if y1 - text_h - baseline - 2 >= 0 else y2 + 1
        cv2.rectangle(pixels, (x1, top), (x1 + text_w + 2, top + text_h + baseline + 2), colour, cv2.FILLED)
        cv2.putText(pixels, label, (x1 + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return pixels


def annotate_top(engine: Engine, flt: ReportFilter, out_dir: Path, top_n: int) -> AnnotationResult:
    """Draw the matching detections on the ``top_n`` images whose best matching detection is most confident.

    One PNG per (image, model version), named by rank; images missing on disk are listed, not fatal.
    """
    boxes = top_image_boxes(engine, flt, top_n)
    result = AnnotationResult()
    if boxes.empty:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(boxes["class_name"].unique()))}
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
